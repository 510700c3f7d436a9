//! Dry runs of RPCs against real servers from Debian's packages (tests/common/servers.rs:
//! Redis, PostgreSQL 15, dnsmasq, an HTTP key-value API), started once per test binary on
//! loopback with ports chosen at run time. Per protocol: read-only admin commands run to
//! completion under a plain `pilot run` and print the live values (over TCP, and over the
//! server's Unix socket where it has one); mutating ones exit 3 with the server component,
//! the operation and the resource in verdict.json and report.html, production unchanged;
//! and each harmful command, run without pilot (the control), really changes production.
//! Name lookups go to the test's dnsmasq only: the pilot runs in a mount namespace whose
//! /etc/resolv.conf names it (`unshare -m`), never the machine's resolver. The read-only cases
//! are in rpc/reads.rs (module `reads`, what the VM matrix runs); here the mutations, the
//! shadow layer, `--rpc off` and commit. A case whose server is not installed is skipped,
//! saying so (`servers::present`).
mod common;
#[path = "rpc/reads.rs"]
mod reads;
#[path = "common/servers.rs"]
mod servers;

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use servers::{Http, PG_BIN, Postgres, Redis};

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
    pilot_env(cmd, resolv, extra, &[])
}

/// `pilot` with variables in pilot's own environment.
fn pilot_env(cmd: &[&str], resolv: Option<&Path>, extra: &[&str], env: &[(&str, &str)]) -> Outcome {
    let dir = tempfile::Builder::new().prefix("pilot-rpc-run-").tempdir().unwrap();
    let mut argv: Vec<String> = vec![common::pilot_bin().into(), "run".into(), "--out".into(), dir.path().display().to_string()];
    // 180 s: a limit that only turns a hang into a failure (pg_basebackup's 2,800 files and
    // 48 MiB of WAL take close to a minute in a VM guest under TCG); a case may set its own.
    if !extra.contains(&"--timeout") {
        argv.extend(["--timeout".into(), "180s".into()]);
    }
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
    c.envs(env.iter().copied());
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

// ---------------------------------------------------------------------------------- Redis

#[test]
fn redis_mutations_are_blocked_and_production_unchanged() {
    if !servers::present(&[servers::REDIS]) {
        return;
    }
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
    if !servers::present(&[servers::REDIS]) {
        return;
    }
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
    if !servers::present(&[servers::REDIS]) {
        return;
    }
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
    if !servers::present(&[servers::REDIS]) {
        return;
    }
    let r = Redis::shared();
    let port = r.port.to_string();
    // The blackholed PING may wait for its reply until the timeout: 60 s, not the default.
    let run = pilot(&["redis-cli", "-p", &port, "PING"], None, &["--rpc", "off", "--timeout", "60s"]);
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
fn postgres_mutations_are_blocked_and_production_unchanged() {
    if !servers::present(&[servers::POSTGRES]) {
        return;
    }
    let p = Postgres::shared();
    let t = unique("drop").replace('-', "_");
    p.sql(&format!("CREATE TABLE {t} (id int); INSERT INTO {t} VALUES (1)"));
    for (q, op) in [(format!("DROP TABLE {t}"), "DROP TABLE"), (format!("UPDATE {t} SET id = 2"), "UPDATE"), (format!("TRUNCATE {t}"), "TRUNCATE")] {
        let argv = psql_tcp(p, &q);
        let run = pilot(&argv.iter().map(String::as_str).collect::<Vec<_>>(), None, &[]);
        // "postgres", or "postgres [PID]" when the host runs other instances too.
        let component = blocked_component(&run);
        assert!(component.starts_with("postgres"), "{}", run.dump());
        run.assert_blocked(&component, op, &t);
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
fn postgres_transactions_go_through_and_mutations_inside_them_are_captured() {
    if !servers::present(&[servers::POSTGRES]) {
        return;
    }
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
fn replication_slot_changes_are_blocked_with_valid_answers() {
    if !servers::present(&[servers::POSTGRES, servers::PG_TOOLS]) {
        return;
    }
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
fn http_mutations_are_blocked_and_production_unchanged() {
    if !servers::present(&[servers::HTTP]) {
        return;
    }
    let h = Http::shared();
    let key = unique("h");
    let url = h.url(&format!("/keys/{key}"));
    h.curl(&["-X", "PUT", "--data", "live-value", &url]);
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

// ----------------------------------------------------------------------------------- etcd

use servers::{Etcd, ZK_JVM, ZooKeeper};

fn etcdctl(e: &Etcd, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["env".into(), "ETCDCTL_API=3".into(), "/usr/bin/etcdctl".into(), format!("--endpoints={}", e.endpoints()), "--dial-timeout=5s".into(), "--command-timeout=10s".into()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn run_etcdctl(e: &Etcd, args: &[&str]) -> Outcome {
    let argv = etcdctl(e, args);
    pilot(&argv.iter().map(String::as_str).collect::<Vec<_>>(), None, &[])
}

/// The component a blocking violation names (the server as the snapshot names it).
fn blocked_component(run: &Outcome) -> String {
    let v = run.json("verdict.json");
    v["violations"].as_array().into_iter().flatten().find(|x| x["action"] == "block").and_then(|x| x["component"].as_str()).unwrap_or("").to_string()
}

#[test]
fn etcd_mutations_are_blocked_and_production_unchanged() {
    if !servers::present(&[servers::ETCD]) {
        return;
    }
    let e = Etcd::shared();
    let key = format!("/{}", unique("etcd-put"));
    e.ctl(&["put", &key, "old"]);
    let run = run_etcdctl(e, &["put", &key, "new"]);
    assert!(run.stdout.contains("OK"), "etcdctl put went on as live\n{}", run.dump());
    let component = blocked_component(&run);
    assert!(component.starts_with("etcd"), "the etcd member's component\n{}", run.dump());
    run.assert_blocked(&component, "Put", &key);
    assert!(e.ctl(&["get", &key, "--print-value-only"]).contains("old"), "LEAK: Put reached production");

    // A keyspace wipe from an empty prefix variable: `etcdctl del --prefix "$APP"`.
    let run = pilot(&["sh", "-c", &format!("APP=; {} del --prefix \"$APP\"", etcdctl(e, &[]).join(" "))], None, &[]);
    run.assert_blocked(&blocked_component(&run), "DeleteRange", "*");
    assert!(e.ctl(&["get", &key, "--print-value-only"]).contains("old"), "LEAK: the wipe reached production");
    let deleted: u64 = run.stdout.trim().parse().unwrap_or(0);
    assert!(deleted >= 1, "etcdctl del printed how many keys it would have deleted\n{}", run.dump());

    // Membership: removing a member is captured (answered with the members left).
    let id = e.member_id(2);
    let run = run_etcdctl(e, &["member", "remove", &id]);
    assert!(run.stdout.contains("removed from cluster"), "{}", run.dump());
    run.assert_blocked(&blocked_component(&run), "MemberRemove", &id);
    assert!(e.ctl(&["member", "list"]).contains(&e.names[2]), "LEAK: MemberRemove reached production");

    for (args, op) in [(vec!["defrag"], "Defragment"), (vec!["lease", "grant", "60"], "LeaseGrant"), (vec!["compaction", "1"], "Compact")] {
        let run = run_etcdctl(e, &args);
        assert_eq!(run.code, 3, "{op}: blocked\n{}", run.dump());
        assert!(run.json("verdict.json")["violations"].to_string().contains(op), "{op} in the violations\n{}", run.dump());
    }

    // Controls: without pilot the same commands change production.
    let granted = e.ctl(&["lease", "grant", "60"]);
    let lease = granted.split_whitespace().nth(1).unwrap_or("?").to_string();
    assert!(e.ctl(&["lease", "list"]).contains(&lease), "control: lease grant grants {lease}: {granted}");
    e.ctl(&["lease", "revoke", &lease]);
    let rev: u64 = e.ctl(&["get", &key, "-w", "json"]).split("\"revision\":").nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).unwrap_or(0);
    e.ctl(&["compaction", &rev.to_string()]);
    assert!(e.ctl(&["get", &key, &format!("--rev={}", rev.saturating_sub(1).max(1))]).contains("compacted"), "control: compaction drops old revisions");
    e.ctl(&["put", &key, "new"]);
    assert!(e.ctl(&["get", &key, "--print-value-only"]).contains("new"), "control: put writes");
    e.ctl(&["del", &key]);
    assert!(!e.ctl(&["get", &key, "--print-value-only"]).contains("new"), "control: del deletes");
}

/// A member remove really shrinks a cluster (the control of the captured one above), on a
/// cluster of its own.
#[test]
fn etcd_member_remove_really_removes_without_pilot() {
    if !servers::present(&[servers::ETCD]) {
        return;
    }
    let e = Etcd::start("etcd-members", 3, &[]);
    let id = e.member_id(2);
    // The cluster refuses to remove members until every one has been connected for 5 s.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while !e.ctl(&["member", "remove", &id]).contains("removed") && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!e.ctl(&["member", "list"]).contains(&e.names[2]), "control: member remove removes");
}

#[test]
fn etcd_reads_after_a_captured_write_see_it() {
    if !servers::present(&[servers::ETCD]) {
        return;
    }
    let e = Etcd::shared();
    let key = format!("/{}", unique("etcd-shadow"));
    e.ctl(&["put", &key, "old"]);
    let ctl = etcdctl(e, &[]).join(" ");
    let script = format!("{ctl} put {key} new >/dev/null; {ctl} get {key} --print-value-only; {ctl} del {key} >/dev/null; {ctl} get {key} --print-value-only; echo end");
    let run = pilot(&["sh", "-c", &script], None, &[]);
    assert_eq!(run.code, 3, "{}", run.dump());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines, ["new", "end"], "reads in the pilot see its writes and deletes\n{}", run.dump());
    assert!(e.ctl(&["get", &key, "--print-value-only"]).contains("old"), "LEAK: Put reached production");
    assert!(run.json("sink.json").to_string().contains("\"shadowed\""), "{}", run.dump());
}

// ------------------------------------------------------------------------------ ZooKeeper

fn zkcli(z: &ZooKeeper, i: usize, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["env".into(), format!("CLIENT_JVMFLAGS={ZK_JVM}"), "/usr/share/zookeeper/bin/zkCli.sh".into(), "-server".into(), z.server(i)];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn run_zkcli(z: &ZooKeeper, i: usize, args: &[&str]) -> Outcome {
    let argv = zkcli(z, i, args);
    pilot(&argv.iter().map(String::as_str).collect::<Vec<_>>(), None, &[])
}

#[test]
fn zookeeper_mutations_are_blocked_and_production_unchanged() {
    if !servers::present(&[servers::ZOOKEEPER]) {
        return;
    }
    let z = ZooKeeper::shared();
    let path = format!("/{}", unique("zk-set"));
    z.cli(0, &["create", &path, "old"]);
    z.cli(0, &["create", &format!("{path}/child"), "c"]);
    let run = run_zkcli(z, 0, &["set", &path, "new"]);
    let component = blocked_component(&run);
    run.assert_blocked(&component, "setData", &path);
    assert!(z.cli(0, &["get", &path]).contains("old"), "LEAK: setData reached production");
    let run = run_zkcli(z, 1, &["deleteall", &path]);
    run.assert_blocked(&blocked_component(&run), "multi", &path);
    assert!(z.cli(1, &["ls", &path]).contains("child"), "LEAK: deleteall reached production");
    let run = run_zkcli(z, 2, &["create", &format!("{path}/new"), "x"]);
    run.assert_blocked(&blocked_component(&run), "create", &format!("{path}/new"));
    assert!(!z.cli(2, &["ls", &path]).contains("new"), "LEAK: create reached production");
    // Controls.
    z.cli(0, &["set", &path, "new"]);
    assert!(z.cli(0, &["get", &path]).contains("new"), "control: set writes");
    z.cli(2, &["create", &format!("{path}/new"), "x"]);
    assert!(z.cli(2, &["ls", &path]).contains("new"), "control: create creates");
    z.cli(0, &["deleteall", &path]);
    assert!(!z.cli(0, &["ls", "/"]).contains(&path[1..]), "control: deleteall deletes");
}

#[test]
fn zookeeper_reads_after_captured_writes_see_them() {
    if !servers::present(&[servers::ZOOKEEPER]) {
        return;
    }
    let z = ZooKeeper::shared();
    let path = format!("/{}", unique("zk-shadow"));
    z.cli(0, &["create", &path, "old"]);
    let cli = format!("env CLIENT_JVMFLAGS='{ZK_JVM}' /usr/share/zookeeper/bin/zkCli.sh -server {}", z.server(0));
    let script = format!("{cli} create {path}/made m >/dev/null 2>&1; {cli} set {path} new >/dev/null 2>&1; {cli} ls {path}; {cli} get {path}");
    let run = pilot(&["sh", "-c", &script], None, &[]);
    assert_eq!(run.code, 3, "{}", run.dump());
    assert!(run.stdout.contains("[made]"), "ls sees the pilot's znode\n{}", run.dump());
    assert!(run.stdout.lines().any(|l| l.trim() == "new"), "get sees the pilot's data\n{}", run.dump());
    assert!(z.cli(0, &["get", &path]).contains("old") && !z.cli(0, &["ls", &path]).contains("made"), "LEAK: the writes reached production");
}

// ------------------------------------------------- Unix sockets without the cgroup hooks

/// `pilot commit` runs the live command through the sink as a recording pass-through proxy:
/// the live run's sink.json has the same operations, forwarded, and fidelity compares them
/// operation by operation.
#[test]
fn commit_records_the_live_rpc_effects_operation_by_operation() {
    if !servers::present(&[servers::ETCD]) {
        return;
    }
    let e = Etcd::shared();
    let key = format!("/{}", unique("etcd-commit"));
    e.ctl(&["put", &key, "live-value"]);
    // One endpoint: with several, etcdctl's balancer picks one at random, live and in the pilot.
    let argv = ["env", "ETCDCTL_API=3", "/usr/bin/etcdctl", &format!("--endpoints={}", e.clients[0]), "get", &key];
    let run = pilot(&argv, None, &[]);
    run.assert_passed();
    let commit = Command::new(common::pilot_bin())
        .arg("commit")
        .arg(run.dir.path())
        .env("PILOT_NO_DAEMON", "1")
        .env("PILOT_JOURNAL", run.dir.path().join("journal.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&commit.stderr);
    assert_eq!(commit.status.code(), Some(0), "commit: {stderr}");
    assert!(String::from_utf8_lossy(&commit.stdout).contains("live-value"), "the live run printed the value: {stderr}");
    let live = run.json("live/sink.json");
    let ops: Vec<&Value> = live.as_array().into_iter().flatten().flat_map(|c| c["rpc"].as_array().into_iter().flatten()).collect();
    assert!(
        ops.iter().any(|r| r["protocol"] == "etcd" && r["operation"] == "Range" && r["resource"] == key.as_str() && r["disposition"] == "forwarded"),
        "the live run's Range went through the recording proxy: {live}"
    );
    let f = run.json("fidelity.json");
    let rpc_mismatch = |k: &str| f[k].as_array().into_iter().flatten().any(|x| x.as_str().is_some_and(|s| s.contains(" rpc ")));
    assert!(!rpc_mismatch("only_pilot") && !rpc_mismatch("only_live"), "the pilot's and the live rpc effects match: {f}");
    assert_eq!(f["within_gate"], true, "{f}");
}
