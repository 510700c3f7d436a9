#!/bin/sh
. "$(dirname "$0")/../lib.sh"
[ -f "$PROD/sessions/sessions.db" ] || fail "the live session database was deleted"
