//! The drift check of `pilot commit` (seed essay 4, attack class A; 5.6): production must still
//! be what the pilot ran against. A fresh snapshot is compared with the pilot's, target by
//! target (every file, endpoint and process the pilot changed or contacted: its content hash,
//! size, mtime, inode; who holds, maps or listens on it), components that appeared or went are
//! listed, and the policy is evaluated again on the pilot's graph with the fresh snapshot's
//! components and holds. The commit is refused when a target the pilot changed or ran is not
//! as it was (the verdict was about other data), when a pid it signalled now names another
//! process, when the verdict on the fresh state differs, or when the pilot is older than the
//! gate's `max_age`.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::Path,
    time::Duration,
};

use crate::{
    filestate::{FileState, HASH_LIMIT, prefix_sha256},
    graph::{EdgeKind, Graph, Hold, NodeId, NodeKind, TRACED},
    policy::{
        Loaded,
        eval::{self, Evaluation},
    },
    rundir::{DRIFT_SCHEMA, Drift, DriftItem, HostSnapshot, Stamp, Target},
    snapshot::{LogRole, Snapshot},
};

/// Files, endpoints and processes the traced tree changed or contacted, as production has them
/// now (at the end of the pilot, production untouched).
pub fn targets(graph: &Graph, run_dir: &Path) -> Vec<Target> {
    // By node index, then in id order: a tree of NodeIds cost more than the rest.
    let mut effects: foldhash::HashMap<usize, BTreeSet<EdgeKind>> = foldhash::HashMap::default();
    for (ei, e) in graph.edges.iter().enumerate() {
        let (from, to) = graph.ends_of(ei);
        let from_traced = from.is_some_and(|f| graph.nodes[f].component.as_deref() == Some(TRACED));
        if from_traced
            && e.kind != EdgeKind::Spawn
            && e.kind != EdgeKind::Fill
            && let Some(i) = to
        {
            effects.entry(i).or_default().insert(e.kind);
        }
    }
    let mut effects: Vec<(usize, BTreeSet<EdgeKind>)> = effects.into_iter().collect();
    effects.sort_unstable_by(|a, b| graph.nodes[a.0].id.cmp(&graph.nodes[b.0].id));
    let mut out = Vec::with_capacity(effects.len());
    for (i, kinds) in effects {
        let n = &graph.nodes[i];
        let id = &n.id;
        let state = match n.node_type {
            NodeKind::File => {
                let Some(path) = n.path.as_deref().filter(|p| watched(p, run_dir)) else { continue };
                Some(FileState::capture(Path::new(path), HASH_LIMIT).unwrap_or_else(|_| FileState::absent()))
            }
            NodeKind::Endpoint => None,
            NodeKind::Process if n.component.as_deref() != Some(TRACED) => None,
            _ => continue,
        };
        out.push(Target {
            id: id.to_string(),
            effects: kinds.iter().map(|k| k.as_str().to_string()).collect(),
            owner: n.component.clone(),
            held: n.held,
            state,
            log: n.log,
        });
    }
    out
}

/// Production files worth comparing: not the run directory, terminals, pipes, pseudo files.
fn watched(path: &str, run_dir: &Path) -> bool {
    path.starts_with('/')
        && !path.starts_with(&run_dir.display().to_string())
        && !["/proc/", "/sys/", "/dev/"].iter().any(|p| path.starts_with(p))
}

/// What the check needs of the pilot.
pub struct Pilot<'a> {
    pub run_dir: &'a Path,
    pub snapshot: &'a HostSnapshot,
    pub graph: &'a Graph,
    pub evaluation: &'a Evaluation,
    pub policies: &'a [Loaded],
    pub max_age: Duration,
}

