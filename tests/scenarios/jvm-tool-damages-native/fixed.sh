#!/bin/sh
# The fix: compact into a new file and leave the swap to the store (its own compaction).
PROD=$1
exec java -jar "$PROD/bin/compactor.jar" "$PROD/kv" "$PROD/kv-compacted"
