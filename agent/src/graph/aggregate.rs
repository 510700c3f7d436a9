//! What an SRE reads as one thing: a directory tree the traced tree created, or deleted,
//! wholesale. graph.json keeps every node and edge (policies, drift and rollback judge each
//! file); its `aggregates` say which nodes make up such a tree, and every view (the text view,
//! graph.dot, the report's drawing, the account) shows the tree as one node with counts,
//! expandable in the report.
//!
//! A tree is a directory the trace saw created (a `mkdir` that took effect) or removed (an
//! `rmdir` that took effect) whose parent was not, with the file nodes under it. A node is
//! left out of its tree, and drawn on its own, when an edge into it reaches another component
//! (a live service's file is never hidden in a count). Trees of fewer than [`MIN_NODES`]
//! nodes stay drawn node by node.
use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet};
use serde::{Deserialize, Serialize};

use super::{EdgeKind, Graph, NodeKind};

/// A tree is one node in the views from this many nodes on (the directory itself included).
pub const MIN_NODES: usize = 20;

/// One tree, as graph.json's `aggregates` lists it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Aggregate {
    /// `tree:PATH`: the id views give its node.
    pub id: String,
    /// The directory at its root.
    pub path: String,
    /// `created`, `deleted`, or `created and removed` (a scratch tree the run cleaned up).
    pub how: String,
    /// Nodes it stands for (directories and files, its root included).
    pub nodes: u64,
    /// Calls into its nodes, by effect (edge kind).
    pub effects: BTreeMap<EdgeKind, u64>,
    /// Calls of those that failed.
    pub failed: u64,
    /// Bytes written into it.
    pub bytes: u64,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
}

/// The trees of `g` (sorted by path), and for each node index the tree it belongs to.
pub fn find(g: &Graph) -> Vec<Aggregate> {
    trees(g).0
}

/// Node index -> index in `find(g)`'s list, for the nodes a view folds into a tree.
pub fn membership(g: &Graph, aggregates: &[Aggregate]) -> HashMap<usize, usize> {
    if aggregates.is_empty() {
        return HashMap::default();
    }
    let by_path: HashMap<&str, usize> = aggregates.iter().enumerate().map(|(i, a)| (a.path.as_str(), i)).collect();
    let excluded = excluded(g);
    let mut out = HashMap::default();
    for (i, n) in g.nodes.iter().enumerate() {
        if n.node_type != NodeKind::File || excluded.contains(&i) {
            continue;
        }
        if let Some(t) = n.path.as_deref().and_then(|p| root_of(p, &by_path)) {
            out.insert(i, t);
        }
    }
    out
}

/// The renames the trace saw take effect, (old, new) in the order they first happened: what
/// `pilot diff` otherwise reads from events.jsonl.
pub fn renames(g: &Graph) -> Vec<(String, String)> {
    let mut out: Vec<(u64, String, String)> = g
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Rename && e.count > e.failed)
        .filter_map(|e| {
            let new = e.detail.as_deref()?.strip_prefix("-> ")?;
            let old = g.node(&e.to)?.path.clone()?;
            Some((e.first_ts_ns, old, new.to_string()))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, old, new)| (old, new)).collect()
}

/// The edges into one tree from one node, of one kind: one edge of the views.
#[derive(Clone, Debug)]
pub struct Folded {
    pub from: usize,
    pub tree: usize,
    pub kind: EdgeKind,
    pub count: u64,
    pub failed: u64,
    pub bytes: u64,
    /// Indices in graph.json of the edges it stands for.
    pub edges: Vec<usize>,
}

impl Folded {
    pub fn all_failed(&self) -> bool {
        self.count > 0 && self.failed == self.count
    }
}

const NOT_FOLDED: u32 = u32::MAX;

/// How a view folds `g`: which nodes are in which tree, and the edges into trees merged by
/// (from, tree, kind). Empty for merged graphs (several hosts' trees would mix).
pub struct View {
    pub members: HashMap<usize, usize>,
    pub folded: Vec<Folded>,
    /// Per graph.json edge, its index in `folded` (NOT_FOLDED: drawn on its own). A vector,
    /// not a map: a view of a 20,000-file run is built several times per run.
    edge_folded: Vec<u32>,
    /// Per tree of `g.aggregates`: does it have members here (is it drawn)?
    pub drawn: Vec<bool>,
}

