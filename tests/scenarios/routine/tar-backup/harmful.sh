#!/bin/sh
# "Restore" an old backup over the live data: tar x replaces app.db under the running app.
PROD=$1
tar xzf "$PROD/backup/app-data-old.tgz" -C "$PROD/app"
echo "backup restored"
