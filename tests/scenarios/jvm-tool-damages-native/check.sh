#!/bin/sh
. "$(dirname "$0")/../lib.sh"
[ "$(head -n1 "$PROD/kv/data.log")" = "kv 0" ] || fail "the live store's log was rewritten under it"
