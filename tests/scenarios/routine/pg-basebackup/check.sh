#!/bin/sh
. "$(dirname "$0")/../../lib.sh"
. "$(dirname "$0")/../pg.sh"
check_pg
