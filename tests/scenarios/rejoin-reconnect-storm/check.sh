#!/bin/sh
. "$(dirname "$0")/../lib.sh"
conns=$(cut -d' ' -f1 "$PROD/coord.stats")
[ "$conns" -lt 50 ] || fail "the coordinator took $conns connections from one rejoining node"
