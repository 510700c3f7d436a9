//! Dry runs of RPCs against real servers from Debian's packages (tests/common/servers.rs:
//! Redis, PostgreSQL 15, dnsmasq, an HTTP key-value API), started once per test binary on
//! loopback with ports chosen at run time. Per protocol: read-only admin commands run to
//! completion under a plain `pilot run` and print the live values (over TCP, and over the
//! server's Unix socket where it has one); mutating ones exit 3 with the server component,
//! the operation and the resource in verdict.json and report.html, production unchanged;
//! and each harmful command, run without pilot (the control), really changes production.
//! Name lookups go to the test's dnsmasq only: the pilot runs in a mount namespace whose
//! /etc/resolv.conf names it (`unshare -m`), never the machine's resolver.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use servers::{Dns, Http, PG_BIN, Postgres, Redis};

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    dir: tempfile::TempDir,
}

impl Outcome {
    fn json(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn dump(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}\n--- verdict.json\n{}\n--- sink.json\n{}",
            self.code,
            self.stdout,
            self.stderr,
            self.json("verdict.json"),
            self.json("sink.json")
        )
    }

    /// Exit 3, with a blocking violation naming the component, the operation and resource,
    /// in verdict.json and in report.html.
    fn assert_blocked(&self, component: &str, operation: &str, resource: &str) {
        assert_eq!(self.code, 3, "expected exit 3 (blocked)\n{}", self.dump());
        let v = self.json("verdict.json");
        let hit = v["violations"].as_array().into_iter().flatten().find(|x| {
            x["action"] == "block"
                // Another server of the same name on the host gets its address appended.
                && x["component"].as_str().is_some_and(|c| c == component || c.starts_with(&format!("{component} ")))
                && x["why"].as_str().is_some_and(|w| w.contains(operation) && w.contains(resource))
        });
        assert!(hit.is_some(), "no blocking violation naming {component}, {operation}, {resource}\n{}", self.dump());
        let html = std::fs::read_to_string(self.dir.path().join("report.html")).unwrap_or_default();
        for needle in [component, operation, resource] {
            assert!(html.contains(&html_escape(needle)), "report.html does not name {needle}\n{}", self.dump());
        }
    }

    fn assert_passed(&self) {
        assert_eq!(self.code, 0, "expected exit 0\n{}", self.dump());
        assert_ne!(self.json("verdict.json")["verdict"], "block", "{}", self.dump());
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `pilot run` of `cmd`, optionally inside `unshare -m` with `resolv` over /etc/resolv.conf.
fn pilot(cmd: &[&str], resolv: Option<&Path>, extra: &[&str]) -> Outcome {
    let dir = tempfile::Builder::new().prefix("pilot-rpc-run-").tempdir().unwrap();
    let mut argv: Vec<String> = vec![common::pilot_bin().into(), "run".into(), "--out".into(), dir.path().display().to_string(), "--timeout".into(), "60s".into()];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.push("--".into());
    argv.extend(cmd.iter().map(|s| s.to_string()));
    let mut c = match resolv {
        Some(r) => {
            let mut c = Command::new("unshare");
            c.args(["-m", "sh", "-c", r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#]).arg(r).args(&argv);
            c
        }
        None => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    c.env("PILOT_NO_DAEMON", "1").env("PILOT_JOURNAL", dir.path().join("journal.jsonl"));
    let out = c.output().expect("running pilot");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    }
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("pilot-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

// ------------------------------------------------------------------------------------ DNS

#[test]
fn dns_lookups_resolve_under_pilot_as_live() {
    let dns = Dns::shared();
    let getent = ["getent", "hosts", dns.name.as_str()];
    // Control: in the same kind of mount namespace, without pilot, the name resolves.
    let live = Command::new("unshare")
        .args(["-m", "sh", "-c", r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#])
        .arg(&dns.resolv)
        .args(getent)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&live.stdout).contains(&dns.answer), "control: dnsmasq does not answer {}", dns.name);
    let started = std::time::Instant::now();
    let run = pilot(&getent, Some(&dns.resolv), &[]);
    run.assert_passed();
    assert!(run.stdout.contains(&dns.answer), "the pilot's lookup did not resolve\n{}", run.dump());
    let sink = run.json("sink.json");
    let to = format!("{}:53", dns.addr);
    let lookups: Vec<&Value> = sink.as_array().into_iter().flatten().filter(|c| c["to"] == to.as_str()).flat_map(|c| c["rpc"].as_array().into_iter().flatten()).collect();
    assert!(
        lookups.iter().any(|r| r["protocol"] == "dns" && r["operation"] == "A" && r["access"] == "read" && r["disposition"] == "forwarded"),
        "sink.json has no forwarded A lookup to {to}\n{}",
        run.dump()
    );
    eprintln!("ok dns: getent resolved {} under pilot in {:?}", dns.name, started.elapsed());
}

// ---------------------------------------------------------------------------------- Redis

#[test]
fn redis_reads_pass_and_print_live_values_over_tcp_and_unix() {
    let r = Redis::shared();
    let key = unique("k");
    r.cli(&["SET", &key, "live-value"]);
    let port = r.port.to_string();
    let sock = r.sock.display().to_string();
    for (how, args) in [("tcp", vec!["redis-cli", "-p", &port, "GET", &key]), ("unix", vec!["redis-cli", "-s", &sock, "GET", &key])] {
        let run = pilot(&args, None, &[]);
        run.assert_passed();
        assert!(run.stdout.contains("live-value"), "redis {how}: GET did not print the live value\n{}", run.dump());
    }
    let run = pilot(&["redis-cli", "-p", &port, "INFO", "server"], None, &[]);
    run.assert_passed();
    assert!(run.stdout.contains("redis_version"), "{}", run.dump());
}

#[test]
fn redis_mutations_are_blocked_and_production_unchanged() {
    let r = Redis::shared();
    let port = r.port.to_string();
    let sock = r.sock.display().to_string();
    let component = format!("redis-server 127.0.0.1:{port}");
    // (pilot command, operation, resource, whether production kept it, the control's effect)
    let key = unique("del");
    r.cli(&["SET", &key, "v"]);
    let run = pilot(&["redis-cli", "-p", &port, "DEL", &key], None, &[]);
    run.assert_blocked(&component, "DEL", &key);
    assert_eq!(r.cli(&["GET", &key]).trim(), "v", "LEAK: DEL reached production");
    r.cli(&["DEL", &key]);
    assert_eq!(r.cli(&["EXISTS", &key]).trim(), "0", "control: DEL deletes");

    // FLUSHDB of a database of its own, over the Unix socket.
    let db = "7";
    let key = unique("flush");
    r.cli(&["-n", db, "SET", &key, "v"]);
    let run = pilot(&["redis-cli", "-s", &sock, "-n", db, "FLUSHDB"], None, &[]);
    run.assert_blocked(&component, "FLUSHDB", "unix:");
    assert_eq!(r.cli(&["-n", db, "GET", &key]).trim(), "v", "LEAK: FLUSHDB reached production");
    r.cli(&["-n", db, "FLUSHDB"]);
    assert_eq!(r.cli(&["-n", db, "DBSIZE"]).trim(), "0", "control: FLUSHDB empties the database");

    let before = r.cli(&["CONFIG", "GET", "maxmemory-policy"]);
    let run = pilot(&["redis-cli", "-p", &port, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru"], None, &[]);
    run.assert_blocked(&component, "CONFIG SET", "maxmemory-policy");
    assert_eq!(r.cli(&["CONFIG", "GET", "maxmemory-policy"]), before, "LEAK: CONFIG SET reached production");
    let policy = before.lines().nth(1).unwrap_or("noeviction").to_string();
    r.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    assert!(r.cli(&["CONFIG", "GET", "maxmemory-policy"]).contains("allkeys-lru"), "control: CONFIG SET changes it");
    r.cli(&["CONFIG", "SET", "maxmemory-policy", &policy]);
}

/// The live answer to SHUTDOWN is a closed connection, which redis-cli takes as success: the
/// pilot's redis-cli exits 0, the verdict blocks, the server lives on.
#[test]
fn redis_shutdown_is_answered_by_closing_and_blocked() {
    let r = Redis::start("redis-shutdown");
    let port = r.port.to_string();
    let run = pilot(&["redis-cli", "-p", &port, "SHUTDOWN", "NOSAVE"], None, &[]);
    run.assert_blocked(&format!("redis-server 127.0.0.1:{port}"), "SHUTDOWN", "127.0.0.1");
    assert_eq!(run.json("verdict.json")["pilot_exit"], 0, "redis-cli saw the connection close, as live\n{}", run.dump());
    assert!(r.alive(), "LEAK: the server was shut down");
    r.cli(&["SHUTDOWN", "NOSAVE"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!r.alive(), "control: SHUTDOWN stops the server");
}

/// Within a run, reads see the pilot's own writes (the shadow layer), production does not.
#[test]
fn redis_reads_after_a_captured_write_see_it() {
    let r = Redis::shared();
    let key = unique("shadow");
    r.cli(&["SET", &key, "old"]);
    let port = r.port.to_string();
    let script = format!("redis-cli -p {port} SET {key} new >/dev/null; redis-cli -p {port} GET {key}; redis-cli -p {port} INCR {key}-n; redis-cli -p {port} GET {key}-n");
    let run = pilot(&["sh", "-c", &script], None, &[]);
    assert_eq!(run.code, 3, "{}", run.dump());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines, ["new", "1", "1"], "reads in the pilot see its writes\n{}", run.dump());
    assert_eq!(r.cli(&["GET", &key]).trim(), "old", "LEAK: SET reached production");
    let sink = run.json("sink.json");
    assert!(sink.to_string().contains("\"shadowed\""), "the GET was answered from the shadow\n{}", run.dump());
}

/// `--rpc off`: as before the protocol sessions, the sink answers nothing; the verdict line
/// says a live component got traffic pilot could not judge.
#[test]
fn rpc_off_blackholes_and_says_so() {
    let r = Redis::shared();
    let port = r.port.to_string();
    let run = pilot(&["redis-cli", "-p", &port, "PING"], None, &["--rpc", "off"]);
    assert_ne!(run.code, 3, "{}", run.dump());
    assert!(!run.stdout.contains("PONG"), "the sink answered with --rpc off\n{}", run.dump());
    assert!(run.stderr.contains("could not judge"), "the verdict line does not say so\n{}", run.dump());
    let bad = pilot(&["true"], None, &["--rpc", "nonsense"]);
    assert_eq!(bad.code, 2, "a bad --rpc is bad usage\n{}", bad.dump());
}

// ----------------------------------------------------------------------------- PostgreSQL

fn psql_tcp(p: &Postgres, q: &str) -> Vec<String> {
    vec![format!("{PG_BIN}/psql"), "-h".into(), "127.0.0.1".into(), "-p".into(), p.port.to_string(), "-U".into(), "postgres".into(), "-tAc".into(), q.into()]
}

#[test]
fn postgres_reads_pass_and_print_live_values_over_tcp_and_unix() {
    let p = Postgres::shared();
    let t = unique("t").replace('-', "_");
    p.sql(&format!("CREATE TABLE {t} (id int); INSERT INTO {t} VALUES (1), (2), (3)"));
    let q = format!("SELECT count(*) FROM {t}");
    let tcp = psql_tcp(p, &q);
    let run = pilot(&tcp.iter().map(String::as_str).collect::<Vec<_>>(), None, &[]);
    run.assert_passed();
    assert_eq!(run.stdout.trim(), "3", "{}", run.dump());
    // Without -h: the socket directory (PGHOST names the test's, as /var/run/postgresql is
    // the default), the socket of the sink bind-mounted over the live one.
    let unix = format!("PGHOST={} {PG_BIN}/psql -p {} -U postgres -tAc 'SHOW port'", p.sockdir.display(), p.port);
    let run = pilot(&["sh", "-c", &unix], None, &[]);
    run.assert_passed();
    assert_eq!(run.stdout.trim(), p.port.to_string(), "{}", run.dump());
    assert!(run.json("sink.json").to_string().contains("\"proto\":\"unix\""), "{}", run.dump());
}

#[test]
fn postgres_mutations_are_blocked_and_production_unchanged() {
    let p = Postgres::shared();
    let t = unique("drop").replace('-', "_");
    p.sql(&format!("CREATE TABLE {t} (id int); INSERT INTO {t} VALUES (1)"));
    for (q, op) in [(format!("DROP TABLE {t}"), "DROP TABLE"), (format!("UPDATE {t} SET id = 2"), "UPDATE"), (format!("TRUNCATE {t}"), "TRUNCATE")] {
        let argv = psql_tcp(p, &q);
        let run = pilot(&argv.iter().map(String::as_str).collect::<Vec<_>>(), None, &[]);
        run.assert_blocked("postgres", op, &t);
        assert_eq!(run.json("verdict.json")["pilot_exit"], 0, "psql got a plausible answer\n{}", run.dump());
        // `pilot check` re-evaluates the recorded rpc edges.
        let check = Command::new(common::pilot_bin()).arg("check").arg(run.dir.path()).output().unwrap();
        assert_eq!(check.status.code(), Some(3), "pilot check: {}", String::from_utf8_lossy(&check.stderr));
        assert_eq!(p.sql(&format!("SELECT id FROM {t}")).trim(), "1", "LEAK: {q} reached production");
    }
    p.sql(&format!("UPDATE {t} SET id = 2"));
    assert_eq!(p.sql(&format!("SELECT id FROM {t}")).trim(), "2", "control: UPDATE changes it");
    p.sql(&format!("DROP TABLE {t}"));
    assert!(p.sql(&format!("SELECT to_regclass('{t}') IS NULL")).trim() == "t", "control: DROP TABLE drops it");
}

/// The sink's rpc entries of a run: (operation, resource, access, disposition, note).
fn rpcs(run: &Outcome) -> Vec<(String, String, String, String, String)> {
    let sink = run.json("sink.json");
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    sink.as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["rpc"].as_array().cloned().unwrap_or_default())
        .map(|r| (s(&r["operation"]), s(&r["resource"]), s(&r["access"]), s(&r["disposition"]), s(&r["note"])))
        .collect()
}

fn replication_slots(p: &Postgres) -> String {
    p.sql("SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots").trim().to_string()
}

#[test]
fn pg_dump_passes_and_writes_the_live_rows_into_the_overlay() {
    let p = Postgres::shared();
    let t = unique("dump").replace('-', "_");
    p.sql(&format!("CREATE TABLE {t} (id int, item text); INSERT INTO {t} SELECT g, 'item ' || g FROM generate_series(1, 500) g"));
    let out = servers::scratch(&t).join("dump.sql");
    let port = p.port.to_string();
    let argv = [&format!("{PG_BIN}/pg_dump"), "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-t", &t, "-f", &out.display().to_string(), "postgres"];
    let run = pilot(&argv, None, &[]);
    run.assert_passed();
    // set_config, BEGIN, SET TRANSACTION ... READ ONLY, LOCK TABLE ... IN ACCESS SHARE MODE,
    // the catalog queries and COPY TO stdout: all reads, all forwarded.
    let r = rpcs(&run);
    let not_forwarded: Vec<_> = r.iter().filter(|x| x.3 != "forwarded" && x.0 != "SSLRequest").collect();
    assert!(not_forwarded.is_empty(), "everything pg_dump sends reads: {not_forwarded:?}\n{}", run.dump());
    for op in ["BEGIN", "LOCK TABLE", "COPY"] {
        assert!(r.iter().any(|x| x.0 == op && x.2 == "read"), "{op} forwarded as a read\n{}", run.dump());
    }
    let copy = common::upper_of(run.dir.path(), &out).expect("an overlay holds the dump");
    let dump = std::fs::read_to_string(&copy).unwrap_or_default();
    assert!(dump.contains(&format!("COPY public.{t} (id, item) FROM stdin;")) && dump.contains("500\titem 500"), "the dump holds the live rows\n{dump}");
    assert!(!out.exists(), "LEAK: the pilot's dump reached production");
    assert_eq!(p.sql(&format!("SELECT count(*) FROM {t}")).trim(), "500");
    // Control: live, pg_dump writes it.
    let live = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(live.status.success() && std::fs::read_to_string(&out).unwrap_or_default().contains("500\titem 500"), "control: pg_dump live writes the dump");
}

#[test]
fn postgres_transactions_go_through_and_mutations_inside_them_are_captured() {
    let p = Postgres::shared();
    let t = unique("txn").replace('-', "_");
    p.sql(&format!("CREATE TABLE {t} (id int); INSERT INTO {t} VALUES (1), (2)"));
    let dir = servers::scratch(&t);
    let port = p.port.to_string();
    let psql = |file: &Path| -> Vec<String> {
        [&format!("{PG_BIN}/psql"), "-X", "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-tA", "-f", &file.display().to_string()].map(|s| s.to_string()).to_vec()
    };
    let requests = |run: &Outcome, op: &str| -> u64 {
        let sink = run.json("sink.json");
        sink.as_array().into_iter().flatten().flat_map(|c| c["rpc"].as_array().cloned().unwrap_or_default()).filter(|r| r["operation"] == op && r["disposition"] == "forwarded").map(|r| r["requests"].as_u64().unwrap_or(0)).sum()
    };
    // ON_ERROR_ROLLBACK makes psql read the transaction status of every answer: it wraps
    // each statement in a savepoint (and releases it) only while the server says it is in a
    // transaction (none is released around COMMIT). Four statements after BEGIN: four
    // SAVEPOINTs and three RELEASEs when the captured DELETE's ReadyForQuery said `T`, as the
    // server's would; two and one had it said `I`.
    let ok = dir.join("txn.sql");
    std::fs::write(&ok, format!("\\set ON_ERROR_ROLLBACK on\nBEGIN;\nSELECT count(*) FROM {t};\nDELETE FROM {t};\nSELECT 'after';\nCOMMIT;\n")).unwrap();
    let argv = psql(&ok);
    let run = pilot(&argv.iter().map(String::as_str).collect::<Vec<_>>(), None, &[]);
    run.assert_blocked("postgres", "DELETE", &t);
    assert!(run.stdout.contains("\n2\n") && run.stdout.contains("after"), "psql went on\n{}", run.dump());
    assert_eq!((requests(&run, "SAVEPOINT"), requests(&run, "RELEASE")), (4, 3), "psql saw the transaction go on after the captured DELETE\n{}", run.dump());
    assert_eq!((requests(&run, "BEGIN"), requests(&run, "COMMIT")), (1, 1), "transaction control went through\n{}", run.dump());
    // In a failed transaction a captured statement is answered as the server answers it.
    let failed = dir.join("failed.sql");
    std::fs::write(&failed, format!("BEGIN;\nSELECT 1/0;\nDELETE FROM {t} WHERE id = 1;\nROLLBACK;\n")).unwrap();
    let argv2 = psql(&failed);
    let run = pilot(&argv2.iter().map(String::as_str).collect::<Vec<_>>(), None, &[]);
    run.assert_blocked("postgres", "DELETE", &t);
    assert!(run.stderr.contains("current transaction is aborted"), "{}", run.dump());
    assert_eq!(p.sql(&format!("SELECT count(*) FROM {t}")).trim(), "2", "LEAK: a DELETE reached production");
    // Control: live, the first script deletes the rows.
    let live = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    assert!(live.status.success(), "control ran: {}", String::from_utf8_lossy(&live.stderr));
    assert_eq!(p.sql(&format!("SELECT count(*) FROM {t}")).trim(), "0", "control: the script live deletes the rows");
}

#[test]
fn pg_basebackup_streams_wal_and_passes() {
    let p = Postgres::shared();
    let dir = servers::scratch(&unique("base"));
    let base = dir.join("base");
    let port = p.port.to_string();
    // The default `-X stream`: a second replication connection with a temporary slot.
    let argv = [&format!("{PG_BIN}/pg_basebackup"), "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", &base.display().to_string(), "-c", "fast"];
    let run = pilot(&argv, None, &[]);
    run.assert_passed();
    let r = rpcs(&run);
    for op in ["IDENTIFY_SYSTEM", "BASE_BACKUP", "CREATE_REPLICATION_SLOT", "START_REPLICATION"] {
        assert!(r.iter().any(|x| x.0 == op && x.2 == "read" && x.3 == "forwarded"), "{op} forwarded as a read\n{}", run.dump());
    }
    assert!(r.iter().any(|x| x.0 == "CREATE_REPLICATION_SLOT" && x.4.contains("temporary")), "the temporary slot is noted\n{}", run.dump());
    let copy = common::upper_of(run.dir.path(), &base).expect("an overlay holds the backup");
    assert!(copy.join("backup_label").is_file() && copy.join("global/pg_control").is_file(), "the backup is in the overlay\n{}", run.dump());
    let wal = std::fs::read_dir(copy.join("pg_wal")).map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().len() == 24).count()).unwrap_or(0);
    assert!(wal > 0, "the streamed WAL is in the overlay\n{}", run.dump());
    assert!(!base.exists(), "LEAK: the pilot's backup reached production");
    assert_eq!(replication_slots(p), "", "no slot left on the server");
    // Control: live, the backup is written.
    let live = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(live.status.success() && base.join("backup_label").is_file(), "control: {}", String::from_utf8_lossy(&live.stderr));
}

#[test]
fn replication_slot_changes_are_blocked_with_valid_answers() {
    let p = Postgres::shared();
    let port = p.port.to_string();
    // pg_basebackup -C -S: a permanent slot (the server keeps WAL for it until it is dropped).
    let slot = unique("slot").replace('-', "_");
    let dir = servers::scratch(&slot);
    let base = dir.join("base").display().to_string();
    let argv = [&format!("{PG_BIN}/pg_basebackup"), "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", &base, "-c", "fast", "-C", "-S", &slot];
    let run = pilot(&argv, None, &[]);
    run.assert_blocked("postgres", "CREATE_REPLICATION_SLOT", &slot);
    assert_eq!(run.json("verdict.json")["pilot_exit"], 0, "pg_basebackup went on (streamed without the captured slot)\n{}", run.dump());
    assert_eq!(replication_slots(p), "", "LEAK: the slot was created");
    // DROP_REPLICATION_SLOT of a live slot, on a replication connection psql opens.
    p.sql(&format!("SELECT pg_create_physical_replication_slot('{slot}')"));
    let conn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres replication=database");
    let drop = [&format!("{PG_BIN}/psql"), "-X", &conn, "-c", &format!("DROP_REPLICATION_SLOT {slot}")];
    let run = pilot(&drop, None, &[]);
    run.assert_blocked("postgres", "DROP_REPLICATION_SLOT", &slot);
    assert_eq!(run.json("verdict.json")["pilot_exit"], 0, "psql got CommandComplete\n{}", run.dump());
    assert_eq!(replication_slots(p), slot, "LEAK: the slot was dropped");
    // Controls: live, the drop drops it and -C creates one.
    let live = Command::new(drop[0]).args(&drop[1..]).output().unwrap();
    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    assert_eq!(replication_slots(p), "", "control: DROP_REPLICATION_SLOT live drops it");
    let live = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    assert_eq!(replication_slots(p), slot, "control: pg_basebackup -C live creates the slot");
    p.sql(&format!("SELECT pg_drop_replication_slot('{slot}')"));
}

// ----------------------------------------------------------------------------------- HTTP

#[test]
fn http_reads_pass_and_mutations_are_blocked() {
    let h = Http::shared();
    let key = unique("h");
    let url = h.url(&format!("/keys/{key}"));
    h.curl(&["-X", "PUT", "--data", "live-value", &url]);
    let run = pilot(&["curl", "-sf", &url], None, &[]);
    run.assert_passed();
    assert_eq!(run.stdout, "live-value", "{}", run.dump());
    let path = format!("/keys/{key}");
    let run = pilot(&["curl", "-sf", "-X", "DELETE", &url], None, &[]);
    let component = run.json("verdict.json")["violations"][0]["component"].as_str().unwrap_or("").to_string();
    assert!(component.starts_with("python3"), "the HTTP server's component\n{}", run.dump());
    run.assert_blocked(&component, "DELETE", &path);
    assert_eq!(h.curl(&[&url]), "live-value", "LEAK: DELETE reached production");
    // An API that mutates on GET: the unsafe-GET patterns capture it.
    let run = pilot(&["curl", "-sf", &h.url("/admin/flush")], None, &[]);
    run.assert_blocked(&component, "GET", "/admin/flush");
    assert_eq!(h.curl(&[&url]), "live-value", "LEAK: GET /admin/flush reached production");
    h.curl(&["-X", "DELETE", &url]);
    assert_eq!(h.curl(&[&url]), "no such key\n", "control: DELETE deletes");
}
