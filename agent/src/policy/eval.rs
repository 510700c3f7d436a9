//! Policy evaluation: effect graph + policies -> violations, risk, containment score, verdict.
//!
//! - An effect counts when it happened: a failed unlink deleted nothing. Except what the
//!   pilot's own containment made fail (signals to the host's processes end in ESRCH inside
//!   the PID namespace, Unix connects in EPERM): those attempts count, since live they would
//!   have landed.
//! - risk = 1 - prod(1 - severity) over violated rules (noisy-or: independent harms add up);
//! - containment = 1 - |affected components| / |components| (seed essay, eq. 4).
use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt as _};

use serde::{Deserialize, Serialize};

use super::{
    Action, Loaded, Rule,
    compile::{Recovery, Selector},
    routine::{self, Recognized, Routine},
};
use crate::{
    graph::{Edge, EdgeKind, Graph, Hold, Node, NodeId, NodeKind, TRACED},
    snapshot::LogRole,
};
use crate::graph::Channel;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Block => "block",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Violation {
    pub rule: String,
    pub action: Action,
    pub severity: f64,
    /// The harmed component, if the target belongs to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    pub target: String,
    pub target_id: String,
    pub effects: Vec<String>,
    pub count: u64,
    pub bytes: u64,
    pub why: String,
    /// The graph edges behind it (from, kind, to).
    pub edges: Vec<[String; 3]>,
    /// Line numbers in events.jsonl of the evidence events.
    pub events: Vec<u64>,
    /// issue 15: the channels that saw its effects, when a second channel watched them
    /// (`["overlay"]`: seen in the overlay, no syscall traced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Channel>,
}

/// An effect recognized as part of a routine operation (policy/routine.rs): rules that say
/// `unless` it let it pass, rules that say `when` it see it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RoutineNote {
    pub routine: Routine,
    /// The graph edge (from, kind, to).
    pub edge: [String; 3],
    pub why: String,
    pub events: Vec<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PolicyRef {
    pub source: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The key that signed it (`FILE.sig`), by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub risk: f64,
    pub containment: f64,
    pub affected_components: Vec<String>,
    pub components: usize,
    pub complete: bool,
    pub violations: Vec<Violation>,
    /// Gate conditions that failed (besides block rules).
    pub gate_failures: Vec<String>,
    /// Live components that received traffic whose effect pilot could not judge (opaque or
    /// unclassified requests, connections the sink did not see): said on the verdict line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unjudged: Vec<String>,
    pub gate: GateValues,
    pub policies: Vec<PolicyRef>,
    /// Effects recognized as routine operations (absent in verdicts from before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routines: Vec<RoutineNote>,
    /// issue 15: what the verdict must say although no rule judges it (io_uring in use).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct GateValues {
    pub max_risk: f64,
    pub min_containment: f64,
    pub max_fidelity_error: f64,
    pub require_complete: bool,
    /// issue 15: channels that must have seen a change (see `policy::Gate`).
    #[serde(default = "two")]
    pub required_observers: u8,
}

fn two() -> u8 {
    REQUIRED_OBSERVERS
}

/// The default of `required_observers`: the trace and the observer that saw the change.
pub const REQUIRED_OBSERVERS: u8 = 2;

/// The built-in rule blind spots violate (from the gate's `required_observers`).
pub const BLIND_SPOT_RULE: &str = "blind-spot";

/// Gate values of several policies together: the strictest of each.
pub fn gate_of(policies: &[Loaded]) -> GateValues {
    let mut g = GateValues { max_risk: 1.0, min_containment: 0.0, max_fidelity_error: 1.0, require_complete: true, required_observers: REQUIRED_OBSERVERS };
    let mut observers: Option<u8> = None;
    let mut any_complete_setting = false;
    let mut require = false;
    for p in policies {
        if let Some(gate) = &p.policy.gate {
            if let Some(v) = gate.max_risk {
                g.max_risk = g.max_risk.min(v);
            }
            if let Some(v) = gate.min_containment {
                g.min_containment = g.min_containment.max(v);
            }
            if let Some(v) = gate.max_fidelity_error {
                g.max_fidelity_error = g.max_fidelity_error.min(v);
            }
            if let Some(v) = gate.require_complete {
                any_complete_setting = true;
                require |= v;
            }
            if let Some(v) = gate.required_observers {
                observers = Some(observers.map_or(v, |o| o.max(v)));
            }
        }
    }
    if let Some(v) = observers {
        g.required_observers = v;
    }
    if any_complete_setting {
        g.require_complete = require;
    }
    g
}

/// Per node: its component once policy-named components are applied (they win).
fn component_of(node: &Node, policies: &[Loaded]) -> Option<String> {
    for p in policies {
        for c in &p.compiled.components {
            let hit = match node.node_type {
                NodeKind::File => node.path.as_deref().is_some_and(|path| c.paths.is_match(path)),
                NodeKind::Endpoint => match node.family.as_deref() {
                    Some("unix") => node.addr.as_deref().is_some_and(|a| c.unix.iter().any(|u| u == a)),
                    _ => node.port.is_some_and(|port| c.ports.contains(&port)),
                },
                NodeKind::Process if node.component.as_deref() != Some(TRACED) => {
                    let exe = node.exe.as_deref().or_else(|| node.argv.as_ref().and_then(|a| a.first().map(String::as_str)));
                    exe.is_some_and(|e| c.exe.is_match(e))
                }
                _ => false,
            };
            if hit {
                return Some(c.name.clone());
            }
        }
    }
    node.component.clone()
}

