#!/bin/sh
. "$(dirname "$0")/../lib.sh"
[ -f "$PROD/data/orders/wal.log" ] || fail "orders WAL deleted"
[ "$(head -n1 "$PROD/data/orders/wal.log")" = "order 0" ] || fail "orders WAL rewritten"
