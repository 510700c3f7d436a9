//! The effect graph as SVG, laid out at report time: Graphviz `dot` when it is installed
//! (clusters are exactly "components as groups"), else a built-in layered grid. Both give every
//! node and edge the same ids and classes, so the page's CSS and JS work on either:
//! node `<g id="nI" class="node t_TYPE [harmed]">`, edge `<g id="eI" class="edge k_KIND
//! [destructive] [cross] [failed] [violating]">` (I: index in graph.json), a violating edge links
//! to its violation (`#vJ`).
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    io::{Read as _, Write as _},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::html::esc;
use crate::{
    graph::{
        Edge, EdgeKind, Graph, Node, NodeId, NodeKind, TRACED,
        aggregate::{Aggregate, Folded, View},
        render::{self, Look, quote},
    },
    policy::eval::Violation,
};

/// Beyond this, dot's layout takes too long for a report: the built-in layout draws it.
const DOT_MAX_NODES: usize = 4000;
const DOT_TIMEOUT: Duration = Duration::from_secs(60);
/// More leaves than this are spread over several ranks (see `stagger`).
const STAGGER: usize = 250;
/// Longest node label drawn; the tooltip has the whole of it.
const LABEL_CHARS: usize = 44;
/// Beyond this many nodes, nodes are drawn compact and only violating and cross-component
/// edges keep their labels (dot gives each label a place of its own): a 600-file drawing goes
/// from 32700pt to 11000pt tall.
const LARGE: usize = 150;

/// Which edges and nodes the verdict points at, and how the drawing folds directory trees
/// (computed once per report).
pub struct Marks {
    /// Edge index -> index of the (first) violation it is evidence of.
    pub violating: HashMap<usize, usize>,
    /// Node indices of violation targets.
    pub harmed: HashSet<usize>,
    pub view: View,
}

impl Marks {
    /// Indexed once by (from, kind, to): a violation citing many edges of a big graph costs
    /// its edges, not its edges times the graph's.
    pub fn of(g: &Graph, violations: &[Violation]) -> Marks {
        let mut m = Marks { violating: HashMap::new(), harmed: HashSet::new(), view: View::of(g) };
        if violations.is_empty() {
            return m;
        }
        let mut edges: HashMap<(&NodeId, EdgeKind, &NodeId), Vec<usize>> = HashMap::new();
        for (ei, e) in g.edges.iter().enumerate() {
            edges.entry((&e.from, e.kind, &e.to)).or_default().push(ei);
        }
        for (vi, v) in violations.iter().enumerate() {
            for [from, kind, to] in &v.edges {
                let (Some(from), Some(kind), Some(to)) = (NodeId::parse(from), EdgeKind::parse(kind), NodeId::parse(to)) else { continue };
                for ei in edges.get(&(&from, kind, &to)).into_iter().flatten() {
                    m.violating.entry(*ei).or_insert(vi);
                }
            }
            if let Some(ni) = NodeId::parse(&v.target_id).and_then(|id| g.position(&id)) {
                m.harmed.insert(ni);
            }
        }
        m
    }

    /// The violation a folded edge is evidence of, if any of its edges is.
    pub fn folded(&self, f: &Folded) -> Option<usize> {
        f.edges.iter().filter_map(|e| self.violating.get(e)).min().copied()
    }
}

pub struct Drawing {
    /// An `<svg>` element, ready to inline.
    pub svg: String,
    /// What laid it out, and why the fallback if it was used.
    pub engine: String,
    pub nodes: usize,
}

/// Nodes that are drawn (component nodes are drawn as the groups themselves).
pub fn drawn(n: &Node) -> bool {
    n.node_type != NodeKind::Component
}

/// A `dot -Tsvg` started ahead of the report, waiting for its graph on stdin: its start (the
/// libraries and plugins, half of the 10 ms dot takes for a small graph) overlaps the
/// post-processing instead of following it. Killed if the report does not use it.
#[derive(Default)]
pub struct SpareDot(Option<std::process::Child>);

impl SpareDot {
    pub fn start() -> SpareDot {
        SpareDot(find_dot().and_then(|dot| spawn_dot(&dot).ok()))
    }
}

