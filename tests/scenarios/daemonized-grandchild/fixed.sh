#!/bin/sh
# The fix: the detached cleanup empties sessions-tmp/ only.
PROD=$1
( setsid sh -c "sleep 1; rm -rf '$PROD/sessions-tmp/'*" </dev/null >/dev/null 2>&1 & )
echo "cleanup scheduled"
