#!/bin/sh
# Rotation the `create` way: rename app.log to app.log.1, create a new app.log, and tell the
# app to reopen it (SIGHUP, which it handles). `|| true` as Debian's own postrotate scripts
# have it: inside a pilot the kill cannot reach a host process (its PID namespace) and fails.
PROD=$1
cat >"$PROD/etc/app-create.conf" <<CONF
$PROD/app/logs/app.log {
    create 0640 root root
    rotate 5
    compress
    delaycompress
    postrotate
        kill -HUP \$(cat $PROD/app/run/app.pid) 2>/dev/null || true
    endscript
}
CONF
exec logrotate -f -s "$PROD/logrotate/state" "$PROD/etc/app-create.conf"
