//! The cross-component effect graph: who (processes of the traced tree) did what (typed,
//! aggregated effects) to which files, endpoints and processes, and which component of the
//! host each of those belongs to. Repeated effects aggregate into one edge, so a tool that
//! writes a million blocks to one file is one `write` edge.
//!
//! `graph.json` (schema `pilot.effect-graph/v1`) is a contract; `render` has the other views.
pub mod aggregate;
mod build;
pub mod channels;
mod kinds;
mod host;
pub mod render;
pub mod rpc;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::snapshot::{Component, LogRole, Signals, filesystems::Filesystem};
pub use crate::snapshot::Hold;
pub use build::Builder;
pub use channels::{BlindSpot, BlindSpots, Channel, Observed};
pub use kinds::{EdgeKind, NodeId, NodeKind};

pub mod merge;

pub const SCHEMA: &str = "pilot.effect-graph/v1";
/// A graph joined from several hosts' graphs by `pilot merge`: v1 plus `hosts`, and a `host`
/// on every node, edge and component.
pub const SCHEMA_MERGED: &str = "pilot.effect-graph/v2";
/// The component made of the traced process tree.
pub const TRACED: &str = "traced";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Graph {
    pub schema: String,
    /// What was traced (the command, pid or cgroup).
    pub target: String,
    pub host: String,
    /// False when events were lost: the graph may miss effects.
    pub complete: bool,
    pub lost_events: u64,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Every component discovered on the host when tracing started (and that appeared while).
    pub components: Vec<Component>,
    /// Filesystems live components write to (space at the start); `fill` edges point at them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystems: Vec<Filesystem>,
    /// The host's interface addresses when tracing started: what its wildcard listeners
    /// answer on (`pilot merge` matches other hosts' connects against them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_addrs: Vec<String>,
    /// Merged graphs (v2): the graphs it was joined from, one per host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostGraph>,
    /// issue 15: what the overlay, the sink and the cgroup saw beside the trace (`pilot run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Observed>,
    /// Directory trees the traced tree created or deleted wholesale (aggregate.rs): every
    /// node and edge is still listed above; views draw each tree as one node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregates: Vec<aggregate::Aggregate>,
    /// Node id -> position in `nodes` (`node()`), and each edge's ends' positions
    /// (`ends_of()`); built when first needed (reset it after changing `nodes` or an edge's
    /// ends).
    #[serde(skip)]
    pub index: Indexes,
}

#[derive(Clone, Debug, Default)]
pub struct Indexes {
    nodes: std::sync::OnceLock<NodeIndex>,
    /// Per edge, [from, to] positions in `nodes` (u32::MAX: no such node).
    ends: std::sync::OnceLock<Vec<[u32; 2]>>,
}

/// Node id -> position in `nodes`. A table of u32 positions keyed by the ids' hashes, not a
/// map holding copies of the ids: a 20,000-file graph's index then fits in a core's L2 cache,
/// and every lookup of the post-processing missed it the other way (issue 19's scaling).
#[derive(Clone, Debug, Default)]
pub struct NodeIndex {
    table: hashbrown::HashTable<u32>,
    state: foldhash::fast::FixedState,
}

impl NodeIndex {
    fn of(nodes: &[Node]) -> NodeIndex {
        let state = foldhash::fast::FixedState::default();
        let hash = |id: &NodeId| std::hash::BuildHasher::hash_one(&state, id);
        let mut table = hashbrown::HashTable::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            let h = hash(&n.id);
            // Of equal ids the last wins (as a map collected in order keeps it); a finished
            // graph's ids are unique.
            match table.find_mut(h, |&j: &u32| nodes[j as usize].id == n.id) {
                Some(j) => *j = i as u32,
                None => {
                    table.insert_unique(h, i as u32, |&j| hash(&nodes[j as usize].id));
                }
            }
        }
        NodeIndex { table, state }
    }

    fn hash(&self, id: &NodeId) -> u64 {
        std::hash::BuildHasher::hash_one(&self.state, id)
    }

    fn get(&self, nodes: &[Node], id: &NodeId) -> Option<usize> {
        self.table.find(self.hash(id), |&j| nodes[j as usize].id == *id).map(|&j| j as usize)
    }
}

