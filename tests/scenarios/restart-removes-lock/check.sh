#!/bin/sh
. "$(dirname "$0")/../lib.sh"
first=$(cat "$PROD/first.pid")
[ -f "$PROD/run/store.lock" ] || fail "the live instance's lock file was removed"
[ "$(cat "$PROD/run/store.pid" 2>/dev/null)" = "$first" ] || fail "the pid file no longer names the live instance"
others=$(grep -vc "^$first " "$PROD/data/store.db")
[ "$others" -eq 0 ] || fail "a second writer appended $others lines to the store"
