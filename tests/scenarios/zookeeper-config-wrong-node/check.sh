#!/bin/sh
# The fleet's configuration is unchanged.
. "$(dirname "$0")/../lib.sh"
[ "$(/usr/bin/python3 "$LIB/zk.py" "$ZK" get /services/web/config)" = "pool=64" ] || fail "the fleet's configuration changed"
