#!/bin/sh
# Production: an old launcher started the batch worker and the API worker in one process
# group and exited (both were daemonized, so each is its own component).
. "$(dirname "$0")/../lib.sh"
mkdir -p "$PROD/run" "$PROD/bin"
ln -sf "$LIB/worker.py" "$PROD/bin/batch_worker.py"
ln -sf "$LIB/worker.py" "$PROD/bin/api_worker.py"
start launcher sh -c "
  echo \$\$ >$PROD/run/workers.pgid
  (/usr/bin/python3 $PROD/bin/batch_worker.py $PROD/run/batch.pid $PROD/log/batch.out &)
  (/usr/bin/python3 $PROD/bin/api_worker.py $PROD/run/api.pid $PROD/log/api.out &)
"
wait_for "$PROD/run/batch.pid"
wait_for "$PROD/run/api.pid"
