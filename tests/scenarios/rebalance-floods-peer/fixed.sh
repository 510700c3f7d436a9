#!/bin/sh
# The fix: re-replicate only the under-replicated range (2 MiB), within the peer's budget.
. "$1/scenario.env"
exec /usr/bin/python3 "$(dirname "$0")/../lib/transfer.py" "$PEER_PORT" 1 0 2
