#!/bin/sh
# Production: a session store appending to sessions/sessions.db.
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/sessions" "$PROD/sessions-tmp"
echo leftover >"$PROD/sessions-tmp/upload-1.part"
start_py session_store appender.py "$PROD/sessions/sessions.db" "$PROD/sessions.ready" session
wait_for "$PROD/sessions.ready"
