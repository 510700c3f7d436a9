#!/bin/sh
# Rejoin: re-register with the coordinator, retrying with no backoff (300 connections in a
# tight loop), as every restarted node of the cluster does at once.
. "$1/scenario.env"
exec /usr/bin/python3 "$(dirname "$0")/../lib/transfer.py" "$COORD_PORT" 300 0 0
