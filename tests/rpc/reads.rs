//! The read-only cases of the RPC suite: read-only admin commands of every protocol (DNS,
//! Redis, PostgreSQL, HTTP, etcd, ZooKeeper) run to completion under a plain `pilot run` (no
//! `--allow`) and print live data, over TCP and over the server's Unix socket where it has one,
//! and the pilot's own network namespace (what kernels before 6.7 give every pilot) serves
//! Unix and TCP reads. Nothing here changes a server: `cargo xtask vm-test` runs these in the
//! VM matrix (`rpc:reads::`, the servers in the guest image), the mutations stay in rpc.rs.
use std::process::Command;

use serde_json::Value;

use super::*;
use crate::servers::{Dns, Etcd, Http, PG_BIN, Postgres, Redis, ZooKeeper};

// ------------------------------------------------------------------------------------ DNS

#[test]
fn dns_lookups_resolve_under_pilot_as_live() {
    if !servers::present(&[servers::DNSMASQ]) {
        return;
    }
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
    if !servers::present(&[servers::REDIS]) {
        return;
    }
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

// ----------------------------------------------------------------------------- PostgreSQL

#[test]
fn postgres_reads_pass_and_print_live_values_over_tcp_and_unix() {
    if !servers::present(&[servers::POSTGRES]) {
        return;
    }
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
fn pg_dump_passes_and_writes_the_live_rows_into_the_overlay() {
    if !servers::present(&[servers::POSTGRES, servers::PG_TOOLS]) {
        return;
    }
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
fn pg_basebackup_streams_wal_and_passes() {
    if !servers::present(&[servers::POSTGRES, servers::PG_TOOLS]) {
        return;
    }
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

// ----------------------------------------------------------------------------------- HTTP

#[test]
fn http_reads_pass_and_print_live_values() {
    if !servers::present(&[servers::HTTP]) {
        return;
    }
    let h = Http::shared();
    let key = unique("h");
    let url = h.url(&format!("/keys/{key}"));
    h.curl(&["-X", "PUT", "--data", "live-value", &url]);
    let run = pilot(&["curl", "-sf", &url], None, &[]);
    run.assert_passed();
    assert_eq!(run.stdout, "live-value", "{}", run.dump());
    assert!(rpcs(&run).iter().any(|x| x.0 == "GET" && x.2 == "read" && x.3 == "forwarded"), "the GET went through\n{}", run.dump());
}

// ----------------------------------------------------------------------------------- etcd

#[test]
fn etcd_reads_pass_and_print_live_values() {
    if !servers::present(&[servers::ETCD]) {
        return;
    }
    let e = Etcd::shared();
    let key = format!("/{}", unique("etcd-read"));
    e.ctl(&["put", &key, "live-value"]);
    let run = run_etcdctl(e, &["get", &key]);
    run.assert_passed();
    assert!(run.stdout.contains("live-value"), "etcdctl get did not print the live value\n{}", run.dump());
    let run = run_etcdctl(e, &["member", "list"]);
    run.assert_passed();
    for name in &e.names {
        assert!(run.stdout.contains(name.as_str()), "member list does not name {name}\n{}", run.dump());
    }
    let run = run_etcdctl(e, &["endpoint", "status", "-w", "table"]);
    run.assert_passed();
    assert!(run.stdout.contains("3.4."), "endpoint status shows the live version\n{}", run.dump());
    let run = run_etcdctl(e, &["alarm", "list"]);
    run.assert_passed();
    let sink = run.json("sink.json").to_string();
    assert!(sink.contains("\"Alarm GET\"") && sink.contains("\"forwarded\""), "{}", run.dump());
}

// ------------------------------------------------------------------------------ ZooKeeper

#[test]
fn zookeeper_reads_pass_and_print_live_values() {
    if !servers::present(&[servers::ZOOKEEPER]) {
        return;
    }
    let z = ZooKeeper::shared();
    let path = format!("/{}", unique("zk-read"));
    z.cli(0, &["create", &path, "live-data"]);
    let run = run_zkcli(z, 1, &["get", &path]);
    run.assert_passed();
    assert!(run.stdout.contains("live-data"), "zkCli get did not print the live data\n{}", run.dump());
    let run = run_zkcli(z, 2, &["ls", "/"]);
    run.assert_passed();
    assert!(run.stdout.contains(&path[1..]), "zkCli ls / lists the live znode\n{}", run.dump());
    let sink = run.json("sink.json").to_string();
    assert!(sink.contains("\"getChildren") && sink.contains("\"forwarded\""), "{}", run.dump());
    // The JVM's dual-stack socket: the trace's connect (to ::ffff:127.0.0.1) is the one the
    // sink saw: its rpc edges go to the same endpoint, the connect is marked as judged by them.
    let graph = run.json("graph.json");
    let edges = graph["edges"].as_array().cloned().unwrap_or_default();
    let port = format!(":{}", z.ports[2]);
    let connect = edges.iter().find(|e| e["kind"] == "connect" && e["to"].as_str().is_some_and(|t| t.ends_with(&port))).unwrap_or_else(|| panic!("no connect to {port}\n{graph}"));
    assert!(connect["to"].as_str().unwrap_or("").contains("::ffff:127.0.0.1"), "the JVM connects through a mapped address: {connect}");
    assert_eq!(connect["via_sink"], true, "the connect is marked as seen by the sink: {connect}");
    assert!(edges.iter().any(|e| e["kind"] == "rpc" && e["to"] == connect["to"]), "the rpc edges go to the trace's endpoint\n{graph}");
    assert!(!run.json("verdict.json")["violations"].to_string().contains("live-service-contacted"), "no unjudged-traffic warning\n{}", run.dump());
}

// ------------------------------------------------- Unix sockets without the cgroup hooks

/// Before Linux 6.7 the pilot gets a network namespace of its own (sink/netns.rs);
/// PILOT_UNIX_NETNS=1 makes this kernel use it too. A host abstract listener is not reached
/// from the pilot (control: it is without pilot), the sink's socket at a live listener's path
/// serves redis-cli -s, TCP goes through the sink from the namespace, the pilot sees only lo.
#[test]
fn unix_sockets_in_the_pilots_own_network_namespace() {
    if !servers::present(&[servers::REDIS]) {
        return;
    }
    let r = Redis::shared();
    let key = unique("netns");
    r.cli(&["SET", &key, "live-value"]);
    let name = unique("abstract");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    use std::os::linux::net::SocketAddrExt;
    let host = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    host.set_nonblocking(true).unwrap();
    let probe = format!("import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(b'\\0{name}')\n    print('reached')\nexcept OSError as e:\n    print('refused', e.errno)\n");
    let live = Command::new(common::PYTHON).args(["-c", &probe]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&live.stdout).trim(), "reached", "control: the abstract listener is reachable without pilot");
    assert!(host.accept().is_ok(), "control: the connection arrived");
    let sock = r.sock.display().to_string();
    let script = format!("redis-cli -s {sock} GET {key}; redis-cli -p {} GET {key}; {} -c \"$0\"; ip -o link | wc -l", r.port, common::PYTHON);
    let run = pilot_env(&["sh", "-c", &script, &probe], None, &[], &[("PILOT_UNIX_NETNS", "1")]);
    run.assert_passed();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines, ["live-value", "live-value", "refused 111", "1"], "unix and tcp reads, the abstract name not there, only lo\n{}", run.dump());
    assert!(host.accept().is_err(), "LEAK: the host's abstract listener got a connection");
    assert!(run.json("verdict.json")["contained_by"]["unix_sockets"].as_str().unwrap_or("").contains("network namespace"), "{}", run.dump());
}
