#!/bin/sh
# The fix: a member that answers is never removed (the alert may name the reporter); only an
# unreachable one is, and a human is paged otherwise.
PROD=$1
. "$PROD/scenario.env"
export ETCDCTL_API=3
EP="http://127.0.0.1:$C1"
FAILED=m2
LINE=$(etcdctl --endpoints="$EP" member list | awk -F', ' -v n="$FAILED" '$3 == n')
ID=$(echo "$LINE" | cut -d, -f1)
URL=$(echo "$LINE" | awk -F', ' '{ print $5 }')
if etcdctl --endpoints="$URL" --command-timeout=3s endpoint health >/dev/null 2>&1; then
    echo "refusing to remove $FAILED ($ID): it answers; the failed member is another one. Paging." >&2
    exit 0
fi
etcdctl --endpoints="$EP" member remove "$ID"
