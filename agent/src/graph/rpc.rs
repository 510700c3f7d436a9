//! `rpc` edges: what the sink's protocol sessions made of the pilot's traffic (sink.json),
//! from the process that sent it to the endpoint it meant, whose component is the live server
//! listening there (so `pilot merge` turns a call to another host's service into a cross-host
//! edge, as for connects). One edge per (process, endpoint, protocol, operation, resource,
//! access, disposition); `count` is requests, `bytes` request bytes: forwarded reads are real
//! load on production, and byte and rate budgets apply to them like to any other edge.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Edge, EdgeKind, Graph, Hold, Node, NodeId, NodeKind, TRACED};
use crate::rundir::{Access, Caught, Category, Disposition};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RpcEffect {
    pub protocol: String,
    pub operation: String,
    pub resource: String,
    pub access: Option<Access>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    pub disposition: Option<Disposition>,
    /// Bytes of the answers the pilot got (relayed or made up).
    pub reply_bytes: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub may_differ: bool,
    /// The sink's note on it (sink.json's `note`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Add the sink's requests to a finished graph.
pub fn add(graph: &mut Graph, caught: &[Caught]) {
    let edges_before = graph.edges.len();
    let offset = boot_minus_wall_ns();
    let mut index: HashMap<(NodeId, NodeId, String), usize> = HashMap::new();
    for c in caught {
        let Some(to) = c.to.as_deref() else { continue };
        let endpoint = endpoint_node(to, c.component.as_deref());
        let id = match mapped_twin(graph, &endpoint) {
            Some(twin) => twin,
            None => endpoint.id.clone(),
        };
        if graph.node(&id).is_none() {
            graph.push_node(endpoint);
        } else if let Some(n) = graph.nodes.iter_mut().find(|n| n.id == id && n.component.is_none() && c.component.is_some()) {
            n.component = c.component.clone();
            n.held = Some(Hold::Listening);
        }
        let from = sender(graph, c, &id);
        for r in &c.rpc {
            let detail = format!("{} {} {}", r.protocol, r.operation, r.resource).trim_end().to_string();
            let key = (from.clone(), id.clone(), format!("{detail}|{:?}|{:?}", r.access, r.disposition));
            let ts = |ms: u128| ((ms as i128) * 1_000_000 + offset as i128).max(0) as u64;
            let i = *index.entry(key).or_insert_with(|| {
                let component = graph.node(&id).and_then(|n| n.component.clone());
                graph.edges.push(Edge {
                    from: from.clone(),
                    to: id.clone(),
                    kind: EdgeKind::Rpc,
                    first_ts_ns: ts(r.first_unix_ms),
                    cross_component: component.as_deref().is_some_and(|c| c != TRACED),
                    component,
                    detail: Some(detail.clone()),
                    rpc: Some(RpcEffect {
                        protocol: r.protocol.clone(),
                        operation: r.operation.clone(),
                        resource: r.resource.clone(),
                        access: Some(r.access),
                        category: r.category,
                        disposition: Some(r.disposition),
                        note: r.note.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                graph.edges.len() - 1
            });
            let e = &mut graph.edges[i];
            e.count += r.requests;
            e.bytes += r.bytes;
            e.last_ts_ns = e.last_ts_ns.max(ts(r.last_unix_ms.max(r.first_unix_ms)));
            if let Some(x) = e.rpc.as_mut() {
                x.reply_bytes += r.reply_bytes;
                x.may_differ |= r.may_differ;
            }
        }
    }
    evidence(graph);
    mark_judged(graph);
    if graph.edges.len() != edges_before {
        graph.edges.sort_by_key(|e| e.first_ts_ns);
        // Edges added and reordered: the per-edge ends are looked up again when next needed.
        graph.index = Default::default();
    }
}

/// An rpc edge's evidence: the events of the connect (or send) it went over.
fn evidence(graph: &mut Graph) {
    let lines: HashMap<(NodeId, NodeId), Vec<u64>> = graph
        .edges
        .iter()
        .filter(|e| e.kind.is_network())
        .map(|e| ((e.from.clone(), e.to.clone()), e.events.clone()))
        .collect();
    for e in graph.edges.iter_mut().filter(|e| e.kind == EdgeKind::Rpc && e.events.is_empty()) {
        if let Some(l) = lines.get(&(e.from.clone(), e.to.clone())) {
            e.events = l.clone();
        }
    }
}

/// A connect or send to an endpoint the sink recorded traffic for: its rpc edges stand for
/// it (the rules over rpc effects judge them, opaque ones included).
fn mark_judged(graph: &mut Graph) {
    let seen: std::collections::HashSet<NodeId> = graph.edges.iter().filter(|e| e.kind == EdgeKind::Rpc).map(|e| e.to.clone()).collect();
    for e in graph.edges.iter_mut().filter(|e| e.kind.is_network()) {
        e.via_sink = seen.contains(&e.to);
    }
}

/// The trace's node for the same IPv4 destination reached through a dual-stack socket: a JVM
/// connects to 127.0.0.1 as `::ffff:127.0.0.1` (connect6), which the trace records as such
/// while the sink names the IPv4 address meant. The rpc edges go to the trace's node, so its
/// connect is marked as seen by the sink and both stand for one endpoint.
fn mapped_twin(graph: &Graph, endpoint: &Node) -> Option<NodeId> {
    if endpoint.family.as_deref() != Some("inet") {
        return None;
    }
    let twin = NodeId::new(NodeKind::Endpoint, format!("inet6:[::ffff:{}]:{}", endpoint.addr.as_deref()?, endpoint.port?));
    graph.node(&twin).is_some().then_some(twin)
}

/// The endpoint node the trace makes for a connect to `to` (same id), with its owner.
fn endpoint_node(to: &str, component: Option<&str>) -> Node {
    let (family, addr, port, label) = match to.strip_prefix("unix:") {
        Some(path) => ("unix", path.to_string(), None, format!("unix:{path}")),
        None => match to.parse::<std::net::SocketAddr>() {
            Ok(a) if a.is_ipv6() => ("inet6", a.ip().to_string(), Some(a.port()), format!("[{}]:{}", a.ip(), a.port())),
            Ok(a) => ("inet", a.ip().to_string(), Some(a.port()), to.to_string()),
            Err(_) => ("inet", to.to_string(), None, to.to_string()),
        },
    };
    Node {
        id: NodeId::new(NodeKind::Endpoint, format!("{family}:{label}")),
        node_type: NodeKind::Endpoint,
        label,
        family: Some(family.into()),
        addr: Some(addr),
        port,
        component: component.map(str::to_string),
        held: component.map(|_| Hold::Listening),
        ..Default::default()
    }
}

/// The traced process that sent it: the one the sink found, else one that connected there,
/// else the traced root.
fn sender(graph: &Graph, c: &Caught, endpoint: &NodeId) -> NodeId {
    if let Some(pid) = c.pid {
        let start = c.start_ns.unwrap_or(0);
        if let Some(n) = graph.nodes.iter().find(|n| n.node_type == NodeKind::Process && n.pid == Some(pid) && (start == 0 || n.start_ns == Some(start))) {
            return n.id.clone();
        }
    }
    if let Some(e) = graph.edges.iter().find(|e| &e.to == endpoint && e.kind.is_network()) {
        return e.from.clone();
    }
    graph
        .nodes
        .iter()
        .find(|n| n.node_type == NodeKind::Process && n.component.as_deref() == Some(TRACED))
        .map(|n| n.id.clone())
        .unwrap_or_else(|| NodeId::process(0, 0))
}

/// CLOCK_BOOTTIME (the kernel's event clock, bpf_ktime_get_boot_ns) minus wall time, in ns.
fn boot_minus_wall_ns() -> i64 {
    let boot = crate::session::boottime_ns() as i64;
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    boot - wall
}
