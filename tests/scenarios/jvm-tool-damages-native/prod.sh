#!/bin/sh
# Production: a native key-value store appending to kv/data.log. The JVM admin tool
# (compactor.jar) is built here from lib/Compactor.java.
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/bin" "$PROD/kv" "$PROD/classes"
gcc -O1 -o "$PROD/bin/kvstore" "$LIB/kvstore.c" || exit 1
javac -d "$PROD/classes" "$LIB/Compactor.java" || exit 1
jar --create --file "$PROD/bin/compactor.jar" --main-class Compactor -C "$PROD/classes" . || exit 1
start kvstore "$PROD/bin/kvstore" "$PROD/kv.ready" "$PROD/kv/data.log"
wait_for "$PROD/kv.ready"
