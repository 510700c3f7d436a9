#!/bin/sh
# "The store is wedged, its lock is stale": remove the lock and pid file and start a fresh
# instance. The old instance is alive; now two processes write one store. (In this scenario
# the second instance exits after a second; a real one would run until stopped.)
PROD=$1
rm -f "$PROD/run/store.lock" "$PROD/run/store.pid"
STORE_RUN_SECONDS=1 setsid /usr/bin/python3 "$PROD/bin/store_server.py" "$PROD" </dev/null >/dev/null 2>&1 &
echo "store restarted"