/// Compare the pilot with the host as it is now.
pub fn check(p: Pilot) -> Drift {
    let now = Stamp::now();
    let fresh = Snapshot::take(&Default::default());
    let mut items = Vec::new();
    let mut refusals = Vec::new();
    let age = p.snapshot.taken.age(&now);
    match age {
        None => refusals.push("the host rebooted since the pilot: its state then says nothing about now".to_string()),
        Some(a) if a > p.max_age => refusals.push(format!(
            "the pilot is {} old, over the gate's max_age {}",
            humantime::format_duration(Duration::from_secs(a.as_secs())),
            humantime::format_duration(p.max_age)
        )),
        _ => {}
    }
    for t in &p.snapshot.targets {
        target_drift(t, &fresh, &mut items);
    }
    let (appeared, gone) = components_changed(p.snapshot, &fresh);
    for c in &appeared {
        items.push(DriftItem { target: format!("component:{c}"), what: "appeared since the pilot".into(), refuses: false });
    }
    for c in &gone {
        items.push(DriftItem { target: format!("component:{c}"), what: "gone since the pilot".into(), refuses: false });
    }
    let now_eval = eval::evaluate(&reattach(p.graph, &fresh), p.policies);
    let key = |v: &eval::Violation| format!("{} on {}", v.rule, v.target);
    let then: BTreeSet<String> = p.evaluation.violations.iter().map(key).collect();
    let again: BTreeSet<String> = now_eval.violations.iter().map(key).collect();
    let violations_new: Vec<String> = now_eval.violations.iter().filter(|v| !then.contains(&key(v))).map(|v| format!("[{}] {}", v.action.as_str(), v.why)).collect();
    let violations_gone: Vec<String> = p.evaluation.violations.iter().filter(|v| !again.contains(&key(v))).map(key).collect();
    if now_eval.verdict != p.evaluation.verdict {
        let mut why = format!(
            "the verdict on the pilot's effects is {} now, {} then",
            now_eval.verdict.as_str(),
            p.evaluation.verdict.as_str()
        );
        if !violations_new.is_empty() {
            why.push_str(&format!(": {}", violations_new.join("; ")));
        }
        why.extend(now_eval.gate_failures.iter().map(|g| format!("; {g}")));
        refusals.push(why);
    }
    for i in items.iter().filter(|i| i.refuses) {
        refusals.push(format!("{}: {}", i.target, i.what));
    }
    Drift {
        schema: DRIFT_SCHEMA.into(),
        checked: now,
        age_ms: age.map(|a| a.as_millis() as u64),
        max_age_ms: p.max_age.as_millis() as u64,
        items,
        verdict_then: p.evaluation.verdict.as_str().into(),
        verdict_now: now_eval.verdict.as_str().into(),
        violations_new,
        violations_gone,
        components_appeared: appeared,
        components_gone: gone,
        refusals,
        forced: false,
    }
}

