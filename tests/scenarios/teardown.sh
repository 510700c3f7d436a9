#!/bin/sh
# End a scenario's production (tests/scenarios.rs and `cargo xtask demo` both call this): the
# services prod.sh started, by the pids it recorded (each leads its own session and group, so
# its group is ours too), then what prod.sh mounted under PROD, then PROD itself.
PROD=${1:?usage: teardown.sh PROD_DIR}
# A service that must be stopped its own way first (PostgreSQL: its shared memory).
[ -f "$PROD/stop.sh" ] && sh "$PROD/stop.sh" >/dev/null 2>&1
pids=$(cat "$PROD/pids" 2>/dev/null)
for pid in $pids; do
    kill -s KILL -- "-$pid" "$pid" 2>/dev/null
done
for pid in $pids; do
    i=0
    while [ -d "/proc/$pid" ] && [ $i -lt 200 ]; do
        sleep 0.05
        i=$((i + 1))
    done
done
# Deepest first; `umount -l` so a straggler holding a file does not keep the mount.
cut -d' ' -f2 /proc/self/mounts | grep "^$PROD/" | sort -r | while read -r m; do
    umount -l "$m"
done
rm -rf "$PROD"