impl Drop for SpareDot {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The drawing of the graph: by `spare` (SpareDot::start) or a dot started now, else the
/// built-in layout.
pub fn draw_with(g: &Graph, marks: &Marks, mut spare: SpareDot) -> Drawing {
    let nodes = marks.view.drawn_nodes(g, drawn);
    let why_not_dot = match find_dot() {
        None => "Graphviz `dot` is not installed".to_string(),
        Some(_) if nodes > DOT_MAX_NODES => format!("{nodes} nodes are more than dot lays out in time ({DOT_MAX_NODES})"),
        Some(dot) => match run_dot(&dot, spare.0.take(), &render::dot_with_view(g, &ReportLook::new(g, marks), &marks.view)) {
            Ok(svg) => return Drawing { svg, engine: "Graphviz dot".into(), nodes },
            Err(e) => e,
        },
    };
    Drawing { svg: fallback(g, marks), engine: format!("built-in layout ({why_not_dot})"), nodes }
}

fn find_dot() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("dot")).find(|p| p.is_file())
}

fn spawn_dot(dot: &PathBuf) -> std::io::Result<std::process::Child> {
    Command::new(dot).arg("-Tsvg").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
}

/// `dot -Tsvg` (`started`, or one started now), killed after DOT_TIMEOUT; the `<svg>` element
/// of its output.
fn run_dot(dot: &PathBuf, started: Option<std::process::Child>, source: &str) -> Result<String, String> {
    let mut child = match started {
        Some(child) => child,
        None => spawn_dot(dot).map_err(|e| format!("cannot start {}: {e}", dot.display()))?,
    };
    let mut stdin = child.stdin.take().expect("piped");
    let source = source.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(source.as_bytes()));
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let Some(status) = wait_exit(&mut child, DOT_TIMEOUT).map_err(|e| e.to_string())? else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("dot took longer than {}s", DOT_TIMEOUT.as_secs()));
    };
    let _ = writer.join();
    let out = reader.join().map_err(|_| "reading dot's output".to_string())?.map_err(|e| e.to_string())?;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!("dot failed: {}", err.lines().next().unwrap_or("no message")));
    }
    let start = out.find("<svg").ok_or("dot wrote no <svg>")?;
    let svg = &out[start..];
    // dot escapes every label; refuse anything active all the same.
    if svg.contains("<script") || svg.contains("<foreignObject") {
        return Err("dot's SVG holds active content".into());
    }
    Ok(svg.to_string())
}

/// The child's exit status, or None once `timeout` has passed (it still runs). Woken by its
/// pidfd the moment it exits: a 10 ms poll was a tenth of a `pilot run -- true`.
fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let pidfd = crate::session::pidfd(child.id());
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        match &pidfd {
            Some(fd) => crate::session::wait_readable(std::os::fd::AsFd::as_fd(fd), None, left),
            // Before Linux 5.3: no pidfd.
            None => std::thread::sleep(left.min(Duration::from_millis(10))),
        }
    }
}

fn node_classes(n: &Node, harmed: bool) -> String {
    let mut c = format!("t_{}", n.node_type);
    c.push_str(if n.component.as_deref() == Some(TRACED) { " traced" } else if n.component.is_some() { " owned" } else { "" });
    if harmed {
        c.push_str(" harmed");
    }
    c
}

fn edge_classes(e: &Edge, violating: bool) -> String {
    let mut c = format!("k_{}", e.kind);
    if !e.all_failed() && e.kind.is_destructive() {
        c.push_str(" destructive");
    }
    if e.cross_component {
        c.push_str(" cross");
    }
    if e.all_failed() {
        c.push_str(" failed");
    }
    if violating {
        c.push_str(" violating");
    }
    c
}

/// Hover text of a node: the whole label, the command line, who holds it.
fn node_title(n: &Node) -> String {
    let mut t = n.label.clone();
    if let Some(argv) = &n.argv {
        let _ = write!(t, "\n{}", argv.join(" "));
    }
    if let Some(c) = &n.component {
        let _ = write!(t, "\ncomponent: {c}");
    }
    if let Some(h) = &n.held {
        let _ = write!(t, " ({h})");
    }
    t
}

fn edge_title(g: &Graph, e: &Edge) -> String {
    let name = |id: &NodeId| g.node(id).map(|n| n.label.clone()).unwrap_or_else(|| id.to_string());
    let mut t = format!("{} {} {}", name(&e.from), e.kind, name(&e.to));
    if e.count > 1 {
        let _ = write!(t, " x{}", e.count);
    }
    if e.failed > 0 {
        let _ = write!(t, " ({} failed)", e.failed);
    }
    if let Some(lines) = e.events.first() {
        let _ = write!(t, "\nevents.jsonl line {lines}");
    }
    t
}

