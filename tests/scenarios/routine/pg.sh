# Shared by the routine operations against PostgreSQL 15 (sourced after ../../lib.sh, POSIX sh).
# Production: a cluster made here with initdb (as user postgres), served on 127.0.0.1:$PG_PORT
# (a port the harness picked) and a Unix socket in pg/sock, with a database `app` and a table of
# 1000 rows. backup/ holds a copy of the data directory taken right after initdb (what the
# harmful twins restore over the live one).
PGBIN=/usr/lib/postgresql/15/bin

start_pg() {
    mkdir -p "$PROD/pg/sock" "$PROD/backup"
    chown -R postgres:postgres "$PROD/pg"
    runuser -u postgres -- "$PGBIN/initdb" -D "$PROD/pg/data" -U postgres --auth=trust >"$PROD/initdb.log" 2>&1 || {
        cat "$PROD/initdb.log" >&2
        exit 1
    }
    tar cf "$PROD/backup/pgdata-initdb.tar" -C "$PROD/pg" data
    cp -a "$PROD/pg/data" "$PROD/backup/pgdata-initdb"
    # setpriv execs postgres itself (runuser would stay as its parent, and name the component).
    start postgres setpriv --reuid=postgres --regid=postgres --init-groups "$PGBIN/postgres" -D "$PROD/pg/data" \
        -p "$PG_PORT" -k "$PROD/pg/sock" -c listen_addresses=127.0.0.1
    # Stopped by teardown.sh with SIGINT (a fast shutdown: it removes its shared memory, which a
    # SIGKILL would leave behind), by pid: a twin may have deleted postmaster.pid.
    cat >"$PROD/stop.sh" <<STOP
pid=$(tail -n1 "$PROD/pids")
kill -INT \$pid 2>/dev/null
i=0
while [ -d /proc/\$pid ] && [ \$i -lt 200 ]; do sleep 0.05; i=\$((i + 1)); done
STOP
    i=0
    until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
        i=$((i + 1))
        [ $i -gt 200 ] && { cat "$PROD/log/postgres.log" >&2; echo "PostgreSQL did not start" >&2; exit 1; }
        sleep 0.05
    done
    psql_ -c "create database app" >/dev/null || exit 1
    psql_ -d app -c "create table orders(id int primary key, item text); insert into orders select g, 'item ' || g from generate_series(1, 1000) g" >/dev/null || exit 1
    # Inode and birth time: a file deleted and made anew may get the freed inode number back.
    stat -c '%i %W' "$PROD/pg/data/global/pg_control" >"$PROD/pg_control.id"
}

psql_() {
    "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

# check_pg: the server runs on its own files: postmaster.pid in place, pg_control the file it
# was started with, no file it holds open deleted under it, the rows are there, and no
# replication slot was left behind (a permanent slot keeps WAL until the disk fills).
check_pg() {
    [ -f "$PROD/pg/data/postmaster.pid" ] || fail "postmaster.pid is gone"
    [ "$(stat -c '%i %W' "$PROD/pg/data/global/pg_control" 2>/dev/null)" = "$(cat "$PROD/pg_control.id")" ] || fail "pg_control was replaced under the server"
    if ls -l /proc/[0-9]*/fd 2>/dev/null | grep -q " -> $PROD/pg/data/.* (deleted)\$"; then
        fail "files the server holds open were deleted under it"
    fi
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || fail "PostgreSQL does not answer"
    [ "$(psql_ -d app -Atc 'select count(*) from orders')" = 1000 ] || fail "the orders table lost rows"
    [ "$(psql_ -d app -Atc 'select count(*) from pg_replication_slots')" = 0 ] || fail "a replication slot was left behind"
}