/// How many of the edge's calls took effect (see the module doc).
pub(crate) fn effective(edge: &Edge, target: &Node) -> u64 {
    let contained = edge.kind == EdgeKind::Signal
        || (target.family.as_deref() == Some("unix") && edge.kind.is_network())
        // issue 16: host and live-process changes the sandbox refused (EROFS, EPERM, ESRCH)
        || edge.kind.is_host_change();
    if contained { edge.count } else { edge.count.saturating_sub(edge.failed) }
}

/// `effective`, less what cannot have happened: bytes written to a directory (a component's
/// data or log directory). write(2) on a directory fails, so such an edge comes from an fd
/// whose path was resolved wrongly (graphs from before the trace started at the command's exec
/// hold these: pilot's own set-up write, named after a directory the command opened later).
fn took_effect(edge: &Edge, target: &Node, ctx: &Ctx) -> u64 {
    if edge.kind == EdgeKind::Write && target.path.as_deref().is_some_and(|p| ctx.dirs.contains(p)) {
        return 0;
    }
    effective(edge, target)
}

struct Ctx<'a> {
    graph: &'a Graph,
    recovery: Vec<&'a Recovery>,
    /// Per node, by its index in the graph: the component a policy or the snapshot gives it.
    components: Vec<Option<String>>,
    /// Directories the snapshot knew (data and log directories).
    dirs: std::collections::HashSet<&'a str>,
}

impl Ctx<'_> {
    fn other(&self, comp: Option<&str>) -> bool {
        comp.is_some_and(|c| c != TRACED && !self.recovery.iter().any(|r| r.is(c)))
    }

    fn component(&self, id: &NodeId) -> Option<&str> {
        self.graph.position(id).and_then(|i| self.component_at(i))
    }

    fn component_at(&self, node: usize) -> Option<&str> {
        self.components[node].as_deref()
    }
}

/// `comp`: the node's component (`Ctx::component`).
fn target_matches(sel: &Selector, node: &Node, comp: Option<&str>, ctx: &Ctx) -> bool {
    let held = node.held;
    match sel {
        Selector::AnyOther => ctx.other(comp),
        Selector::Held => ctx.other(comp) && held.is_some_and(Hold::is_file_hold),
        Selector::LiveLog => ctx.other(comp) && held.is_some_and(Hold::is_file_hold) && node.log == Some(LogRole::Live),
        Selector::DataDir => {
            ctx.other(comp) && held == Some(Hold::DataDir) && node.log != Some(LogRole::Rotated) && node.created != Some(true)
        }
        Selector::DataDirNew => ctx.other(comp) && held == Some(Hold::DataDir) && node.created == Some(true) && node.like.is_none(),
        Selector::DataDirLike => ctx.other(comp) && held == Some(Hold::DataDir) && node.created == Some(true) && node.like.is_some(),
        Selector::LiveProcess => match node.node_type {
            NodeKind::Process => ctx.other(comp),
            // kill -1, or a process group the pilot did not create; one whose live members are
            // known has an edge to each of them, judged on its own.
            NodeKind::ProcessGroup => !node.id.is_own_process_group() && node.members.is_none_or(|m| m == 0),
            _ => false,
        },
        Selector::LiveService => node.node_type == NodeKind::Endpoint && held == Some(Hold::Listening) && ctx.other(comp),
        // issue 18: any destination outside the pilot, a live local service or another host's.
        Selector::AnyEndpoint => node.node_type == NodeKind::Endpoint && (comp.is_none() || ctx.other(comp)),
        Selector::LiveFs => node.node_type == NodeKind::Filesystem && ctx.other(comp),
        // issue 16: a host-wide setting (kernel, network, clock, swap, mounts, modules, cgroups)
        Selector::Host => node.node_type == NodeKind::Host,
        Selector::Path(glob) => node.node_type == NodeKind::File && node.path.as_deref().is_some_and(|p| glob.is_match(p)),
        Selector::Unix(path) => node.family.as_deref() == Some("unix") && node.addr.as_deref() == Some(path.as_str()),
        Selector::Endpoint { addr, port } => {
            node.node_type == NodeKind::Endpoint && node.port == Some(*port) && (addr.is_empty() || node.addr.as_deref() == Some(addr.as_str()))
        }
        Selector::Component(name) => comp == Some(name.as_str()),
    }
}

#[derive(Default)]
struct Tally<'a> {
    count: u64,
    bytes: u64,
    first: u64,
    last: u64,
    /// By name: violations list them alphabetically.
    kinds: BTreeSet<&'static str>,
    edges: Vec<&'a Edge>,
    /// Why the routine edges behind it are routine (rules that count only those).
    notes: BTreeSet<&'a str>,
}

