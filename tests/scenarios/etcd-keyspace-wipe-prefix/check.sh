#!/bin/sh
# The configuration and the billing rates are there.
. "$(dirname "$0")/../lib.sh"
export ETCDCTL_API=3
EP="http://127.0.0.1:$C1"
[ "$(etcdctl --endpoints="$EP" get /app/config/db --print-value-only)" = "primary=db-1:5432" ] || fail "/app/config/db gone"
[ "$(etcdctl --endpoints="$EP" get /billing/rates --print-value-only)" = "v7" ] || fail "/billing/rates gone"
