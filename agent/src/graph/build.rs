//! Events in, graph out. Edges aggregate while events stream (looked up by node index and
//! kind, so an event costs no allocation once its nodes exist); components are attached at
//! the end, from the host snapshot.
use foldhash::{HashMap, HashMapExt as _, HashSet};

use super::{Edge, EdgeKind, Graph, Hold, Node, NodeId, NodeKind, SCHEMA, TRACED};
use crate::{
    event::{Event, Kind},
    snapshot::Snapshot,
    tracker::Tracker,
};

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
    /// Node lookups by what identifies them, without building an id string per event.
    procs: HashMap<(u32, u64), u32>,
    files: HashMap<String, u32>,
    endpoints: HashMap<String, u32>,
    others: HashMap<NodeId, u32>,
    /// The edges, their ids left empty until `finish`: `ends` has their nodes.
    edges: Vec<Edge>,
    /// Per edge, (from, to) indices in `nodes`.
    ends: Vec<(u32, u32)>,
    /// (from, to, kind) -> the edges with those ends (one per detail).
    edge_index: HashMap<(u32, u32, EdgeKind), Vec<u32>>,
    /// Signals the kernel generated, kept until we know which targets the syscalls named.
    generated: Vec<(Event, u64)>,
    direct: HashSet<(u32, i64, i64)>,
    /// Signals sent to a process group by number: (event, seq, group).
    group_signals: Vec<(Event, u64, u32)>,
    /// Reused to build endpoint keys.
    scratch: String,
    /// Reused for each event's effects.
    effects: Vec<Effect>,
    /// issue 15: processes that set up io_uring (`pid comm`).
    io_uring: Vec<String>,
}

