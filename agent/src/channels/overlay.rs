//! The overlay as a channel: every change in the upper layers (changes.json) against the file
//! effects the trace saw. The kernel puts every change a pilot makes there, by whatever
//! syscall, mapping or io_uring operation; a change no traced effect explains is a blind spot
//! of the trace and becomes an effect in the graph (attributed to the pilot's root process),
//! so every rule judges it as if the trace had seen it.
use foldhash::{HashMap, HashMapExt as _};

use crate::{
    graph::{BlindSpot, Channel, Edge, EdgeKind, Graph, Node, NodeId, NodeKind, TRACED},
    rundir::Change,
    snapshot::Snapshot,
};

/// The effects that can explain one kind of change, by path.
#[derive(Default)]
struct Seen {
    kinds: Vec<EdgeKind>,
    edges: Vec<usize>,
}

impl Seen {
    fn has(&self, k: &[EdgeKind]) -> bool {
        self.kinds.iter().any(|x| k.contains(x))
    }
}

/// The effects an unexplained change stands for: (kind, detail, path).
type Effects = Vec<(EdgeKind, Option<String>, String)>;

/// Reconcile `changes` with the graph's file effects: mark what both saw, add what only the
/// overlay saw. Returns the blind spots.
pub fn reconcile(graph: &mut Graph, changes: &[Change], snap: &Snapshot, root: &NodeId) -> Vec<BlindSpot> {
    let seen = traced_by_path(graph);
    let mut confirmed: Vec<usize> = Vec::new();
    let mut spots: Vec<(Change, Effects)> = Vec::new();
    for c in changes {
        let mut on_path = lookup(&seen, &c.path);
        if let Some(from) = &c.from {
            on_path.extend(lookup(&seen, from));
        }
        match unexplained(c, &on_path) {
            None => confirmed.extend(on_path.iter().flat_map(|s| s.edges.iter().copied())),
            Some(effects) => spots.push((c.clone(), effects)),
        }
    }
    for i in confirmed {
        mark(&mut graph.edges[i], &[Channel::Trace, Channel::Overlay]);
    }
    for e in graph.edges.iter_mut().filter(|e| e.seen_by.is_empty() && e.to.kind == NodeKind::File) {
        e.seen_by = vec![Channel::Trace];
    }
    let mut out = Vec::new();
    let end = graph.edges.iter().map(|e| e.last_ts_ns).max().unwrap_or(0);
    for (c, effects) in spots {
        for (kind, detail, path) in effects {
            let node = file_node(graph, &path, snap);
            out.push(BlindSpot {
                path: path.clone(),
                change: change_words(&c),
                channel: Some(Channel::Overlay),
                effect: Some(kind),
                component: node.component.clone(),
                held: node.held,
            });
            let component = node.component.clone();
            graph.edges.push(Edge {
                from: root.clone(),
                to: node.id.clone(),
                kind,
                count: 1,
                bytes: if kind == EdgeKind::Write { c.size.unwrap_or(0) } else { 0 },
                first_ts_ns: end,
                last_ts_ns: end,
                cross_component: component.as_deref().is_some_and(|c| c != TRACED),
                component,
                detail,
                seen_by: vec![Channel::Overlay],
                ..Default::default()
            });
        }
    }
    out
}

fn mark(e: &mut Edge, channels: &[Channel]) {
    for c in channels {
        if !e.seen_by.contains(c) {
            e.seen_by.push(*c);
        }
    }
    e.seen_by.sort();
}

/// What the overlay says, in its words: `modified (4096 -> 0 bytes)`.
fn change_words(c: &Change) -> String {
    match (c.change.as_str(), c.live_size, c.size) {
        ("modified", Some(live), Some(now)) => format!("modified ({live} -> {now} bytes)"),
        ("renamed", _, _) => format!("renamed from {}", c.from.as_deref().unwrap_or("?")),
        ("metadata", _, _) => {
            let mut what = Vec::new();
            if c.mode != c.live_mode {
                what.push(format!("mode {} -> {}", c.live_mode.as_deref().unwrap_or("?"), c.mode.as_deref().unwrap_or("?")));
            }
            if c.owner != c.live_owner {
                what.push(format!("owner {} -> {}", c.live_owner.as_deref().unwrap_or("?"), c.owner.as_deref().unwrap_or("?")));
            }
            if !c.xattrs.is_empty() {
                what.push(format!("xattrs {}", c.xattrs.join(",")));
            }
            format!("metadata ({})", what.join("; "))
        }
        (other, _, _) => other.to_string(),
    }
}

