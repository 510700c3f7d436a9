//! The effect graph on the real kernel: component discovery, cross-component marking,
//! aggregation, the graph.json contract and the DOT and text views.
mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use common::Scratch;
use serde_json::Value;

const PILOT: &str = env!("CARGO_BIN_EXE_pilot");
const PYTHON: &str = "/usr/bin/python3";


/// A small live service started by the test: holds `data` open for writing (when given) and
/// listens on a loopback port it reports; killed by pid on drop.
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    fn start(name: &str, dir: &Path, data: Option<&Path>) -> Service {
        let script = format!(
            r#"
import socket, sys, time
f = open({data:?}, "a") if {has_data} else None
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
s.settimeout(0.2)
while True:
    try:
        c, _ = s.accept()
        c.close()
    except socket.timeout:
        pass
    if f:
        f.write("x"); f.flush()
"#,
            data = data.map(|d| d.display().to_string()).unwrap_or_default(),
            has_data = if data.is_some() { "True" } else { "False" },
        );
        let path = dir.join(format!("{name}.py"));
        std::fs::write(&path, script).unwrap();
        let mut child = Command::new(PYTHON)
            .arg(&path)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python service");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().expect("service prints its port");
        Service { child, port }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    dir: PathBuf,
    status: i32,
    stderr: String,
}

impl Run {
    fn graph(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.join("graph.json")).expect("graph.json written");
        serde_json::from_str(&text).expect("graph.json is JSON")
    }
}

fn trace(out: &Path, script: &str) -> Run {
    let o = Command::new(PILOT)
        .args(["trace", "--out"])
        .arg(out)
        .args(["--", "sh", "-c", script])
        .output()
        .expect("run pilot");
    Run { dir: out.to_path_buf(), status: o.status.code().unwrap_or(-1), stderr: String::from_utf8_lossy(&o.stderr).into() }
}

fn edges<'a>(g: &'a Value, kind: &str) -> Vec<&'a Value> {
    g["edges"].as_array().unwrap().iter().filter(|e| e["kind"] == kind).collect()
}

fn node<'a>(g: &'a Value, id: &str) -> &'a Value {
    g["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"))
}

fn component<'a>(g: &'a Value, pid: u32) -> &'a Value {
    g["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["processes"].as_array().unwrap().iter().any(|m| m["pid"] == pid))
        .unwrap_or_else(|| panic!("no component with pid {pid}"))
}

