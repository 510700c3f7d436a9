//! Rules over rpc effects (issue 18): which `rpc` edges a rule selects by protocol, operation
//! and resource globs, access, category and disposition (compiled once, with the rest of the
//! policy), and which live components received traffic the sink could not judge.
use std::collections::BTreeSet;

use globset::GlobSet;

use super::{Rule, glob};
use crate::{
    graph::{Edge, EdgeKind, Graph, NodeKind, TRACED},
    rundir::Access,
};

/// Globs that also match their own text in any case (`config set` names `CONFIG SET`).
#[derive(Debug, Clone, Default)]
struct Patterns {
    set: GlobSet,
    raw: Vec<String>,
}

impl Patterns {
    fn new(globs: &[String]) -> Result<Patterns, globset::Error> {
        Ok(Patterns { set: glob::set(globs)?, raw: globs.to_vec() })
    }

    fn matches(&self, s: &str) -> bool {
        self.raw.is_empty() || self.set.is_match(s) || self.raw.iter().any(|g| g.eq_ignore_ascii_case(s))
    }
}

/// A rule's rpc keys, compiled.
#[derive(Debug, Clone, Default)]
pub struct RpcKeys {
    protocols: Vec<String>,
    operations: Patterns,
    resources: Patterns,
    except_resources: Option<GlobSet>,
    access: Vec<String>,
    categories: Vec<String>,
    dispositions: Vec<String>,
    unseen_by_sink: bool,
    /// Any rpc key given: the rule selects only rpc edges.
    keyed: bool,
}

impl RpcKeys {
    pub fn compile(rule: &Rule) -> Result<RpcKeys, globset::Error> {
        Ok(RpcKeys {
            protocols: rule.protocols.clone(),
            operations: Patterns::new(&rule.operations)?,
            resources: Patterns::new(&rule.resources)?,
            except_resources: if rule.except_resources.is_empty() { None } else { Some(glob::set(&rule.except_resources)?) },
            access: rule.access.clone(),
            categories: rule.categories.clone(),
            dispositions: rule.dispositions.clone(),
            unseen_by_sink: rule.unseen_by_sink,
            keyed: !(rule.protocols.is_empty()
                && rule.operations.is_empty()
                && rule.resources.is_empty()
                && rule.except_resources.is_empty()
                && rule.access.is_empty()
                && rule.categories.is_empty()
                && rule.dispositions.is_empty()),
        })
    }

    /// Does the rule select edge `e`? A rule without rpc keys selects every edge its effects
    /// name; one with them only rpc edges that match each key given. `unseen_by_sink` leaves
    /// out connects and sends the sink understood.
    pub fn selects(&self, e: &Edge) -> bool {
        if self.unseen_by_sink && e.via_sink {
            return false;
        }
        if !self.keyed {
            return true;
        }
        let Some(r) = e.rpc.as_ref() else { return false };
        let any_of = |values: &[String], s: &str| values.is_empty() || values.iter().any(|v| v == s);
        any_of(&self.protocols, &r.protocol)
            && self.operations.matches(&r.operation)
            && self.resources.matches(&r.resource)
            && !self.except_resources.as_ref().is_some_and(|x| x.is_match(&r.resource))
            && any_of(&self.access, &name(&r.access))
            && any_of(&self.categories, &name(&r.category))
            && any_of(&self.dispositions, &name(&r.disposition))
    }
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
        let opaque_rpc =
            e.kind == EdgeKind::Rpc && e.rpc.as_ref().is_some_and(|r| matches!(r.access, Some(Access::Opaque | Access::Unclassified)));
        let unseen = e.kind.is_network() && !e.via_sink && !e.all_failed();
        if !(opaque_rpc || unseen) {
            continue;
        }
        let Some(n) = graph.node(&e.to) else { continue };
        if n.node_type != NodeKind::Endpoint {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Node, rpc::RpcEffect};
    use crate::policy::{eval::{Verdict, evaluate}, parse};
    use crate::rundir::{Access, Category, Disposition};

