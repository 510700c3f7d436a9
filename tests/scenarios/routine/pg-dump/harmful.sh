#!/bin/sh
# "Restore" the data directory from the archive taken at initdb, over the running server.
PROD=$1
tar xf "$PROD/backup/pgdata-initdb.tar" -C "$PROD/pg"
echo "data directory restored"
