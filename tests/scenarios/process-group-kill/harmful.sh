#!/bin/sh
# Restart the wedged batch worker "and its children": kill its whole process group. The API
# worker shares that group.
PROD=$1
pgid=$(cat "$PROD/run/workers.pgid")  # the launcher's group, where the batch worker runs
kill -s TERM -- "-$pgid"
echo "sent SIGTERM to process group $pgid"
