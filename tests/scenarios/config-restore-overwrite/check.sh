#!/bin/sh
. "$(dirname "$0")/../lib.sh"
[ "$(head -n1 "$PROD/etc/gateway.conf")" = "version=2" ] || fail "the gateway's live routes were replaced"
