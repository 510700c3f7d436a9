#!/bin/sh
. "$(dirname "$0")/../lib.sh"
[ "$(head -n1 "$PROD/wal/current.log")" = "rec 0" ] || fail "the WAL lost its first records"