impl View {
    pub fn of(g: &Graph) -> View {
        let members = if g.hosts.is_empty() { membership(g, &g.aggregates) } else { HashMap::default() };
        let mut folded: Vec<Folded> = Vec::new();
        let mut by_key: HashMap<(usize, usize, EdgeKind), usize> = HashMap::default();
        let mut edge_folded = vec![NOT_FOLDED; if members.is_empty() { 0 } else { g.edges.len() }];
        for (ei, e) in g.edges.iter().enumerate() {
            if members.is_empty() {
                break;
            }
            let (Some(from), Some(to)) = g.ends_of(ei) else { continue };
            let Some(&tree) = members.get(&to) else { continue };
            let k = *by_key.entry((from, tree, e.kind)).or_insert_with(|| {
                folded.push(Folded { from, tree, kind: e.kind, count: 0, failed: 0, bytes: 0, edges: Vec::new() });
                folded.len() - 1
            });
            let f = &mut folded[k];
            f.count += e.count;
            f.failed += e.failed;
            f.bytes += e.bytes;
            f.edges.push(ei);
            edge_folded[ei] = k as u32;
        }
        let mut drawn = vec![false; g.aggregates.len()];
        for t in members.values() {
            drawn[*t] = true;
        }
        View { members, folded, edge_folded, drawn }
    }

    /// Nodes a view draws: those not folded into a tree, and the trees.
    pub fn drawn_nodes(&self, g: &Graph, drawn: impl Fn(&super::Node) -> bool) -> usize {
        let nodes = g.nodes.iter().enumerate().filter(|(i, n)| drawn(n) && !self.folds(*i)).count();
        nodes + self.drawn.iter().filter(|d| **d).count()
    }

    /// Is edge `ei` drawn as part of a folded edge?
    pub fn folds_edge(&self, ei: usize) -> bool {
        self.edge_folded.get(ei).is_some_and(|k| *k != NOT_FOLDED)
    }

    /// Is node `i` drawn as part of a tree?
    pub fn folds(&self, i: usize) -> bool {
        self.members.contains_key(&i)
    }
}

fn trees(g: &Graph) -> (Vec<Aggregate>, HashMap<usize, usize>) {
    // Directories the trace made and removed (edges that took effect).
    let mut made: HashSet<&str> = HashSet::default();
    let mut removed: HashSet<&str> = HashSet::default();
    for (ei, e) in g.edges.iter().enumerate().filter(|(_, e)| !e.all_failed()) {
        let set = match e.kind {
            EdgeKind::Mkdir => &mut made,
            EdgeKind::Rmdir => &mut removed,
            _ => continue,
        };
        if let Some(path) = g.ends_of(ei).1.and_then(|i| g.nodes[i].path.as_deref()) {
            set.insert(path);
        }
    }
    // Roots: the outermost of them.
    let changed: HashSet<&str> = made.union(&removed).copied().collect();
    let mut roots: Vec<&str> = changed.iter().copied().filter(|p| ancestors(p).all(|a| !changed.contains(a))).collect();
    roots.sort();
    let by_path: HashMap<&str, usize> = roots.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let excluded = excluded(g);
    let mut members: HashMap<usize, usize> = HashMap::default();
    let mut counts = vec![0usize; roots.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        if n.node_type != NodeKind::File || excluded.contains(&i) {
            continue;
        }
        if let Some(t) = n.path.as_deref().and_then(|p| root_of(p, &by_path)) {
            members.insert(i, t);
            counts[t] += 1;
        }
    }
    let mut aggs: Vec<Aggregate> = roots
        .iter()
        .map(|p| {
            let how = match (made.contains(p), removed.contains(p)) {
                (true, true) => "created and removed",
                (true, false) => "created",
                _ => "deleted",
            };
            Aggregate { id: format!("tree:{p}"), path: p.to_string(), how: how.into(), ..Default::default() }
        })
        .collect();
    for (ei, e) in g.edges.iter().enumerate() {
        let Some(t) = g.ends_of(ei).1.and_then(|i| members.get(&i)) else { continue };
        let a = &mut aggs[*t];
        *a.effects.entry(e.kind).or_default() += e.count;
        a.failed += e.failed;
        a.bytes += e.bytes;
        a.first_ts_ns = if a.first_ts_ns == 0 { e.first_ts_ns } else { a.first_ts_ns.min(e.first_ts_ns) };
        a.last_ts_ns = a.last_ts_ns.max(e.last_ts_ns);
    }
    for (a, n) in aggs.iter_mut().zip(&counts) {
        a.nodes = *n as u64;
    }
    // Small trees stay drawn node by node.
    let keep: Vec<bool> = counts.iter().map(|n| *n >= MIN_NODES).collect();
    let mut renumber = vec![usize::MAX; aggs.len()];
    let mut out = Vec::new();
    for (i, a) in aggs.into_iter().enumerate() {
        if keep[i] {
            renumber[i] = out.len();
            out.push(a);
        }
    }
    let members = members.into_iter().filter(|(_, t)| keep[*t]).map(|(n, t)| (n, renumber[t])).collect();
    (out, members)
}

