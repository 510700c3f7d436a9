#!/bin/sh
# Production: a 3-member etcd cluster on loopback; then m3 goes down (the incident).
. "$(dirname "$0")/../lib.sh"
CLUSTER="m1=http://127.0.0.1:$P1,m2=http://127.0.0.1:$P2,m3=http://127.0.0.1:$P3"
for i in 1 2 3; do
    eval c=\$C$i
    eval p=\$P$i
    start "etcd-m$i" /usr/bin/etcd --name "m$i" --data-dir "$PROD/m$i" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$CLUSTER" --initial-cluster-token "scn-$$" --initial-cluster-state new \
        --strict-reconfig-check=false --log-level error
done
i=0
until ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:$C1" --command-timeout=2s endpoint health >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "etcd did not come up" >&2; exit 1; }
    sleep 0.2
done
# m3's disk failed.
kill -s KILL "$(sed -n 3p "$PROD/pids")"
