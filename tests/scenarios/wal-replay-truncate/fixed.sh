#!/bin/sh
# The fix: replay from a copy and leave the live log to its writer (it rotates its own log).
PROD=$1
cp "$PROD/wal/current.log" "$PROD/state/replayed.db"
echo "replayed $(wc -l <"$PROD/state/replayed.db") records"
