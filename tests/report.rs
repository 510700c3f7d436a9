//! `pilot report`, checked in a real browser: headless Chromium opens the page of a blocked
//! pilot (a live service's data file deleted), and of a 620-node graph laid out by Graphviz and
//! by the built-in layout; the tests read the DOM after the page's script ran, and keep a
//! screenshot in the test's scratch directory.
mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{Scratch, Service};
use serde_json::{Value, json};

const PILOT: &str = env!("CARGO_BIN_EXE_pilot");
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

fn pilot(journal: &Path, args: &[&str]) -> Output {
    Command::new(PILOT).args(args).env("PILOT_JOURNAL", journal).stdin(Stdio::null()).output().expect("running pilot")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Headless Chromium (from `cargo xtask bootstrap`) with `args`, its profile in `scratch`;
/// killed by PID after the timeout. Returns stdout.
fn chromium(scratch: &Scratch, args: &[String]) -> String {
    let dir = scratch.path().join("chromium-profile");
    let out_path = scratch.path().join(format!("chromium-{}.out", args.len()));
    let mut child = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        .arg(format!("--user-data-dir={}", dir.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("chromium's stdout file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium (apt-get install chromium, or cargo xtask bootstrap)");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            assert!(status.success(), "chromium {args:?}: {status}");
            break;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::read_to_string(&out_path).expect("chromium's output")
}

/// The DOM after load (the page's script has run).
fn dom(scratch: &Scratch, page: &Path) -> String {
    chromium(scratch, &["--dump-dom".into(), format!("file://{}", page.display())])
}

/// A screenshot of the page in the scratch directory; checks it is a PNG with content.
fn screenshot(scratch: &Scratch, page: &Path, size: &str) -> PathBuf {
    let png = scratch.path().join("report.png");
    chromium(scratch, &[format!("--screenshot={}", png.display()), format!("--window-size={size}"), format!("file://{}", page.display())]);
    let bytes = fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(bytes.len() > 10_000, "a screenshot with something on it: {} bytes", bytes.len());
    png
}

/// The value of `name="..."` in the first tag that has `id="id"`.
fn attr(dom: &str, id: &str, name: &str) -> String {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let tag = &dom[dom[..at].rfind('<').unwrap()..at + dom[at..].find('>').unwrap()];
    let key = format!("{name}=\"");
    let start = tag.find(&key).unwrap_or_else(|| panic!("#{id} has no {name}: {tag}")) + key.len();
    tag[start..start + tag[start..].find('"').unwrap()].to_string()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Nodes the drawing shows: all but the component nodes (components are the groups).
fn drawn_nodes(graph: &Value) -> usize {
    graph["nodes"].as_array().unwrap().iter().filter(|n| n["type"] != "component").count()
}

#[test]
fn a_blocked_pilot_shows_the_harmed_component_and_the_violating_edge_in_a_browser() {
    let d = Scratch::new();
    let svc_dir = PathBuf::from(d.mkdir("svc"));
    // Markup and quotes in a path must show as text, never become markup.
    let data = svc_dir.join("data <i>&\"x\".db");
    let svc = Service::start(&svc_dir, &data);
    let journal = d.path().join("journal.jsonl");
    let run = d.path().join("run");
    let data_arg = data.to_str().unwrap();
    let o = pilot(&journal, &["run", "--out", run.to_str().unwrap(), "--", "sh", "-c", "rm -- \"$1\"", "sh", data_arg]);
    assert_eq!(o.status.code(), Some(3), "blocked: {}", text(&o));
    assert!(data.exists(), "production untouched");
    let page = run.join("report.html");
    assert!(page.is_file(), "pilot run wrote report.html: {}", text(&o));

    // `pilot report` rewrites it, or writes elsewhere; a directory that is no run is exit 2.
    let o = pilot(&journal, &["report", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), page.to_str().unwrap(), "prints the page's path");
    let elsewhere = d.path().join("ticket.html");
    let o = pilot(&journal, &["report", run.to_str().unwrap(), "--html", elsewhere.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(elsewhere.is_file());
    let o = pilot(&journal, &["report", svc_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("not a run directory"), "{err}");

    let html = fs::read_to_string(&page).unwrap();
    assert!(!html.contains(" src=") && !html.contains("<link") && !html.contains("url(http"), "nothing to fetch");
    assert!(html.contains("default-src 'none'"), "the page forbids every fetch");

    let graph = json_file(&run.join("graph.json"));
    let verdict = json_file(&run.join("verdict.json"));
    let dom = dom(&d, &page);
    assert!(dom.contains("<div id=\"verdict\" class=\"verdict block\" data-verdict=\"block\">BLOCK</div>"), "the verdict at the top");
    let violation = verdict["violations"].as_array().unwrap().iter().find(|v| v["rule"] == "live-file-destroyed").expect("the violation");
    let component = violation["component"].as_str().unwrap();
    assert!(component.contains("store_svc"), "{violation}");
    assert!(dom.contains(&format!("harms <b class=\"harmed\">{component}</b>")), "which component was harmed");
    assert!(dom.contains("data &lt;i&gt;&amp;\"x\".db"), "the path shown as text");
    assert!(!dom.contains("<i>"), "no element made from a path");

    // The drawing: every node, the violating edge marked and linked to the violation, whose
    // evidence links to the events.jsonl line it cites.
    assert_eq!(attr(&dom, "graph", "data-rendered-nodes"), drawn_nodes(&graph).to_string(), "every node drawn");
    assert_eq!(attr(&dom, "graph", "data-rendered-violating"), "1");
    let edge = graph["edges"].as_array().unwrap().iter().position(|e| e["kind"] == "unlink" && e["to"].as_str().unwrap().ends_with(".db")).unwrap();
    assert!(dom.contains(&format!("id=\"e{edge}\" class=\"edge k_unlink destructive cross violating\"")), "edge {edge} marked");
    assert!(dom.contains("href=\"#v0\""), "the edge links to its violation");
    let line = violation["events"][0].as_u64().unwrap();
    assert!(dom.contains(&format!("<li id=\"ev-{line}\">")), "evidence event {line} shown");
    assert!(dom.contains(&format!("<a href=\"#ev-{line}\">{line}</a>")), "the violation links to it");
    let cited = fs::read_to_string(run.join("events.jsonl")).unwrap().lines().nth(line as usize - 1).unwrap().to_string();
    assert!(cited.contains("unlink"), "line {line} is the unlink: {cited}");
    assert!(dom.contains("journal-entries"), "the journal's entries of this run");
    assert!(dom.contains("intact ("), "the journal verified");
    screenshot(&d, &page, "1400,2000");

    // Control: without the pilot the same command does delete the file.
    let status = Command::new("sh").args(["-c", "rm -- \"$1\"", "sh", data_arg]).status().unwrap();
    assert!(status.success() && !data.exists(), "the action is harmful for real");
    drop(svc);
}

/// A run directory holding only a synthetic graph.json (pure data): 20 workers writing 30
/// files each, and 5 files of a live database unlinked.
fn big_run(d: &Scratch) -> (PathBuf, usize) {
    let mut nodes = vec![json!({"id": "component:traced", "type": "component", "label": "traced"})];
    let mut edges = Vec::new();
    let proc_node = |i: u32| json!({"id": format!("process:{i}:1"), "type": "process", "label": format!("{i} worker"), "component": "traced", "pid": i});
    let edge = |from: String, to: String, kind: &str, cross: bool| {
        json!({"from": from, "to": to, "kind": kind, "count": 1, "failed": 0, "bytes": 0, "first_ts_ns": 1, "last_ts_ns": 1,
               "cross_component": cross, "events": [1]})
    };
    nodes.push(proc_node(1));
    for w in 2..22 {
        nodes.push(proc_node(w));
        edges.push(edge("process:1:1".into(), format!("process:{w}:1"), "spawn", false));
        for f in 0..30 {
            let path = format!("/srv/spool/batch-{w}/part-{f:04}.dat");
            nodes.push(json!({"id": format!("file:{path}"), "type": "file", "label": path, "path": path}));
            edges.push(edge(format!("process:{w}:1"), format!("file:{path}"), "write", false));
        }
    }
    for t in 0..5 {
        let path = format!("/var/lib/db/table-{t}.db");
        nodes.push(json!({"id": format!("file:{path}"), "type": "file", "label": path, "path": path, "component": "db", "held": "open-for-write"}));
        edges.push(edge("process:2:1".into(), format!("file:{path}"), "unlink", true));
    }
    let drawn = nodes.len() - 1;
    let graph = json!({"schema": "pilot.effect-graph/v1", "target": "`spool-cleanup`", "host": "h", "complete": true, "lost_events": 0,
                       "nodes": nodes, "edges": edges, "components": []});
    let dir = PathBuf::from(d.mkdir("big"));
    fs::write(dir.join("graph.json"), graph.to_string()).unwrap();
    (dir, drawn)
}

fn renders_a_big_graph(path_env: Option<&str>, engine: &str) {
    let d = Scratch::new();
    let (run, nodes) = big_run(&d);
    assert!(nodes > 600);
    let mut cmd = Command::new(PILOT);
    cmd.args(["report", run.to_str().unwrap()]).env("PILOT_JOURNAL", d.path().join("journal.jsonl"));
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let page = run.join("report.html");
    let html = fs::read_to_string(&page).unwrap();
    assert!(html.contains(&format!("laid out by {engine}")), "laid out by {engine}");
    let dom = dom(&d, &page);
    assert_eq!(attr(&dom, "graph", "data-rendered-nodes"), nodes.to_string(), "every node in the DOM");
    let natural = attr(&dom, "graph", "data-natural-size");
    let (w, h) = natural.split_once('x').map(|(w, h)| (w.parse::<u32>().unwrap(), h.parse::<u32>().unwrap())).unwrap();
    assert!((300..20_000).contains(&w) && (300..20_000).contains(&h), "a sane size: {natural}");
    let rendered = attr(&dom, "graph", "data-rendered-size");
    assert!(!rendered.starts_with("0x") && !rendered.ends_with("x0"), "drawn: {rendered}");
    let zoom = dom.split("<span id=\"zoom\">").nth(1).and_then(|s| s.split('%').next()).unwrap().parse::<u32>().unwrap();
    assert!(zoom >= 35, "labels stay legible: opened at {zoom}%");
    screenshot(&d, &page, "1400,1400");
}

#[test]
fn a_graph_of_620_nodes_renders_with_graphviz() {
    renders_a_big_graph(None, "Graphviz dot");
}

#[test]
fn a_graph_of_620_nodes_renders_without_graphviz() {
    renders_a_big_graph(Some("/nonexistent"), "built-in layout");
}