/// Nodes an edge from another component's reach into: never folded away.
fn excluded(g: &Graph) -> HashSet<usize> {
    g.edges.iter().enumerate().filter(|(_, e)| e.cross_component).filter_map(|(ei, _)| g.ends_of(ei).1).collect()
}

/// The tree (of `roots`, by path) `path` is in, the root itself included.
pub fn root_of(path: &str, roots: &HashMap<&str, usize>) -> Option<usize> {
    if roots.is_empty() {
        return None;
    }
    std::iter::once(path).chain(ancestors(path)).find_map(|p| roots.get(p).copied())
}

/// `/a/b/c` -> `/a/b`, `/a` (not `/`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = path;
    std::iter::from_fn(move || {
        let cut = rest.rfind('/')?;
        rest = &rest[..cut];
        (!rest.is_empty()).then_some(rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Edge, Node, SCHEMA, TRACED};

    fn graph(files: usize) -> Graph {
        let mut nodes = vec![Node { id: "process:1:1".into(), node_type: NodeKind::Process, component: Some(TRACED.into()), ..Default::default() }];
        let mut edges = Vec::new();
        let mut add = |path: &str, kind: &str, cross: bool| {
            let id = format!("file:{path}");
            if !nodes.iter().any(|n| n.id.to_string() == id) {
                nodes.push(Node { id: id.as_str().into(), node_type: NodeKind::File, label: path.into(), path: Some(path.into()), ..Default::default() });
            }
            edges.push(Edge { from: "process:1:1".into(), to: id.as_str().into(), kind: kind.into(), count: 1, bytes: 10, cross_component: cross, first_ts_ns: 5, last_ts_ns: 9, ..Default::default() });
        };
        add("/x/new", "mkdir", false);
        add("/x/new/sub", "mkdir", false);
        for i in 0..files {
            add(&format!("/x/new/sub/f{i}"), "create", false);
            add(&format!("/x/new/sub/f{i}"), "write", false);
        }
        add("/x/new/held", "write", true);
        add("/x/other", "write", false);
        Graph { schema: SCHEMA.into(), nodes, edges, complete: true, ..Default::default() }
    }

    #[test]
    fn a_created_tree_is_one_aggregate_that_keeps_live_files_out() {
        let g = graph(30);
        let aggs = find(&g);
        assert_eq!(aggs.len(), 1, "{aggs:?}");
        let a = &aggs[0];
        assert_eq!((a.path.as_str(), a.how.as_str(), a.nodes), ("/x/new", "created", 32));
        assert_eq!(a.effects[&EdgeKind::Create], 30);
        assert_eq!(a.effects[&EdgeKind::Mkdir], 2);
        assert_eq!(a.bytes, 10 * 62, "every edge into it, the cross-component one not");
        let m = membership(&g, &aggs);
        assert_eq!(m.len(), 32);
        let held = g.nodes.iter().position(|n| n.path.as_deref() == Some("/x/new/held")).unwrap();
        assert!(!m.contains_key(&held), "a file another component reaches stays drawn");
        assert!(find(&graph(5)).is_empty(), "a small tree stays node by node");
    }

    /// A graph of `edges` (path, kind, count, failed), one process doing them all.
    fn graph_of(edges: &[(&str, &str, u64, u64)]) -> Graph {
        let mut g = Graph { schema: SCHEMA.into(), complete: true, ..Default::default() };
        g.nodes.push(Node { id: "process:1:1".into(), node_type: NodeKind::Process, label: "1 sh".into(), component: Some(TRACED.into()), ..Default::default() });
        let mut seen = HashSet::default();
        for (i, (path, kind, count, failed)) in edges.iter().enumerate() {
            let id = format!("file:{path}");
            if seen.insert(id.clone()) {
                g.nodes.push(Node { id: id.as_str().into(), node_type: NodeKind::File, label: path.to_string(), path: Some(path.to_string()), ..Default::default() });
            }
            let ts = 10 + i as u64;
            g.edges.push(Edge { from: "process:1:1".into(), to: id.as_str().into(), kind: (*kind).into(), count: *count, failed: *failed, first_ts_ns: ts, last_ts_ns: ts, ..Default::default() });
        }
        g
    }

    fn files(root: &str, n: usize, kind: &'static str) -> Vec<(String, &'static str, u64, u64)> {
        (0..n).map(|i| (format!("{root}/f{i}"), kind, 1, 0)).collect()
    }

    fn borrowed<'a>(v: &'a [(String, &'static str, u64, u64)]) -> Vec<(&'a str, &'static str, u64, u64)> {
        v.iter().map(|(p, k, c, f)| (p.as_str(), *k, *c, *f)).collect()
    }

    #[test]
    fn a_deleted_tree_and_a_scratch_tree_say_how() {
        let mut e = vec![("/d/old".to_string(), "rmdir", 1, 0)];
        e.extend(files("/d/old", 25, "unlink"));
        e.push(("/s/tmp".to_string(), "mkdir", 1, 0));
        e.extend(files("/s/tmp", 25, "create"));
        e.push(("/s/tmp".to_string(), "rmdir", 1, 0));
        let g = graph_of(&borrowed(&e));
        let aggs = find(&g);
        let how: Vec<(&str, &str, u64)> = aggs.iter().map(|a| (a.path.as_str(), a.how.as_str(), a.nodes)).collect();
        assert_eq!(how, [("/d/old", "deleted", 26), ("/s/tmp", "created and removed", 26)]);
        assert_eq!(aggs[0].effects[&EdgeKind::Unlink], 25);
        assert_eq!((aggs[1].first_ts_ns, aggs[1].last_ts_ns), (36, 62), "first and last call into the tree");
    }

    #[test]
    fn a_mkdir_that_failed_makes_no_tree_and_nested_trees_are_one() {
        // mkdir of an existing directory (EEXIST): the files in it are not a tree the run made.
        let mut e = vec![("/x/there".to_string(), "mkdir", 1, 1)];
        e.extend(files("/x/there", 30, "create"));
        assert!(find(&graph_of(&borrowed(&e))).is_empty(), "a failed mkdir made nothing");
        // /y/a made, then /y/a/b made inside it: one tree at /y/a.
        let mut e = vec![("/y/a".to_string(), "mkdir", 1, 0), ("/y/a/b".to_string(), "mkdir", 1, 0)];
        e.extend(files("/y/a/b", 30, "create"));
        let aggs = find(&graph_of(&borrowed(&e)));
        assert_eq!(aggs.iter().map(|a| a.path.as_str()).collect::<Vec<_>>(), ["/y/a"]);
        assert_eq!(aggs[0].nodes, 32);
    }

    #[test]
    fn a_view_folds_the_edges_into_a_tree_by_kind_and_keeps_the_rest() {
        let mut e = vec![("/x/new".to_string(), "mkdir", 1, 0)];
        e.extend(files("/x/new", 30, "create"));
        e.extend(files("/x/new", 30, "write"));
        e.push(("/x/outside".to_string(), "write", 1, 0));
        let mut g = graph_of(&borrowed(&e));
        g.aggregates = find(&g);
        let view = View::of(&g);
        let mut kinds: Vec<(EdgeKind, u64, usize)> = view.folded.iter().map(|f| (f.kind, f.count, f.edges.len())).collect();
        kinds.sort();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        assert!(kinds.contains(&(EdgeKind::Create, 30, 30)) && kinds.contains(&(EdgeKind::Write, 30, 30)) && kinds.contains(&(EdgeKind::Mkdir, 1, 1)));
        assert_eq!((0..g.edges.len()).filter(|ei| view.folds_edge(*ei)).count(), 61, "every edge into the tree is folded, the one outside is not");
        // Drawn: the process, /x/outside, and the tree.
        assert_eq!(view.drawn_nodes(&g, |_| true), 3);
        // A merged graph (several hosts) is drawn node by node.
        g.hosts = vec![Default::default()];
        assert!(View::of(&g).folded.is_empty());
    }

    #[test]
    fn renames_are_those_that_took_effect_in_order() {
        let mut g = graph_of(&[("/a", "rename", 1, 0), ("/b", "rename", 1, 1), ("/c", "rename", 2, 1)]);
        g.edges[0].detail = Some("-> /a2".into());
        g.edges[1].detail = Some("-> /b2".into());
        g.edges[2].detail = Some("-> /c2".into());
        g.edges[2].first_ts_ns = 1;
        assert_eq!(renames(&g), [("/c".to_string(), "/c2".to_string()), ("/a".to_string(), "/a2".to_string())]);
    }

    #[test]
    fn a_tree_of_many_directories_is_one_aggregate() {
        let mut e = vec![("/big".to_string(), "mkdir", 1, 0)];
        for d in 0..200 {
            e.push((format!("/big/d{d}"), "mkdir", 1, 0));
            e.extend((0..100).map(|i| (format!("/big/d{d}/f{i}"), "create", 1, 0)));
        }
        let g = graph_of(&borrowed(&e));
        let aggs = find(&g);
        assert_eq!(aggs.len(), 1);
        assert_eq!(aggs[0].nodes, 20_201);
        assert_eq!(membership(&g, &aggs).len(), 20_201);
    }

    #[test]
    fn ancestors_walk_up_to_the_top() {
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), ["/a/b", "/a"]);
        assert_eq!(ancestors("/a").count(), 0);
    }
}
