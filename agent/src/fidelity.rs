//! Fidelity (seed essay eq. 3): how far the live run of `pilot commit` strayed from what the
//! pilot showed, edge by edge.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use crate::{
    graph::{EdgeKind, Graph, NodeId, NodeKind, TRACED},
    rundir::{Divergence, FIDELITY_SCHEMA, Fidelity},
};

/// Distance between the pilot's and the live graph: edges are matched by (who, kind, what),
/// where who is the process's command line (pids differ between runs) and what is the path,
/// endpoint or process it touched. The sink's redirect is invisible here: the trace records
/// the destination the program asked for, so pilot and live network edges compare as equal.
///
/// error = (|only pilot| + |only live| + sum of divergence over common edges) / |all edges|,
/// divergence = max(relative count difference, relative byte difference), each in [0, 1].
pub fn compare(pilot: &Graph, live: &Graph, run_dir: &Path, max: f64) -> Fidelity {
    let p = keyed(pilot, run_dir);
    let l = keyed(live, run_dir);
    let all: BTreeSet<&String> = p.keys().chain(l.keys()).collect();
    let only_pilot: Vec<String> = p.keys().filter(|k| !l.contains_key(*k)).cloned().collect();
    let only_live: Vec<String> = l.keys().filter(|k| !p.contains_key(*k)).cloned().collect();
    let mut diverging = Vec::new();
    let mut sum = (only_pilot.len() + only_live.len()) as f64;
    for (k, (pc, pb)) in &p {
        let Some((lc, lb)) = l.get(k) else { continue };
        let rel = |a: u64, b: u64| if a.max(b) == 0 { 0.0 } else { a.abs_diff(b) as f64 / a.max(b) as f64 };
        let d = rel(*pc, *lc).max(rel(*pb, *lb));
        if d > 0.0 {
            sum += d;
            diverging.push(Divergence { edge: k.clone(), pilot_count: *pc, live_count: *lc, pilot_bytes: *pb, live_bytes: *lb });
        }
    }
    let error = if all.is_empty() { 0.0 } else { sum / all.len() as f64 };
    Fidelity {
        schema: FIDELITY_SCHEMA.into(),
        error,
        max_fidelity_error: max,
        within_gate: error <= max,
        edges_pilot: p.len(),
        edges_live: l.len(),
        only_pilot,
        only_live,
        diverging,
        files: None,
    }
}

/// Edge key -> (count that took effect, bytes). Leaves out what only says where output went
/// (the run directory's logs, terminals, pipes: a pipe's inode differs between runs).
pub fn keyed(g: &Graph, run_dir: &Path) -> BTreeMap<String, (u64, u64)> {
    let label = |id: &NodeId| -> String {
        match g.node(id) {
            Some(n) if n.node_type == NodeKind::Process && n.component.as_deref() == Some(TRACED) => {
                format!("[{}]", n.argv.as_ref().map(|a| a.join(" ")).unwrap_or_else(|| n.label.clone()))
            }
            Some(n) => n.label.clone(),
            None => id.to_string(),
        }
    };
    let run_dir = run_dir.display().to_string();
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in &g.edges {
        // issue 15: what only the overlay or the sink saw has no counterpart in a live trace
        // (the live run has neither); the file-state channel compares it instead.
        if e.blind_spot() {
            continue;
        }
        // Go programs (etcdctl, kubectl...) preempt their goroutines with SIGURG to their own
        // threads (golang/go#24543): how many depends on scheduling, not on what they change.
        if e.kind == EdgeKind::Signal && e.detail.as_deref() == Some("SIGURG") {
            continue;
        }
        let target = label(&e.to);
        if target.starts_with(&run_dir) || is_output_channel(&target) {
            continue;
        }
        // rpc edges compare operation by operation: protocol, operation and resource (a captured
        // mutation in the pilot is the same effect as the forwarded one live).
        let target = match (&e.kind, &e.detail) {
            (EdgeKind::Rpc, Some(d)) => format!("{target} {d}"),
            _ => target,
        };
        let key = format!("{} {} {}", label(&e.from), e.kind, without_pids(&target));
        let v = out.entry(key).or_default();
        // A signal the pilot's PID namespace stopped counts as sent, as the gate counts it.
        v.0 += g.node(&e.to).map_or(e.count.saturating_sub(e.failed), |n| crate::policy::eval::effective(e, n));
        v.1 += e.bytes;
    }
    out
}

/// Where a command's output goes, or its own process state, rather than what it changes.
/// (/proc is read-only in a pilot: a JVM's write to /proc/self/coredump_filter fails there.)
fn is_output_channel(target: &str) -> bool {
    target.starts_with("pipe:[")
        || target.starts_with("/dev/pts/")
        || target.starts_with("/proc/self/")
        || target.starts_with("/proc/thread-self/")
        || ["/dev/null", "/dev/tty", "/dev/console"].contains(&target)
}

/// A path with its all-digit components as `N`: pids differ between the pilot (its own PID
/// namespace) and the live run, e.g. a JVM's /tmp/hsperfdata_root/<pid>.
fn without_pids(path: &str) -> String {
    if !path.starts_with('/') {
        return path.to_string();
    }
    path.split('/').map(|c| if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) { "N" } else { c }).collect::<Vec<_>>().join("/")
}
