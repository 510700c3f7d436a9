#!/bin/sh
# Replica recovery: fetch the leader's index into index.new/ and swap it in place of index/,
# under the live reader, then delete the old generation.
PROD=$1
cd "$PROD" || exit 1
mkdir -p index.new
echo gen2 >index.new/segments_1
echo gen2 >index.new/segments_2
mv index index.old && mv index.new index && rm -rf index.old
echo "index swapped"