    fn graph(op: &str, resource: &str, access: Access, category: Option<Category>, disposition: Disposition) -> Graph {
        let endpoint = Node {
            id: "endpoint:inet:127.0.0.1:6379".into(),
            node_type: "endpoint".into(),
            label: "127.0.0.1:6379".into(),
            component: Some("redis-server 127.0.0.1:6379".into()),
            held: Some("listening".into()),
            ..Default::default()
        };
        let sender = Node { id: "process:1:1".into(), node_type: "process".into(), label: "1 redis-cli".into(), component: Some(TRACED.into()), ..Default::default() };
        let rpc = Edge {
            from: sender.id.clone(),
            to: endpoint.id.clone(),
            kind: "rpc".into(),
            count: 1,
            detail: Some(format!("redis {op} {resource}")),
            rpc: Some(RpcEffect { protocol: "redis".into(), operation: op.into(), resource: resource.into(), access: Some(access), category, disposition: Some(disposition), ..Default::default() }),
            ..Default::default()
        };
        let connect = Edge { from: sender.id.clone(), to: endpoint.id.clone(), kind: "connect".into(), count: 1, via_sink: true, ..Default::default() };
        Graph {
            nodes: vec![sender, endpoint],
            edges: vec![connect, rpc],
            complete: true,
            components: vec![crate::snapshot::Component { name: "redis-server 127.0.0.1:6379".into(), ..Default::default() }],
            ..Default::default()
        }
    }

    fn default() -> Vec<crate::policy::Loaded> {
        vec![parse("default", crate::policy::DEFAULT).unwrap()]
    }

    #[test]
    fn the_default_policy_blocks_captured_mutations_by_class_and_passes_reads() {
        let ev = evaluate(&graph("GET", "k", Access::Read, None, Disposition::Forwarded), &default());
        assert_eq!(ev.verdict, Verdict::Pass, "{:?}", ev.violations);
        assert!(ev.unjudged.is_empty());
        let ev = evaluate(&graph("FLUSHALL", "", Access::Mutation, Some(Category::Delete), Disposition::Captured), &default());
        assert_eq!(ev.verdict, Verdict::Block);
        assert_eq!(ev.violations[0].rule, "rpc-data-destroyed");
        assert_eq!(ev.violations[0].component.as_deref(), Some("redis-server 127.0.0.1:6379"));
        assert!(ev.violations[0].why.contains("FLUSHALL"), "{}", ev.violations[0].why);
        let ev = evaluate(&graph("SHUTDOWN", "", Access::Mutation, Some(Category::Admin), Disposition::Captured), &default());
        assert_eq!((ev.violations[0].rule.as_str(), ev.violations[0].severity), ("rpc-admin-mutation", 0.9));
        let ev = evaluate(&graph("bytes", "", Access::Opaque, None, Disposition::Blackholed), &default());
        assert_eq!(ev.verdict, Verdict::Warn);
        assert_eq!(ev.unjudged, ["redis-server 127.0.0.1:6379 (127.0.0.1:6379)"], "said on the verdict line");
    }

    #[test]
    fn rules_select_by_protocol_operation_and_resource_globs() {
        let p = vec![parse("p", r#"
[[rule]]
id = "no-session-wipe"
effects = ["rpc"]
protocols = ["redis"]
operations = ["DEL", "UNLINK"]
resources = ["session:*"]
target = "*"
action = "block"
severity = 0.5
"#).unwrap()];
        let hit = evaluate(&graph("DEL", "session:42", Access::Mutation, Some(Category::Delete), Disposition::Captured), &p);
        assert_eq!(hit.violations.len(), 1);
        let miss = evaluate(&graph("DEL", "cache:42", Access::Mutation, Some(Category::Delete), Disposition::Captured), &p);
        assert!(miss.violations.is_empty());
        let err = parse("p", "[[rule]]\nid = \"x\"\ntarget = \"*\"\naccess = [\"write\"]\naction = \"block\"\nseverity = 0.5\n").unwrap_err();
        assert!(err.0.contains("access `write`"), "{err}");
    }

    #[test]
    fn except_resources_leave_a_subtree_out() {
        let p = vec![parse("p", r#"
[[rule]]
id = "deletes-outside-the-cache"
effects = ["rpc"]
categories = ["delete"]
except_resources = ["/app/cache/*"]
target = "@endpoint"
action = "block"
severity = 0.9
"#).unwrap()];
        let wipe = evaluate(&graph("DeleteRange", "*", Access::Mutation, Some(Category::Delete), Disposition::Captured), &p);
        assert_eq!(wipe.violations.len(), 1);
        let cache = evaluate(&graph("DeleteRange", "/app/cache/*", Access::Mutation, Some(Category::Delete), Disposition::Captured), &p);
        assert!(cache.violations.is_empty(), "{:?}", cache.violations);
    }
}
