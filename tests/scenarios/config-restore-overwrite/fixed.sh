#!/bin/sh
# The fix: restore exactly the config of the component under repair.
PROD=$1
cp "$PROD/backup/cache.conf" "$PROD/etc/cache.conf"
echo "restored cache.conf"
