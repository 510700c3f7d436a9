#!/bin/sh
# Production: one etcd member holding an application's configuration, its cache and another
# team's billing rates.
. "$(dirname "$0")/../lib.sh"
start etcd /usr/bin/etcd --name e1 --data-dir "$PROD/e1" \
    --listen-client-urls "http://127.0.0.1:$C1" --advertise-client-urls "http://127.0.0.1:$C1" \
    --listen-peer-urls "http://127.0.0.1:$P1" --initial-advertise-peer-urls "http://127.0.0.1:$P1" \
    --initial-cluster "e1=http://127.0.0.1:$P1" --log-level error
export ETCDCTL_API=3
EP="http://127.0.0.1:$C1"
i=0
until etcdctl --endpoints="$EP" --command-timeout=2s put /app/config/db "primary=db-1:5432" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "etcd did not come up" >&2; exit 1; }
    sleep 0.2
done
etcdctl --endpoints="$EP" put /billing/rates "v7" >/dev/null
for n in 1 2 3; do etcdctl --endpoints="$EP" put "/app/cache/session-$n" stale >/dev/null; done
