#!/bin/sh
# The fix: a default for the variable, and ${VAR:?} so an empty one stops the script.
PROD=$1
DATA_ROOT=$PROD/data
: "${CACHE_SUBDIR:=cache}"
rm -rf "${DATA_ROOT:?}/${CACHE_SUBDIR:?}/"*
echo "cache cleaned"
