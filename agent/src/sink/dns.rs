//! DNS (UDP and TCP): a lookup is a read, forwarded to the resolver the pilot meant (its
//! resolv.conf names it; the hooks sent the query here), the answer relayed. Dynamic updates
//! (RFC 2136) change a zone: captured and answered NOERROR; NOTIFY likewise; other opcodes are
//! unclassified (captured, answered NOTIMP). Messages are parsed with hickory-proto.
//! Datagrams that are not DNS are blackholed as before (recorded per source, unanswered).
use std::{collections::HashMap, io, net::SocketAddr, sync::{Arc, Mutex}, time::Duration};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};

use super::{Access, Caught, Category, Ctx, Disposition, Mode, Module, Rpc, Sniff, keep_head, now_ms, printable};
use super::session::{BoxFuture, Op, Session};

pub const MODULE: Module = Module { name: "dns", sniff, serve };
/// A resolver that has not answered by then has failed the lookup (resolvers retry).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A DNS message over TCP: a two-byte length, then a query header.
fn sniff(b: &[u8]) -> Sniff {
    if b.len() < 14 {
        return if b.first() == Some(&0) { Sniff::NeedMore } else { Sniff::No };
    }
    let len = u16::from_be_bytes([b[0], b[1]]) as usize;
    if len < 12 || b.len() < 2 + len {
        return if len >= 12 && len < 4096 { Sniff::NeedMore } else { Sniff::No };
    }
    match Message::from_vec(&b[2..2 + len]) {
        Ok(m) if m.metadata.message_type == MessageType::Query => Sniff::Yes,
        _ => Sniff::No,
    }
}

/// What a DNS request is and whether it may go through.
pub fn classify(m: &Message) -> (String, String, Access, Option<Category>) {
    let name = m.queries.first().map(|q| q.name().to_string()).unwrap_or_default();
    match m.metadata.op_code {
        OpCode::Query => (m.queries.first().map(|q| q.query_type().to_string()).unwrap_or("QUERY".into()), name, Access::Read, None),
        OpCode::Update => ("UPDATE".into(), name, Access::Mutation, Some(Category::Write)),
        OpCode::Notify => ("NOTIFY".into(), name, Access::Mutation, Some(Category::Admin)),
        other => (format!("{other:?}").to_uppercase(), name, Access::Unclassified, None),
    }
}

/// The sink's own answer to a request it does not forward.
fn made_up(m: &Message, access: Access, known_destination: bool) -> Vec<u8> {
    let code = match access {
        Access::Mutation => ResponseCode::NoError,
        Access::Read if !known_destination => ResponseCode::ServFail,
        Access::Read => ResponseCode::Refused,
        _ => ResponseCode::NotImp,
    };
    let mut r = Message::error_msg(m.metadata.id, m.metadata.op_code, code);
    r.queries = m.queries.clone();
    r.to_vec().unwrap_or_default()
}

fn serve(s: Session) -> BoxFuture {
    Box::pin(serve_tcp(s))
}

async fn serve_tcp(mut s: Session) -> io::Result<()> {
    loop {
        while s.client.buf.len() < 2 || s.client.buf.len() < 2 + u16::from_be_bytes([s.client.buf[0], s.client.buf[1]]) as usize {
            if s.client.fill().await? == 0 {
                return Ok(());
            }
        }
        let len = u16::from_be_bytes([s.client.buf[0], s.client.buf[1]]) as usize;
        let frame = s.client.take(2 + len);
        let Ok(m) = Message::from_vec(&frame[2..]) else {
            let mut op = Op::new("bytes", "", Access::Opaque);
            op.disposition = Disposition::Blackholed;
            op.bytes = frame.len() as u64;
            s.record(op);
            continue;
        };
        let (operation, resource, access, category) = classify(&m);
        let mut op = Op::new(operation, resource, access);
        op.category = category;
        op.bytes = frame.len() as u64;
        let answer = if s.may_forward(access) && s.to.is_some() {
            op.disposition = Disposition::Forwarded;
            s.forward(&frame).await?;
            loop {
                let up = s.upstream().await?;
                if up.buf.len() >= 2 && up.buf.len() >= 2 + u16::from_be_bytes([up.buf[0], up.buf[1]]) as usize {
                    let n = 2 + u16::from_be_bytes([up.buf[0], up.buf[1]]) as usize;
                    break up.take(n);
                }
                if s.fill_upstream().await? == 0 {
                    return Ok(());
                }
            }
        } else {
            let body = made_up(&m, access, s.to.is_some());
            let mut framed = (body.len() as u16).to_be_bytes().to_vec();
            framed.extend(body);
            framed
        };
        op.reply_bytes = answer.len() as u64;
        s.reply(&answer).await?;
        s.record(op);
    }
}

