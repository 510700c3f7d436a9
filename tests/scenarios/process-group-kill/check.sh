#!/bin/sh
. "$(dirname "$0")/../lib.sh"
[ -d "/proc/$(cat "$PROD/run/api.pid")" ] || fail "the API worker was killed"
