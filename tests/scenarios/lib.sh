# Shared by the scenarios' prod.sh/check.sh (sourced, POSIX sh). Every script of a scenario
# gets the production directory as $1; the harness writes $PROD/scenario.env (free ports).
PROD=${1:?usage: $0 PROD_DIR}
SCN=$(cd "$(dirname "$0")" && pwd)
LIB=$(cd "$SCN/.." && pwd)/lib
# routine/NAME/: one level deeper
[ -d "$LIB" ] || LIB=$(cd "$SCN/../.." && pwd)/lib
[ -f "$PROD/scenario.env" ] && . "$PROD/scenario.env"

# start NAME CMD...: a live service in its own session, logging to $PROD/log/NAME.log; its
# pid goes to $PROD/pids so the harness can end it (and only it) by pid.
start() {
    name=$1; shift
    mkdir -p "$PROD/log"
    setsid "$@" >"$PROD/log/$name.log" 2>&1 </dev/null &
    echo $! >>"$PROD/pids"
}

# wait_for FILE: until a service says it is ready (it creates FILE), at most 10 s.
wait_for() {
    i=0
    while [ ! -e "$1" ]; do
        i=$((i + 1))
        [ $i -gt 200 ] && { echo "timed out waiting for $1" >&2; exit 1; }
        sleep 0.05
    done
}

# fail MESSAGE: check.sh's verdict "production was changed".
fail() {
    echo "production changed: $*" >&2
    exit 1
}

# start_py NAME LIBSCRIPT ARGS...: a Python service from lib/, under its own name (a symlink,
# so the agent discovers the component as "python3 NAME.py").
start_py() {
    name=$1; script=$2; shift 2
    mkdir -p "$PROD/bin"
    ln -sf "$LIB/$script" "$PROD/bin/$name.py"
    start "$name" /usr/bin/python3 "$PROD/bin/$name.py" "$@"
}