/// What changed about one target.
fn target_drift(t: &Target, fresh: &Snapshot, items: &mut Vec<DriftItem>) {
    let Some(id) = NodeId::parse(&t.id) else { return };
    let mut add = |what: String, refuses: bool| items.push(DriftItem { target: t.id.clone(), what, refuses });
    match id.kind {
        NodeKind::File => {
            let path = id.key.as_str();
            if let Some(then) = &t.state {
                let now = FileState::capture(Path::new(path), HASH_LIMIT).unwrap_or_else(|_| FileState::absent());
                let changed = if now.kind == "dir" && then.kind == "dir" { dir_drift(&now, then) } else { now.drifted_from(then) };
                let growth = (t.log == Some(LogRole::Live) && !changed.is_empty()).then(|| log_growth(Path::new(path), &now, then)).flatten();
                if let Some(g) = growth {
                    // Its appender wrote on: the same file the verdict was about, longer.
                    add(g, false);
                } else if !changed.is_empty() {
                    // The verdict and the changes the pilot showed were about the data then.
                    add(format!("{} since the pilot (which made {} on it)", changed.join(", "), t.effects.join("+")), true);
                }
            }
            let holder_then = t.owner.clone().zip(t.held);
            let holder_now = fresh.owner_of_path(path).map(|(i, h)| (fresh.components[i].name.clone(), h));
            if holder_now != holder_then {
                add(holder_change(holder_then, holder_now.clone(), fresh), false);
            }
        }
        NodeKind::Endpoint => {
            let (family, addr, port) = endpoint_parts(&id.key);
            let now = fresh.owner_of_endpoint(&family, &addr, port).map(|i| fresh.components[i].name.clone());
            if now != t.owner {
                let what = match (&t.owner, &now) {
                    (None, Some(c)) => format!("{c} listens there now (nobody did at the pilot)"),
                    (Some(c), None) => format!("{c} no longer listens there"),
                    (Some(a), Some(b)) => format!("{b} listens there now, {a} did at the pilot"),
                    (None, None) => unreachable!(),
                };
                add(what, false);
            }
        }
        NodeKind::Process => {
            let Some((pid, start)) = id.key.split_once(':').and_then(|(p, s)| Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?))) else { return };
            match crate::procfs::start_ns(pid) {
                None => add("the process is gone".into(), false),
                Some(s) if start != 0 && s != start => {
                    // `kill PID` live would hit whatever now has that pid.
                    add(format!("pid {pid} now names another process (started at {s}, not {start})"), true)
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// A live log that only grew since the pilot: the same file (kind, inode, device, mode,
/// owner), longer, its first bytes as they were (the pilot's hash of the whole file against
/// the same length now; a log over the hash limit is judged by the rest). Anything else
/// (replaced, truncated, rewritten) is drift like any other file's.
fn log_growth(path: &Path, now: &FileState, then: &FileState) -> Option<String> {
    let same_file = now.kind == "file" && then.kind == "file" && (now.ino, now.dev) == (then.ino, then.dev);
    let same_meta = (now.mode, now.uid, now.gid) == (then.mode, then.uid, then.gid);
    if !same_file || !same_meta || now.size <= then.size {
        return None;
    }
    let prefix = match &then.sha256 {
        Some(h) => {
            if prefix_sha256(path, then.size).ok()? != *h {
                return None;
            }
            format!("its first {} unchanged", then.size)
        }
        None => "its first bytes not compared (over the hash limit)".into(),
    };
    Some(format!("a live log, grew from {} to {} bytes since the pilot, {prefix}: expected growth", then.size, now.size))
}

/// Directories: what replaces or re-owns them, not their changing size or mtime (entries come
/// and go in any live directory).
fn dir_drift(now: &FileState, then: &FileState) -> Vec<String> {
    let mut out = Vec::new();
    if (now.ino, now.dev) != (then.ino, then.dev) {
        out.push("replaced (another inode)".to_string());
    }
    if (now.mode, now.uid, now.gid) != (then.mode, then.uid, then.gid) {
        out.push(format!("mode/owner {:o} {}:{} then, {:o} {}:{} now", then.mode, then.uid, then.gid, now.mode, now.uid, now.gid));
    }
    out
}

fn holder_change(then: Option<(String, Hold)>, now: Option<(String, Hold)>, fresh: &Snapshot) -> String {
    let pids = |name: &str| {
        let p: Vec<String> = fresh.components.iter().filter(|c| c.name == name).flat_map(|c| c.processes.iter().map(|m| m.pid.to_string())).collect();
        p.join(",")
    };
    match (then, now) {
        (None, Some((c, h))) => format!("now held by {c} (pid {}: {}); no live process held it at the pilot", pids(&c), h.verb()),
        (Some((c, h)), None) => format!("held by {c} at the pilot ({}), by no live process now", h.verb()),
        (Some((a, ha)), Some((b, hb))) => format!("now held by {b} (pid {}: {}); at the pilot by {a} ({})", pids(&b), hb.verb(), ha.verb()),
        (None, None) => String::new(),
    }
}

/// (family, addr, port) of an endpoint key `inet:127.0.0.1:80`, `inet6:[::1]:80`, `unix:unix:/x`.
fn endpoint_parts(key: &str) -> (String, String, Option<u16>) {
    let (family, rest) = key.split_once(':').unwrap_or((key, ""));
    if family == "unix" {
        return (family.into(), rest.strip_prefix("unix:").unwrap_or(rest).into(), None);
    }
    match rest.rsplit_once(':') {
        Some((addr, port)) => (family.into(), addr.trim_start_matches('[').trim_end_matches(']').into(), port.parse().ok()),
        None => (family.into(), rest.into(), None),
    }
}

fn components_changed(then: &HostSnapshot, now: &Snapshot) -> (Vec<String>, Vec<String>) {
    let a: BTreeSet<&str> = then.components.iter().map(|c| c.name.as_str()).collect();
    let b: BTreeSet<&str> = now.components.iter().map(|c| c.name.as_str()).collect();
    (b.difference(&a).map(|s| s.to_string()).collect(), a.difference(&b).map(|s| s.to_string()).collect())
}

/// The pilot's graph with components and holds attached from `fresh` instead of the snapshot
/// the pilot started with (the traced tree stays itself).
pub fn reattach(graph: &Graph, fresh: &Snapshot) -> Graph {
    let mut g = graph.clone();
    g.index = Default::default();
    for n in &mut g.nodes {
        let owner = match n.node_type {
            NodeKind::File => n.path.as_deref().and_then(|p| fresh.owner_of_path(p)).map(|(i, h)| (i, Some(h))),
            NodeKind::Endpoint => fresh
                .owner_of_endpoint(n.family.as_deref().unwrap_or(""), n.addr.as_deref().unwrap_or(""), n.port)
                .map(|i| (i, Some(Hold::Listening))),
            NodeKind::Process if n.component.as_deref() != Some(TRACED) => {
                let (pid, start) = (n.pid.unwrap_or(0), n.start_ns.unwrap_or(0));
                fresh.procs.get(&pid).filter(|(s, _)| start == 0 || *s == start).map(|(_, i)| (*i, None))
            }
            NodeKind::Filesystem => {
                let writer = fresh.filesystems.iter().find(|f| Some(f.mount.as_str()) == n.path.as_deref()).and_then(|f| f.writers.first().cloned());
                n.component = writer;
                continue;
            }
            _ => continue,
        };
        n.component = owner.map(|(i, _)| fresh.components[i].name.clone());
        n.held = owner.and_then(|(_, h)| h);
    }
    let component: BTreeMap<NodeId, Option<String>> = g.nodes.iter().map(|n| (n.id.clone(), n.component.clone())).collect();
    for e in &mut g.edges {
        e.component = component.get(&e.to).cloned().flatten();
        e.cross_component = e.component.as_deref().is_some_and(|c| c != TRACED);
    }
    g.components = fresh.components.clone();
    g.filesystems = fresh.filesystems.clone();
    g.local_addrs = fresh.local.iter().map(IpAddr::to_string).collect();
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_log_that_only_grew_is_not_drift() {
        use std::io::Write as _;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("app.log");
        std::fs::write(&p, "line 1\n").unwrap();
        let then = FileState::capture(&p, HASH_LIMIT).unwrap();
        let now = |p: &Path| FileState::capture(p, HASH_LIMIT).unwrap();
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"line 2\n").unwrap();
        assert!(!now(&p).drifted_from(&then).is_empty(), "it did change");
        let g = log_growth(&p, &now(&p), &then).expect("appended: growth");
        assert!(g.contains("grew from 7 to 14 bytes"), "{g}");
        // Rewritten in place (same inode, longer, other first bytes): drift.
        std::fs::write(&p, "LINE 1\nline 2\nline 3\n").unwrap();
        assert_eq!(log_growth(&p, &now(&p), &then), None);
        // Truncated: drift.
        std::fs::write(&p, "").unwrap();
        assert_eq!(log_growth(&p, &now(&p), &then), None);
        // Replaced by a longer file with the same first bytes (another inode): drift.
        let q = d.path().join("new.log");
        std::fs::write(&q, "line 1\nline 2\n").unwrap();
        std::fs::rename(&q, &p).unwrap();
        assert_eq!(log_growth(&p, &now(&p), &then), None);
    }

    #[test]
    fn endpoint_keys_split() {
        assert_eq!(endpoint_parts("inet:127.0.0.1:80"), ("inet".into(), "127.0.0.1".into(), Some(80)));
        assert_eq!(endpoint_parts("inet6:[::1]:443"), ("inet6".into(), "::1".into(), Some(443)));
        assert_eq!(endpoint_parts("unix:unix:/run/x.sock"), ("unix".into(), "/run/x.sock".into(), None));
    }
}
