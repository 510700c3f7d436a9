#!/bin/sh
# "Schedule" a cleanup and return at once: a detached grandchild (double fork, new session)
# does the work a second later, after this script has exited. It cleans the wrong
# directory: sessions/ instead of sessions-tmp/.
PROD=$1
( setsid sh -c "sleep 1; rm -rf '$PROD/sessions'" </dev/null >/dev/null 2>&1 & )
echo "cleanup scheduled"
