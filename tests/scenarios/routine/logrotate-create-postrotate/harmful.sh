#!/bin/sh
# The same rotation copied for the worker, whose postrotate SIGHUPs it: the worker does not
# handle SIGHUP, so it dies (the default action) instead of reopening its log.
PROD=$1
cat >"$PROD/etc/worker-create.conf" <<CONF
$PROD/worker/logs/worker.log {
    create 0640 root root
    rotate 5
    postrotate
        kill -HUP \$(cat $PROD/worker/worker.pid) 2>/dev/null || true
    endscript
}
CONF
exec logrotate -f -s "$PROD/logrotate/state-worker" "$PROD/etc/worker-create.conf"
