//! Events in, graph out. Edges aggregate while events stream; components are attached at the
//! end, from the host snapshot.
use std::collections::{HashMap, HashSet};

use super::{Edge, Graph, Node, SCHEMA, TRACED};
use crate::{event::Event, snapshot::Snapshot, tracker::Tracker};

const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const EINPROGRESS: i64 = -115;
/// Evidence kept per edge (the first events; counts cover all).
const EVIDENCE_MAX: usize = 8;
/// Fraction of a shared filesystem's free space a process must write there to get a `fill`
/// edge.
const FILL_MIN: f64 = 0.01;

#[derive(Default)]
pub struct Builder {
    nodes: Vec<Node>,
    node_index: HashMap<String, usize>,
    edges: Vec<Edge>,
    edge_index: HashMap<(String, String, String, String), usize>,
    /// Signals the kernel generated, kept until we know which targets the syscalls named.
    generated: Vec<(Event, u64)>,
    direct: HashSet<(u32, i64, i64)>,
    /// Signals sent to a process group by number: (event, seq, group).
    group_signals: Vec<(Event, u64, u32)>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Add one event; `seq` is its line number in events.jsonl.
    pub fn add(&mut self, e: &Event, seq: u64) {
        let from = process_id(e.pid, e.start_ns);
        match e.kind {
            "fork" if e.thread != Some(true) => {
                if let Some(child) = e.child_pid {
                    let to = process_id(child, e.child_start_ns.unwrap_or(0));
                    self.process_node(&to, child, e.child_start_ns.unwrap_or(0));
                    self.edge(e, seq, &from, &to, "spawn", None);
                }
            }
            // An exec that found nothing (a PATH lookup miss) touched nothing.
            "exec" if e.ret != -2 => self.file_edge(e, seq, &from, "exec", e.path.as_deref(), None),
            "write" => {
                if let Some(path) = e.path.as_deref().filter(|p| !is_terminal_or_null(p)) {
                    self.file_edge(e, seq, &from, "write", Some(path), None);
                }
            }
            "open" => {
                self.host_open(e, seq, &from); // issue 16: /proc/sys, /sys, cgroup files
                let flags = e.flags.unwrap_or(0);
                if flags & O_CREAT != 0 {
                    self.file_edge(e, seq, &from, "create", e.path.as_deref(), None);
                }
                if flags & O_TRUNC != 0 && e.ret >= 0 {
                    self.file_edge(e, seq, &from, "truncate", e.path.as_deref(), None);
                }
            }
            "unlink" | "rmdir" | "mkdir" | "truncate" | "chown" | "xattr" => {
                self.file_edge(e, seq, &from, e.kind, e.path.as_deref(), None)
            }
            "mknod" => self.file_edge(e, seq, &from, "create", e.path.as_deref(), None),
            "chmod" => {
                let mode = e.mode.map(|m| format!("mode {m:o}"));
                self.file_edge(e, seq, &from, "chmod", e.path.as_deref(), mode)
            }
            "rename" => {
                let (old, new) = (e.path.as_deref(), e.path2.as_deref());
                self.file_edge(e, seq, &from, "rename", old, new.map(|n| format!("-> {n}")));
                self.file_edge(e, seq, &from, "rename", new, old.map(|o| format!("<- {o}")));
            }
            "link" => {
                let detail = e.path.as_ref().map(|p| format!("= {p}"));
                self.file_edge(e, seq, &from, "link", e.path2.as_deref(), detail)
            }
            "symlink" => {
                let detail = e.path2.as_ref().map(|t| format!("-> {t}"));
                self.file_edge(e, seq, &from, "symlink", e.path.as_deref(), detail)
            }
            "connect" | "send" | "bind" | "listen" => self.endpoint_edge(e, seq, &from),
            // A probe or a signal live would refuse too, answered by the sandbox's supervisor.
            "signal" if e.supervisor == Some("answered") && e.ret < 0 => {}
            "signal" => self.signal_edge(e, seq, &from),
            // Issue 16: changes to the host and to live processes.
            k if crate::event::host_kinds::is_change(k) => self.host_change(e, seq, &from),
            "signal_generated" => self.generated.push((e.clone(), seq)),
            _ => {}
        }
        if let Some(i) = self.node_index.get(&from).copied() {
            self.nodes[i].pid.get_or_insert(e.pid);
        } else {
            self.process_node(&from, e.pid, e.start_ns);
        }
    }

