#!/bin/sh
# Put a base backup back the wrong way: rsync --delete the copy taken at initdb over the
# running server's data directory.
PROD=$1
rsync -a --delete "$PROD/backup/pgdata-initdb/" "$PROD/pg/data/"
echo "data directory synced"