#[test]
fn discovers_a_service_that_listens_and_holds_a_file() {
    let d = Scratch::new();
    std::fs::create_dir_all(d.path().join("svc")).unwrap();
    let data = d.path().join("svc/data.db");
    let svc = Service::start("store_svc", &d.path().join("svc"), Some(&data));
    let run = trace(&d.path().join("run"), "true");
    assert_eq!(run.status, 0, "{}", run.stderr);
    let g = run.graph();
    let c = component(&g, svc.child.id());
    assert_eq!(c["name"], "python3.11 store_svc.py", "named by its script: {c}");
    assert_eq!(c["kind"], "program");
    let listens = c["listens"].as_array().unwrap();
    assert!(
        listens.iter().any(|l| l["proto"] == "tcp" && l["addr"] == "127.0.0.1" && l["port"] == svc.port),
        "listening port discovered: {listens:?}"
    );
    let written: Vec<&str> = c["files_written"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(written.contains(&data.to_str().unwrap()), "data file held for writing: {written:?}");
    assert!(c["data_dirs"].as_array().unwrap().iter().any(|v| v == d.path().join("svc").to_str().unwrap()));
}

#[test]
fn marks_effects_on_other_components_and_only_those() {
    let d = Scratch::new();
    for sub in ["a", "b", "work"] {
        std::fs::create_dir_all(d.path().join(sub)).unwrap();
    }
    let data = d.path().join("a/data.db");
    let a = Service::start("svc_a", &d.path().join("a"), Some(&data));
    let b = Service::start("svc_b", &d.path().join("b"), None);
    let work = d.path().join("work");
    let script = format!(
        "cd {work}; echo tmp > scratch.txt; mv scratch.txt kept.txt; rm {data}; \
         {PYTHON} -c 'import socket; socket.create_connection((\"127.0.0.1\", {port})).close()'",
        work = work.display(),
        data = data.display(),
        port = b.port
    );
    let run = trace(&d.path().join("run"), &script);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let g = run.graph();
    assert_eq!(g["schema"], "pilot.effect-graph/v1");
    assert_eq!(g["complete"], true);

    let unlink = edges(&g, "unlink");
    let harm: Vec<_> = unlink.iter().filter(|e| e["to"] == format!("file:{}", data.display())).collect();
    assert_eq!(harm.len(), 1, "one unlink of the service's file: {unlink:?}");
    assert_eq!(harm[0]["cross_component"], true);
    assert_eq!(harm[0]["component"], "python3.11 svc_a.py");
    assert_eq!(harm[0]["failed"], 0);
    assert_eq!(node(&g, &format!("file:{}", data.display()))["held"], "open-for-write");

    let connect = edges(&g, "connect");
    let to_b: Vec<_> = connect.iter().filter(|e| e["to"] == format!("endpoint:inet:127.0.0.1:{}", b.port)).collect();
    assert_eq!(to_b.len(), 1, "{connect:?}");
    assert_eq!(to_b[0]["cross_component"], true);
    assert_eq!(to_b[0]["component"], "python3.11 svc_b.py");

    // The script's own temp files belong to no one else.
    for e in g["edges"].as_array().unwrap() {
        let to = e["to"].as_str().unwrap();
        if to.contains("/work/") {
            assert_eq!(e["cross_component"], false, "own file marked cross-component: {e}");
        }
    }
    let rename = edges(&g, "rename");
    assert!(rename.iter().any(|e| e["to"] == format!("file:{}/scratch.txt", work.display())
        && e["detail"] == format!("-> {}/kept.txt", work.display())));

    // Nothing else of the host is touched.
    let touched: Vec<&str> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cross_component"] == true)
        .map(|e| e["component"].as_str().unwrap())
        .collect();
    assert!(touched.iter().all(|c| *c == "python3.11 svc_a.py" || *c == "python3.11 svc_b.py"), "{touched:?}");

    // The text view names both services and what was done to them.
    let text = Command::new(PILOT).args(["graph"]).arg(&run.dir).args(["--format", "text"]).output().unwrap();
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("touched 2 other components"), "{text}");
    let a_section = text.split("\npython3.11 svc_a.py").nth(1).expect("svc_a section");
    assert!(a_section.contains(&format!("unlink    {}", data.display())), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{}", b.port)), "{text}");
    drop(a);
}

#[test]
fn a_million_writes_to_one_file_are_one_edge() {
    let d = Scratch::new();
    let file = d.path().join("big");
    let run = trace(&d.path().join("run"), &format!("dd if=/dev/zero of={} bs=1 count=1000000 status=none", file.display()));
    assert_eq!(run.status, 0, "{}", run.stderr);
    let g = run.graph();
    let writes: Vec<_> = edges(&g, "write").into_iter().filter(|e| e["to"] == format!("file:{}", file.display())).collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0]["bytes"], 1_000_000);
    assert_eq!(writes[0]["count"], 1_000_000);
    assert!(g["edges"].as_array().unwrap().len() < 10, "the graph stays small");
    assert_eq!(g["complete"], true);
}

