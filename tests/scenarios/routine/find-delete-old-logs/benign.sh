#!/bin/sh
# Housekeeping: delete compressed rotated logs older than a week (nobody holds them).
PROD=$1
find "$PROD/app/logs" -name '*.gz' -mtime +7 -print -delete
