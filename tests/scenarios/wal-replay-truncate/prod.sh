#!/bin/sh
# Production: an ingest service appending records to its write-ahead log.
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/wal" "$PROD/state"
start_py ingest appender.py "$PROD/wal/current.log" "$PROD/ingest.ready" rec
wait_for "$PROD/ingest.ready"
