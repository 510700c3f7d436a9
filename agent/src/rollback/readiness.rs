//! Rollback readiness (seed essay 5.7, 7.7): the effects of a pilot that no file rollback can
//! undo. A signal delivered, a message sent to a live service or another host, a write to a
//! kernel interface: once the live run has done them, restoring files does not take them back.
use std::path::Path;

use crate::{
    graph::{EdgeKind, Graph, Node, NodeKind, TRACED},
    rundir::Changes,
};

/// What the RPC sink made of the pilot's sessions with one endpoint, so a read-only session (a
/// GET, a SELECT, a DNS query) does not count as irreversible.
pub trait RpcSessions {
    /// The mutating requests sent to `endpoint` (`SET k`, `DELETE /x`); `Some(empty)`: the
    /// sessions were read-only; None: not decoded, so every send counts as a mutation.
    fn mutations(&self, run_dir: &Path, endpoint: &Node) -> Option<Vec<String>>;
}

/// Nothing decoded (`--rpc off`, graphs from before the protocol sessions).
pub struct NotDecoded;

impl RpcSessions for NotDecoded {
    fn mutations(&self, _run_dir: &Path, _endpoint: &Node) -> Option<Vec<String>> {
        None
    }
}

/// The graph's `rpc` edges: what the sink's protocol sessions understood of each endpoint's
/// traffic. Opaque bytes (a protocol the sink does not speak) are not decoded: None.
pub struct FromGraph<'a>(pub &'a Graph);

impl RpcSessions for FromGraph<'_> {
    fn mutations(&self, _run_dir: &Path, endpoint: &Node) -> Option<Vec<String>> {
        use crate::rundir::Access;
        let mut mutations = Vec::new();
        let mut decoded = false;
        for e in self.0.edges.iter().filter(|e| e.kind == EdgeKind::Rpc && e.to == endpoint.id) {
            let r = e.rpc.as_ref()?;
            match r.access {
                Some(Access::Read) => decoded = true,
                Some(Access::Mutation | Access::Unclassified) => {
                    decoded = true;
                    mutations.push(format!("{} {}", r.operation, r.resource).trim_end().to_string());
                }
                Some(Access::Opaque) | None => return None,
            }
        }
        decoded.then_some(mutations)
    }
}

/// Every effect of the pilot a rollback cannot undo, one line each.
pub fn cannot_undo(graph: &Graph, changes: &Changes, run_dir: &Path, rpc: &dyn RpcSessions) -> Vec<String> {
    let mut out = Vec::new();
    for e in &graph.edges {
        let (Some(from), Some(to)) = (graph.node(&e.from), graph.node(&e.to)) else { continue };
        if from.component.as_deref() != Some(TRACED) {
            continue;
        }
        let by = &from.label;
        match (e.kind, to.node_type) {
            (EdgeKind::Signal, NodeKind::Process) if to.component.as_deref() != Some(TRACED) => {
                let sig = e.detail.as_deref().unwrap_or("a signal");
                out.push(format!("{sig} to {} (by {by}): a signal to a live process cannot be taken back", to.label));
            }
            (EdgeKind::Signal, NodeKind::ProcessGroup) if !to.id.is_own_process_group() => {
                let sig = e.detail.as_deref().unwrap_or("a signal");
                out.push(format!("{sig} to {} (by {by}): a signal to live processes cannot be taken back", to.label));
            }
            (EdgeKind::Connect | EdgeKind::Send | EdgeKind::Rpc, NodeKind::Endpoint) => {
                if let Some(line) = network(e.kind, e.bytes, to, by, run_dir, rpc) {
                    out.push(line);
                }
            }
            (EdgeKind::Write | EdgeKind::Truncate | EdgeKind::Chmod | EdgeKind::Chown, NodeKind::File) => {
                let path = to.path.as_deref().unwrap_or("");
                if (path.starts_with("/proc/sys/") || path.starts_with("/sys/")) && !path.starts_with("/proc/self/") {
                    out.push(format!("{} {path} (by {by}): a kernel setting, not a file a rollback restores", e.kind));
                }
            }
            _ => {}
        }
    }
    for c in changes.changes.iter().filter(|c| c.kind == "socket") {
        out.push(format!("{} socket {}: a socket file cannot be restored", c.change, c.path));
    }
    out.sort();
    out.dedup();
    out
}

/// A connect or send the pilot made that a live run would really make: to a live component's
/// endpoint, or to another host. Loopback endpoints nobody listened on received nothing.
fn network(kind: EdgeKind, bytes: u64, to: &Node, by: &str, run_dir: &Path, rpc: &dyn RpcSessions) -> Option<String> {
    let live = to.component.as_deref().filter(|c| *c != TRACED);
    let remote = live.is_none() && to.family.as_deref() != Some("unix") && to.addr.as_deref().is_some_and(|a| !is_local(a));
    if live.is_none() && !remote {
        return None;
    }
    let whose = live.map(|c| format!("{c}, a live service")).unwrap_or_else(|| "another host".into());
    match rpc.mutations(run_dir, to) {
        Some(m) if m.is_empty() => None,
        Some(m) => Some(format!("{} to {} ({whose}) by {by}: {}: a request a live service acted on cannot be taken back", kind, to.label, m.join(", "))),
        None if kind == EdgeKind::Send => Some(format!("send of {bytes} B to {} ({whose}) by {by}: a message cannot be called back", to.label)),
        None => Some(format!("connect to {} ({whose}) by {by}: what a live service does on a connection cannot be taken back", to.label)),
    }
}

fn is_local(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>().is_ok_and(|ip| {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        ip.is_loopback() || ip.is_unspecified()
    })
}
