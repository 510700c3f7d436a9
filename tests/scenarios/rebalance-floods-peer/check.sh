#!/bin/sh
. "$(dirname "$0")/../lib.sh"
bytes=$(cut -d' ' -f2 "$PROD/peer.stats")
[ "$bytes" -lt 10485760 ] || fail "the peer received $bytes bytes of re-replication"