#[test]
fn graph_json_keeps_its_schema() {
    let d = Scratch::new();
    let run = trace(&d.path().join("run"), &format!("echo hi > {}", d.path().join("f").display()));
    let g = run.graph();
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let mut top = keys(&g);
    top.sort();
    // v1 grows only additively: `local_addrs` (for `pilot merge`) came later; `filesystems`
    // appears when live processes write somewhere.
    top.retain(|k| k != "filesystems");
    assert_eq!(top, ["complete", "components", "edges", "host", "local_addrs", "lost_events", "nodes", "schema", "target"]);
    let edge = edges(&g, "write").into_iter().next().expect("a write edge").clone();
    let mut ek = keys(&edge);
    ek.sort();
    assert_eq!(
        ek,
        ["bytes", "component", "count", "cross_component", "events", "failed", "first_ts_ns", "from", "kind", "last_ts_ns", "to"]
            .iter()
            .filter(|k| **k != "component" || edge.get("component").is_some())
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
    for n in g["nodes"].as_array().unwrap() {
        for k in ["id", "type", "label"] {
            assert!(n.get(k).is_some(), "node without {k}: {n}");
        }
    }
    // Evidence points at real lines of events.jsonl.
    let lines = std::fs::read_to_string(run.dir.join("events.jsonl")).unwrap();
    let line = edge["events"][0].as_u64().unwrap() as usize;
    let ev: Value = serde_json::from_str(lines.lines().nth(line - 1).unwrap()).unwrap();
    assert_eq!(ev["kind"], "write");
}

#[test]
fn dot_output_is_valid_graphviz() {
    let d = Scratch::new();
    let run = trace(&d.path().join("run"), &format!("mkdir {0}/x && echo 1 > {0}/x/y && rm -r {0}/x", d.path().display()));
    assert_eq!(run.status, 0);
    let svg = Command::new("dot").arg("-Tsvg").arg(run.dir.join("graph.dot")).output().expect("graphviz installed (cargo xtask bootstrap)");
    assert!(svg.status.success(), "dot rejected graph.dot: {}", String::from_utf8_lossy(&svg.stderr));
    assert!(String::from_utf8_lossy(&svg.stdout).contains("<svg"));
    let again = Command::new(PILOT).args(["graph"]).arg(&run.dir).args(["--format", "dot"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout), std::fs::read_to_string(run.dir.join("graph.dot")).unwrap());
}

#[test]
fn graph_of_a_directory_without_a_run_is_bad_input() {
    let d = Scratch::new();
    let o = Command::new(PILOT).args(["graph"]).arg(d.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no graph.json"), "{err}");
}

/// A service that appends to its log, catches SIGHUP and holds its data read-write, as the
/// snapshot records it (graph.json components) and the nodes the trace touched carry it.
#[test]
fn the_snapshot_knows_logs_log_directories_and_what_a_process_does_with_signals() {
    let d = Scratch::new();
    let (logs, data) = (d.path().join("app/logs"), d.path().join("app/data"));
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(logs.join("app.log.1"), "yesterday\n").unwrap();
    std::fs::write(data.join("app.db"), "rows\n").unwrap();
    let script = format!(
        r#"
import signal, time
db = open({db:?}, "r+")
log = open({log:?}, "a")
signal.signal(signal.SIGHUP, lambda *_: None)
print("up", flush=True)
while True:
    log.write("line\n"); log.flush(); time.sleep(0.05)
"#,
        db = data.join("app.db").display().to_string(),
        log = logs.join("app.log").display().to_string()
    );
    std::fs::write(d.path().join("app_svc.py"), script).unwrap();
    let mut child = Command::new(PYTHON).arg(d.path().join("app_svc.py")).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let pid = child.id();
    let cmd = format!("kill -HUP {pid}; echo old | gzip > {logs}/app.log.2.gz; touch {data}/new.db", logs = logs.display(), data = data.display());
    let run = trace(&d.path().join("run"), &cmd);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let g = run.graph();
    let c = component(&g, pid);
    let log = logs.join("app.log").display().to_string();
    let appended = c["files_appended"].as_array().unwrap();
    assert!(appended.contains(&Value::from(log.as_str())), "the log is appended to: {c}");
    assert!(!appended.contains(&Value::from(data.join("app.db").to_str().unwrap())), "the data file is not: {c}");
    assert_eq!(c["log_dirs"], serde_json::json!([logs.display().to_string()]), "logs/ holds the log and a rotation: {c}");
    assert!(c["data_dirs"].as_array().unwrap().iter().any(|v| v == data.to_str().unwrap()), "{c}");
    let caught = c["processes"][0]["signals"]["caught"].as_str().expect("dispositions read");
    assert_eq!(u64::from_str_radix(caught, 16).unwrap() & 1, 1, "SIGHUP (bit 0) caught: {c}");
    // The nodes the trace touched say so too.
    let target = g["nodes"].as_array().unwrap().iter().find(|n| n["pid"] == pid).expect("the signalled process");
    assert_eq!(target["signals"]["caught"], caught);
    assert_eq!(node(&g, &format!("file:{}/app.log.2.gz", logs.display()))["log"], "rotated");
    let new = node(&g, &format!("file:{}/new.db", data.display()));
    assert_eq!((new["held"].as_str(), new["created"].as_bool()), (Some("data-dir"), Some(true)), "made after the snapshot: {new}");
}
