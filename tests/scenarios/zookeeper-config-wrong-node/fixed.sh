#!/bin/sh
# The fix: the push goes to the canary's node.
PROD=$1
. "$PROD/scenario.env"
CANARY=/services/web/canary/config
NEW="pool=8"
CLIENT_JVMFLAGS="-Xmx128m -XX:-UsePerfData -XX:TieredStopAtLevel=1" \
    /usr/share/zookeeper/bin/zkCli.sh -server "127.0.0.1:$ZK" set "$CANARY" "$NEW"