    /// Attach components and process details; produce the graph.
    pub fn finish(mut self, target: String, snap: &Snapshot, tracker: &Tracker, lost: u64) -> Graph {
        // Targets named by a syscall already have their edge; add the ones only the kernel saw
        // (members of a process group, everyone for kill -1).
        for (e, seq) in std::mem::take(&mut self.generated) {
            let target = e.target_pid.unwrap_or(0);
            let target_pid = tracker.process_of_tid(target as u32).unwrap_or(target as u32);
            if self.direct.contains(&(e.pid, target_pid as i64, e.signal.unwrap_or(0))) {
                continue;
            }
            let from = process_id(e.pid, e.start_ns);
            let start = start_of(target_pid, snap, tracker);
            let to = process_id(target_pid, start);
            self.process_node(&to, target_pid, start);
            let detail = e.signal_name.map(str::to_string);
            self.edge(&e, seq, &from, &to, "signal", detail);
        }
        self.expand_group_signals(snap);
        let mut renamed: HashMap<String, String> = HashMap::new();
        for n in &mut self.nodes {
            let old = n.id.clone();
            attach(n, snap, tracker);
            if n.id != old {
                renamed.insert(old, n.id.clone());
            }
        }
        // A signal target first named by pid alone now has its start time in its id.
        let mut seen = HashSet::new();
        self.nodes.retain(|n| seen.insert(n.id.clone()));
        self.node_index = self.nodes.iter().enumerate().map(|(i, n)| (n.id.clone(), i)).collect();
        for e in &mut self.edges {
            for end in [&mut e.from, &mut e.to] {
                if let Some(new) = renamed.get(end.as_str()) {
                    *end = new.clone();
                }
            }
        }
        self.add_fill_edges(snap);
        let component_of: HashMap<String, Option<String>> =
            self.nodes.iter().map(|n| (n.id.clone(), n.component.clone())).collect();
        for e in &mut self.edges {
            e.component = component_of.get(&e.to).cloned().flatten();
            e.cross_component = e.component.as_deref().is_some_and(|c| c != TRACED);
        }
        let mut names: Vec<String> = self.nodes.iter().filter_map(|n| n.component.clone()).collect();
        names.sort();
        names.dedup();
        let mut nodes: Vec<Node> = names
            .into_iter()
            .map(|c| Node { id: format!("component:{c}"), node_type: "component".into(), label: c, ..Default::default() })
            .collect();
        nodes.extend(self.nodes);
        self.edges.sort_by_key(|e| e.first_ts_ns);
        Graph {
            schema: SCHEMA.into(),
            target,
            host: hostname(),
            complete: lost == 0,
            lost_events: lost,
            nodes,
            edges: self.edges,
            components: snap.components.clone(),
            filesystems: snap.filesystems.clone(),
            local_addrs: snap.local.iter().map(|a| a.to_string()).collect(),
            hosts: Vec::new(),
        }
    }

    /// A `kill -- -PGID` also reaches every live member of that group outside the pilot,
    /// whether or not the kernel delivered it: in a pilot the PID namespace stops it, yet the
    /// intent is what the live run would do. Members already reached (signal_generate) are
    /// not counted twice.
    fn expand_group_signals(&mut self, snap: &Snapshot) {
        for (e, seq, group) in std::mem::take(&mut self.group_signals) {
            let from = process_id(e.pid, e.start_ns);
            let detail = e.signal_name.map(str::to_string);
            let members: Vec<(u32, u64)> = snap
                .components
                .iter()
                .flat_map(|c| &c.processes)
                .filter(|m| m.pgid == group)
                .map(|m| (m.pid, m.start_ns))
                .collect();
            for (pid, start) in members {
                let to = process_id(pid, start);
                let key = (from.clone(), to.clone(), "signal".to_string(), detail.clone().unwrap_or_default());
                if self.edge_index.contains_key(&key) {
                    continue;
                }
                self.process_node(&to, pid, start);
                self.edge(&e, seq, &from, &to, "signal", detail.clone());
            }
        }
    }