/// One input of a merged graph.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HostGraph {
    pub host: String,
    pub target: String,
    pub complete: bool,
    pub lost_events: u64,
    pub local_addrs: Vec<String>,
    /// The graph.json it came from.
    pub source: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    #[serde(rename = "type")]
    pub node_type: NodeKind,
    pub label: String,
    /// The component it belongs to (`traced` for the traced tree), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// How the component holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Merged graphs: the host it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Files: a live log (live processes only append to it), a rotated sibling of one that
    /// nobody holds, or a log directory. Absent: not a log, or a graph from before pilot knew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogRole>,
    /// Files in a live data directory: true when the path did not exist when tracing started
    /// (the traced tree made it), false when it did. Absent: not known (taken as existing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
    /// A new file in a data directory named like a file the component holds open there
    /// (`segments_2` beside `segments_1`): the component reads files like it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub like: Option<String>,
    /// Live processes: what they do with each signal, as the snapshot read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<Signals>,
    /// Process groups: how many live processes outside the pilot were in it (each has its own
    /// signal edge, judged on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<u32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Edge {
    pub from: NodeId,
    pub to: NodeId,
    pub kind: EdgeKind,
    /// Syscalls aggregated into this edge, and how many of them failed.
    pub count: u64,
    pub failed: u64,
    pub bytes: u64,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    /// The target belongs to a component other than the traced tree.
    pub cross_component: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// rename: the other end (`-> new` on the source, `<- old` on the destination);
    /// symlink: its target; signal: the signal's name; chmod: the mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Line numbers (1-based) in events.jsonl of the first events behind this edge.
    pub events: Vec<u64>,
    /// Merged graphs: the host the effect was made on, and the host of its target when that
    /// is another one (a connect that reached a component of another host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_host: Option<String>,
    // --- issue 18 (rpc): fields of `rpc` edges, and connects the sink judged ---
    /// `rpc` edges: what the requests were (from the sink's protocol sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<rpc::RpcEffect>,
    /// connect/send edges: the sink saw this traffic, and its rpc edges stand for it (judged
    /// request by request, or marked opaque), so it needs no look of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub via_sink: bool,
    /// issue 15: the channels that saw this effect (`pilot run`): `["trace", "overlay"]` when
    /// the overlay confirms a traced change, `["overlay"]` for a blind spot of the trace.
    /// Absent: the trace alone (`pilot trace`, and effects no second channel watches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen_by: Vec<Channel>,
}

impl Edge {
    /// Seen by a second channel and by no traced syscall.
    pub fn blind_spot(&self) -> bool {
        !self.seen_by.is_empty() && !self.seen_by.contains(&Channel::Trace)
    }
}

impl Edge {
    /// Every call behind it failed: the effect did not happen.
    pub fn all_failed(&self) -> bool {
        self.count > 0 && self.failed == self.count
    }
}

impl Graph {
    /// The node with this id (an index built on first use: graphs have thousands of nodes).
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.position(id).map(|i| &self.nodes[i])
    }

    /// The position in `nodes` of the node with this id.
    pub fn position(&self, id: &NodeId) -> Option<usize> {
        self.index.nodes.get_or_init(|| NodeIndex::of(&self.nodes)).get(&self.nodes, id)
    }

    /// The positions in `nodes` of edge `ei`'s ends: looked up once for every edge, so views
    /// and rules that walk the edges read an array, not a hash table, per edge.
    pub fn ends_of(&self, ei: usize) -> (Option<usize>, Option<usize>) {
        let pos = |id: &NodeId| self.position(id).map_or(u32::MAX, |i| i as u32);
        let ends = self.index.ends.get_or_init(|| self.edges.iter().map(|e| [pos(&e.from), pos(&e.to)]).collect());
        let known = |i: u32| (i != u32::MAX).then_some(i as usize);
        match ends.get(ei) {
            // Edges added since (a channel's, an rpc's) are looked up one by one.
            Some(&[from, to]) if ends.len() == self.edges.len() => (known(from), known(to)),
            _ => (self.position(&self.edges[ei].from), self.position(&self.edges[ei].to)),
        }
    }

    /// Add a node (keeping `node()`'s index right).
    pub fn push_node(&mut self, n: Node) {
        self.nodes.push(n);
        self.index = Default::default();
    }

    /// Components touched by cross-component edges, by name, with their edges.
    pub fn touched(&self) -> BTreeMap<&str, Vec<&Edge>> {
        let mut out: BTreeMap<&str, Vec<&Edge>> = BTreeMap::new();
        for e in &self.edges {
            if let (true, Some(c)) = (e.cross_component, e.component.as_deref()) {
                out.entry(c).or_default().push(e);
            }
        }
        out
    }

    pub fn read(path: &std::path::Path) -> anyhow::Result<Graph> {
        use crate::error::OnPath as _;
        let text = std::fs::read_to_string(path).on("reading", path, crate::error::INPUT)?;
        let g: Graph = anyhow::Context::with_context(serde_json::from_str(&text), || format!("{} is not a graph.json of pilot", path.display()))?;
        if g.schema != SCHEMA && g.schema != SCHEMA_MERGED {
            anyhow::bail!("{} has schema {}, this pilot reads {SCHEMA} and {SCHEMA_MERGED}", path.display(), g.schema);
        }
        Ok(g)
    }
}
