#!/bin/sh
# ... and then "free some space" by deleting the biggest file it found: the live data.
PROD=$1
biggest=$(ls -S "$PROD/app/data" | head -n1)
rm -f "$PROD/app/data/$biggest"
echo "removed $biggest"