/// The target of one effect of an event, found before the event's own process node is added
/// (node order in graph.json is: targets, then the process, as events first name them).
pub(super) type Effect = (u32, EdgeKind, Option<String>);

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Add one event; `seq` is its line number in events.jsonl.
    pub fn add(&mut self, e: &Event, seq: u64) {
        // One buffer for every event's effects (most have one).
        let mut effects: Vec<Effect> = std::mem::take(&mut self.effects);
        match e.kind {
            Kind::Fork if e.thread != Some(true) => {
                if let Some(child) = e.child_pid {
                    let to = self.process_node(child, e.child_start_ns.unwrap_or(0));
                    effects.push((to, EdgeKind::Spawn, None));
                }
            }
            // An exec that found nothing (a PATH lookup miss) touched nothing.
            Kind::Exec if e.ret != -2 => self.file_effect(&mut effects, EdgeKind::Exec, e.path.as_deref(), None),
            // Output through the stdio the command was given is not an effect on that file.
            Kind::Write if e.stdio == Some(true) => {}
            Kind::Write => {
                if let Some(path) = e.path.as_deref().filter(|p| !is_terminal_or_null(p)) {
                    self.file_effect(&mut effects, EdgeKind::Write, Some(path), None);
                }
            }
            Kind::Open => {
                self.host_open(&mut effects, e); // issue 16: /proc/sys, /sys, cgroup files
                let flags = e.flags.unwrap_or(0);
                if flags & O_CREAT != 0 {
                    self.file_effect(&mut effects, EdgeKind::Create, e.path.as_deref(), None);
                }
                if flags & O_TRUNC != 0 && e.ret >= 0 {
                    self.file_effect(&mut effects, EdgeKind::Truncate, e.path.as_deref(), None);
                }
            }
            Kind::Unlink => self.file_effect(&mut effects, EdgeKind::Unlink, e.path.as_deref(), None),
            Kind::Rmdir => self.file_effect(&mut effects, EdgeKind::Rmdir, e.path.as_deref(), None),
            Kind::Mkdir => self.file_effect(&mut effects, EdgeKind::Mkdir, e.path.as_deref(), None),
            Kind::Truncate => self.file_effect(&mut effects, EdgeKind::Truncate, e.path.as_deref(), None),
            Kind::Chown => self.file_effect(&mut effects, EdgeKind::Chown, e.path.as_deref(), None),
            Kind::Xattr => self.file_effect(&mut effects, EdgeKind::Xattr, e.path.as_deref(), None),
            Kind::Mknod => self.file_effect(&mut effects, EdgeKind::Create, e.path.as_deref(), None),
            Kind::Chmod => {
                let mode = e.mode.map(|m| format!("mode {m:o}"));
                self.file_effect(&mut effects, EdgeKind::Chmod, e.path.as_deref(), mode)
            }
            Kind::Rename => {
                let (old, new) = (e.path.as_deref(), e.path2.as_deref());
                self.file_effect(&mut effects, EdgeKind::Rename, old, new.map(|n| format!("-> {n}")));
                self.file_effect(&mut effects, EdgeKind::Rename, new, old.map(|o| format!("<- {o}")));
            }
            Kind::Link => {
                let detail = e.path.as_ref().map(|p| format!("= {p}"));
                self.file_effect(&mut effects, EdgeKind::Link, e.path2.as_deref(), detail)
            }
            Kind::Symlink => {
                let detail = e.path2.as_ref().map(|t| format!("-> {t}"));
                self.file_effect(&mut effects, EdgeKind::Symlink, e.path.as_deref(), detail)
            }
            // issue 15: what changes a file without write(2).
            Kind::Fallocate => {
                let mode = e.flags.unwrap_or(0);
                let kind = if mode & crate::tracker::FALLOC_DESTROYS != 0 { EdgeKind::Truncate } else { EdgeKind::Write };
                let detail = format!("fallocate {}", e.flag_names.as_deref().unwrap_or(""));
                self.file_effect(&mut effects, kind, e.path.as_deref(), Some(detail))
            }
            Kind::Mmap => self.file_effect(&mut effects, EdgeKind::Write, e.path.as_deref(), Some("shared writable mapping".into())),
            Kind::Msync => self.file_effect(&mut effects, EdgeKind::Write, e.path.as_deref(), Some("msync".into())),
            Kind::Reflink => {
                let detail = format!("reflink <- {}", e.path2.as_deref().unwrap_or("?"));
                self.file_effect(&mut effects, EdgeKind::Write, e.path.as_deref(), Some(detail))
            }
            Kind::Utime => self.file_effect(&mut effects, EdgeKind::Utime, e.path.as_deref(), None),
            Kind::Connect => self.endpoint_effect(&mut effects, e, EdgeKind::Connect),
            Kind::Send => self.endpoint_effect(&mut effects, e, EdgeKind::Send),
            Kind::Bind => self.endpoint_effect(&mut effects, e, EdgeKind::Bind),
            Kind::Listen => self.endpoint_effect(&mut effects, e, EdgeKind::Listen),
            // A probe or a signal live would refuse too, answered by the sandbox's supervisor.
            Kind::Signal if e.supervisor == Some("answered") && e.ret < 0 => {}
            Kind::Signal => self.signal_effect(&mut effects, e, seq),
            Kind::SignalGenerated => self.generated.push((e.clone(), seq)),
            // Issue 16: changes to the host and to live processes.
            k if k.is_change() => self.host_effect(&mut effects, e),
            Kind::IoUring if e.ret >= 0 => {
                let who = format!("{} {}", e.pid, e.comm);
                if !self.io_uring.contains(&who) {
                    self.io_uring.push(who);
                }
            }
            _ => {}
        }
        let from = match self.procs.get(&(e.pid, e.start_ns)) {
            Some(&i) => {
                self.nodes[i as usize].pid.get_or_insert(e.pid);
                i
            }
            None => self.process_node(e.pid, e.start_ns),
        };
        for (to, kind, detail) in effects.drain(..) {
            self.edge(e, seq, from, to, kind, detail);
        }
        self.effects = effects;
    }

    /// Attach components and process details; produce the graph.
    pub fn finish(mut self, target: String, snap: &Snapshot, tracker: &Tracker, lost: u64) -> Graph {
        self.add_generated_signals(snap, tracker);
        self.expand_group_signals(snap);
        for n in &mut self.nodes {
            attach(n, snap, tracker);
        }
        // A signal target first named by pid alone now has its start time in its id: the two
        // nodes are one (the first kept).
        let first = first_with_same_id(&self.nodes);
        let mut edges = self.edges_in_time_order(&first);
        let mut nodes = std::mem::take(&mut self.nodes);
        let mut i = 0;
        nodes.retain(|_| {
            i += 1;
            first[i - 1] as usize == i - 1
        });
        let (fill_nodes, fills) = fill_edges(&nodes, &edges, snap);
        nodes.extend(fill_nodes);
        for mut f in fills {
            let target = nodes.iter().find(|n| n.id == f.to);
            set_component(&mut f, target);
            // After the edges of the same time: where a stable sort of all of them puts it.
            let at = edges.partition_point(|e| e.first_ts_ns <= f.first_ts_ns);
            edges.insert(at, f);
        }
        let mut names: Vec<String> = nodes.iter().filter_map(|n| n.component.clone()).collect();
        names.sort();
        names.dedup();
        let mut all: Vec<Node> = Vec::with_capacity(names.len() + nodes.len());
        all.extend(names.into_iter().map(|c| Node { id: NodeId::component(&c), node_type: NodeKind::Component, label: c, ..Default::default() }));
        all.extend(nodes);
        let mut graph = Graph {
            schema: SCHEMA.into(),
            target,
            host: crate::procfs::hostname(),
            complete: lost == 0,
            lost_events: lost,
            nodes: all,
            edges,
            components: snap.components.clone(),
            filesystems: snap.filesystems.clone(),
            local_addrs: snap.local.iter().map(|a| a.to_string()).collect(),
            channels: (!self.io_uring.is_empty()).then(|| super::Observed { io_uring: std::mem::take(&mut self.io_uring), ..Default::default() }),
            ..Default::default()
        };
        graph.aggregates = super::aggregate::find(&graph);
        graph
    }

    /// The edges with their ends' ids and their target's component, in the order they first
    /// happened (stable). Permuted in place: an edge is a few hundred bytes, and a sort's or a
    /// copy's fresh memory (page faults) cost more than the rest of the build.
    fn edges_in_time_order(&mut self, first: &[u32]) -> Vec<Edge> {
        let mut edges = std::mem::take(&mut self.edges);
        for (e, &(from, to)) in edges.iter_mut().zip(&self.ends) {
            let target = &self.nodes[first[to as usize] as usize];
            e.from = self.nodes[from as usize].id.clone();
            e.to = target.id.clone();
            set_component(e, Some(target));
        }
        if !edges.is_sorted_by_key(|e| e.first_ts_ns) {
            let mut order: Vec<(u64, u32)> = edges.iter().enumerate().map(|(i, e)| (e.first_ts_ns, i as u32)).collect();
            order.sort_unstable();
            let order: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
            permute(&mut edges, &order);
        }
        edges
    }

    /// Targets named by a syscall already have their edge; add the ones only the kernel saw
    /// (members of a process group, everyone for kill -1).
    fn add_generated_signals(&mut self, snap: &Snapshot, tracker: &Tracker) {
        for (e, seq) in std::mem::take(&mut self.generated) {
            let target = e.target_pid.unwrap_or(0);
            let target_pid = tracker.process_of_tid(target as u32).unwrap_or(target as u32);
            if self.direct.contains(&(e.pid, target_pid as i64, e.signal.unwrap_or(0))) {
                continue;
            }
            let Some(&from) = self.procs.get(&(e.pid, e.start_ns)) else { continue };
            let to = self.process_node(target_pid, start_of(target_pid, snap, tracker));
            self.edge(&e, seq, from, to, EdgeKind::Signal, e.signal_name.map(str::to_string));
        }
    }

    /// A `kill -- -PGID` also reaches every live member of that group outside the pilot,
    /// whether or not the kernel delivered it: in a pilot the PID namespace stops it, yet the
    /// intent is what the live run would do. Members already reached (signal_generate) are
    /// not counted twice.
    fn expand_group_signals(&mut self, snap: &Snapshot) {
        for (e, seq, group) in std::mem::take(&mut self.group_signals) {
            let Some(&from) = self.procs.get(&(e.pid, e.start_ns)) else { continue };
            let detail = e.signal_name.map(str::to_string);
            let members: Vec<(u32, u64)> = snap
                .components
                .iter()
                .flat_map(|c| &c.processes)
                .filter(|m| m.pgid == group)
                .map(|m| (m.pid, m.start_ns))
                .collect();
            if let Some(&group_node) = self.others.get(&NodeId::new(NodeKind::ProcessGroup, group.to_string())) {
                self.nodes[group_node as usize].members = Some(members.len() as u32);
            }
            for (pid, start) in members {
                if let Some(&to) = self.procs.get(&(pid, start)) {
                    if self.find_edge(from, to, EdgeKind::Signal, detail.as_deref()).is_some() {
                        continue;
                    }
                }
                let to = self.process_node(pid, start);
                self.edge(&e, seq, from, to, EdgeKind::Signal, detail.clone());
            }
        }
    }

    /// The node of process (pid, start), added if new.
    pub(super) fn process_node(&mut self, pid: u32, start_ns: u64) -> u32 {
        if let Some(&i) = self.procs.get(&(pid, start_ns)) {
            return i;
        }
        let i = self.push(Node {
            id: NodeId::process(pid, start_ns),
            node_type: NodeKind::Process,
            label: pid.to_string(),
            pid: Some(pid),
            start_ns: Some(start_ns),
            ..Default::default()
        });
        self.procs.insert((pid, start_ns), i);
        i
    }

    fn push(&mut self, n: Node) -> u32 {
        self.nodes.push(n);
        (self.nodes.len() - 1) as u32
    }

    /// A node other than a process, file or endpoint, made by `make` if new.
    pub(super) fn other_node(&mut self, id: NodeId, make: impl FnOnce(NodeId) -> Node) -> u32 {
        if let Some(&i) = self.others.get(&id) {
            return i;
        }
        let i = self.push(make(id.clone()));
        self.others.insert(id, i);
        i
    }

    fn file_effect(&mut self, effects: &mut Vec<Effect>, kind: EdgeKind, path: Option<&str>, detail: Option<String>) {
        let Some(path) = path else { return };
        let i = match self.files.get(path) {
            Some(&i) => i,
            None => {
                let i = self.push(Node {
                    id: NodeId::file(path),
                    node_type: NodeKind::File,
                    label: path.into(),
                    path: Some(path.into()),
                    ..Default::default()
                });
                self.files.insert(path.to_string(), i);
                i
            }
        };
        effects.push((i, kind, detail));
    }

    fn endpoint_effect(&mut self, effects: &mut Vec<Effect>, e: &Event, kind: EdgeKind) {
        use std::fmt::Write as _;
        let (Some(family), Some(addr)) = (e.family, e.addr.as_deref()) else { return };
        self.scratch.clear();
        let _ = match e.port {
            Some(p) if family == "inet6" => write!(self.scratch, "{family}:[{addr}]:{p}"),
            Some(p) => write!(self.scratch, "{family}:{addr}:{p}"),
            None => write!(self.scratch, "{family}:{family}:{addr}"),
        };
        let i = match self.endpoints.get(self.scratch.as_str()) {
            Some(&i) => i,
            None => {
                let key = self.scratch.clone();
                let label = key[family.len() + 1..].to_string();
                let i = self.push(Node {
                    id: NodeId::new(NodeKind::Endpoint, key.clone()),
                    node_type: NodeKind::Endpoint,
                    label,
                    family: Some(family.into()),
                    addr: Some(addr.into()),
                    port: e.port,
                    ..Default::default()
                });
                self.endpoints.insert(key, i);
                i
            }
        };
        effects.push((i, kind, None));
    }

    fn signal_effect(&mut self, effects: &mut Vec<Effect>, e: &Event, _seq: u64) {
        let Some(target) = e.target_pid else { return };
        // `kill -0 PID` only asks whether PID exists: it delivers nothing (still in events.jsonl).
        if e.signal == Some(0) {
            return;
        }
        let detail = e.signal_name.map(str::to_string);
        if target > 0 {
            let to = self.process_node(target as u32, 0);
            self.direct.insert((e.pid, target, e.signal.unwrap_or(0)));
            effects.push((to, EdgeKind::Signal, detail));
        } else {
            let (key, label) = match target {
                -1 => ("all".to_string(), "every process (kill -1)".to_string()),
                0 => (format!("own:{}", e.pid), format!("own process group of {}", e.pid)),
                g => ((-g).to_string(), format!("process group {}", -g)),
            };
            let id = NodeId::new(NodeKind::ProcessGroup, key);
            let to = match self.others.get(&id) {
                Some(&i) => i,
                None => {
                    let i = self.push(Node { id: id.clone(), node_type: NodeKind::ProcessGroup, label, ..Default::default() });
                    self.others.insert(id, i);
                    i
                }
            };
            effects.push((to, EdgeKind::Signal, detail));
            if target < -1 {
                self.group_signals.push((e.clone(), _seq, (-target) as u32));
            }
        }
    }

    fn find_edge(&self, from: u32, to: u32, kind: EdgeKind, detail: Option<&str>) -> Option<u32> {
        let same = |i: &&u32| self.edges[**i as usize].detail.as_deref().unwrap_or("") == detail.unwrap_or("");
        self.edge_index.get(&(from, to, kind))?.iter().find(same).copied()
    }

    fn edge(&mut self, e: &Event, seq: u64, from: u32, to: u32, kind: EdgeKind, detail: Option<String>) {
        let i = match self.find_edge(from, to, kind, detail.as_deref()) {
            Some(i) => i,
            None => {
                let i = self.edges.len() as u32;
                let edge = Edge { kind, first_ts_ns: e.first_ts_ns.unwrap_or(e.ts_ns), detail, ..Default::default() };
                self.edges.push(edge);
                self.ends.push((from, to));
                self.edge_index.entry((from, to, kind)).or_default().push(i);
                i
            }
        };
        let edge = &mut self.edges[i as usize];
        let calls = e.count.unwrap_or(1);
        let failed = e.failed.unwrap_or(if e.ret < 0 && e.ret != EINPROGRESS { calls } else { 0 });
        edge.count += calls;
        edge.failed += failed;
        // Bytes written or sent; a fallocate's allocation fills the disk like a write. A
        // mapping's or a reflink's length is no bytes written.
        let counts_bytes = matches!(kind, EdgeKind::Write | EdgeKind::Send) && !matches!(e.kind, Kind::Mmap | Kind::Msync | Kind::Reflink);
        edge.bytes += e.bytes.filter(|_| counts_bytes).unwrap_or(0);
        edge.first_ts_ns = edge.first_ts_ns.min(e.first_ts_ns.unwrap_or(e.ts_ns));
        edge.last_ts_ns = edge.last_ts_ns.max(e.ts_ns);
        if edge.events.len() < EVIDENCE_MAX {
            edge.events.push(seq);
        }
    }
}

