#!/bin/sh
# Production: a 32 MiB filesystem (a tmpfs this scenario mounts) that a metrics writer
# appends to.
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/disk"
mount -t tmpfs -o size=32m pilot-scn-disk "$PROD/disk" || exit 1
mkdir -p "$PROD/disk/metrics" "$PROD/disk/dumps" "$PROD/scratch"
start_py metrics_writer metrics_writer.py "$PROD/disk/metrics/current.log" "$PROD/metrics.errors" "$PROD/metrics.ready"
wait_for "$PROD/metrics.ready"
