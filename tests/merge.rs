//! `pilot merge` across two hosts: two network namespaces the test creates, joined by a veth
//! pair (addresses inside those namespaces only), each with its own UTS host name. A service
//! listens on host B; a traced client on host A connects to it; the merged graph has the edge
//! from A's client to B's component.
mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use common::{PYTHON, Proc, Scratch, pilot_bin};
use serde_json::Value;

const ADDR_A: &str = "10.231.0.1";
const ADDR_B: &str = "10.231.0.2";

/// Two network namespaces joined by a veth pair; deleted on drop (the veth goes with them).
struct TwoHosts {
    a: String,
    b: String,
}

impl TwoHosts {
    fn create() -> TwoHosts {
        // Unique per test of this binary too (tests run in parallel).
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let id = format!("{}{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let hosts = TwoHosts { a: format!("pilot-m{id}a"), b: format!("pilot-m{id}b") };
        let (va, vb) = (format!("pm{id}a"), format!("pm{id}b"));
        ip(&["netns", "add", &hosts.a]);
        ip(&["netns", "add", &hosts.b]);
        ip(&["-n", &hosts.a, "link", "add", &va, "type", "veth", "peer", "name", &vb, "netns", &hosts.b]);
        for (ns, dev, addr) in [(&hosts.a, &va, ADDR_A), (&hosts.b, &vb, ADDR_B)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        hosts
    }

    /// `cmd` in network namespace `ns` and a UTS namespace named `host`.
    fn command(ns: &str, host: &str, cmd: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{ns}"))
            .args(["unshare", "--uts", "sh", "-c", "hostname \"$0\" && exec \"$@\"", host])
            .args(cmd);
        c
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip (apt-get install iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn trace(mut cmd: Command, dir: &Path) -> Value {
    let out = cmd.stderr(Stdio::piped()).output().expect("running pilot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pilot trace failed: {stderr}");
    let text = std::fs::read_to_string(dir.join("graph.json")).unwrap_or_else(|e| panic!("graph.json: {e}\n{stderr}"));
    serde_json::from_str(&text).expect("graph.json is JSON")
}

fn edges_to<'a>(g: &'a Value, kind: &str, needle: &str) -> Vec<&'a Value> {
    g["edges"].as_array().unwrap().iter().filter(|e| e["kind"] == kind && e["to"].as_str().unwrap().contains(needle)).collect()
}

#[test]
fn a_connect_to_another_hosts_service_becomes_a_cross_host_edge() {
    let hosts = TwoHosts::create();
    let dir = Scratch::new();
    let server = dir.file(
        "svc_b.py",
        "import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 0))\ns.listen(8)\nprint(s.getsockname()[1], flush=True)\n\
         while True:\n    c, _ = s.accept()\n    c.recv(64)\n    c.close()\n",
    );
    let client = dir.file(
        "client_a.py",
        "import socket, sys\nc = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\nc.sendall(b'hello')\nc.close()\n",
    );
    let mut svc = Proc::spawn(TwoHosts::command(&hosts.b, "pilot-host-b", &[PYTHON, &server]).stdout(Stdio::piped()));
    let mut line = String::new();
    BufReader::new(svc.child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().to_string();
    assert!(port.parse::<u16>().is_ok(), "the service prints its port, got {line:?}");

    // Host B's graph: its snapshot shows the service listening.
    let dir_b = dir.path().join("b");
    let b = trace(TwoHosts::command(&hosts.b, "pilot-host-b", &[pilot_bin(), "trace", "--out", dir_b.to_str().unwrap(), "--", "true"]), &dir_b);
    assert_eq!(b["host"], "pilot-host-b");
    assert!(b["local_addrs"].as_array().unwrap().iter().any(|a| a == ADDR_B), "host B records its addresses: {}", b["local_addrs"]);
    // Host A's graph: the connect goes to an address no component of A holds.
    let dir_a = dir.path().join("a");
    let a = trace(
        TwoHosts::command(&hosts.a, "pilot-host-a", &[pilot_bin(), "trace", "--out", dir_a.to_str().unwrap(), "--", PYTHON, &client, ADDR_B, &port]),
        &dir_a,
    );
    assert_eq!(a["host"], "pilot-host-a");
    let target = format!("{ADDR_B}:{port}");
    let alone = edges_to(&a, "connect", &target);
    assert_eq!(alone.len(), 1, "host A's graph has the connect: {}", a["edges"]);
    assert_eq!(alone[0]["cross_component"], false, "on its own, host A cannot tell who listens there");

    let merged_dir = dir.path().join("merged");
    let out = Command::new(pilot_bin())
        .args(["merge", dir_a.join("graph.json").to_str().unwrap(), dir_b.to_str().unwrap(), "--out", merged_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "pilot merge: {}", String::from_utf8_lossy(&out.stderr));
    let m: Value = serde_json::from_str(&std::fs::read_to_string(merged_dir.join("graph.json")).unwrap()).unwrap();
    assert_eq!(m["schema"], "pilot.effect-graph/v2");
    let hosts_seen: Vec<&str> = m["hosts"].as_array().unwrap().iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(hosts_seen, ["pilot-host-a", "pilot-host-b"]);
    let cross: Vec<&Value> = m["edges"].as_array().unwrap().iter().filter(|e| e["kind"] == "connect" && e["to_host"] == "pilot-host-b").collect();
    assert_eq!(cross.len(), 1, "one connect crosses to host B: {}", m["edges"]);
    let e = cross[0];
    assert_eq!(e["host"], "pilot-host-a");
    assert_eq!(e["cross_component"], true);
    assert!(e["component"].as_str().unwrap().contains("svc_b.py"), "the edge reaches B's service: {e}");
    assert_eq!(e["detail"], format!("via {target}"));
    assert!(e["from"].as_str().unwrap().starts_with("pilot-host-a/process:"));
    let to = m["nodes"].as_array().unwrap().iter().find(|n| n["id"] == e["to"]).expect("the component node");
    assert_eq!((to["type"].as_str(), to["host"].as_str()), (Some("component"), Some("pilot-host-b")));
    let svc_component = m["components"].as_array().unwrap().iter().find(|c| c["name"] == e["component"] && c["host"] == "pilot-host-b");
    assert!(svc_component.is_some(), "components keep their host");
    let dot = std::fs::read_to_string(merged_dir.join("graph.dot")).unwrap();
    assert!(dot.contains("on pilot-host-b"), "the DOT view clusters by host:\n{dot}");
    for view in [&["graph", merged_dir.to_str().unwrap()][..], &["check", merged_dir.to_str().unwrap()][..]] {
        let out = Command::new(pilot_bin()).args(view).output().unwrap();
        assert!(out.status.success(), "pilot {view:?} reads the merged graph: {}", String::from_utf8_lossy(&out.stderr));
    }
    drop(svc);
    drop(hosts);
}

/// ansible-playbook from the venv `cargo xtask ansible-test` makes (ansible-core from PyPI),
/// made here when missing.
fn ansible_playbook() -> std::path::PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ansible-venv");
    let bin = venv.join("bin/ansible-playbook");
    if !bin.exists() {
        let ok = Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv).status().is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip")).args(["install", "--quiet", "ansible-core>=2.17,<2.18"]).status().is_ok_and(|s| s.success());
        assert!(ok, "could not make the ansible venv in {} (apt-get install python3-venv; PyPI reachable?)", venv.display());
    }
    bin
}

/// deploy/ansible/fleet-pilot.yml on two network-namespace hosts (connection local, each run
/// entered into its namespace with nsenter): the same redis-cli command piloted on both at
/// once, the run directories fetched and merged, so host A's call to host B's Redis is a
/// cross-host rpc edge; then a mutation from A: the playbook fails, naming host A.
#[test]
fn the_fleet_playbook_pilots_hosts_at_once_and_merges_their_graphs() {
    let hosts = TwoHosts::create();
    let dir = Scratch::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let redis_dir = dir.path().join("redis-b");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let _redis = Proc::spawn(
        TwoHosts::command(&hosts.b, "pilot-host-b", &["/usr/bin/redis-server", "--port", &port, "--bind", "0.0.0.0", "--save", "", "--protected-mode", "no", "--dir", redis_dir.to_str().unwrap()])
            .stdout(Stdio::null()),
    );
    let cli = |ns: &str, args: &[&str]| {
        let out = Command::new("nsenter").arg(format!("--net=/run/netns/{ns}")).arg("redis-cli").args(["-h", ADDR_B, "-p", &port]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(common::wait_until(std::time::Duration::from_secs(20), || cli(&hosts.b, &["PING"]) == "PONG"), "redis on host B did not come up");
    cli(&hosts.b, &["SET", "fleet-key", "live-value"]);

    let wrap = |ns: &str, host: &str| {
        serde_json::json!(["nsenter", format!("--net=/run/netns/{ns}"), "unshare", "--uts", "sh", "-c", "hostname \"$0\" && exec \"$@\"", host])
    };
    let inventory = dir.file(
        "fleet.json",
        &serde_json::json!({
            "all": {
                "vars": {
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "pilot_bin": pilot_bin(),
                    "pilot_fetch_dir": dir.path().join("fetched").display().to_string(),
                },
            },
            "pilot_hosts": {
                "hosts": {
                    "host-a": {"pilot_exec_prefix": wrap(&hosts.a, "pilot-host-a")},
                    "host-b": {"pilot_exec_prefix": wrap(&hosts.b, "pilot-host-b")},
                },
                "vars": {
                    "ansible_connection": "local",
                    "pilot_run_root": dir.path().join("hosts").display().to_string(),
                    "pilot_environment": {"PILOT_NO_DAEMON": "1", "PILOT_JOURNAL": dir.path().join("journal.jsonl").display().to_string(), "PILOT_RUN_KEY": std::env::var("PILOT_RUN_KEY").unwrap_or_default()},
                },
            }
        })
        .to_string(),
    );
    let playbook = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ansible/fleet-pilot.yml");
    let play = |run_id: &str, command: &[&str]| {
        let extra = serde_json::json!({"pilot_command": command, "pilot_run_id": run_id}).to_string();
        let out = Command::new(ansible_playbook())
            .env("ANSIBLE_CONFIG", Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ansible/ansible.cfg"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCALHOST_WARNING", "0")
            .args(["-i", &inventory])
            .arg(&playbook)
            .args(["-e", &extra])
            .output()
            .unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let get = ["redis-cli", "-h", ADDR_B, "-p", &port, "GET", "fleet-key"];
    let (code, log) = play("read", &get);
    assert_eq!(code, Some(0), "the fleet pilot of a read passes:\n{log}");
    let merged = dir.path().join("fetched/read/merged/graph.json");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&merged).unwrap_or_else(|e| panic!("{}: {e}\n{log}", merged.display()))).unwrap();
    let rpc: Vec<&Value> = m["edges"].as_array().unwrap().iter().filter(|e| e["kind"] == "rpc" && e["host"] == "pilot-host-a").collect();
    assert_eq!(rpc.len(), 1, "host A's GET is one rpc edge: {}", m["edges"]);
    assert_eq!(rpc[0]["to_host"], "pilot-host-b", "it crosses to host B: {}", rpc[0]);
    assert!(rpc[0]["component"].as_str().is_some_and(|c| c.starts_with("redis-server")), "to B's Redis: {}", rpc[0]);
    assert_eq!(rpc[0]["rpc"]["operation"], "GET");
    for h in ["host-a", "host-b"] {
        assert!(dir.path().join(format!("fetched/read/{h}/verdict.json")).exists(), "{h}'s verdict was fetched");
    }
    // A mutation: blocked on both hosts, the play fails naming them; production unchanged.
    let del = ["redis-cli", "-h", ADDR_B, "-p", &port, "DEL", "fleet-key"];
    let (code, log) = play("del", &del);
    assert_ne!(code, Some(0), "a blocked fleet pilot fails the play:\n{log}");
    assert!(log.contains("blocked on host-a, host-b"), "the failure names the hosts:\n{log}");
    assert!(dir.path().join("fetched/del/merged/graph.json").exists(), "merged all the same:\n{log}");
    assert_eq!(cli(&hosts.b, &["GET", "fleet-key"]), "live-value", "LEAK: DEL reached host B's Redis");
    cli(&hosts.a, &["DEL", "fleet-key"]);
    assert_eq!(cli(&hosts.b, &["EXISTS", "fleet-key"]), "0", "control: DEL from host A deletes on host B");
    drop(hosts);
}
