//! Issue 15: verdicts from two channels. The trace is the in-band channel; the overlay's upper
//! layers, the network sink and the pilot cgroup are out-of-band observers the kernel keeps
//! whatever the pilot did (io_uring, shared mappings, anything the probes do not decode). After
//! a `pilot run`, each is reconciled with the trace: what both saw is marked on the graph's
//! edges (`seen_by`), what only an observer saw becomes an effect of its own (so every rule
//! judges it) and a named blind spot (summary.json, the account, `pilot diff`, the verdict,
//! report.html). The policy's gate (`required_observers`) turns blind spots into violations.
pub mod live;
pub mod network;
pub mod overlay;
pub mod process;

use crate::{
    graph::{BlindSpot, Channel, Graph, NodeId, NodeKind, Observed, TRACED, channels::UnseenProcess},
    rundir::{Caught, Change},
    snapshot::Snapshot,
};

/// What the observers recorded of one pilot.
pub struct Observers<'a> {
    pub changes: &'a [Change],
    pub caught: &'a [Caught],
    pub unseen_processes: Vec<UnseenProcess>,
    pub snapshot: &'a Snapshot,
    pub root_pid: Option<u32>,
}

/// Reconcile every observer with the graph; the result is also `graph.channels`.
pub fn reconcile(graph: &mut Graph, obs: Observers) -> Observed {
    let edges_before = graph.edges.len();
    let root = root_of(graph, obs.root_pid);
    let mut blind: Vec<BlindSpot> = overlay::reconcile(graph, obs.changes, obs.snapshot, &root);
    blind.extend(network::reconcile(graph, obs.caught, &root));
    for p in &obs.unseen_processes {
        blind.push(BlindSpot {
            path: format!("{} {}", p.pid, p.comm),
            change: "process never traced".into(),
            channel: Some(Channel::Cgroup),
            ..Default::default()
        });
    }
    if !obs.unseen_processes.is_empty() {
        // What those processes did is not known: the graph may miss effects.
        graph.complete = false;
    }
    if graph.edges.len() != edges_before {
        graph.edges.sort_by_key(|e| e.first_ts_ns);
        // Edges added and reordered: the per-edge ends are looked up again when next needed.
        graph.index = Default::default();
    }
    let mut observed = graph.channels.take().unwrap_or_default();
    observed.watched_by = vec![Channel::Overlay, Channel::Sink, Channel::Cgroup];
    observed.blind_spots = blind;
    observed.unseen_processes = obs.unseen_processes;
    graph.channels = Some(observed.clone());
    observed
}

/// The pilot tree's root process node (the one blind spots are attributed to).
fn root_of(graph: &Graph, root_pid: Option<u32>) -> NodeId {
    let traced = |n: &&crate::graph::Node| n.node_type == NodeKind::Process && n.component.as_deref() == Some(TRACED);
    graph
        .nodes
        .iter()
        .filter(traced)
        .find(|n| root_pid.is_some() && n.pid == root_pid)
        .or_else(|| graph.nodes.iter().find(traced))
        .map(|n| n.id.clone())
        .unwrap_or_else(|| NodeId::process(root_pid.unwrap_or(0), 0))
}

/// The account's lines about blind spots and io_uring (stderr and `pilot diff`).
pub fn render(observed: &Observed) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if !observed.io_uring.is_empty() {
        let _ = writeln!(out, "{} ({})", crate::graph::channels::IO_URING_NOTE, observed.io_uring.join(", "));
    }
    if observed.blind_spots.is_empty() {
        if !observed.watched_by.is_empty() {
            let names: Vec<&str> = observed.watched_by.iter().map(|c| c.as_str()).collect();
            let _ = writeln!(out, "blind spots: 0 (the trace explains all the {} saw)", names.join(", "));
        }
        return out;
    }
    let _ = writeln!(out, "blind spots: {} (seen by another channel, no syscall traced)", observed.blind_spots.len());
    for b in &observed.blind_spots {
        let channel = b.channel.map_or("?", |c| c.as_str());
        let owner = match (&b.component, b.held) {
            (Some(c), Some(h)) => format!("  [{c} {}]", h.verb()),
            (Some(c), None) => format!("  [{c}]"),
            _ => String::new(),
        };
        let effect = b.effect.map(|e| format!(" -> {e}")).unwrap_or_default();
        let _ = writeln!(out, "  - {channel:<8} {} {}{effect}{owner}", b.change, b.path);
    }
    out
}
