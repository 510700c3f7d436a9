//! Views of a graph: JSON (the contract), Graphviz DOT (components as clusters, cross-component
//! edges in red), and a terse text tree for a terminal.
use std::{collections::BTreeMap, fmt::Write as _};

use super::{
    Edge, EdgeKind, Graph, Node, NodeKind, TRACED,
    aggregate::{Aggregate, Folded, View},
};

pub fn json(g: &Graph) -> String {
    let mut out = Vec::new();
    write_json(g, &mut out).expect("a graph serializes into memory");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Graphs with more nodes and edges than this are written on one line: indenting them
/// doubles the file (a 20,000-file run wrote 34 MB) and every reader's time. `jq .` shows
/// them indented.
pub const COMPACT_FROM: usize = 10_000;

/// graph.json, streamed: indented, or compact for a big graph.
pub fn write_json(g: &Graph, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    if g.nodes.len() + g.edges.len() > COMPACT_FROM {
        serde_json::to_writer(&mut *w, g)?;
    } else {
        serde_json::to_writer_pretty(&mut *w, g)?;
    }
    w.write_all(b"\n")
}

pub fn dot(g: &Graph) -> String {
    dot_with(g, &Plain)
}

/// What a view adds to the DOT drawing: statements for the graph and clusters (`key="value";`),
/// attributes for nodes and edges (`, key="value"`), node labels; values already quoted. The
/// report uses it for element ids, classes and links in the SVG.
pub trait Look {
    fn graph(&self) -> String {
        String::new()
    }
    fn cluster(&self, _index: usize, _name: &str) -> String {
        String::new()
    }
    fn node(&self, _index: usize, _n: &Node) -> String {
        String::new()
    }
    fn edge(&self, _index: usize, _e: &Edge) -> String {
        String::new()
    }
    fn label(&self, n: &Node) -> String {
        n.label.clone()
    }
    /// A directory tree drawn as one node (`index` in `g.aggregates`).
    fn tree(&self, _index: usize, _a: &Aggregate) -> String {
        String::new()
    }
    /// The edges into a tree from one node, of one kind, drawn as one (`index` in the view).
    fn folded(&self, _index: usize, _f: &Folded) -> String {
        String::new()
    }
}

/// What a tree's node says: its path, how, and how much.
pub fn tree_label(a: &Aggregate) -> String {
    format!("{}/ ({}: {} files and directories)", a.path, a.how, a.nodes)
}

/// What a folded edge says: its kind, calls and bytes.
pub fn folded_label(f: &Folded) -> String {
    let mut label = format!("{} x{}", f.kind, f.count);
    if f.bytes > 0 {
        let _ = write!(label, " {}B", f.bytes);
    }
    if f.all_failed() {
        label.push_str(" (failed)");
    }
    label
}

/// graph.dot as written into run directories.
struct Plain;
impl Look for Plain {}

pub fn dot_with(g: &Graph, look: &dyn Look) -> String {
    dot_with_view(g, look, &View::of(g))
}

/// `dot_with`, folding directory trees as `view` says.
pub fn dot_with_view(g: &Graph, look: &dyn Look, view: &View) -> String {
    let mut out = String::from("digraph pilot {\n  rankdir=LR;\n  node [fontname=\"monospace\", fontsize=10];\n  edge [fontname=\"monospace\", fontsize=9];\n");
    let _ = writeln!(out, "  label={};\n  labelloc=t;{}", quote(&format!("pilot: {}", g.target)), look.graph());
    // Clusters by (host, component): merged graphs have one traced tree per host.
    let mut clusters: BTreeMap<(&str, &str), Vec<(usize, &Node)>> = BTreeMap::new();
    let mut loose = Vec::new();
    // Component nodes are drawn only when an edge reaches them (merged graphs' cross-host edges);
    // the nodes of a directory tree are drawn as the tree's one node.
    for (i, n) in g.nodes.iter().enumerate().filter(|(i, n)| (n.node_type != NodeKind::Component || n.held.is_some()) && !view.folds(*i)) {
        match n.component.as_deref() {
            Some(c) => clusters.entry((n.host.as_deref().unwrap_or(""), c)).or_default().push((i, n)),
            None => loose.push((i, n)),
        }
    }
    for (i, ((host, name), nodes)) in clusters.iter().enumerate() {
        let (fill, mut title) = if *name == TRACED { ("#e8f0fe", "traced tree".to_string()) } else { ("#fdecea", format!("component: {name}")) };
        if !host.is_empty() {
            let _ = write!(title, " on {host}");
        }
        let _ = writeln!(out, "  subgraph cluster_{i} {{\n    label={};\n    style=filled;\n    fillcolor=\"{fill}\";{}", quote(&title), look.cluster(i, name));
        for (j, n) in nodes {
            let _ = writeln!(out, "    {}", node_line(*j, n, look));
        }
        out.push_str("  }\n");
    }
    for (j, n) in loose {
        let _ = writeln!(out, "  {}", node_line(j, n, look));
    }
    for (t, a) in g.aggregates.iter().enumerate().filter(|(t, _)| view.drawn[*t]) {
        let _ = writeln!(out, "  {} [shape=folder, label={}{}];", quote(&a.id), quote(&tree_label(a)), look.tree(t, a));
    }
    for (j, f) in view.folded.iter().enumerate() {
        let style = if f.all_failed() { ", style=dashed, color=gray" } else { "" };
        let (from, to) = (&g.nodes[f.from].id, &g.aggregates[f.tree].id);
        let _ = writeln!(out, "  {} -> {} [label={}{style}{}];", quote(&from.to_string()), quote(to), quote(&folded_label(f)), look.folded(j, f));
    }
    for (i, e) in g.edges.iter().enumerate().filter(|(i, _)| !view.folds_edge(*i)) {
        let mut label = e.kind.to_string();
        if e.count > 1 {
            let _ = write!(label, " x{}", e.count);
        }
        if e.bytes > 0 {
            let _ = write!(label, " {}B", e.bytes);
        }
        if let Some(d) = &e.detail {
            let _ = write!(label, " {d}");
        }
        if e.all_failed() {
            label.push_str(" (failed)");
        }
        let style = if e.cross_component {
            ", color=red, fontcolor=red, penwidth=2"
        } else if e.all_failed() {
            ", style=dashed, color=gray"
        } else {
            ""
        };
        let _ = writeln!(out, "  {} -> {} [label={}{style}{}];", quote(&e.from.to_string()), quote(&e.to.to_string()), quote(&label), look.edge(i, e));
    }
    out.push_str("}\n");
    out
}

fn node_line(index: usize, n: &Node, look: &dyn Look) -> String {
    let shape = match n.node_type {
        NodeKind::Process => "box",
        NodeKind::File => "note",
        NodeKind::Endpoint => "ellipse",
        _ => "diamond",
    };
    let mut label = escape(&look.label(n));
    if let Some(h) = &n.held {
        let _ = write!(label, "\\n({})", escape(h.as_str())); // DOT's line break
    }
    format!("{} [shape={shape}, label=\"{label}\"{}];", quote(&n.id.to_string()), look.node(index, n))
}

/// A DOT double-quoted string.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// What the action touched, grouped by component, destructive effects first.
pub fn text(g: &Graph) -> String {
    let mut out = String::new();
    let completeness = if g.complete {
        "complete".to_string()
    } else {
        format!("INCOMPLETE: {} events lost, effects may be missing", g.lost_events)
    };
    let _ = writeln!(out, "pilot effect graph of {} on {} ({completeness})", g.target, g.host);
    let touched = g.touched();
    if touched.is_empty() {
        let _ = writeln!(out, "touched no other component");
    } else {
        let names: Vec<&str> = touched.keys().copied().collect();
        let _ = writeln!(out, "touched {} other component{}: {}", names.len(), if names.len() == 1 { "" } else { "s" }, names.join(", "));
    }
    for (name, edges) in &touched {
        let c = g.components.iter().find(|c| c.name == *name);
        let pids: Vec<String> = c.map(|c| c.processes.iter().map(|m| m.pid.to_string()).collect()).unwrap_or_default();
        let kind = c.map(|c| c.kind.as_str()).unwrap_or("component");
        let _ = writeln!(out, "\n{name}  ({kind}, pid {})", pids.join(","));
        write_edges(&mut out, g, edges);
    }
    let view = View::of(g);
    let own: Vec<&Edge> = g
        .edges
        .iter()
        .enumerate()
        .filter(|(i, e)| !e.cross_component && e.kind != EdgeKind::Spawn && e.kind != EdgeKind::Exec && !view.folds_edge(*i))
        .map(|(_, e)| e)
        .collect();
    let _ = writeln!(out, "\ntraced tree, effects on nothing another component holds ({})", own.len() + view.folded.len());
    let mut folded: Vec<&Folded> = view.folded.iter().collect();
    folded.sort_by_key(|f| (f.kind, g.aggregates[f.tree].first_ts_ns));
    for f in folded {
        let a = &g.aggregates[f.tree];
        let mark = if f.all_failed() { " " } else if f.kind.is_destructive() { "!" } else { " " };
        let mut line = format!("  {mark} {:<9} {}", f.kind, tree_label(a));
        if f.bytes > 0 {
            let _ = write!(line, "  {} B", f.bytes);
        }
        let _ = write!(line, "  x{}", f.count);
        if f.failed > 0 {
            let _ = write!(line, "  {} FAILED", if f.all_failed() { "all".to_string() } else { f.failed.to_string() });
        }
        let by = &g.nodes[f.from].label;
        let _ = writeln!(out, "{line}  by {by}");
    }
    write_edges(&mut out, g, &own);
    let _ = writeln!(out, "\nprocesses");
    for n in g.nodes.iter().filter(|n| n.node_type == NodeKind::Process && n.component.as_deref() == Some(TRACED)) {
        let argv = n.argv.as_ref().map(|a| a.join(" ").replace('\n', "; ")).unwrap_or_default();
        let status = match (n.exit_code, n.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("killed by {}", crate::event::signal_name(s)),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {:<8} {:<70} {status}", n.pid.unwrap_or(0), trim(&argv, 70));
    }
    out
}

fn write_edges(out: &mut String, g: &Graph, edges: &[&Edge]) {
    let mut edges = edges.to_vec();
    edges.sort_by_key(|e| (e.kind, e.first_ts_ns));
    for e in edges {
        let target = g.node(&e.to).map(|n| n.label.clone()).unwrap_or_else(|| e.to.to_string());
        let by = g.node(&e.from).map(|n| n.label.clone()).unwrap_or_else(|| e.from.to_string());
        let mark = if e.all_failed() { " " } else if e.kind.is_destructive() { "!" } else { " " };
        let mut line = format!("  {mark} {:<9} {target}", e.kind);
        if let Some(d) = &e.detail {
            let _ = write!(line, " {d}");
        }
        if let Some(h) = g.node(&e.to).and_then(|n| n.held) {
            let _ = write!(line, "  [{h}]");
        }
        if e.bytes > 0 {
            let _ = write!(line, "  {} B", e.bytes);
        }
        if e.count > 1 {
            let _ = write!(line, "  x{}", e.count);
        }
        if e.failed > 0 {
            let _ = write!(line, "  {} FAILED", if e.all_failed() { "all".to_string() } else { e.failed.to_string() });
        }
        let _ = write!(line, "  by {by}");
        let _ = writeln!(out, "{line}");
    }
}

fn trim(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n.saturating_sub(1)).collect::<String>() + "…" }
}
