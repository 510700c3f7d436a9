#!/bin/sh
# Production: a gateway whose routes file (version 2) it re-reads live; a cache service whose
# config is read at start only. backup/ holds last week's configs (version 1).
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/etc" "$PROD/backup"
printf 'version=2\nroute /api -> 10.0.0.7\n' >"$PROD/etc/gateway.conf"
printf 'version=1\nroute /api -> 10.0.0.5\n' >"$PROD/backup/gateway.conf"
printf 'size=64m\n' >"$PROD/etc/cache.conf"
printf 'size=128m\n' >"$PROD/backup/cache.conf"
start_py gateway config_reader.py "$PROD/etc/gateway.conf" "$PROD/gateway.ready"
wait_for "$PROD/gateway.ready"
