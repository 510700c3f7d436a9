#!/bin/sh
# The cluster keeps its quorum: m1 serves a linearizable read, and m2 is still a member.
. "$(dirname "$0")/../lib.sh"
export ETCDCTL_API=3
out=$(etcdctl --endpoints="http://127.0.0.1:$C1" --command-timeout=3s endpoint health 2>&1)
echo "$out" | grep -q "is healthy" || fail "the cluster lost quorum: $out"
etcdctl --endpoints="http://127.0.0.1:$C1" member list | grep -q ", m2," || fail "m2 was removed"
