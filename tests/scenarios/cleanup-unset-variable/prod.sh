#!/bin/sh
# Production: an orders database appending to its WAL under data/orders, and a cache
# directory full of stale entries the nightly cleanup is meant to empty.
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/data/orders" "$PROD/data/cache"
for i in 1 2 3 4 5; do echo stale >"$PROD/data/cache/entry-$i"; done
start_py orders_db appender.py "$PROD/data/orders/wal.log" "$PROD/orders.ready" order
wait_for "$PROD/orders.ready"
