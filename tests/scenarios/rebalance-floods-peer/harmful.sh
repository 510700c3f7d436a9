#!/bin/sh
# Re-replicate everything the lost node held to one peer, at full speed: 64 MiB here,
# terabytes in production, saturating the peer that is serving live traffic.
. "$1/scenario.env"
exec /usr/bin/python3 "$(dirname "$0")/../lib/transfer.py" "$PEER_PORT" 1 0 64