pub fn evaluate(graph: &Graph, policies: &[Loaded]) -> Evaluation {
    let ctx = Ctx {
        recovery: policies.iter().filter_map(|p| p.compiled.recovery.as_ref()).collect(),
        graph,
        components: graph.nodes.iter().map(|n| component_of(n, policies)).collect(),
        dirs: graph.components.iter().flat_map(|c| c.data_dirs.iter().chain(&c.log_dirs)).map(String::as_str).collect(),
    };
    let routines = routine::recognize(graph);
    // Per edge, once for every rule (each rule then reads these, not the edges): its kind,
    // its target's index and how many of its calls took effect (0: none, or no target).
    let took: Vec<(EdgeKind, usize, u64)> = graph
        .edges
        .iter()
        .enumerate()
        .map(|(ei, e)| match graph.ends_of(ei).1 {
            Some(t) => (e.kind, t, took_effect(e, &graph.nodes[t], &ctx)),
            None => (e.kind, usize::MAX, 0),
        })
        .collect();
    let mut affected = BTreeSet::new();
    let mut violations = Vec::new();
    for &(_, t, n) in &took {
        if n > 0
            && let Some(c) = ctx.component_at(t).filter(|c| ctx.other(Some(c)))
        {
            affected.insert(c.to_string());
        }
    }
    for p in policies {
        for (rule, compiled) in p.policy.rules.iter().zip(&p.compiled.rules) {
            let mut by_target: HashMap<&NodeId, Tally> = HashMap::new();
            for (i, &(kind, t, n)) in took.iter().enumerate() {
                if n == 0 || !compiled.selects_kind(kind) {
                    continue;
                }
                let e = &graph.edges[i];
                let recognized = routines.get(&i);
                if !compiled.selects(e) || !compiled.counts(recognized.map(|r| r.routine)) {
                    continue;
                }
                let target = &graph.nodes[t];
                if !target_matches(&compiled.target, target, ctx.component_at(t), &ctx) {
                    continue;
                }
                let t = by_target.entry(&e.to).or_default();
                if let Some(r) = recognized.filter(|_| !compiled.when.is_empty()) {
                    t.notes.insert(&r.why);
                }
                t.count += n;
                t.bytes += e.bytes;
                t.first = if t.first == 0 { e.first_ts_ns } else { t.first.min(e.first_ts_ns) };
                t.last = t.last.max(e.last_ts_ns);
                t.kinds.insert(e.kind.as_str());
                t.edges.push(e);
            }
            // In the order of the target ids as written, so violations come out stable.
            let mut by_target: Vec<(String, &NodeId, Tally)> = by_target.into_iter().map(|(id, t)| (id.to_string(), id, t)).collect();
            by_target.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, id, t) in by_target {
                let Some(target) = graph.node(id) else { continue };
                let free = graph.filesystems.iter().find(|f| target.path.as_deref() == Some(f.mount.as_str())).map(|f| f.free_bytes);
                if let Some(excess) = exceeded(rule, &t, free) {
                    violations.push(violation(rule, target, &ctx, &t, excess));
                }
            }
        }
    }
    violations.extend(blind_spots(graph, &ctx, gate_of(policies).required_observers));
    let risk = risk_of(&violations);
    let total = component_count(graph, policies);
    let containment = if total == 0 { 1.0 } else { 1.0 - affected.len() as f64 / total as f64 };
    let gate = gate_of(policies);
    let mut gate_failures = Vec::new();
    if risk > gate.max_risk {
        gate_failures.push(format!("risk {risk:.2} is over the gate's max_risk {:.2}", gate.max_risk));
    }
    if containment < gate.min_containment {
        gate_failures.push(format!("containment {containment:.2} is under the gate's min_containment {:.2}", gate.min_containment));
    }
    let unseen = graph.channels.as_ref().map_or(&[][..], |c| &c.unseen_processes[..]);
    if gate.require_complete && !graph.complete {
        if graph.lost_events > 0 || unseen.is_empty() {
            gate_failures.push(format!("the trace lost {} events: what the pilot did is not fully known", graph.lost_events));
        }
        if !unseen.is_empty() {
            let who: Vec<String> = unseen.iter().map(|p| format!("{} {}", p.pid, p.comm)).collect();
            gate_failures.push(format!(
                "the pilot cgroup had {} process(es) the trace never saw ({}): what they did is not known",
                unseen.len(),
                who.join(", ")
            ));
        }
    }
    let mut notes = Vec::new();
    if let Some(c) = graph.channels.as_ref().filter(|c| !c.io_uring.is_empty()) {
        notes.push(format!("{} ({})", crate::graph::channels::IO_URING_NOTE, c.io_uring.join(", ")));
    }
    let unjudged = super::rpc::unjudged(graph);
    let verdict = if !gate_failures.is_empty() || violations.iter().any(|v| v.action == Action::Block) {
        Verdict::Block
    } else if !violations.is_empty() {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    Evaluation {
        verdict,
        risk,
        containment,
        affected_components: affected.into_iter().collect(),
        components: total,
        complete: graph.complete,
        violations,
        gate_failures,
        unjudged,
        gate,
        policies: policies.iter().map(Loaded::reference).collect(),
        routines: routine_notes(graph, &routines),
        notes,
    }
}

/// The recognized routine edges, in the graph's order.
fn routine_notes(graph: &Graph, routines: &HashMap<usize, Recognized>) -> Vec<RoutineNote> {
    let mut out: Vec<(usize, RoutineNote)> = routines
        .iter()
        .map(|(i, r)| {
            let e = &graph.edges[*i];
            let edge = [e.from.to_string(), e.kind.as_str().to_string(), e.to.to_string()];
            (*i, RoutineNote { routine: r.routine, edge, why: r.why.clone(), events: e.events.clone() })
        })
        .collect();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, n)| n).collect()
}

