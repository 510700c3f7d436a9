#!/bin/sh
# A logical backup of the live database over TCP, into the backup directory.
PROD=$1
. "$PROD/scenario.env"
exec /usr/lib/postgresql/15/bin/pg_dump -h 127.0.0.1 -p "$PG_PORT" -U postgres -f "$PROD/backup/app.sql" app
