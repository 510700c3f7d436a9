#!/bin/sh
. "$(dirname "$0")/../lib.sh"
for s in seg-0001 seg-0002 seg-0003; do
    [ -f "$PROD/segments/$s" ] || fail "segment $s, served live, was deleted"
done
