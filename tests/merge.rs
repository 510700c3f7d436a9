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
        let id = std::process::id();
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
