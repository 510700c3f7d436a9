#!/bin/sh
# Put a base backup back the wrong way: rsync --delete the copy taken at initdb over the
# running server's data directory. -I (--ignore-times): rsync's quick check compares whole
# seconds, so a control file the server rewrote within the second of the copy would be skipped.
PROD=$1
rsync -a -I --delete "$PROD/backup/pgdata-initdb/" "$PROD/pg/data/"
echo "data directory synced"
