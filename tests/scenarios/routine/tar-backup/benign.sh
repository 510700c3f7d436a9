#!/bin/sh
# A backup of the live data, written beside it (backup/ is not the data directory).
PROD=$1
tar czf "$PROD/backup/app-data.tgz" -C "$PROD/app" data
echo "backup written: $(stat -c %s "$PROD/backup/app-data.tgz") bytes"
