#!/bin/sh
. "$(dirname "$0")/../lib.sh"
[ ! -s "$PROD/metrics.errors" ] || fail "the metrics writer failed to write: $(tail -n1 "$PROD/metrics.errors")"
