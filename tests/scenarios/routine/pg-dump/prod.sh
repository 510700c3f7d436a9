#!/bin/sh
# Production: PostgreSQL 15 (../pg.sh).
. "$(dirname "$0")/../../lib.sh"
. "$(dirname "$0")/../pg.sh"
start_pg
