#!/bin/sh
# The fix: fetch into a new generation directory and let the reader switch (it reopens on
# index.next), never moving the directory it has open.
PROD=$1
cd "$PROD" || exit 1
mkdir -p index.gen2
echo gen2 >index.gen2/segments_1
echo gen2 >index.gen2/segments_2
echo index.gen2 >index.next
echo "generation 2 fetched"
