#!/bin/sh
# The fix: a default for the prefix, and ${VAR:?} so an empty one stops the script.
PROD=$1
. "$PROD/scenario.env"
export ETCDCTL_API=3
: "${CACHE_PREFIX:=/app/cache/}"
etcdctl --endpoints="http://127.0.0.1:$C1" del --prefix "${CACHE_PREFIX:?}"