/// The shortest readable form of a label: long paths keep their end.
fn short(label: &str) -> String {
    let n = label.chars().count();
    if n <= LABEL_CHARS {
        return label.to_string();
    }
    let tail: String = label.chars().skip(n - (LABEL_CHARS - 1)).collect();
    format!("…{tail}")
}

/// Ids, classes, links and hover texts for dot; wide fan-outs staggered over ranks.
struct ReportLook<'a> {
    g: &'a Graph,
    marks: &'a Marks,
    index: HashMap<&'a NodeId, usize>,
    rank: HashMap<usize, usize>,
    large: bool,
}

impl<'a> ReportLook<'a> {
    fn new(g: &'a Graph, marks: &'a Marks) -> Self {
        let index = g.nodes.iter().enumerate().map(|(i, n)| (&n.id, i)).collect();
        let rank = stagger(g, &marks.view);
        ReportLook { g, marks, index, rank, large: marks.view.drawn_nodes(g, drawn) > LARGE }
    }
}

impl Look for ReportLook<'_> {
    fn graph(&self) -> String {
        // Tight ranks and spline edges keep hundreds of nodes readable; nodes over edges.
        let mut s = String::from("\n  ranksep=0.4;\n  nodesep=0.08;\n  splines=true;\n  outputorder=edgesfirst;");
        if self.large {
            s.push_str("\n  nodesep=0.05;\n  node [height=0.2, margin=\"0.05,0.01\"];");
        }
        s
    }
    fn cluster(&self, index: usize, name: &str) -> String {
        let class = if name == TRACED { "group traced" } else { "group owned" };
        format!(" id=\"c{index}\"; class=\"{class}\"; tooltip={};", quote(name))
    }
    fn node(&self, index: usize, n: &Node) -> String {
        format!(
            ", id=\"n{index}\", class=\"{}\", tooltip={}",
            node_classes(n, self.marks.harmed.contains(&index)),
            quote(&node_title(n))
        )
    }
    fn edge(&self, index: usize, e: &Edge) -> String {
        let violation = self.marks.violating.get(&index);
        let mut attrs = format!(
            ", id=\"e{index}\", class=\"{}\", tooltip={}",
            edge_classes(e, violation.is_some()),
            quote(&edge_title(self.g, e))
        );
        if let Some(v) = violation {
            let _ = write!(attrs, ", href=\"#v{v}\"");
        }
        if self.large && violation.is_none() && !e.cross_component {
            attrs.push_str(", label=\"\""); // the later attribute wins; the tooltip keeps it
        }
        if let Some(r) = self.index.get(&e.to).and_then(|t| self.rank.get(t)) {
            let _ = write!(attrs, ", minlen={r}");
        }
        attrs
    }
    fn label(&self, n: &Node) -> String {
        short(&n.label)
    }
    fn tree(&self, index: usize, a: &Aggregate) -> String {
        format!(", id=\"t{index}\", class=\"t_tree\", tooltip={}, href=\"#tree{index}\"", quote(&tree_title(a)))
    }
    fn folded(&self, index: usize, f: &Folded) -> String {
        let violation = self.marks.folded(f);
        let mut attrs = format!(", id=\"f{index}\", class=\"{}\", tooltip={}", folded_classes(f, violation.is_some()), quote(&folded_title(self.g, f)));
        if let Some(v) = violation {
            let _ = write!(attrs, ", href=\"#v{v}\"");
        }
        attrs
    }
}

/// Hover text of a tree: what it is and what was done in it.
fn tree_title(a: &Aggregate) -> String {
    let effects: Vec<String> = a.effects.iter().map(|(k, n)| format!("{k} x{n}")).collect();
    format!("{}\n{}: {} files and directories\n{}", a.path, a.how, a.nodes, effects.join(", "))
}

fn folded_classes(f: &Folded, violating: bool) -> String {
    let mut c = format!("k_{} folded", f.kind);
    if !f.all_failed() && f.kind.is_destructive() {
        c.push_str(" destructive");
    }
    if f.all_failed() {
        c.push_str(" failed");
    }
    if violating {
        c.push_str(" violating");
    }
    c
}

fn folded_title(g: &Graph, f: &Folded) -> String {
    format!("{} {} {} ({} edges)", g.nodes[f.from].label, render::folded_label(f), g.aggregates[f.tree].path, f.edges.len())
}

