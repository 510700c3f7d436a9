#!/bin/sh
# Cache cleanup. CACHE_PREFIX comes from /etc/default/cache-cleanup, which this host does not
# have: the prefix is empty and etcdctl deletes the whole keyspace.
PROD=$1
. "$PROD/scenario.env"
export ETCDCTL_API=3
etcdctl --endpoints="http://127.0.0.1:$C1" del --prefix "$CACHE_PREFIX"