/// Successful file effects by path: as the trace named them, and with the directory part
/// resolved on the host (a script's /var/run/x is the overlay's /run/x).
fn traced_by_path(graph: &Graph) -> HashMap<String, Seen> {
    let mut by_path: HashMap<String, Seen> = HashMap::new();
    let mut canon = Canon::default();
    for (i, e) in graph.edges.iter().enumerate() {
        if e.all_failed() || e.blind_spot() {
            continue;
        }
        let Some(n) = graph.ends_of(i).1.map(|t| &graph.nodes[t]) else { continue };
        // A bound Unix socket is a file too: its bind is an endpoint effect.
        let path = match (n.node_type, e.kind) {
            (NodeKind::File, _) => n.path.clone(),
            (NodeKind::Endpoint, EdgeKind::Bind) if n.family.as_deref() == Some("unix") => n.addr.clone().filter(|a| a.starts_with('/')),
            _ => None,
        };
        let Some(path) = path else { continue };
        let kind = if n.node_type == NodeKind::Endpoint { EdgeKind::Create } else { e.kind };
        let real = canon.of(&path);
        for p in [Some(path), real].into_iter().flatten() {
            let s = by_path.entry(p).or_default();
            if !s.edges.contains(&i) {
                s.kinds.push(kind);
                s.edges.push(i);
            }
        }
    }
    by_path
}

fn lookup<'a>(seen: &'a HashMap<String, Seen>, path: &str) -> Vec<&'a Seen> {
    seen.get(path).into_iter().collect()
}

/// None when the traced effects on the path explain the change; else the effects the change
/// stands for: (kind, detail, path).
fn unexplained(c: &Change, traced: &[&Seen]) -> Option<Effects> {
    use EdgeKind::*;
    let has = |k: &[EdgeKind]| traced.iter().any(|s| s.has(k));
    // Gone and made again, or moved over: whatever the overlay shows of it is explained.
    let replaced = has(&[Rename]) || (has(&[Unlink, Rmdir]) && has(&[Create, Mkdir, Symlink, Link]));
    let detail = |what: &str| Some(format!("seen in the overlay: {what}, no syscall traced"));
    let one = |k: EdgeKind, what: &str| Some(vec![(k, detail(what), c.path.clone())]);
    match c.change.as_str() {
        "created" => {
            if has(&[Create, Mkdir, Symlink, Link, Rename]) {
                return None;
            }
            let k = match c.kind.as_str() {
                "dir" => Mkdir,
                "symlink" => Symlink,
                _ => Create,
            };
            one(k, "created")
        }
        "modified" => {
            if replaced || has(&[Write, Truncate, Symlink, Link]) {
                return None;
            }
            let shrank = matches!((c.size, c.live_size), (Some(now), Some(live)) if now < live);
            let k = if c.kind == "symlink" { Symlink } else if shrank { Truncate } else { Write };
            one(k, &change_words(c))
        }
        "metadata" => {
            if replaced {
                return None;
            }
            let mut out = Vec::new();
            if c.mode != c.live_mode && !has(&[Chmod]) {
                out.push((Chmod, detail(&format!("mode {}", c.mode.as_deref().unwrap_or("?"))), c.path.clone()));
            }
            if c.owner != c.live_owner && !has(&[Chown]) {
                out.push((Chown, detail(&format!("owner {}", c.owner.as_deref().unwrap_or("?"))), c.path.clone()));
            }
            if !c.xattrs.is_empty() && !has(&[Xattr]) {
                out.push((Xattr, detail(&format!("xattrs {}", c.xattrs.join(","))), c.path.clone()));
            }
            (!out.is_empty()).then_some(out)
        }
        "deleted" => {
            if has(&[Unlink, Rmdir, Rename]) {
                return None;
            }
            one(if c.kind == "dir" { Rmdir } else { Unlink }, "deleted")
        }
        "renamed" => {
            if has(&[Rename]) {
                return None;
            }
            let from = c.from.clone().unwrap_or_default();
            let mut out = vec![(Rename, detail(&format!("renamed from {from}")), c.path.clone())];
            if !from.is_empty() {
                out.push((Rename, detail(&format!("renamed to {}", c.path)), from));
            }
            Some(out)
        }
        "replaced" => {
            if has(&[Rmdir, Rename, Unlink]) {
                return None;
            }
            one(Rmdir, "directory replaced")
        }
        _ => None,
    }
}

/// The file node of `path`, added (with its live owner) when the trace never named it.
fn file_node(graph: &mut Graph, path: &str, snap: &Snapshot) -> Node {
    let id = NodeId::file(path);
    if let Some(n) = graph.node(&id) {
        return n.clone();
    }
    let mut n = Node { id, node_type: NodeKind::File, label: path.into(), path: Some(path.into()), ..Default::default() };
    if let Some((i, hold)) = snap.owner_of_path(path) {
        n.component = Some(snap.components[i].name.clone());
        n.held = Some(hold);
    }
    graph.push_node(n.clone());
    n
}

/// Paths with their directory resolved on the host (symlinks followed); what does not exist
/// there (the pilot created it) keeps its unresolved tail.
#[derive(Default)]
struct Canon {
    dirs: HashMap<String, Option<String>>,
}