/// Reorder `v` so that position k holds what was at `order[k]` (a permutation), by swaps
/// along its cycles: no copy of `v`.
fn permute<T>(v: &mut [T], order: &[u32]) {
    let mut placed = vec![false; v.len()];
    for start in 0..v.len() {
        let mut at = start;
        while !placed[at] {
            placed[at] = true;
            let from = order[at] as usize;
            if from == start {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

/// Per node, the index of the first node with its id (itself, unless a duplicate).
fn first_with_same_id(nodes: &[Node]) -> Vec<u32> {
    let mut firsts: HashMap<&NodeId, u32> = HashMap::with_capacity(nodes.len());
    nodes.iter().enumerate().map(|(i, n)| *firsts.entry(&n.id).or_insert(i as u32)).collect()
}

fn set_component(e: &mut Edge, target: Option<&Node>) {
    e.component = target.and_then(|n| n.component.clone());
    e.cross_component = e.component.as_deref().is_some_and(|c| c != TRACED);
}

/// One `fill` edge per (process, filesystem other components write to): the bytes it wrote
/// there, which a disk-space rule weighs against the space free at the start. Only when they
/// reach FILL_MIN of that space: everyday writes to / fill nothing. Returns the filesystem
/// nodes and the edges.
fn fill_edges(nodes: &[Node], edges: &[Edge], snap: &Snapshot) -> (Vec<Node>, Vec<Edge>) {
    if snap.filesystems.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let paths: HashMap<&NodeId, &str> = nodes.iter().filter_map(|n| Some((&n.id, n.path.as_deref()?))).collect();
    let mounts = crate::snapshot::filesystems::mounts();
    let mut fills: Vec<Edge> = Vec::new();
    for e in edges.iter().filter(|e| e.kind == EdgeKind::Write && e.bytes > 0) {
        let Some(path) = paths.get(&e.to) else { continue };
        let Some((mount, _)) = crate::snapshot::filesystems::mount_of(path, &mounts) else { continue };
        if !snap.filesystems.iter().any(|f| &f.mount == mount) {
            continue;
        }
        let to = NodeId::filesystem(mount);
        let fill = match fills.iter_mut().position(|f| f.from == e.from && f.to == to) {
            Some(i) => &mut fills[i],
            None => {
                fills.push(Edge { from: e.from.clone(), to, kind: EdgeKind::Fill, first_ts_ns: e.first_ts_ns, ..Default::default() });
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
        let f = snap.filesystems.iter().find(|f| e.to.key == f.mount);
        f.is_some_and(|f| e.bytes as f64 >= FILL_MIN * f.free_bytes as f64)
    });
    let mut fs_nodes = Vec::new();
    for f in &snap.filesystems {
        let id = NodeId::filesystem(&f.mount);
        if fills.iter().any(|e| e.to == id) && !nodes.iter().any(|n| n.id == id) {
            let writers: Vec<&str> = f.writers.iter().map(String::as_str).collect();
            fs_nodes.push(Node {
                id,
                node_type: NodeKind::Filesystem,
                label: format!("{} ({}, written by {})", f.mount, f.fstype, writers.join(", ")),
                component: f.writers.first().cloned(),
                held: Some(Hold::LiveFs),
                path: Some(f.mount.clone()),
                ..Default::default()
            });
        }
    }
    (fs_nodes, fills)
}

fn start_of(pid: u32, snap: &Snapshot, tracker: &Tracker) -> u64 {
    tracker.process(pid).map(|p| p.start_ns).or_else(|| snap.procs.get(&pid).map(|(s, _)| *s)).unwrap_or(0)
}

/// Terminal and bit-bucket writes are the tool talking to its operator, not effects.
fn is_terminal_or_null(path: &str) -> bool {
    path == "/dev/null" || path == "pipe" || path.starts_with("/dev/pts/") || path.starts_with("/dev/tty")
        || path == "/dev/console" || path.starts_with("memfd:")
}

/// Fill a node's component (and, for processes, what the tracker knows).
fn attach(n: &mut Node, snap: &Snapshot, tracker: &Tracker) {
    match n.node_type {
        NodeKind::Process => {
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
                            n.signals = m.signals;
                        }
                        n.label = format!("{pid} {}", c.name);
                    }
                }
            }
            n.id = NodeId::process(pid, n.start_ns.unwrap_or(0));
        }
        NodeKind::File => attach_file(n, snap),
        NodeKind::Endpoint => {
            let fam = n.family.as_deref().unwrap_or("");
            if let Some(i) = snap.owner_of_endpoint(fam, n.addr.as_deref().unwrap_or(""), n.port) {
                n.component = Some(snap.components[i].name.clone());
                n.held = Some(Hold::Listening);
            }
        }
        _ => {}
    }
}

/// A file node's owner and how it holds it, whether it is a log, and for a path in a data
/// directory whether the traced tree made it and whether the owner reads files like it.
pub(crate) fn attach_file(n: &mut Node, snap: &Snapshot) {
    let Some(path) = n.path.as_deref() else { return };
    n.log = snap.log_role(path);
    let Some((i, hold)) = snap.owner_of_path(path) else { return };
    n.component = Some(snap.components[i].name.clone());
    n.held = Some(hold);
    if hold == Hold::DataDir && n.log.is_none() {
        if let Some(taken) = snap.taken_at {
            n.created = Some(made_since(path, taken));
        }
        if n.created == Some(true) {
            n.like = snap.like_held(path, i).map(str::to_string);
        }
    }
}

/// Was `path` made after `since`? It does not exist (a pilot's changes stay in its overlay:
/// what production lacks, the pilot made), or it was born after (a live run made it). A
/// filesystem without birth times says no: an existing file is taken as existing data.
fn made_since(path: &str, since: std::time::SystemTime) -> bool {
    match std::fs::symlink_metadata(path) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(m) => m.created().is_ok_and(|born| born >= since),
    }
}

#[cfg(test)]
mod tests {
    use super::permute;

    #[test]
    fn permute_puts_each_element_where_the_order_says() {
        let order = [3u32, 0, 4, 1, 2, 5];
        let mut v = vec!['a', 'b', 'c', 'd', 'e', 'f'];
        permute(&mut v, &order);
        assert_eq!(v, ['d', 'a', 'e', 'b', 'c', 'f']);
        let mut none: Vec<u8> = Vec::new();
        permute(&mut none, &[]);
    }
}
