#!/bin/sh
# "Rotation" by hand gone wrong: clean up the logs directory with a glob that takes the live
# log with it. The app keeps writing into a deleted file: every line is lost, and the disk
# space is not freed until it restarts.
PROD=$1
rm -f "$PROD"/app/logs/app.log*
echo "logs cleaned"