    /// One `fill` edge per (process, filesystem other components write to): the bytes it
    /// wrote there, which a disk-space rule weighs against the space free at the start. Only
    /// when they reach FILL_MIN of that space: everyday writes to / fill nothing.
    fn add_fill_edges(&mut self, snap: &Snapshot) {
        if snap.filesystems.is_empty() {
            return;
        }
        let mounts = crate::snapshot::filesystems::mounts();
        let mut fills: Vec<Edge> = Vec::new();
        for e in self.edges.iter().filter(|e| e.kind == "write" && e.bytes > 0) {
            let Some(path) = self.node_index.get(&e.to).and_then(|&i| self.nodes[i].path.as_deref()) else { continue };
            let Some((mount, _)) = crate::snapshot::filesystems::mount_of(path, &mounts) else { continue };
            if !snap.filesystems.iter().any(|f| &f.mount == mount) {
                continue;
            }
            let to = format!("filesystem:{mount}");
            let fill = match fills.iter_mut().find(|f| f.from == e.from && f.to == to) {
                Some(f) => f,
                None => {
                    fills.push(Edge { from: e.from.clone(), to, kind: "fill".into(), first_ts_ns: e.first_ts_ns, ..Default::default() });
                    fills.last_mut().expect("just pushed")
                }
            };
            fill.count += e.count;
            fill.bytes += e.bytes;
            fill.first_ts_ns = fill.first_ts_ns.min(e.first_ts_ns);
            fill.last_ts_ns = fill.last_ts_ns.max(e.last_ts_ns);
            fill.events.extend(e.events.iter().take(EVIDENCE_MAX.saturating_sub(fill.events.len())));
        }
        fills.retain(|e| {
            let f = snap.filesystems.iter().find(|f| e.to == format!("filesystem:{}", f.mount));
            f.is_some_and(|f| e.bytes as f64 >= FILL_MIN * f.free_bytes as f64)
        });
        for f in &snap.filesystems {
            let id = format!("filesystem:{}", f.mount);
            if fills.iter().any(|e| e.to == id) {
                let writers: Vec<&str> = f.writers.iter().map(String::as_str).collect();
                self.node(Node {
                    id,
                    node_type: "filesystem".into(),
                    label: format!("{} ({}, written by {})", f.mount, f.fstype, writers.join(", ")),
                    component: f.writers.first().cloned(),
                    held: Some("live-fs".into()),
                    path: Some(f.mount.clone()),
                    ..Default::default()
                });
            }
        }
        self.edges.extend(fills);
    }

    pub(super) fn process_node(&mut self, id: &str, pid: u32, start_ns: u64) {
        self.node(Node {
            id: id.to_string(),
            node_type: "process".into(),
            label: pid.to_string(),
            pid: Some(pid),
            start_ns: Some(start_ns),
            ..Default::default()
        });
    }

    pub(super) fn node(&mut self, n: Node) {
        if !self.node_index.contains_key(&n.id) {
            self.node_index.insert(n.id.clone(), self.nodes.len());
            self.nodes.push(n);
        }
    }

    fn file_edge(&mut self, e: &Event, seq: u64, from: &str, kind: &str, path: Option<&str>, detail: Option<String>) {
        let Some(path) = path else { return };
        let id = format!("file:{path}");
        self.node(Node { id: id.clone(), node_type: "file".into(), label: path.into(), path: Some(path.into()), ..Default::default() });
        self.edge(e, seq, from, &id, kind, detail);
    }

    fn endpoint_edge(&mut self, e: &Event, seq: u64, from: &str) {
        let (Some(family), Some(addr)) = (e.family, e.addr.as_deref()) else { return };
        let label = match e.port {
            Some(p) if family == "inet6" => format!("[{addr}]:{p}"),
            Some(p) => format!("{addr}:{p}"),
            None => format!("{family}:{addr}"),
        };
        let id = format!("endpoint:{family}:{label}");
        self.node(Node {
            id: id.clone(),
            node_type: "endpoint".into(),
            label,
            family: Some(family.into()),
            addr: Some(addr.into()),
            port: e.port,
            ..Default::default()
        });
        self.edge(e, seq, from, &id, e.kind, None);
    }

    fn signal_edge(&mut self, e: &Event, seq: u64, from: &str) {
        let Some(target) = e.target_pid else { return };
        // `kill -0 PID` only asks whether PID exists: it delivers nothing (still in events.jsonl).
        if e.signal == Some(0) {
            return;
        }
        let detail = e.signal_name.map(str::to_string);
        if target > 0 {
            let to = process_id(target as u32, 0);
            self.process_node(&to, target as u32, 0);
            self.direct.insert((e.pid, target, e.signal.unwrap_or(0)));
            self.edge(e, seq, from, &to, "signal", detail);
        } else {
            let (id, label) = match target {
                -1 => ("process_group:all".to_string(), "every process (kill -1)".to_string()),
                0 => (format!("process_group:own:{}", e.pid), format!("own process group of {}", e.pid)),
                g => (format!("process_group:{}", -g), format!("process group {}", -g)),
            };
            self.node(Node { id: id.clone(), node_type: "process_group".into(), label, ..Default::default() });
            self.edge(e, seq, from, &id, "signal", detail);
            if target < -1 {
                self.group_signals.push((e.clone(), seq, (-target) as u32));
            }
        }
    }

