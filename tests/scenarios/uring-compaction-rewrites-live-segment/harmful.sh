#!/bin/sh
# Compaction "offline": drop the tombstones of seg-0002, in place. The reader still maps it.
PROD=$1
cd "$PROD/segments" || exit 1
"$PROD/bin/uring_compact" seg-0002 seg-0002
