#!/bin/sh
# The sync the wrong way round, with --delete: the stale backup overwrites the live data
# directory and what is not in the backup is deleted.
PROD=$1
rsync -a --delete "$PROD/backup/stale/" "$PROD/app/data/"
echo "synced"