    pub(super) fn edge(&mut self, e: &Event, seq: u64, from: &str, to: &str, kind: &str, detail: Option<String>) {
        let key = (from.to_string(), to.to_string(), kind.to_string(), detail.clone().unwrap_or_default());
        let i = *self.edge_index.entry(key).or_insert_with(|| {
            self.edges.push(Edge {
                from: from.into(),
                to: to.into(),
                kind: kind.into(),
                first_ts_ns: e.first_ts_ns.unwrap_or(e.ts_ns),
                detail,
                ..Default::default()
            });
            self.edges.len() - 1
        });
        let edge = &mut self.edges[i];
        let calls = e.count.unwrap_or(1);
        let failed = e.failed.unwrap_or(if e.ret < 0 && e.ret != EINPROGRESS { calls } else { 0 });
        edge.count += calls;
        edge.failed += failed;
        edge.bytes += e.bytes.filter(|_| matches!(kind, "write" | "send")).unwrap_or(0);
        edge.first_ts_ns = edge.first_ts_ns.min(e.first_ts_ns.unwrap_or(e.ts_ns));
        edge.last_ts_ns = edge.last_ts_ns.max(e.ts_ns);
        if edge.events.len() < EVIDENCE_MAX {
            edge.events.push(seq);
        }
    }
}

/// Process node ids carry the start time: a pid alone is not an identity.
fn process_id(pid: u32, start_ns: u64) -> String {
    format!("process:{pid}:{start_ns}")
}

fn start_of(pid: u32, snap: &Snapshot, tracker: &Tracker) -> u64 {
    tracker
        .process(pid)
        .map(|p| p.start_ns)
        .or_else(|| snap.procs.get(&pid).map(|(s, _)| *s))
        .unwrap_or(0)
}

/// Terminal and bit-bucket writes are the tool talking to its operator, not effects.
fn is_terminal_or_null(path: &str) -> bool {
    path == "/dev/null" || path == "pipe" || path.starts_with("/dev/pts/") || path.starts_with("/dev/tty")
        || path == "/dev/console" || path.starts_with("memfd:")
}

/// Fill a node's component (and, for processes, what the tracker knows).
fn attach(n: &mut Node, snap: &Snapshot, tracker: &Tracker) {
    match n.node_type.as_str() {
        "process" => {
            // A signal's target named by a pid of the pilot's namespace (issue 16).
            let pid = tracker.host_pid(n.pid.unwrap_or(0) as i64) as u32;
            n.pid = Some(pid);
            match tracker.process(pid).filter(|p| n.start_ns.is_none_or(|s| s == 0 || s == p.start_ns)) {
                Some(p) => {
                    n.component = Some(TRACED.into());
                    n.start_ns = Some(p.start_ns);
                    n.exe = p.exe.clone();
                    n.argv = Some(p.argv.clone());
                    n.exit_code = p.exit_code;
                    n.signal = p.exit_signal;
                    n.label = format!("{pid} {}", p.comm);
                }
                None => {
                    if let Some(i) = snap.component_of(pid) {
                        let c = &snap.components[i];
                        n.component = Some(c.name.clone());
                        if let Some(m) = c.processes.iter().find(|m| m.pid == pid) {
                            n.start_ns = Some(m.start_ns);
                            n.argv = Some(m.argv.clone());
                        }
                        n.label = format!("{pid} {}", c.name);
                    }
                }
            }
            n.id = process_id(pid, n.start_ns.unwrap_or(0));
        }
        "file" => {
            if let Some((i, hold)) = n.path.as_deref().and_then(|p| snap.owner_of_path(p)) {
                n.component = Some(snap.components[i].name.clone());
                n.held = Some(serde_json::to_value(hold).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default());
            }
        }
        "endpoint" => {
            let fam = n.family.as_deref().unwrap_or("");
            if let Some(i) = snap.owner_of_endpoint(fam, n.addr.as_deref().unwrap_or(""), n.port) {
                n.component = Some(snap.components[i].name.clone());
                n.held = Some("listening".into());
            }
        }
        _ => {}
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}