/// A process writing 500 files puts 500 nodes in one rank: a drawing 500 nodes tall. Leaves
/// (nodes with no edges out, reached from one node only) are dealt round-robin over up to
/// three ranks once there are more than STAGGER of them (what Graphviz's `unflatten -l`
/// does). More ranks barely help: every rank an edge crosses adds a virtual node to dot's
/// layout (600 leaves: 3 ranks 7900pt tall in 1.6s, 10 ranks 6800pt in 17s).
/// Returns node index -> minlen of the edges into it.
fn stagger(g: &Graph, view: &View) -> HashMap<usize, usize> {
    let mut sources: BTreeMap<usize, HashSet<usize>> = BTreeMap::new();
    let mut has_out = HashSet::new();
    for ei in (0..g.edges.len()).filter(|ei| !view.folds_edge(*ei)) {
        if let (Some(f), Some(t)) = g.ends_of(ei) {
            sources.entry(t).or_default().insert(f);
            has_out.insert(f);
        }
    }
    let mut leaves: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (t, from) in &sources {
        if from.len() == 1 && !has_out.contains(t) {
            leaves.entry(*from.iter().next().expect("one")).or_default().push(*t);
        }
    }
    let total: usize = leaves.values().map(Vec::len).sum();
    let mut rank = HashMap::new();
    if total <= STAGGER {
        return rank;
    }
    let levels = total.div_ceil(STAGGER).min(3);
    for (k, t) in leaves.into_values().flatten().enumerate() {
        rank.insert(t, 1 + k % levels);
    }
    rank
}

// ---------------------------------------------------------------------------------------------
// The built-in layout: the traced tree in the left column (processes in spawn order, indented
// by depth), every other component and the unowned nodes as boxed grids in the right column.

const CELL_W: f64 = 250.0;
const CELL_H: f64 = 22.0;
const GAP: f64 = 6.0;
const PAD: f64 = 12.0;
const TITLE: f64 = 20.0;
const COLUMN_GAP: f64 = 160.0;
const INDENT: f64 = 10.0;

struct Group<'a> {
    title: String,
    class: &'a str,
    /// (node index, indentation level)
    members: Vec<(usize, usize)>,
}

/// Trees take the indices after the nodes' (`g.nodes.len() + tree`).
fn groups<'a>(g: &'a Graph, view: &View) -> (Vec<Group<'a>>, Vec<Group<'a>>) {
    let mut by_comp: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (i, n) in g.nodes.iter().enumerate().filter(|(i, n)| drawn(n) && !view.folds(*i)) {
        by_comp.entry(n.component.as_deref()).or_default().push(i);
    }
    let trees = (0..g.aggregates.len()).filter(|t| view.drawn[*t]).map(|t| g.nodes.len() + t);
    by_comp.entry(None).or_default().extend(trees);
    let key = |i: &usize| match g.nodes.get(*i) {
        Some(n) => (n.node_type.as_str(), n.label.as_str()),
        None => ("tree", g.aggregates[*i - g.nodes.len()].path.as_str()),
    };
    let traced = by_comp.remove(&Some(TRACED)).unwrap_or_default();
    let left = vec![Group { title: "traced tree".into(), class: "group traced", members: spawn_order(g, &traced) }];
    let mut right = Vec::new();
    let loose = by_comp.remove(&None);
    for (name, mut members) in by_comp {
        members.sort_by_key(key);
        right.push(Group { title: format!("component: {}", name.unwrap_or("")), class: "group owned", members: members.into_iter().map(|i| (i, 0)).collect() });
    }
    if let Some(mut members) = loose.filter(|m| !m.is_empty()) {
        members.sort_by_key(key);
        right.push(Group { title: "no component".into(), class: "group loose", members: members.into_iter().map(|i| (i, 0)).collect() });
    }
    (left, right)
}

