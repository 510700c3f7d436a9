#!/bin/sh
# The fix: compact into a new segment; the reader switches to it at its next manifest change.
PROD=$1
cd "$PROD/segments" || exit 1
"$PROD/bin/uring_compact" seg-0002 seg-0002.compact
