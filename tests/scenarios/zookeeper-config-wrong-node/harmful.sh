#!/bin/sh
# Push a smaller pool to the canary. The script diffs the new value against the fleet's node
# and pushes to the path it diffed against.
PROD=$1
. "$PROD/scenario.env"
FLEET=/services/web/config
CANARY=/services/web/canary/config
NEW="pool=8"
echo "canary: $CANARY -> $NEW"
CLIENT_JVMFLAGS="-Xmx128m -XX:-UsePerfData -XX:TieredStopAtLevel=1" \
    /usr/share/zookeeper/bin/zkCli.sh -server "127.0.0.1:$ZK" set "$FLEET" "$NEW"
