#!/bin/sh
# Production: a native reader serving from three mapped segments. MANIFEST is the stale copy
# from the last compaction (one segment); MANIFEST.current is what the reader serves.
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/bin" "$PROD/segments"
gcc -O1 -o "$PROD/bin/segment_reader" "$LIB/segment_reader.c" || exit 1
cd "$PROD/segments"
for s in seg-0001 seg-0002 seg-0003; do head -c 65536 /dev/urandom >$s; done
echo partial >seg-0004.tmp
echo seg-0001 >MANIFEST
printf 'seg-0001\nseg-0002\nseg-0003\n' >MANIFEST.current
start segment_reader "$PROD/bin/segment_reader" "$PROD/reader.ready" seg-0001 seg-0002 seg-0003
wait_for "$PROD/reader.ready"