impl Canon {
    fn of(&mut self, path: &str) -> Option<String> {
        let (dir, name) = path.rsplit_once('/')?;
        let dir = if dir.is_empty() { "/" } else { dir };
        let real = self.dirs.entry(dir.to_string()).or_insert_with(|| resolve(dir)).clone()?;
        let joined = if real == "/" { format!("/{name}") } else { format!("{real}/{name}") };
        (joined != path).then_some(joined)
    }
}

fn resolve(dir: &str) -> Option<String> {
    let mut head = std::path::PathBuf::from(dir);
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&head) {
            let mut out = real;
            for part in tail.iter().rev() {
                out.push(part);
            }
            return Some(out.display().to_string());
        }
        tail.push(head.file_name()?.to_os_string());
        if !head.pop() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::SCHEMA;

    fn graph_with(edges: &[(&str, &str)]) -> Graph {
        let mut g = Graph { schema: SCHEMA.into(), complete: true, ..Default::default() };
        g.push_node(Node { id: NodeId::process(1, 1), node_type: NodeKind::Process, label: "1 sh".into(), component: Some(TRACED.into()), ..Default::default() });
        for (kind, path) in edges {
            if g.node(&NodeId::file(path)).is_none() {
                g.push_node(Node { id: NodeId::file(path), node_type: NodeKind::File, label: path.to_string(), path: Some(path.to_string()), ..Default::default() });
            }
            g.edges.push(Edge { from: NodeId::process(1, 1), to: NodeId::file(path), kind: EdgeKind::parse(kind).unwrap(), count: 1, ..Default::default() });
        }
        g
    }

    fn change(path: &str, change: &str) -> Change {
        Change { path: path.into(), change: change.into(), kind: "file".into(), size: Some(10), live_size: Some(10), ..Default::default() }
    }

    #[test]
    fn traced_changes_are_confirmed_and_untraced_ones_become_effects() {
        let mut g = graph_with(&[("write", "/srv/a"), ("unlink", "/srv/b")]);
        let changes = [change("/srv/a", "modified"), change("/srv/b", "deleted"), change("/srv/c", "modified"), change("/srv/d", "deleted")];
        let spots = reconcile(&mut g, &changes, &Snapshot::default(), &NodeId::process(1, 1));
        assert_eq!(g.edges[0].seen_by, [Channel::Trace, Channel::Overlay]);
        assert_eq!(g.edges[1].seen_by, [Channel::Trace, Channel::Overlay]);
        let paths: Vec<(&str, Option<EdgeKind>)> = spots.iter().map(|s| (s.path.as_str(), s.effect)).collect();
        assert_eq!(paths, [("/srv/c", Some(EdgeKind::Write)), ("/srv/d", Some(EdgeKind::Unlink))]);
        let added: Vec<&Edge> = g.edges.iter().filter(|e| e.blind_spot()).collect();
        assert_eq!(added.len(), 2);
        assert!(added[0].detail.as_deref().unwrap().contains("no syscall traced"));
        assert_eq!(added[0].from, NodeId::process(1, 1));
    }

    #[test]
    fn a_create_does_not_explain_a_change_to_an_existing_file() {
        // open(O_CREAT) of a live file, then an io_uring write: the open explains nothing.
        let mut g = graph_with(&[("create", "/srv/log")]);
        let spots = reconcile(&mut g, &[change("/srv/log", "modified")], &Snapshot::default(), &NodeId::process(1, 1));
        assert_eq!(spots.len(), 1);
        // Deleted and created again: explained.
        let mut g = graph_with(&[("unlink", "/srv/log"), ("create", "/srv/log")]);
        assert!(reconcile(&mut g, &[change("/srv/log", "modified")], &Snapshot::default(), &NodeId::process(1, 1)).is_empty());
    }

    #[test]
    fn shrinking_is_a_truncate_and_metadata_names_what_changed() {
        let mut g = graph_with(&[]);
        let shrunk = Change { size: Some(0), ..change("/srv/log", "modified") };
        let meta = Change { mode: Some("600".into()), live_mode: Some("644".into()), ..change("/srv/conf", "metadata") };
        let spots = reconcile(&mut g, &[shrunk, meta], &Snapshot::default(), &NodeId::process(1, 1));
        assert_eq!(spots[0].effect, Some(EdgeKind::Truncate));
        assert_eq!(spots[0].change, "modified (10 -> 0 bytes)");
        assert_eq!(spots[1].effect, Some(EdgeKind::Chmod));
    }

    #[test]
    fn paths_match_through_host_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("run")).unwrap();
        std::os::unix::fs::symlink(real.join("run"), real.join("varrun")).unwrap();
        let traced = format!("{}/varrun/x.pid", real.display());
        let mut g = graph_with(&[("write", &traced)]);
        let spots = reconcile(&mut g, &[change(&format!("{}/run/x.pid", real.display()), "modified")], &Snapshot::default(), &NodeId::process(1, 1));
        assert!(spots.is_empty(), "{spots:?}");
    }
}
