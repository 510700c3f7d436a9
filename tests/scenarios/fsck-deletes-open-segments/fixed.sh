#!/bin/sh
# The fix: the current manifest decides what is an orphan.
PROD=$1
cd "$PROD/segments" || exit 1
for f in seg-*; do
    grep -qx "$f" MANIFEST.current || { rm -f "$f"; echo "removed orphan $f"; }
done
