#!/bin/sh
# Production: a native reader serving from three mapped segments of records with tombstones.
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/bin" "$PROD/segments"
gcc -O1 -o "$PROD/bin/segment_reader" "$LIB/segment_reader.c" || exit 1
gcc -O1 -o "$PROD/bin/uring_compact" "$LIB/uring_compact.c" || exit 1
cd "$PROD/segments"
for s in seg-0001 seg-0002 seg-0003; do
    i=0
    while [ $i -lt 400 ]; do
        echo "rec $s $i"
        [ $((i % 3)) -eq 0 ] && echo "DEL rec $s $((i - 1))"
        i=$((i + 1))
    done >$s
done
sha256sum seg-0001 seg-0002 seg-0003 >"$PROD/segments.sha256"
start segment_reader "$PROD/bin/segment_reader" "$PROD/reader.ready" seg-0001 seg-0002 seg-0003
wait_for "$PROD/reader.ready"
