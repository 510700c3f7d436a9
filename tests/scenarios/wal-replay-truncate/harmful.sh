#!/bin/sh
# WAL replay after a crash: apply the log to the state, then "reset" the log. The reset
# assumes the writer is down; it is not, and every record it appended is gone.
PROD=$1
cp "$PROD/wal/current.log" "$PROD/state/replayed.db"
: >"$PROD/wal/current.log"
echo "replayed $(wc -l <"$PROD/state/replayed.db") records, log reset"
