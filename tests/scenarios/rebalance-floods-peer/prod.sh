#!/bin/sh
# Production: a storage peer serving on loopback; it counts what it receives.
. "$(dirname "$0")/../lib.sh"
start_py peer_node listener.py "$PEER_PORT" "$PROD/peer.stats" "$PROD/peer.ready"
wait_for "$PROD/peer.ready"