/// One UDP socket of the sink (IPv4 or IPv6): DNS queries are answered (forwarded to the
/// resolver meant, in a task each), other datagrams recorded per source and left unanswered.
pub async fn serve_udp(ctx: Arc<Ctx>, sock: Arc<tokio::net::UdpSocket>) {
    let sources = Sources { ctx: ctx.clone(), by_source: Arc::new(Mutex::new(HashMap::new())) };
    let local = sock.local_addr().ok();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else { continue };
        let data = buf[..n].to_vec();
        let (to, sender) = local.map(|l| ctx.origins.lookup(true, from, l)).unwrap_or((None, None));
        let dns = Message::from_vec(&data).ok().filter(|m| m.metadata.message_type == MessageType::Query && ctx.options.mode != Mode::Off);
        let dns = dns.filter(|_| is_dns_destination(&ctx, to));
        sources.datagram(from, to, sender, &data, dns.is_some());
        let Some(m) = dns else {
            sources.rpc(from, blackholed(n));
            continue;
        };
        let (sock, sources) = (sock.clone(), sources.clone_handle());
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let (operation, resource, access, category) = classify(&m);
            let forward = match ctx.options.mode {
                Mode::PassThrough => true,
                Mode::Dry => access == Access::Read,
                Mode::Off => false,
            };
            let answer = match (forward, to) {
                (true, Some(to)) => ask(to, &data).await,
                _ => None,
            };
            let disposition = if answer.is_some() { Disposition::Forwarded } else { Disposition::Captured };
            let answer = answer.unwrap_or_else(|| made_up(&m, access, to.is_some()));
            let _ = sock.send_to(&answer, from).await;
            sources.answered(from, answer.len() as u64, if forward { data.len() as u64 } else { 0 });
            sources.rpc(from, Rpc {
                protocol: "dns".into(),
                operation,
                resource,
                access,
                category,
                disposition,
                requests: 1,
                bytes: data.len() as u64,
                reply_bytes: answer.len() as u64,
                may_differ: false,
                note: None,
                first_unix_ms: now_ms(),
                last_unix_ms: now_ms(),
            });
        });
    }
}

/// Port 53, or a destination `--rpc` or the snapshot says speaks DNS.
fn is_dns_destination(ctx: &Ctx, to: Option<SocketAddr>) -> bool {
    let Some(to) = to else { return true };
    to.port() == 53
        || ctx.options.protocols.iter().any(|(a, p)| *a == to && p == "dns")
        || ctx.hint(&to.to_string()).as_deref() == Some("dns")
}

fn blackholed(bytes: usize) -> Rpc {
    Rpc {
        protocol: "opaque".into(),
        operation: "datagram".into(),
        resource: String::new(),
        access: Access::Opaque,
        category: None,
        disposition: Disposition::Blackholed,
        requests: 1,
        bytes: bytes as u64,
        reply_bytes: 0,
        may_differ: false,
        note: None,
        first_unix_ms: now_ms(),
        last_unix_ms: now_ms(),
    }
}

/// The query to the resolver the pilot meant, from the agent's own socket.
async fn ask(to: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let bind: SocketAddr = if to.is_ipv6() { "[::]:0".parse().ok()? } else { "0.0.0.0:0".parse().ok()? };
    let s = tokio::net::UdpSocket::bind(bind).await.ok()?;
    s.connect(to).await.ok()?;
    s.send(query).await.ok()?;
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(ANSWER_TIMEOUT, s.recv(&mut buf)).await.ok()?.ok()?;
    buf.truncate(n);
    Some(buf)
}

/// sink.json entries of one UDP socket, one per datagram source; pushed when the sink stops.
struct Sources {
    ctx: Arc<Ctx>,
    by_source: Arc<Mutex<HashMap<SocketAddr, (Caught, Vec<u8>)>>>,
}

impl Sources {
    fn clone_handle(&self) -> Sources {
        Sources { ctx: self.ctx.clone(), by_source: self.by_source.clone() }
    }

    fn datagram(&self, from: SocketAddr, to: Option<SocketAddr>, sender: Option<super::origin::Sender>, data: &[u8], dns: bool) {
        let mut m = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        let (c, head) = m.entry(from).or_insert_with(|| {
            (
                Caught {
                    proto: "udp".into(),
                    from: from.to_string(),
                    first_unix_ms: now_ms(),
                    to: to.map(|t| t.to_string()),
                    protocol: Some(if dns { "dns" } else { "opaque" }.into()),
                    pid: sender.map(|s| s.0),
                    start_ns: sender.map(|s| s.1),
                    ..Default::default()
                },
                Vec::new(),
            )
        });
        c.bytes += data.len() as u64;
        c.count += 1;
        keep_head(head, data);
    }

    fn answered(&self, from: SocketAddr, bytes: u64, forwarded: u64) {
        if let Some((c, _)) = self.by_source.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&from) {
            c.bytes_answered += bytes;
            c.bytes_forwarded += forwarded;
        }
    }

    fn rpc(&self, from: SocketAddr, op: Rpc) {
        if let Some((c, _)) = self.by_source.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&from) {
            super::add_rpc(&mut c.rpc, op);
        }
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        // Only the socket's own loop pushes (the tasks' handles share the map).
        if Arc::strong_count(&self.by_source) > 1 {
            return;
        }
        let mut m = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        for (_, (mut c, head)) in m.drain() {
            c.head = printable(&head);
            self.ctx.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::{op::Query, rr::{Name, RecordType}};

    fn query(op: OpCode) -> Message {
        let mut m = Message::query();
        m.metadata.op_code = op;
        m.queries.push(Query::query(Name::from_ascii("db.example.").unwrap(), RecordType::A));
        m
    }

    #[test]
    fn lookups_are_reads_updates_are_mutations() {
        let (op, name, access, _) = classify(&query(OpCode::Query));
        assert_eq!((op.as_str(), name.as_str(), access), ("A", "db.example.", Access::Read));
        assert_eq!(classify(&query(OpCode::Update)).2, Access::Mutation);
        let bytes = query(OpCode::Query).to_vec().unwrap();
        let mut tcp = (bytes.len() as u16).to_be_bytes().to_vec();
        tcp.extend(&bytes);
        assert_eq!(sniff(&tcp), Sniff::Yes);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::No);
        let answer = Message::from_vec(&made_up(&query(OpCode::Update), Access::Mutation, true)).unwrap();
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert_eq!(answer.metadata.message_type, MessageType::Response);
    }
}
