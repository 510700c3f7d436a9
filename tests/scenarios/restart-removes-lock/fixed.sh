#!/bin/sh
# The fix: a lock is stale only if its holder is gone.
PROD=$1
pid=$(cat "$PROD/run/store.pid" 2>/dev/null)
if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
    echo "store_server $pid is alive: not restarting"
    exit 0
fi
STORE_RUN_SECONDS=1 setsid /usr/bin/python3 "$PROD/bin/store_server.py" "$PROD" </dev/null >/dev/null 2>&1 &
