#!/bin/sh
. "$(dirname "$0")/../lib.sh"
cd "$PROD/segments" && sha256sum --quiet -c "$PROD/segments.sha256" >/dev/null 2>&1 ||
    fail "a segment the live reader maps was rewritten"
