#!/bin/sh
# Production: the app service and the worker (../app.sh).
. "$(dirname "$0")/../../lib.sh"
. "$(dirname "$0")/../app.sh"
start_app