/// Traced nodes depth-first along spawn edges, with their depth; the rest after them.
fn spawn_order(g: &Graph, members: &[usize]) -> Vec<(usize, usize)> {
    let index: HashMap<&NodeId, usize> = members.iter().map(|i| (&g.nodes[*i].id, *i)).collect();
    let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut has_parent = HashSet::new();
    for e in g.edges.iter().filter(|e| e.kind == EdgeKind::Spawn) {
        if let (Some(&p), Some(&c)) = (index.get(&e.from), index.get(&e.to)) {
            children.entry(p).or_default().push(c);
            has_parent.insert(c);
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(usize, usize)> = members.iter().rev().filter(|i| !has_parent.contains(*i)).map(|i| (*i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        out.push((i, depth));
        for c in children.get(&i).into_iter().flatten().rev() {
            stack.push((*c, depth + 1));
        }
    }
    out.extend(members.iter().filter(|i| !seen.contains(*i)).map(|i| (*i, 0)));
    out
}

/// Grid of a group: roughly four times as many rows as columns (cells are wide).
fn columns(n: usize) -> usize {
    ((n as f64 / 12.0).sqrt().ceil() as usize).max(1)
}

struct Placed {
    x: f64,
    y: f64,
    w: f64,
}

pub fn fallback(g: &Graph, marks: &Marks) -> String {
    let view = &marks.view;
    let (left, right) = groups(g, view);
    let mut at: HashMap<usize, Placed> = HashMap::new();
    let mut boxes = String::new();
    let (left_w, left_h) = place_column(&left, PAD, &mut at, &mut boxes, 0);
    let x1 = PAD + left_w + COLUMN_GAP;
    let (right_w, right_h) = place_column(&right, x1, &mut at, &mut boxes, left.len());
    let (w, h) = (x1 + right_w + PAD, left_h.max(right_h) + PAD);
    let mut svg = format!(
        "<svg class=\"builtin\" width=\"{w:.0}pt\" height=\"{h:.0}pt\" viewBox=\"0 0 {w:.0} {h:.0}\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>\n\
         <g id=\"graph0\" class=\"graph\">\n"
    );
    svg.push_str(&boxes);
    for (ei, e) in g.edges.iter().enumerate().filter(|(ei, _)| !view.folds_edge(*ei)) {
        let (from, to) = g.ends_of(ei);
        let (Some(a), Some(b)) = (from.and_then(|i| at.get(&i)), to.and_then(|i| at.get(&i))) else { continue };
        let violation = marks.violating.get(&ei);
        let _ = write!(svg, "<g id=\"e{ei}\" class=\"edge {}\"><title>{}</title>", edge_classes(e, violation.is_some()), esc(&edge_title(g, e)));
        edge_path(&mut svg, a, b, violation.copied());
    }
    for (j, f) in view.folded.iter().enumerate() {
        let (Some(a), Some(b)) = (at.get(&f.from), at.get(&(g.nodes.len() + f.tree))) else { continue };
        let violation = marks.folded(f);
        let _ = write!(svg, "<g id=\"f{j}\" class=\"edge {}\"><title>{}</title>", folded_classes(f, violation.is_some()), esc(&folded_title(g, f)));
        edge_path(&mut svg, a, b, violation);
    }
    for (i, p) in &at {
        let (id, classes, title, label) = match g.nodes.get(*i) {
            Some(n) => (format!("n{i}"), node_classes(n, marks.harmed.contains(i)), node_title(n), short(&n.label)),
            None => {
                let t = *i - g.nodes.len();
                let a = &g.aggregates[t];
                (format!("t{t}"), "t_tree".to_string(), tree_title(a), short(&render::tree_label(a)))
            }
        };
        let _ = writeln!(
            svg,
            "<g id=\"{id}\" class=\"node {classes}\"><title>{}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{CELL_H}\" rx=\"3\" fill=\"white\" stroke=\"#444\"/><text x=\"{:.1}\" y=\"{:.1}\" font-family=\"monospace\" font-size=\"10\">{}</text></g>",
            esc(&title),
            p.x,
            p.y,
            p.w,
            p.x + 4.0,
            p.y + 15.0,
            esc(&label),
        );
    }
    svg.push_str("</g>\n</svg>\n");
    svg
}

/// An edge's curve from `a` to `b` (a loop out to the left within a column), closing its `<g>`;
/// a violating one links to its violation.
fn edge_path(svg: &mut String, a: &Placed, b: &Placed, violation: Option<usize>) {
    let (ay, by) = (a.y + CELL_H / 2.0, b.y + CELL_H / 2.0);
    let d = if b.x > a.x + a.w {
        let mid = (a.x + a.w + b.x) / 2.0;
        format!("M{:.1},{ay:.1} C{mid:.1},{ay:.1} {mid:.1},{by:.1} {:.1},{by:.1}", a.x + a.w, b.x)
    } else {
        let bend = a.x.min(b.x) - 18.0;
        format!("M{:.1},{ay:.1} C{bend:.1},{ay:.1} {bend:.1},{by:.1} {:.1},{by:.1}", a.x, b.x)
    };
    let path = format!("<path fill=\"none\" stroke=\"#666\" marker-end=\"url(#arrow)\" d=\"{d}\"/>");
    let _ = match violation {
        Some(v) => writeln!(svg, "<a href=\"#v{v}\">{path}</a></g>"),
        None => writeln!(svg, "{path}</g>"),
    };
}

/// Stack `groups` top to bottom at `x`; returns the column's (width, bottom).
fn place_column(groups: &[Group], x: f64, at: &mut HashMap<usize, Placed>, boxes: &mut String, first_id: usize) -> (f64, f64) {
    let (mut y, mut width) = (PAD, 0.0f64);
    for (k, grp) in groups.iter().enumerate().filter(|(_, grp)| !grp.members.is_empty()) {
        let cols = columns(grp.members.len());
        let rows = grp.members.len().div_ceil(cols);
        let depth = grp.members.iter().map(|(_, d)| (*d).min(8)).max().unwrap_or(0) as f64;
        let cell = CELL_W + depth * INDENT;
        let w = 2.0 * PAD + cols as f64 * (cell + GAP);
        let h = TITLE + 2.0 * PAD + rows as f64 * (CELL_H + GAP);
        let _ = writeln!(
            boxes,
            "<g id=\"c{}\" class=\"cluster {}\"><title>{}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"#f4f4f4\" stroke=\"#999\"/><text x=\"{:.1}\" y=\"{:.1}\" font-family=\"monospace\" font-size=\"11\">{}</text></g>",
            first_id + k,
            grp.class,
            esc(&grp.title),
            x + PAD,
            y + 15.0,
            esc(&grp.title)
        );
        for (j, (i, d)) in grp.members.iter().enumerate() {
            let (r, c) = (j / cols, j % cols);
            let indent = (*d).min(8) as f64 * INDENT;
            at.insert(*i, Placed { x: x + PAD + c as f64 * (cell + GAP) + indent, y: y + TITLE + PAD + r as f64 * (CELL_H + GAP), w: CELL_W });
        }
        y += h + 2.0 * GAP;
        width = width.max(w);
    }
    (width, y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::SCHEMA;

    /// One process writing `n` files, one of them a live service's, deleted.
    pub fn fan(n: usize) -> Graph {
        let mut nodes = vec![Node { id: "process:1:1".into(), node_type: "process".into(), label: "1 sh".into(), component: Some(TRACED.into()), ..Default::default() }];
        let mut edges = Vec::new();
        for i in 0..n {
            let path = format!("/srv/data/<dir & \"{i}\">/file-{i}");
            let component = (i == 0).then(|| "db".to_string());
            nodes.push(Node { id: format!("file:{path}").into(), node_type: "file".into(), label: path.clone(), path: Some(path.clone()), component, ..Default::default() });
            let kind = if i == 0 { "unlink" } else { "write" };
            edges.push(Edge { from: "process:1:1".into(), to: format!("file:{path}").into(), kind: kind.into(), count: 1, events: vec![i as u64 + 1], cross_component: i == 0, ..Default::default() });
        }
        Graph { schema: SCHEMA.into(), target: "t".into(), host: "h".into(), complete: true, lost_events: 0, nodes, edges, ..Default::default() }
    }

    #[test]
    fn wide_fan_outs_spread_over_ranks() {
        let g = fan(500);
        let ranks = stagger(&g, &View::of(&g));
        assert_eq!(ranks.len(), 500);
        let levels: HashSet<usize> = ranks.values().copied().collect();
        assert_eq!(levels.len(), 2);
        let few = fan(STAGGER);
        assert!(stagger(&few, &View::of(&few)).is_empty(), "a few leaves stay in one rank");
    }

    #[test]
    fn the_builtin_layout_draws_every_node_escaped() {
        let g = fan(40);
        let marks = Marks { violating: [(0, 0)].into(), harmed: [1].into(), view: View::of(&g) };
        let svg = fallback(&g, &marks);
        assert_eq!(svg.matches("class=\"node ").count(), 41);
        assert_eq!(svg.matches("class=\"edge ").count(), 40);
        assert!(svg.contains("class=\"edge k_unlink destructive cross violating\"><title>"), "{svg}");
        assert!(svg.contains("<a href=\"#v0\">"));
        assert!(!svg.contains("<dir"), "labels are escaped");
        assert!(svg.contains("&lt;dir &amp; &quot;0&quot;&gt;"));
    }

    #[test]
    fn long_labels_keep_their_end() {
        let s = short(&format!("/very/long/{}/file.db", "x".repeat(80)));
        assert_eq!(s.chars().count(), LABEL_CHARS);
        assert!(s.starts_with('…') && s.ends_with("/file.db"));
    }
}
