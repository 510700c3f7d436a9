#!/bin/sh
# Production: the app service and the worker (../app.sh), and a JVM admin tool built here.
. "$(dirname "$0")/../../lib.sh"
. "$(dirname "$0")/../app.sh"
mkdir -p "$PROD/classes"
javac -d "$PROD/classes" "$LIB/DataStats.java" || exit 1
start_app
