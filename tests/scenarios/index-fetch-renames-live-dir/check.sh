#!/bin/sh
. "$(dirname "$0")/../lib.sh"
[ "$(cat "$PROD/index/segments_1" 2>/dev/null)" = gen1 ] || fail "index/ no longer holds the generation the reader serves"
[ -f "$PROD/index/write.lock" ] || fail "the reader's write.lock is gone from index/"
