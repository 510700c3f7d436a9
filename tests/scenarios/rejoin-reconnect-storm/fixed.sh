#!/bin/sh
# The fix: exponential backoff (3 attempts, 0.2 s then 0.4 s apart).
. "$1/scenario.env"
exec /usr/bin/python3 "$(dirname "$0")/../lib/transfer.py" "$COORD_PORT" 3 0.2 0