/// issue 15: effects only a second channel saw, when the gate requires two. On anything a
/// live component holds (a file it has open, maps or keeps in its data directory, an endpoint
/// it listens on) the change is blocked: the trace cannot say what else such a path did, and
/// a commit would make it live. Elsewhere (the pilot's own files) it is a warning.
fn blind_spots(graph: &Graph, ctx: &Ctx, required: u8) -> Vec<Violation> {
    if required < 2 {
        return Vec::new();
    }
    let mut by_target: BTreeMap<String, (&NodeId, Tally)> = BTreeMap::new();
    for e in graph.edges.iter().filter(|e| e.blind_spot()) {
        let Some(target) = graph.node(&e.to) else { continue };
        if effective(e, target) == 0 {
            continue;
        }
        let (_, t) = by_target.entry(e.to.to_string()).or_insert((&e.to, Tally::default()));
        t.count += effective(e, target);
        t.bytes += e.bytes;
        t.kinds.insert(e.kind.as_str());
        t.edges.push(e);
    }
    by_target
        .into_values()
        .filter_map(|(id, t)| {
            let target = graph.node(id)?;
            let live = ctx.other(ctx.component(id));
            let rule = Rule {
                id: BLIND_SPOT_RULE.into(),
                effects: Vec::new(),
                target: "@held".into(),
                max_count: None,
                max_bytes: None,
                max_rate: None,
                max_fill: None,
                protocols: Vec::new(),
                operations: Vec::new(),
                resources: Vec::new(),
                except_resources: Vec::new(),
                access: Vec::new(),
                categories: Vec::new(),
                dispositions: Vec::new(),
                unseen_by_sink: false,
                when: Vec::new(),
                unless: Vec::new(),
                action: if live { Action::Block } else { Action::Warn },
                severity: if live { 0.9 } else { 0.2 },
            };
            Some(violation(&rule, target, ctx, &t, String::new()))
        })
        .collect()
}

/// None: within limits. Some(text): what was exceeded.
fn exceeded(rule: &Rule, t: &Tally, free_bytes: Option<u64>) -> Option<String> {
    if rule.max_count.is_none() && rule.max_bytes.is_none() && rule.max_rate.is_none() && rule.max_fill.is_none() {
        return Some(String::new());
    }
    if let Some(max) = rule.max_count.filter(|m| t.count > *m) {
        return Some(format!("{} effects, over max_count {max}", t.count));
    }
    if let Some(max) = rule.max_bytes.filter(|m| t.bytes > *m) {
        return Some(format!("{} bytes, over max_bytes {max}", t.bytes));
    }
    if let (Some(max), Some(free)) = (rule.max_fill, free_bytes) {
        if t.bytes as f64 > max * free as f64 {
            return Some(format!("{} bytes written, over max_fill {max} of the {free} bytes free at the start", t.bytes));
        }
    }
    if let Some(max) = rule.max_rate {
        let secs = ((t.last.saturating_sub(t.first)) as f64 / 1e9).max(1.0);
        let rate = t.count as f64 / secs;
        if rate > max {
            return Some(format!("{rate:.1}/s, over max_rate {max}/s"));
        }
    }
    None
}

fn violation(rule: &Rule, target: &Node, ctx: &Ctx, t: &Tally, excess: String) -> Violation {
    let component = ctx.component(&target.id).map(str::to_string);
    let kinds: Vec<String> = t.kinds.iter().map(|k| k.to_string()).collect();
    let by: BTreeSet<String> = t.edges.iter().map(|e| ctx.graph.node(&e.from).map(|n| n.label.clone()).unwrap_or_default()).collect();
    let by = by.into_iter().collect::<Vec<_>>().join(", ");
    let held = target.held.map_or("", Hold::verb);
    let owner = match (&component, held.is_empty()) {
        (Some(c), false) => format!(": {c} {held}"),
        (Some(c), true) => format!(": belongs to {c}"),
        (None, _) => String::new(),
    };
    // issue 18: an rpc violation names its requests (protocol, operation, resource).
    let rpcs: BTreeSet<String> = t.edges.iter().filter_map(|e| e.rpc.as_ref().map(|_| e.detail.clone().unwrap_or_default())).collect();
    // Issue 16: what a host or live-process change sets (a sysctl's value, `nice 19`).
    let sets: BTreeSet<&str> = t.edges.iter().filter(|e| e.kind.is_host_change()).filter_map(|e| e.detail.as_deref()).collect();
    let sets = if sets.is_empty() { String::new() } else { format!(" -> {}", sets.into_iter().collect::<Vec<_>>().join(", ")) };
    let mut why = if rpcs.is_empty() {
        format!("{} {}{sets}{owner} (by {by})", kinds.join("+"), target.label)
    } else {
        format!("rpc {} to {}{owner} (by {by})", rpcs.into_iter().collect::<Vec<_>>().join(", "), target.label)
    };
    if !excess.is_empty() {
        why.push_str(&format!("; {excess}"));
    }
    for note in &t.notes {
        why.push_str(&format!("; {note}"));
    }
    if let Some(like) = &target.like {
        why.push_str(&format!("; it holds {like} open there: it reads files named like it"));
    }
    // issue 15: which channel saw it, and the evidence when the trace did not.
    let mut channels: Vec<Channel> = t.edges.iter().flat_map(|e| e.seen_by.iter().copied()).collect();
    channels.sort();
    channels.dedup();
    let mut blind: Vec<&'static str> = t.edges.iter().filter(|e| e.blind_spot()).flat_map(|e| e.seen_by.iter().map(|c| c.evidence())).collect();
    blind.sort();
    blind.dedup();
    if !blind.is_empty() {
        why.push_str(&format!("; {}", blind.join("; ")));
    }
    let mut events: Vec<u64> = t.edges.iter().flat_map(|e| e.events.iter().copied()).collect();
    events.sort();
    events.dedup();
    Violation {
        rule: rule.id.clone(),
        action: rule.action,
        severity: rule.severity,
        component,
        target: target.label.clone(),
        target_id: target.id.to_string(),
        effects: kinds,
        count: t.count,
        bytes: t.bytes,
        why,
        edges: t.edges.iter().map(|e| [e.from.to_string(), e.kind.as_str().to_string(), e.to.to_string()]).collect(),
        events,
        channels,
    }
}

