//! Rules over rpc effects (issue 18): which `rpc` edges a rule selects by protocol, operation
//! and resource globs, access, category and disposition, and which live components received
//! traffic the sink could not judge.
use std::collections::BTreeSet;

use super::{Rule, glob};
use crate::graph::{Edge, Graph, TRACED};

/// Does `rule` select edge `e`? A rule without rpc keys selects every edge its effects name;
/// one with them only rpc edges that match each key given. `unjudged` leaves out connects
/// and sends the sink understood.
pub fn selects(rule: &Rule, e: &Edge) -> bool {
    if rule.unseen_by_sink && e.via_sink {
        return false;
    }
    let keyed = !(rule.protocols.is_empty()
        && rule.operations.is_empty()
        && rule.resources.is_empty()
        && rule.access.is_empty()
        && rule.categories.is_empty()
        && rule.dispositions.is_empty());
    if !keyed {
        return true;
    }
    let Some(r) = e.rpc.as_ref() else { return false };
    let any_glob = |globs: &[String], s: &str| globs.is_empty() || globs.iter().any(|g| glob::matches(g, s) || g.eq_ignore_ascii_case(s));
    let any_of = |values: &[String], s: &str| values.is_empty() || values.iter().any(|v| v == s);
    any_of(&rule.protocols, &r.protocol)
        && any_glob(&rule.operations, &r.operation)
        && any_glob(&rule.resources, &r.resource)
        && any_of(&rule.access, &name(&r.access))
        && any_of(&rule.categories, &name(&r.category))
        && any_of(&rule.dispositions, &name(&r.disposition))
}

/// An enum's serde name (`mutation`, `admin`, `captured`).
fn name<T: serde::Serialize>(v: &Option<T>) -> String {
    v.as_ref().and_then(|x| serde_json::to_value(x).ok()).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Components (or destinations without one) that got opaque or unclassified requests, or a
/// connection whose requests the sink never saw (`--allow`, `--rpc off`).
pub fn unjudged(graph: &Graph) -> Vec<String> {
    let mut out = BTreeSet::new();
    for e in &graph.edges {
        let opaque_rpc = e.kind == "rpc"
            && e.rpc.as_ref().is_some_and(|r| matches!(r.access, Some(crate::sink::Access::Opaque | crate::sink::Access::Unclassified)));
        let unseen = matches!(e.kind.as_str(), "connect" | "send") && !e.via_sink && !e.all_failed();
        if !(opaque_rpc || unseen) {
            continue;
        }
        let Some(n) = graph.node(&e.to) else { continue };
        if n.node_type != "endpoint" {
            continue;
        }
        match n.component.as_deref() {
            Some(c) if c != TRACED => {
                out.insert(format!("{c} ({})", n.label));
            }
            // Traffic to no known live component: other hosts, or nothing at all.
            _ if opaque_rpc => {
                out.insert(n.label.clone());
            }
            _ => {}
        }
    }
    out.into_iter().collect()
}
