#!/bin/sh
# The fix: signal the batch worker by its pid.
PROD=$1
kill -TERM "$(cat "$PROD/run/batch.pid")"
echo "sent SIGTERM to the batch worker"
