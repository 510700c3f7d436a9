#!/bin/sh
# Nightly rotation of the app's log with Debian's logrotate, `copytruncate`: copy app.log to
# app.log.1, truncate app.log in place (the app keeps its fd), compress the older ones.
PROD=$1
cat >"$PROD/etc/app-copytruncate.conf" <<CONF
$PROD/app/logs/app.log {
    copytruncate
    rotate 5
    compress
    delaycompress
    missingok
}
CONF
exec logrotate -f -s "$PROD/logrotate/state" "$PROD/etc/app-copytruncate.conf"
