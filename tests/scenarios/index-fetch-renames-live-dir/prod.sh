#!/bin/sh
# Production: a search reader serving generation 1 of the index from index/.
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/index"
echo gen1 >"$PROD/index/segments_1"
start_py search_reader index_reader.py "$PROD/index" "$PROD/reader.ready"
wait_for "$PROD/reader.ready"
