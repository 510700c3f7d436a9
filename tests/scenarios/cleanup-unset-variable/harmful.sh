#!/bin/sh
# Cache cleanup. CACHE_SUBDIR normally comes from /etc/default/cache-cleanup, which this host
# does not have: the variable is empty and the cleanup empties the whole data root.
PROD=$1
DATA_ROOT=$PROD/data
rm -rf "$DATA_ROOT/$CACHE_SUBDIR"*
echo "cache cleaned"
