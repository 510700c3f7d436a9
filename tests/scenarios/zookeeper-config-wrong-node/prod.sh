#!/bin/sh
# Production: one ZooKeeper server holding the web fleet's and the canary's configuration.
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/zk"
cat >"$PROD/zoo.cfg" <<CFG
tickTime=500
dataDir=$PROD/zk
clientPort=$ZK
clientPortAddress=127.0.0.1
admin.enableServer=false
CFG
start zookeeper /usr/bin/java -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar -Xmx128m -XX:-UsePerfData \
    -XX:TieredStopAtLevel=1 "-Dzookeeper.log.dir=$PROD/log" -Dzookeeper.root.logger=WARN,CONSOLE \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$PROD/zoo.cfg"
/usr/bin/python3 "$LIB/zk.py" "$ZK" wait || { echo "zookeeper did not come up" >&2; exit 1; }
for p in /services /services/web; do /usr/bin/python3 "$LIB/zk.py" "$ZK" create "$p" ""; done
/usr/bin/python3 "$LIB/zk.py" "$ZK" create /services/web/config "pool=64"
/usr/bin/python3 "$LIB/zk.py" "$ZK" create /services/web/canary ""
/usr/bin/python3 "$LIB/zk.py" "$ZK" create /services/web/canary/config "pool=64"
