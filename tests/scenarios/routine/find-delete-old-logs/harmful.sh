#!/bin/sh
# The same housekeeping with the age test inverted (-7 for +7) and no name filter: it deletes
# the recent files, the live log among them.
PROD=$1
find "$PROD/app/logs" -type f -mtime -7 -print -delete
