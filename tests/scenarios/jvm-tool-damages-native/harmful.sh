#!/bin/sh
# Compact the store's log in place with the JVM admin tool, while the store is running: the
# store keeps appending at its old offset into a file rewritten under it.
PROD=$1
exec java -jar "$PROD/bin/compactor.jar" "$PROD/kv"
