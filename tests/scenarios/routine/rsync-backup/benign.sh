#!/bin/sh
# A copy of the live data into the backup directory.
PROD=$1
rsync -a "$PROD/app/data/" "$PROD/backup/data/"
echo "synced: $(ls "$PROD/backup/data" | wc -l) file(s)"
