//! `pilot merge`: several hosts' graphs joined into one (schema v2). Every node, edge and
//! component keeps its host (ids are prefixed `HOST/`); a connect or send on one host to an
//! address that another host's snapshot shows a component listening on is re-pointed to that
//! component, marked cross-component, with `to_host` set.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use super::{Edge, EdgeKind, Graph, Hold, HostGraph, Node, NodeId, NodeKind, SCHEMA_MERGED};
use crate::snapshot::Component;

/// Join `inputs` (source name, graph), in order.
pub fn merge(inputs: Vec<(String, Graph)>) -> Graph {
    let mut out = Graph { schema: SCHEMA_MERGED.into(), complete: true, ..Default::default() };
    let mut seen = HashSet::new();
    for (i, (source, g)) in inputs.into_iter().enumerate() {
        let host = if g.host.is_empty() { format!("host{}", i + 1) } else { g.host.clone() };
        out.complete &= g.complete;
        out.lost_events += g.lost_events;
        out.hosts.push(HostGraph {
            host: host.clone(),
            target: g.target.clone(),
            complete: g.complete,
            lost_events: g.lost_events,
            local_addrs: g.local_addrs.clone(),
            source,
        });
        for mut n in g.nodes {
            n.id = n.id.on(&host);
            n.host = Some(host.clone());
            if seen.insert(n.id.clone()) {
                out.nodes.push(n);
            }
        }
        out.edges.extend(g.edges.into_iter().map(|mut e| {
            e.from = e.from.on(&host);
            e.to = e.to.on(&host);
            e.host = Some(host.clone());
            e
        }));
        out.components.extend(g.components.into_iter().map(|c| Component { host: Some(host.clone()), ..c }));
    }
    join_across_hosts(&mut out);
    let mut hosts: Vec<&str> = out.hosts.iter().map(|h| h.host.as_str()).collect();
    hosts.dedup();
    out.host = hosts.join(",");
    out.target = out.hosts.iter().map(|h| format!("{} on {}", h.target, h.host)).collect::<Vec<_>>().join("; ");
    out
}

/// Re-point connects and sends that reached another host's listening component.
fn join_across_hosts(g: &mut Graph) {
    let local: HashMap<&str, Vec<IpAddr>> = g
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.local_addrs.iter().filter_map(|a| a.parse().ok()).collect()))
        .collect();
    let nodes: HashMap<&NodeId, &Node> = g.nodes.iter().map(|n| (&n.id, n)).collect();
    let mut repoint = Vec::new();
    for (i, e) in g.edges.iter().enumerate() {
        // rpc edges too: a call to another host's service is a cross-host rpc edge (issue 18).
        if !(e.kind.is_network() || e.kind == EdgeKind::Rpc) {
            continue;
        }
        let Some(n) = nodes.get(&e.to).filter(|n| n.node_type == NodeKind::Endpoint && n.component.is_none()) else {
            continue;
        };
        let (family, addr) = (n.family.as_deref().unwrap_or(""), n.addr.as_deref().unwrap_or(""));
        // Loopback and wildcard addresses name the sender's own host.
        if addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified()) || family == "unix" {
            continue;
        }
        let listener = g.components.iter().find(|c| {
            let host = c.host.as_deref().unwrap_or("");
            host != e.host.as_deref().unwrap_or("")
                && c.listens.iter().any(|l| l.serves(family, addr, n.port, local.get(host).map_or(&[], |v| v)))
        });
        if let Some(c) = listener {
            repoint.push((i, c.name.clone(), c.host.clone().unwrap_or_default(), n.label.clone()));
        }
    }
    for (i, name, host, address) in repoint {
        let id = NodeId::component(&name).on(&host);
        if !g.nodes.iter().any(|n| n.id == id) {
            g.nodes.push(Node {
                id: id.clone(),
                node_type: NodeKind::Component,
                label: name.clone(),
                component: Some(name.clone()),
                held: Some(Hold::Listening),
                host: Some(host.clone()),
                ..Default::default()
            });
        }
        let e: &mut Edge = &mut g.edges[i];
        e.to = id;
        e.detail.get_or_insert(format!("via {address}"));
        e.component = Some(name);
        e.cross_component = true;
        e.to_host = Some(host);
    }
    // Endpoints whose every edge moved to a component are no longer part of the graph.
    let used: HashSet<NodeId> = g.edges.iter().flat_map(|e| [e.from.clone(), e.to.clone()]).collect();
    g.nodes.retain(|n| n.node_type != NodeKind::Endpoint || used.contains(&n.id));
    g.index = Default::default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Listener;

    fn endpoint(addr: &str, port: u16) -> Node {
        Node {
            id: NodeId::parse(&format!("endpoint:inet:{addr}:{port}")).unwrap(),
            node_type: NodeKind::Endpoint,
            label: format!("{addr}:{port}"),
            family: Some("inet".into()),
            addr: Some(addr.into()),
            port: Some(port),
            ..Default::default()
        }
    }

    fn client(addr: &str) -> Graph {
        let ep = endpoint(addr, 5432);
        Graph {
            host: "a".into(),
            edges: vec![Edge { from: NodeId::process(1, 1), to: ep.id.clone(), kind: super::super::EdgeKind::Connect, count: 1, ..Default::default() }],
            nodes: vec![Node { id: NodeId::process(1, 1), node_type: NodeKind::Process, ..Default::default() }, ep],
            ..Default::default()
        }
    }

    fn server() -> Graph {
        let mut db = Component { name: "db".into(), ..Default::default() };
        db.listens.insert(Listener { proto: "tcp".into(), addr: "0.0.0.0".into(), port: Some(5432) });
        Graph { host: "b".into(), components: vec![db], local_addrs: vec!["10.0.0.2".into()], ..Default::default() }
    }

    #[test]
    fn a_connect_to_another_hosts_listener_becomes_a_cross_host_edge() {
        let g = merge(vec![("a.json".into(), client("10.0.0.2")), ("b.json".into(), server())]);
        assert_eq!(g.schema, SCHEMA_MERGED);
        let e = &g.edges[0];
        assert_eq!((e.to.to_string().as_str(), e.to_host.as_deref(), e.cross_component), ("b/component:db", Some("b"), true));
        assert_eq!(e.detail.as_deref(), Some("via 10.0.0.2:5432"));
        assert!(g.nodes.iter().all(|n| n.node_type != NodeKind::Endpoint));
        assert_eq!(g.host, "a,b");
    }

    #[test]
    fn loopback_and_unknown_addresses_stay_where_they_are() {
        for addr in ["127.0.0.1", "10.0.0.9"] {
            let g = merge(vec![("a.json".into(), client(addr)), ("b.json".into(), server())]);
            assert_eq!(g.edges[0].to.to_string(), format!("a/endpoint:inet:{addr}:5432"));
            assert!(!g.edges[0].cross_component);
        }
    }
}
