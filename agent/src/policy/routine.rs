//! Routine operations recognized in an effect graph: the standard, safe shapes of changes a
//! rule would otherwise see as harm. Rules opt in by name (`when`, `unless`), so a site's own
//! rules see every effect unless they say otherwise.
//!
//! - `handled-signal`: a signal to a live process that catches it (a handler or a signalfd),
//!   ignores it, or whose default action is to ignore it; never SIGKILL or SIGSTOP, nor a
//!   caught SIGTERM, SIGINT or SIGQUIT (a request to exit, which the handler carries out). A
//!   SIGHUP to a service that reloads on it is not a SIGHUP to one it terminates.
//! - `log-rotation`: a live log renamed to a rotated name (`app.log.1`, `app.log-20261201`),
//!   created anew under its name, and a process of the component that writes it told to reopen
//!   it with a signal it handles, after the rename (logrotate's `create` + `postrotate`). The
//!   rename and the new file's chmod/chown are the routine; the signal is judged on its own.
//! - `copytruncate`: a live log truncated after the traced tree wrote a rotated copy of it.
//!   What the writers append between the end of the copy and the truncate is lost: the why
//!   names that window.
use foldhash::{HashMap, HashMapExt as _};

use serde::{Deserialize, Serialize};

use crate::{
    graph::{Edge, EdgeKind, Graph, Node, NodeId, NodeKind, TRACED},
    snapshot::{LogRole, logs, signals},
};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Routine {
    HandledSignal,
    LogRotation,
    Copytruncate,
}

impl Routine {
    pub const ALL: [Routine; 3] = [Routine::HandledSignal, Routine::LogRotation, Routine::Copytruncate];

    pub const fn as_str(self) -> &'static str {
        match self {
            Routine::HandledSignal => "handled-signal",
            Routine::LogRotation => "log-rotation",
            Routine::Copytruncate => "copytruncate",
        }
    }

    pub fn parse(s: &str) -> Option<Routine> {
        Routine::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// An edge recognized as part of a routine operation, and how.
#[derive(Clone, Debug)]
pub struct Recognized {
    pub routine: Routine,
    pub why: String,
}

/// The routine edges of `graph`, by index in `graph.edges`.
pub fn recognize(graph: &Graph) -> HashMap<usize, Recognized> {
    let traced = |e: &Edge| graph.node(&e.from).is_some_and(|n| n.component.as_deref() == Some(TRACED));
    let mut out = HashMap::new();
    for (i, e) in graph.edges.iter().enumerate() {
        if e.kind == EdgeKind::Signal
            && traced(e)
            && let Some(why) = graph.node(&e.to).and_then(|t| handled(e, t))
        {
            out.insert(i, Recognized { routine: Routine::HandledSignal, why });
        }
    }
    for (i, e) in graph.edges.iter().enumerate().filter(|(_, e)| matches!(e.kind, EdgeKind::Truncate | EdgeKind::Rename)) {
        let Some(log) = graph.node(&e.to).filter(|n| n.log == Some(LogRole::Live) && traced(e)) else { continue };
        let found = match e.kind {
            EdgeKind::Truncate => copytruncate(graph, e, log).map(|why| (Routine::Copytruncate, why)),
            EdgeKind::Rename => rotation(graph, &out, e, log).map(|why| (Routine::LogRotation, why)),
            _ => None,
        };
        if let Some((routine, why)) = found {
            out.insert(i, Recognized { routine, why });
        }
    }
    // The new file's mode and owner (logrotate's `create MODE USER GROUP`) belong to the
    // rotation that made it.
    let rotated: Vec<(&NodeId, u64)> = out
        .iter()
        .filter(|(_, r)| r.routine == Routine::LogRotation)
        .map(|(i, _)| (&graph.edges[*i].to, graph.edges[*i].first_ts_ns))
        .collect();
    let mut attrs = Vec::new();
    for (i, e) in graph.edges.iter().enumerate() {
        if !rotated.is_empty() && matches!(e.kind, EdgeKind::Chmod | EdgeKind::Chown) && traced(e) && rotated.iter().any(|(to, ts)| *to == &e.to && e.first_ts_ns >= *ts) {
            attrs.push(i);
        }
    }
    for i in attrs {
        let why = format!("{} of the {} the rotation created", graph.edges[i].kind, label(graph, &graph.edges[i].to));
        out.insert(i, Recognized { routine: Routine::LogRotation, why });
    }
    out
}

/// Why the target of signal edge `e` handles it, if it does.
fn handled(e: &Edge, target: &Node) -> Option<String> {
    if target.node_type != NodeKind::Process {
        return None;
    }
    let name = e.detail.as_deref()?;
    let effect = target.signals?.effect(signals::number(name)?);
    effect.handled().then(|| format!("{name} to {}: {}", target.label, effect.describe()))
}

/// `e` truncates `log` after the traced tree wrote a rotated copy of it.
fn copytruncate(graph: &Graph, e: &Edge, log: &Node) -> Option<String> {
    let name = logs::file_name(log.path.as_deref()?);
    let copy = graph
        .edges
        .iter()
        .filter(|w| w.kind == EdgeKind::Write && is_traced(graph, &w.from))
        .filter(|w| w.first_ts_ns <= e.first_ts_ns)
        .filter(|w| graph.node(&w.to).and_then(|n| n.path.as_deref()).is_some_and(|p| logs::is_rotated(logs::file_name(p), name)))
        .max_by_key(|w| w.last_ts_ns.min(e.first_ts_ns))?;
    let copied = copy.last_ts_ns.min(e.first_ts_ns);
    let window_ms = (e.first_ts_ns - copied) as f64 / 1e6;
    Some(format!(
        "{} copied to {}, then truncated: lines appended in the {window_ms:.1} ms between the end of the copy and the truncate are lost",
        log.label,
        label(graph, &copy.to)
    ))
}

/// `e` renames `log` to a rotated name; the tree then created `log` anew and told a process of
/// its component to reopen it with a signal that process handles.
fn rotation(graph: &Graph, handled: &HashMap<usize, Recognized>, e: &Edge, log: &Node) -> Option<String> {
    let name = logs::file_name(log.path.as_deref()?);
    let new_name = e.detail.as_deref()?.strip_prefix("-> ")?;
    if !logs::is_rotated(logs::file_name(new_name), name) {
        return None;
    }
    let after = e.first_ts_ns;
    graph.edges.iter().find(|c| c.kind == EdgeKind::Create && c.to == e.to && c.last_ts_ns >= after && is_traced(graph, &c.from))?;
    let signal = graph.edges.iter().enumerate().find(|(i, s)| {
        s.kind == EdgeKind::Signal
            && s.last_ts_ns >= after
            && handled.contains_key(i)
            && graph.node(&s.to).is_some_and(|t| t.component.is_some() && t.component == log.component)
    })?;
    Some(format!(
        "{} renamed to {new_name}, created anew, and {} told to reopen it with {}, which it handles",
        log.label,
        label(graph, &signal.1.to),
        signal.1.detail.as_deref().unwrap_or("a signal")
    ))
}

fn is_traced(graph: &Graph, id: &NodeId) -> bool {
    graph.node(id).is_some_and(|n| n.component.as_deref() == Some(TRACED))
}

fn label(graph: &Graph, id: &NodeId) -> String {
    graph.node(id).map(|n| n.label.clone()).unwrap_or_else(|| id.to_string())
}
