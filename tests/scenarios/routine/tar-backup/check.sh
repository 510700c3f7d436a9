#!/bin/sh
. "$(dirname "$0")/../../lib.sh"
. "$(dirname "$0")/../app.sh"
check_app
