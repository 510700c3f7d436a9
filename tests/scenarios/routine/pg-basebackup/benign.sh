#!/bin/sh
# A physical backup of the live cluster over the replication protocol, into the backup
# directory; the WAL it needs streamed on a second connection (`-X stream`, the default).
PROD=$1
. "$PROD/scenario.env"
exec /usr/lib/postgresql/15/bin/pg_basebackup -h 127.0.0.1 -p "$PG_PORT" -U postgres -D "$PROD/backup/base" -c fast