fn risk_of(violations: &[Violation]) -> f64 {
    let mut by_rule: BTreeMap<&str, f64> = BTreeMap::new();
    for v in violations {
        let s = by_rule.entry(v.rule.as_str()).or_default();
        *s = s.max(v.severity);
    }
    1.0 - by_rule.values().fold(1.0, |acc, s| acc * (1.0 - s))
}

fn component_count(graph: &Graph, policies: &[Loaded]) -> usize {
    let mut names: BTreeSet<&str> = graph.components.iter().map(|c| c.name.as_str()).collect();
    for p in policies {
        names.extend(p.policy.components.iter().map(|c| c.name.as_str()));
    }
    names.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{graph::SCHEMA, policy::parse, snapshot::Component};

    fn graph(edges: Vec<Edge>, nodes: Vec<Node>) -> Graph {
        Graph {
            schema: SCHEMA.into(),
            target: "t".into(),
            host: "h".into(),
            complete: true,
            lost_events: 0,
            nodes,
            edges,
            components: vec![
                Component { name: "db".into(), ..Default::default() },
                Component { name: "web".into(), ..Default::default() },
                Component { name: "cache".into(), ..Default::default() },
                Component { name: "cron".into(), ..Default::default() },
            ],
            filesystems: vec![crate::snapshot::filesystems::Filesystem {
                mount: "/srv".into(),
                fstype: "ext4".into(),
                size_bytes: 1000,
                free_bytes: 400,
                writers: ["db".to_string()].into(),
            }],
            ..Default::default()
        }
    }

    fn file(path: &str, comp: Option<&str>, held: Option<&str>) -> Node {
        Node {
            id: format!("file:{path}").into(),
            node_type: "file".into(),
            label: path.into(),
            path: Some(path.into()),
            component: comp.map(str::to_string),
            held: held.map(Into::into),
            ..Default::default()
        }
    }

    fn proc_node() -> Node {
        Node { id: "process:1:1".into(), node_type: "process".into(), label: "1 sh".into(), component: Some(TRACED.into()), ..Default::default() }
    }

    fn edge(kind: &str, to: impl Into<NodeId>, count: u64, failed: u64) -> Edge {
        Edge { from: "process:1:1".into(), to: to.into(), kind: kind.into(), count, failed, events: vec![3], last_ts_ns: 1, first_ts_ns: 1, ..Default::default() }
    }

    fn default_policy() -> Vec<Loaded> {
        vec![parse("default", super::super::DEFAULT).unwrap()]
    }

    #[test]
    fn deleting_a_live_file_blocks_and_says_why() {
        let g = graph(vec![edge("unlink", "file:/db/data", 1, 0)], vec![proc_node(), file("/db/data", Some("db"), Some("open-for-write"))]);
        let ev = evaluate(&g, &default_policy());
        assert_eq!(ev.verdict, Verdict::Block);
        let v = &ev.violations[0];
        assert_eq!(v.rule, "live-file-destroyed");
        assert_eq!(v.component.as_deref(), Some("db"));
        assert!(v.why.contains("db holds open for writing"), "{}", v.why);
        assert_eq!(v.events, vec![3]);
        assert!((ev.containment - 0.75).abs() < 1e-9, "one of four components affected");
        assert!((ev.risk - 0.9).abs() < 1e-9);
    }

    #[test]
    fn a_failed_unlink_deleted_nothing() {
        let g = graph(vec![edge("unlink", "file:/db/data", 1, 1)], vec![proc_node(), file("/db/data", Some("db"), Some("open"))]);
        assert_eq!(evaluate(&g, &default_policy()).verdict, Verdict::Pass);
    }

    #[test]
    fn own_files_pass() {
        let g = graph(vec![edge("unlink", "file:/tmp/mine", 5, 0), edge("write", "file:/tmp/mine", 5, 0)], vec![proc_node(), file("/tmp/mine", None, None)]);
        let ev = evaluate(&g, &default_policy());
        assert_eq!(ev.verdict, Verdict::Pass);
        assert_eq!(ev.containment, 1.0);
    }

    #[test]
    fn the_component_under_recovery_may_be_changed() {
        let mut p = default_policy();
        p.push(parse("r", "[recovery]\ncomponent = \"db\"\n").unwrap());
        let g = graph(vec![edge("unlink", "file:/db/data", 1, 0)], vec![proc_node(), file("/db/data", Some("db"), Some("open"))]);
        assert_eq!(evaluate(&g, &p).verdict, Verdict::Pass);
    }

    #[test]
    fn thresholds_count_bytes_and_rate() {
        let p = vec![parse("p", r#"
[[component]]
name = "peer"
ports = [9000]
[[rule]]
id = "flood"
effects = ["send"]
target = "peer"
max_bytes = 1000
action = "block"
severity = 0.7
[[rule]]
id = "tight-loop"
effects = ["connect"]
target = ":9000"
max_rate = 10.0
action = "block"
severity = 0.5
"#).unwrap()];
        let ep = Node { id: "endpoint:inet:127.0.0.1:9000".into(), node_type: "endpoint".into(), label: "127.0.0.1:9000".into(), port: Some(9000), addr: Some("127.0.0.1".into()), family: Some("inet".into()), ..Default::default() };
        let mut send = edge("send", &ep.id, 1, 0);
        send.bytes = 500;
        let mut connects = edge("connect", &ep.id, 15, 0);
        connects.first_ts_ns = 0;
        connects.last_ts_ns = 3_000_000_000;
        let ev = evaluate(&graph(vec![send.clone(), connects.clone()], vec![proc_node(), ep.clone()]), &p);
        assert_eq!(ev.verdict, Verdict::Pass, "{:?}", ev.violations);
        send.bytes = 5000;
        connects.count = 500;
        let ev = evaluate(&graph(vec![send, connects], vec![proc_node(), ep]), &p);
        let rules: Vec<&str> = ev.violations.iter().map(|v| v.rule.as_str()).collect();
        assert_eq!(rules, ["flood", "tight-loop"]);
        assert_eq!(ev.violations[0].component.as_deref(), Some("peer"));
    }

    #[test]
    fn lost_events_block_unless_the_gate_allows() {
        let mut g = graph(vec![], vec![proc_node()]);
        g.complete = false;
        g.lost_events = 7;
        assert_eq!(evaluate(&g, &default_policy()).verdict, Verdict::Block);
        let lenient = vec![parse("p", "[gate]\nrequire_complete = false\n").unwrap()];
        assert_eq!(evaluate(&g, &lenient).verdict, Verdict::Pass);
    }

    #[test]
    fn signals_count_although_the_pid_namespace_stopped_them() {
        let target = Node { id: "process:50:9".into(), node_type: "process".into(), label: "50 web".into(), component: Some("web".into()), ..Default::default() };
        let g = graph(vec![edge("signal", "process:50:9", 1, 1)], vec![proc_node(), target]);
        let ev = evaluate(&g, &default_policy());
        assert_eq!(ev.verdict, Verdict::Block);
        assert_eq!(ev.violations[0].rule, "live-process-signalled");
    }

    #[test]
    fn filling_a_shared_filesystem_weighs_bytes_against_free_space() {
        let fs = Node {
            id: "filesystem:/srv".into(),
            node_type: "filesystem".into(),
            label: "/srv".into(),
            component: Some("db".into()),
            held: Some("live-fs".into()),
            path: Some("/srv".into()),
            ..Default::default()
        };
        let fill = |bytes| Edge { bytes, ..edge("fill", "filesystem:/srv", 3, 0) };
        let ev = evaluate(&graph(vec![fill(300)], vec![fs.clone(), proc_node()]), &default_policy());
        let v = ev.violations.iter().find(|v| v.rule == "shared-disk-fill").expect("300 of 400 free bytes is over half");
        assert_eq!(v.component.as_deref(), Some("db"));
        assert_eq!(ev.verdict, Verdict::Block);
        let ev = evaluate(&graph(vec![fill(100)], vec![fs, proc_node()]), &default_policy());
        assert_eq!(ev.verdict, Verdict::Pass, "{:?}", ev.violations);
    }

    fn at(mut e: Edge, first: u64, last: u64) -> Edge {
        e.first_ts_ns = first;
        e.last_ts_ns = last;
        e
    }

    fn live_log(path: &str) -> Node {
        Node { log: Some(LogRole::Live), ..file(path, Some("db"), Some("open-for-write")) }
    }

    fn db_process(signals: crate::snapshot::Signals) -> Node {
        Node { id: "process:50:9".into(), node_type: "process".into(), label: "50 db".into(), component: Some("db".into()), signals: Some(signals), ..Default::default() }
    }

    const HUP_CAUGHT: crate::snapshot::Signals = crate::snapshot::Signals { caught: 1, ignored: 0, blocked: 0 };

    fn rules(ev: &Evaluation) -> Vec<(&str, Action)> {
        ev.violations.iter().map(|v| (v.rule.as_str(), v.action)).collect()
    }

    #[test]
    fn copytruncate_warns_naming_the_window_and_truncating_without_a_copy_blocks() {
        let log = live_log("/db/log/app.log");
        let copy = file("/db/log/app.log.1", None, None);
        let edges = vec![at(edge("write", "file:/db/log/app.log.1", 3, 0), 1_000_000, 5_000_000), at(edge("truncate", "file:/db/log/app.log", 1, 0), 7_500_000, 7_500_000)];
        let ev = evaluate(&graph(edges, vec![proc_node(), log.clone(), copy]), &default_policy());
        assert_eq!(ev.verdict, Verdict::Warn, "{:?}", ev.violations);
        assert_eq!(rules(&ev), [("live-log-copytruncate", Action::Warn)]);
        assert!(ev.violations[0].why.contains("2.5 ms between the end of the copy and the truncate"), "{}", ev.violations[0].why);
        assert_eq!(ev.routines[0].routine, Routine::Copytruncate);
        // The same truncate with the copy written elsewhere (a WAL replay) is no rotation.
        let elsewhere = file("/db/state/replayed.db", None, None);
        let edges = vec![at(edge("write", "file:/db/state/replayed.db", 3, 0), 1, 5), at(edge("truncate", "file:/db/log/app.log", 1, 0), 7, 7)];
        let ev = evaluate(&graph(edges, vec![proc_node(), log, elsewhere]), &default_policy());
        assert_eq!(ev.verdict, Verdict::Block);
        assert_eq!(rules(&ev), [("live-file-destroyed", Action::Block)]);
    }

    #[test]
    fn rename_create_and_a_handled_reopen_signal_is_a_rotation() {
        let rotation = |signals| {
            let edges = vec![
                at(Edge { detail: Some("-> /db/log/app.log.1".into()), ..edge("rename", "file:/db/log/app.log", 1, 0) }, 10, 10),
                at(edge("create", "file:/db/log/app.log", 1, 0), 20, 20),
                at(Edge { detail: Some("mode 640".into()), ..edge("chmod", "file:/db/log/app.log", 1, 0) }, 21, 21),
                at(Edge { detail: Some("SIGHUP".into()), ..edge("signal", "process:50:9", 1, 1) }, 30, 30),
            ];
            evaluate(&graph(edges, vec![proc_node(), live_log("/db/log/app.log"), db_process(signals)]), &default_policy())
        };
        let ev = rotation(HUP_CAUGHT);
        assert_eq!(rules(&ev), [("live-process-signal-handled", Action::Warn)], "{:?}", ev.violations);
        assert!(ev.violations[0].why.contains("the target catches it"), "{}", ev.violations[0].why);
        assert_eq!(ev.verdict, Verdict::Warn);
        let kinds: Vec<Routine> = ev.routines.iter().map(|r| r.routine).collect();
        assert_eq!(kinds, [Routine::LogRotation, Routine::LogRotation, Routine::HandledSignal]);
        // The same rotation signalling a process that does not catch SIGHUP kills it.
        let ev = rotation(crate::snapshot::Signals::default());
        assert_eq!(ev.verdict, Verdict::Block);
        assert_eq!(rules(&ev), [("live-file-destroyed", Action::Block), ("live-process-signalled", Action::Block)]);
    }

    #[test]
    fn signals_are_judged_by_what_the_target_does_with_them() {
        let signal = |name: &str, signals| {
            let e = Edge { detail: Some(name.into()), ..edge("signal", "process:50:9", 1, 1) };
            evaluate(&graph(vec![e], vec![proc_node(), db_process(signals)]), &default_policy())
        };
        assert_eq!(signal("SIGHUP", HUP_CAUGHT).verdict, Verdict::Warn);
        assert_eq!(signal("SIGTERM", HUP_CAUGHT).verdict, Verdict::Block);
        assert_eq!(signal("SIGWINCH", HUP_CAUGHT).verdict, Verdict::Warn, "its default action is to ignore it");
        let everything = crate::snapshot::Signals { caught: u64::MAX, ignored: 0, blocked: 0 };
        assert_eq!(signal("SIGKILL", everything).verdict, Verdict::Block);
        assert_eq!(signal("SIGTERM", everything).verdict, Verdict::Block, "a caught SIGTERM is still a shutdown");
        assert_eq!(signal("SIGUSR1", everything).verdict, Verdict::Warn);
        assert_eq!(signal("SIGSTOP", everything).verdict, Verdict::Block);
        // A graph from before dispositions were read: blocked as before.
        let e = Edge { detail: Some("SIGHUP".into()), ..edge("signal", "process:50:9", 1, 1) };
        let unknown = Node { signals: None, ..db_process(HUP_CAUGHT) };
        assert_eq!(evaluate(&graph(vec![e], vec![proc_node(), unknown]), &default_policy()).verdict, Verdict::Block);
    }

    #[test]
    fn a_group_kill_is_judged_per_member() {
        let group = |members| Node { id: "process_group:77".into(), node_type: "process_group".into(), label: "process group 77".into(), members, ..Default::default() };
        let edges = vec![
            Edge { detail: Some("SIGHUP".into()), ..edge("signal", "process_group:77", 1, 1) },
            Edge { detail: Some("SIGHUP".into()), ..edge("signal", "process:50:9", 1, 1) },
        ];
        let ev = evaluate(&graph(edges.clone(), vec![proc_node(), group(Some(1)), db_process(HUP_CAUGHT)]), &default_policy());
        assert_eq!(ev.verdict, Verdict::Warn, "{:?}", ev.violations);
        let ev = evaluate(&graph(edges, vec![proc_node(), group(None), db_process(HUP_CAUGHT)]), &default_policy());
        assert_eq!(ev.verdict, Verdict::Block, "members unknown: the group itself counts");
    }

    #[test]
    fn data_directories_hold_data_not_new_files_rotated_logs_or_backups_beside_them() {
        let data = |path: &str, created: Option<bool>, like: Option<&str>| Node { created, like: like.map(str::to_string), ..file(path, Some("db"), Some("data-dir")) };
        let one = |e: Edge, n: Node| evaluate(&graph(vec![e], vec![proc_node(), n]), &default_policy());
        assert_eq!(one(edge("write", "file:/db/data/seg-7", 1, 0), data("/db/data/seg-7", Some(false), None)).verdict, Verdict::Block);
        assert_eq!(one(edge("unlink", "file:/db/data/seg-7", 1, 0), data("/db/data/seg-7", None, None)).verdict, Verdict::Block, "unknown: existing");
        let ev = one(edge("create", "file:/db/data/dump.sql", 1, 0), data("/db/data/dump.sql", Some(true), None));
        assert_eq!(rules(&ev), [("live-data-dir-file-added", Action::Warn)]);
        assert_eq!(one(edge("write", "file:/db/data/dump.sql", 1, 0), data("/db/data/dump.sql", Some(true), None)).verdict, Verdict::Pass);
        let ev = one(edge("create", "file:/db/data/segments_2", 1, 0), data("/db/data/segments_2", Some(true), Some("/db/data/segments_1")));
        assert_eq!(rules(&ev), [("live-data-dir-file-read", Action::Block)]);
        assert!(ev.violations[0].why.contains("holds /db/data/segments_1 open there"), "{}", ev.violations[0].why);
        let rotated = Node { log: Some(LogRole::Rotated), ..data("/db/data/app.log.3.gz", Some(false), None) };
        assert_eq!(one(edge("unlink", "file:/db/data/app.log.3.gz", 1, 0), rotated).verdict, Verdict::Pass);
        let dir = data("/db/data", Some(false), None);
        assert_eq!(one(edge("rename", "file:/db/data", 1, 0), dir).verdict, Verdict::Block, "renaming the data directory");
    }

    #[test]
    fn a_write_to_a_directory_did_not_happen() {
        // Graphs from before the trace started at the exec: the sandbox's handshake write,
        // named after the directory the command opened on that fd number later.
        let mut g = graph(vec![edge("write", "file:/db/data", 1, 0)], vec![proc_node(), file("/db/data", Some("db"), Some("data-dir"))]);
        g.components[0].data_dirs.insert("/db/data".into());
        assert_eq!(evaluate(&g, &default_policy()).verdict, Verdict::Pass);
    }

    #[test]
    fn blind_spots_block_on_live_targets_and_warn_elsewhere() {
        let seen_by_overlay = |to: &str| Edge { seen_by: vec![Channel::Overlay], events: vec![], ..edge("write", to, 1, 0) };
        let g = graph(vec![seen_by_overlay("file:/db/data")], vec![proc_node(), file("/db/data", Some("db"), Some("open-for-write"))]);
        let ev = evaluate(&g, &default_policy());
        assert_eq!(ev.verdict, Verdict::Block);
        let v = ev.violations.iter().find(|v| v.rule == BLIND_SPOT_RULE).expect("a blind-spot violation");
        assert_eq!((v.action, v.channels.as_slice()), (Action::Block, &[Channel::Overlay][..]));
        assert!(v.why.contains("seen in the overlay, no syscall traced"), "{}", v.why);
        let rule = ev.violations.iter().find(|v| v.rule == "live-file-destroyed").expect("the rules judge it as an effect");
        assert!(rule.why.contains("seen in the overlay"), "{}", rule.why);
        // The pilot's own file: a warning.
        let g = graph(vec![seen_by_overlay("file:/tmp/mine")], vec![proc_node(), file("/tmp/mine", None, None)]);
        let ev = evaluate(&g, &default_policy());
        assert_eq!(ev.verdict, Verdict::Warn);
        // One observer required: the rules alone judge it.
        let lenient = vec![parse("p", "[gate]\nrequired_observers = 1\n").unwrap()];
        assert_eq!(evaluate(&g, &lenient).verdict, Verdict::Pass);
        assert!(parse("p", "[gate]\nrequired_observers = 3\n").is_err());
        // Confirmed by both channels: no blind spot.
        let both = Edge { seen_by: vec![Channel::Trace, Channel::Overlay], ..edge("write", "file:/tmp/mine", 1, 0) };
        assert_eq!(evaluate(&graph(vec![both], vec![proc_node(), file("/tmp/mine", None, None)]), &default_policy()).verdict, Verdict::Pass);
    }

    #[test]
    fn an_unseen_process_makes_the_run_incomplete_and_io_uring_is_noted() {
        let mut g = graph(vec![], vec![proc_node()]);
        g.complete = false;
        g.channels = Some(crate::graph::Observed {
            unseen_processes: vec![crate::graph::channels::UnseenProcess { pid: 9, start_ns: 1, comm: "x".into() }],
            io_uring: vec!["1 sh".into()],
            ..Default::default()
        });
        let ev = evaluate(&g, &default_policy());
        assert_eq!(ev.verdict, Verdict::Block);
        assert_eq!(ev.gate_failures.len(), 1, "{:?}", ev.gate_failures);
        assert!(ev.gate_failures[0].contains("1 process(es) the trace never saw (9 x)"));
        assert!(ev.notes[0].starts_with(crate::graph::channels::IO_URING_NOTE));
    }

    #[test]
    fn traffic_to_a_live_service_warns() {
        let ep = Node { id: "endpoint:inet:127.0.0.1:80".into(), node_type: "endpoint".into(), label: "127.0.0.1:80".into(), component: Some("web".into()), held: Some("listening".into()), ..Default::default() };
        let g = graph(vec![edge("connect", &ep.id, 1, 0)], vec![proc_node(), ep]);
        let ev = evaluate(&g, &default_policy());
        assert_eq!(ev.verdict, Verdict::Warn);
        assert!((ev.risk - 0.3).abs() < 1e-9);
    }
}
