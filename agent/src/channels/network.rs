//! The sink as a channel: the bytes it caught per original destination (sink.json) against the
//! bytes the trace saw sent there (send edges). The cgroup hooks lead every TCP/UDP socket of
//! the pilot to the sink whatever made it send (io_uring, sendmmsg to per-message addresses,
//! anything the probes do not decode); bytes the sink caught beyond what traced sends explain
//! are a blind spot: a `send` edge seen by the sink alone.
use std::collections::BTreeMap;

use crate::{
    graph::{BlindSpot, Channel, Edge, EdgeKind, Graph, NodeId, NodeKind, TRACED},
    rundir::Caught,
};

/// A destination as both channels can name it: `127.0.0.1:80`, `[::1]:53`, `unix:/run/x`
/// (IPv4-mapped IPv6 addresses as IPv4: Java connects to 127.0.0.1 through them).
pub fn destination(family: &str, addr: &str, port: Option<u16>) -> String {
    if family == "unix" {
        return format!("unix:{addr}");
    }
    let ip = addr.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()).ok();
    match (ip, port) {
        (Some(std::net::IpAddr::V6(v6)), Some(p)) => format!("[{v6}]:{p}"),
        (Some(ip), Some(p)) => format!("{ip}:{p}"),
        _ => format!("{addr}:{}", port.unwrap_or(0)),
    }
}

fn of_sink(to: &str) -> String {
    if to.starts_with("unix:") {
        return to.to_string();
    }
    match to.parse::<std::net::SocketAddr>() {
        Ok(a) => destination(if a.is_ipv6() { "inet6" } else { "inet" }, &a.ip().to_string(), Some(a.port())),
        Err(_) => to.to_string(),
    }
}

/// Per destination, what the sink caught: bytes, the sender it found (pid, start), the live
/// component there.
type SinkSide = (u64, Option<(u32, u64)>, Option<String>);

/// Reconcile the sink's record with the traced sends. Returns the blind spots.
pub fn reconcile(graph: &mut Graph, caught: &[Caught], root: &NodeId) -> Vec<BlindSpot> {
    // Per destination: bytes caught, and who the sink says sent them.
    let mut sink: BTreeMap<String, SinkSide> = BTreeMap::new();
    for c in caught {
        let Some(to) = c.to.as_deref() else { continue };
        let s = sink.entry(of_sink(to)).or_default();
        s.0 += c.bytes;
        if s.1.is_none() {
            s.1 = c.pid.map(|p| (p, c.start_ns.unwrap_or(0)));
        }
        s.2 = s.2.take().or(c.component.clone());
    }
    // Per destination: bytes traced, the endpoint node and its send edges.
    let mut traced: BTreeMap<String, (u64, Option<NodeId>, Vec<usize>)> = BTreeMap::new();
    for n in graph.nodes.iter().filter(|n| n.node_type == NodeKind::Endpoint) {
        let key = destination(n.family.as_deref().unwrap_or(""), n.addr.as_deref().unwrap_or(""), n.port);
        traced.entry(key).or_default().1.get_or_insert(n.id.clone());
    }
    for (i, e) in graph.edges.iter().enumerate() {
        if e.kind != EdgeKind::Send || e.all_failed() || e.blind_spot() {
            continue;
        }
        let Some(n) = graph.node(&e.to) else { continue };
        let key = destination(n.family.as_deref().unwrap_or(""), n.addr.as_deref().unwrap_or(""), n.port);
        let t = traced.entry(key).or_default();
        t.0 += e.bytes;
        t.2.push(i);
    }
    let mut out = Vec::new();
    for (to, (bytes, sender, component)) in sink {
        let (sent, node, edges) = traced.get(&to).cloned().unwrap_or_default();
        for i in &edges {
            let e = &mut graph.edges[*i];
            for c in [Channel::Trace, Channel::Sink] {
                if !e.seen_by.contains(&c) {
                    e.seen_by.push(c);
                }
            }
        }
        if bytes <= sent {
            continue;
        }
        let unexplained = bytes - sent;
        let Some(node) = node else { continue }; // rpc::add made a node for every destination
        let from = sender
            .and_then(|(pid, start)| {
                graph.nodes.iter().find(|n| n.node_type == NodeKind::Process && n.pid == Some(pid) && (start == 0 || n.start_ns == Some(start))).map(|n| n.id.clone())
            })
            .unwrap_or_else(|| root.clone());
        let held = graph.node(&node).and_then(|n| n.held);
        let component = graph.node(&node).and_then(|n| n.component.clone()).or(component);
        out.push(BlindSpot {
            path: to.clone(),
            change: format!("{unexplained} bytes ({bytes} caught, {sent} traced)"),
            channel: Some(Channel::Sink),
            effect: Some(EdgeKind::Send),
            component: component.clone(),
            held,
        });
        let end = graph.edges.iter().map(|e| e.last_ts_ns).max().unwrap_or(0);
        graph.edges.push(Edge {
            from,
            to: node,
            kind: EdgeKind::Send,
            count: 1,
            bytes: unexplained,
            first_ts_ns: end,
            last_ts_ns: end,
            cross_component: component.as_deref().is_some_and(|c| c != TRACED),
            component,
            detail: Some(format!("caught by the sink: {unexplained} bytes no traced send explains")),
            // The sink's own rpc edges judge what the bytes asked for.
            via_sink: true,
            seen_by: vec![Channel::Sink],
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Node;

    #[test]
    fn names_destinations_alike() {
        assert_eq!(destination("inet6", "::ffff:127.0.0.1", Some(80)), "127.0.0.1:80");
        assert_eq!(of_sink("[::ffff:127.0.0.1]:80"), "127.0.0.1:80");
        assert_eq!(destination("inet6", "::1", Some(53)), "[::1]:53");
        assert_eq!(of_sink("[::1]:53"), "[::1]:53");
        assert_eq!(destination("unix", "/run/x.sock", None), of_sink("unix:/run/x.sock"));
    }

    #[test]
    fn bytes_no_traced_send_explains_are_a_blind_spot() {
        let ep = Node {
            id: NodeId::new(NodeKind::Endpoint, "inet:127.0.0.1:9000"),
            node_type: NodeKind::Endpoint,
            label: "127.0.0.1:9000".into(),
            family: Some("inet".into()),
            addr: Some("127.0.0.1".into()),
            port: Some(9000),
            component: Some("peer".into()),
            held: Some(crate::graph::Hold::Listening),
            ..Default::default()
        };
        let root = NodeId::process(1, 1);
        let mut g = Graph::default();
        g.push_node(ep.clone());
        g.edges.push(Edge { from: root.clone(), to: ep.id.clone(), kind: EdgeKind::Send, count: 1, bytes: 100, ..Default::default() });
        let caught = |bytes| vec![Caught { to: Some("127.0.0.1:9000".into()), bytes, ..Default::default() }];
        assert!(reconcile(&mut g.clone(), &caught(100), &root).is_empty());
        let spots = reconcile(&mut g, &caught(1100), &root);
        assert_eq!(spots.len(), 1);
        assert_eq!(spots[0].change, "1000 bytes (1100 caught, 100 traced)");
        assert_eq!(g.edges[0].seen_by, [Channel::Trace, Channel::Sink]);
        assert!(g.edges[1].blind_spot() && g.edges[1].bytes == 1000);
    }
}
