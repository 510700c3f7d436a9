#!/bin/sh
# Production: a single-writer store holding an flock on run/store.lock.
. "$(dirname "$0")/../lib.sh"
start_py store_server store_server.py "$PROD"
wait_for "$PROD/run/store.pid"
cp "$PROD/run/store.pid" "$PROD/first.pid"
