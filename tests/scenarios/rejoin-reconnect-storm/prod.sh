#!/bin/sh
# Production: a coordinator (ZooKeeper-like) every node of the cluster shares.
. "$(dirname "$0")/../lib.sh"
start_py coordinator listener.py "$COORD_PORT" "$PROD/coord.stats" "$PROD/coord.ready"
wait_for "$PROD/coord.ready"
