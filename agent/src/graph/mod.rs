//! The cross-component effect graph: who (processes of the traced tree) did what (typed,
//! aggregated effects) to which files, endpoints and processes, and which component of the
//! host each of those belongs to. Repeated effects aggregate into one edge, so a tool that
//! writes a million blocks to one file is one `write` edge.
//!
//! `graph.json` (schema `pilot.effect-graph/v1`) is a contract; `render` has the other views.
mod build;
mod host;
pub mod render;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::snapshot::{Component, filesystems::Filesystem};
pub use build::Builder;
pub use host::HOST as HOST_NODE;

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
    pub id: String,
    /// process, file, endpoint, process_group, component, or host (a host-wide setting).
    #[serde(rename = "type")]
    pub node_type: String,
    pub label: String,
    /// The component it belongs to (`traced` for the traced tree), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// How the component holds it: open-for-write, open, mapped, data-dir, listening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
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
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// spawn, exec, write, create, truncate, unlink, rename, mkdir, rmdir, chmod, chown,
    /// link, symlink, xattr, connect, send, bind, listen, signal; changes to the host
    /// (sysctl, sysfs, cgroup, netconf, clock, swap, mount, module) and to live processes
    /// (setpriority, setaffinity, setrlimit).
    pub kind: String,
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
}

impl Edge {
    /// Every call behind it failed: the effect did not happen.
    pub fn all_failed(&self) -> bool {
        self.count > 0 && self.failed == self.count
    }
}

/// Effect kinds in the order an SRE reads them: destructive first.
pub const SEVERITY_ORDER: [&str; 31] = [
    "unlink", "rmdir", "rename", "truncate", "fill", "write", "signal",
    // issue 16: host-wide and live-process changes
    "netconf", "sysctl", "sysfs", "clock", "mount", "module", "swap", "cgroup", "setrlimit", "setpriority", "setaffinity",
    "chmod", "chown", "xattr", "link", "symlink", "create", "mkdir", "send", "connect", "bind", "listen", "exec", "spawn",
];

pub fn severity_rank(kind: &str) -> usize {
    SEVERITY_ORDER.iter().position(|k| *k == kind).unwrap_or(SEVERITY_ORDER.len())
}

impl Graph {
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
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
        let text = std::fs::read_to_string(path)?;
        let g: Graph = serde_json::from_str(&text)?;
        if g.schema != SCHEMA && g.schema != SCHEMA_MERGED {
            anyhow::bail!("{} has schema {}, this pilot reads {SCHEMA} and {SCHEMA_MERGED}", path.display(), g.schema);
        }
        Ok(g)
    }
}
