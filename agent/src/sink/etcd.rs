//! etcd v3: gRPC over HTTP/2 cleartext (h2 serves the pilot's side and speaks to the live
//! member; etcd's messages are prost types from etcdv3client's generated code). Every request
//! is one h2 stream, decided on its own: reads (Range, a Txn of Ranges, Watch, MemberList,
//! Status, Alarm GET, LeaseTimeToLive, LeaseLeases, Snapshot, Hash, AuthStatus, the auth
//! getters and lists, Authenticate) go through on the agent's own connection and the member's
//! answer is relayed; mutations (Put, DeleteRange, a Txn with writes, Compact, the lease and
//! membership changes, Defragment, Alarm ACTIVATE/DEACTIVATE, MoveLeader, Downgrade, auth
//! changes) are captured and answered as the member would, from what the sink reads itself
//! (the current value before a Put, the members before a MemberRemove: those lookups are load
//! on production too, counted in the connection's forwarded bytes). Keys the pilot wrote or
//! deleted are kept in the shadow layer, one space per cluster (every member of it answers the
//! same), so later Range, Txn compares and reads in the same run see them; leases the pilot
//! granted or revoked and members it added or removed are kept per cluster too. A method the
//! sink does not know is unclassified: captured, answered UNIMPLEMENTED.
use std::{
    collections::{HashMap, HashSet},
    io,
    sync::{Arc, Mutex},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use etcdv3client::pb;
use h2::{RecvStream, SendStream, client::SendRequest, server::SendResponse};
use http::{HeaderMap, HeaderValue, Request, Response, request::Parts};
use prost::Message;

use super::session::{BoxFuture, Op, Session};
use super::shadow::{Lookup, prefix_end};
use super::{Access, Category, Ctx, Disposition, Module, Sniff};

pub const MODULE: Module = Module { name: "etcd", sniff, serve };

/// What every HTTP/2 client sends first (RFC 9113 3.4); gRPC over h2c starts so.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn sniff(b: &[u8]) -> Sniff {
    let n = b.len().min(PREFACE.len());
    if b[..n] != PREFACE[..n] {
        Sniff::No
    } else if n < PREFACE.len() {
        Sniff::NeedMore
    } else {
        Sniff::Yes
    }
}

fn serve(s: Session) -> BoxFuture {
    Box::pin(serve_async(s))
}

// gRPC status codes (grpc/doc/statuscodes.md) the sink answers with.
const INVALID_ARGUMENT: u32 = 3;
const NOT_FOUND: u32 = 5;
const OUT_OF_RANGE: u32 = 11;
const UNIMPLEMENTED: u32 = 12;
const UNAVAILABLE: u32 = 14;

/// A gRPC error: code and message (etcd's clients match the message, e.g.
/// "etcdserver: member not found").
#[derive(Debug, Clone)]
struct Status(u32, String);

impl From<h2::Error> for Status {
    fn from(e: h2::Error) -> Status {
        Status(UNAVAILABLE, format!("pilot sink: {e}"))
    }
}

impl From<io::Error> for Status {
    fn from(e: io::Error) -> Status {
        Status(UNAVAILABLE, format!("pilot sink: {e}"))
    }
}

// ------------------------------------------------------------------------ per cluster state

/// What the pilot changed per etcd cluster, beside its keys (in the shadow layer). Shared by
/// every connection of a run: etcdctl with three endpoints talks to three members.
#[derive(Default)]
pub struct Clusters {
    inner: Mutex<ClustersInner>,
    /// The pilot changed something in some cluster: reads may need its view.
    dirty: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct ClustersInner {
    /// Endpoint (`127.0.0.1:2379`) -> its cluster id, once a header said it.
    by_endpoint: HashMap<String, u64>,
    clusters: HashMap<u64, Cluster>,
}

#[derive(Default, Clone)]
struct Cluster {
    /// The highest revision and term a live header showed.
    revision: i64,
    raft_term: u64,
    /// Leases the pilot granted (id -> TTL) and revoked.
    granted: HashMap<i64, i64>,
    revoked: HashSet<i64>,
    /// Members the pilot removed, and added.
    removed: HashSet<u64>,
    added: Vec<pb::Member>,
}

impl Clusters {
    fn learn(&self, endpoint: &str, h: &pb::ResponseHeader) {
        if h.cluster_id == 0 {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.by_endpoint.insert(endpoint.to_string(), h.cluster_id);
        let c = g.clusters.entry(h.cluster_id).or_default();
        c.revision = c.revision.max(h.revision);
        c.raft_term = c.raft_term.max(h.raft_term);
    }

    fn cluster_of(&self, endpoint: &str) -> Option<u64> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).by_endpoint.get(endpoint).copied()
    }

    fn with<T>(&self, id: u64, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(g.clusters.entry(id).or_default())
    }

    fn dirty(&self) -> bool {
        self.dirty.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_dirty(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The shadow space of a cluster's keys.
fn space(cluster: u64) -> String {
    format!("etcd:cluster-{cluster:x}")
}

// ---------------------------------------------------------------------------- connection

/// One pilot connection: its session (records), the live member it meant, the agent's own h2
/// connection to it (opened on first use).
struct Conn {
    session: Mutex<Session>,
    ctx: Arc<Ctx>,
    endpoint: String,
    upstream: tokio::sync::Mutex<Option<SendRequest<Bytes>>>,
    /// The latest header this member sent (member id, term), for made-up answers.
    header: Mutex<pb::ResponseHeader>,
}

impl Conn {
    fn may_forward(&self, access: Access) -> bool {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).may_forward(access)
    }

    fn record(&self, op: Op) {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).record(op);
    }

    fn dry(&self) -> bool {
        !self.may_forward(Access::Mutation)
    }

    async fn upstream(&self) -> Result<SendRequest<Bytes>, Status> {
        let mut g = self.upstream.lock().await;
        if g.is_none() {
            let open = self.session.lock().unwrap_or_else(|e| e.into_inner()).upstream_opener();
            let io = open.await?;
            let (send, conn) = h2::client::handshake(io).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            *g = Some(send);
        }
        let send = g.as_ref().expect("just set").clone();
        drop(g);
        Ok(send.ready().await?)
    }

    /// What a live header said: remembered for this member and its cluster.
    fn learn(&self, h: &pb::ResponseHeader) {
        self.ctx.etcd.learn(&self.endpoint, h);
        let mut mine = self.header.lock().unwrap_or_else(|e| e.into_inner());
        if h.cluster_id != 0 {
            *mine = *h;
        }
    }

    fn cluster(&self) -> Option<u64> {
        self.ctx.etcd.cluster_of(&self.endpoint)
    }

    /// The revision the cluster is at in the pilot's eyes: the live one plus the pilot's own.
    fn revision(&self, cluster: u64) -> i64 {
        let live = self.ctx.etcd.with(cluster, |c| c.revision);
        live + self.ctx.shadow.bumps(&space(cluster)) as i64
    }

    /// A header for a made-up answer, at `revision` (None: the pilot's current one).
    fn made_header(&self, cluster: u64, revision: Option<i64>) -> pb::ResponseHeader {
        let mine = *self.header.lock().unwrap_or_else(|e| e.into_inner());
        let term = self.ctx.etcd.with(cluster, |c| c.raft_term);
        pb::ResponseHeader { cluster_id: cluster, member_id: mine.member_id, revision: revision.unwrap_or_else(|| self.revision(cluster)), raft_term: term.max(mine.raft_term) }
    }
}

async fn serve_async(mut s: Session) -> io::Result<()> {
    // Through the shim: header blocks h2 would refuse (grpc-go's authorities) are re-encoded.
    let io = super::h2c::shim(s.client_io());
    let endpoint = s.to.as_ref().map(|t| t.label()).unwrap_or_default();
    let ctx = s.ctx.clone();
    let conn = Arc::new(Conn { session: Mutex::new(s), ctx, endpoint, upstream: tokio::sync::Mutex::new(None), header: Default::default() });
    let mut h2 = h2::server::handshake(io).await.map_err(io::Error::other)?;
    while let Some(next) = h2.accept().await {
        let Ok((req, respond)) = next else { break };
        let conn = conn.clone();
        tokio::spawn(async move {
            if let Err(e) = stream(conn, req, respond).await {
                tracing::debug!("etcd stream: {e:?}");
            }
        });
    }
    Ok(())
}

// --------------------------------------------------------------------------- gRPC framing

fn frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(msg.len() as u32);
    b.put_slice(msg);
    b.freeze()
}

/// Whole messages at the front of `buf` (uncompressed), taken out of it; None: a compressed or
/// malformed message the sink cannot read.
fn unframe(buf: &mut BytesMut) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    while buf.len() >= 5 {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf[0] != 0 {
            return None;
        }
        if buf.len() < 5 + len {
            break;
        }
        buf.advance(5);
        out.push(buf.split_to(len).freeze());
    }
    Some(out)
}

async fn collect(mut body: RecvStream) -> Result<Bytes, h2::Error> {
    let mut all = BytesMut::new();
    while let Some(d) = body.data().await {
        let d = d?;
        let _ = body.flow_control().release_capacity(d.len());
        all.extend_from_slice(&d);
    }
    Ok(all.freeze())
}

fn grpc_headers() -> Response<()> {
    let mut r = Response::new(());
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    r
}

fn status_trailers(code: u32, message: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from(code));
    if !message.is_empty() {
        // grpc-message is percent-encoded; etcd's messages are plain ASCII.
        let enc: String = message.bytes().map(|b| if b.is_ascii_graphic() && b != b'%' || b == b' ' { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        if let Ok(v) = HeaderValue::from_str(&enc) {
            t.insert("grpc-message", v);
        }
    }
    t
}

/// A made-up answer: one message, status OK. Returns the bytes sent.
fn answer(respond: &mut SendResponse<Bytes>, msg: &[u8]) -> Result<u64, h2::Error> {
    let mut tx = respond.send_response(grpc_headers(), false)?;
    let f = frame(msg);
    let n = f.len() as u64;
    tx.send_data(f, false)?;
    tx.send_trailers(status_trailers(0, ""))?;
    Ok(n)
}

/// A made-up error: trailers only.
fn answer_error(respond: &mut SendResponse<Bytes>, st: &Status) -> Result<u64, h2::Error> {
    let mut r = grpc_headers();
    r.headers_mut().extend(status_trailers(st.0, &st.1));
    respond.send_response(r, true)?;
    Ok(0)
}

/// What the member answered a forwarded unary call.
struct Reply {
    head: http::response::Parts,
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl Reply {
    fn status(&self) -> u32 {
        let t = self.trailers.as_ref().unwrap_or(&self.head.headers);
        t.get("grpc-status").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0)
    }

    fn message(&self) -> Option<Bytes> {
        let mut b = BytesMut::from(&self.data[..]);
        unframe(&mut b)?.into_iter().next()
    }

    /// Relay it to the pilot unchanged (or with `data` replaced).
    fn relay(self, respond: &mut SendResponse<Bytes>, data: Option<Bytes>) -> Result<u64, h2::Error> {
        let data = data.unwrap_or(self.data);
        let n = data.len() as u64;
        let end = data.is_empty() && self.trailers.is_none();
        let mut tx = respond.send_response(Response::from_parts(self.head, ()), end)?;
        if end {
            return Ok(0);
        }
        tx.send_data(data, self.trailers.is_none())?;
        if let Some(t) = self.trailers {
            tx.send_trailers(t)?;
        }
        Ok(n)
    }
}

/// Send one unary call to the member: the pilot's request head (path, authority, token) with
/// `path`, and `body` (one framed message).
async fn call_raw(conn: &Conn, like: &Parts, path: &str, body: Bytes) -> Result<Reply, Status> {
    let mut up = conn.upstream().await?;
    let mut req = Request::builder().method("POST").uri(uri_with_path(&like.uri, path)).body(()).map_err(|e| Status(INVALID_ARGUMENT, e.to_string()))?;
    *req.headers_mut() = like.headers.clone();
    let (resp, mut tx) = up.send_request(req, false)?;
    tx.send_data(body, true)?;
    let resp = resp.await?;
    let (head, mut rx) = resp.into_parts();
    let mut data = BytesMut::new();
    while let Some(d) = rx.data().await {
        let d = d?;
        let _ = rx.flow_control().release_capacity(d.len());
        data.extend_from_slice(&d);
    }
    let trailers = rx.trailers().await?;
    let reply = Reply { head, data: data.freeze(), trailers };
    if let Some(h) = reply.message().and_then(|m| HeaderOnly::decode(m).ok()).and_then(|h| h.header) {
        conn.learn(&h);
    }
    Ok(reply)
}

fn uri_with_path(uri: &http::Uri, path: &str) -> http::Uri {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path.parse().ok();
    http::Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// A lookup of the sink's own (the member's answer decoded, or its error).
async fn call<Req: Message, Resp: Message + Default>(conn: &Conn, like: &Parts, path: &str, req: &Req) -> Result<Resp, Status> {
    let reply = call_raw(conn, like, path, frame(&req.encode_to_vec())).await?;
    let code = reply.status();
    if code != 0 {
        let t = reply.trailers.as_ref().unwrap_or(&reply.head.headers);
        let msg = t.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        return Err(Status(code, msg));
    }
    let m = reply.message().unwrap_or_default();
    Resp::decode(m).map_err(|e| Status(INVALID_ARGUMENT, e.to_string()))
}

/// Every etcd response has its header at field 1.
#[derive(Clone, PartialEq, Message)]
struct HeaderOnly {
    #[prost(message, optional, tag = "1")]
    header: Option<pb::ResponseHeader>,
}

// ------------------------------------------------------------------------ classification

/// What a request is, before anything is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    pub operation: String,
    pub resource: String,
    pub access: Access,
    pub category: Option<Category>,
}

fn class(operation: &str, resource: String, access: Access, category: Option<Category>) -> Class {
    Class { operation: operation.to_string(), resource, access, category }
}

/// A key as etcdctl shows it.
fn show(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

/// A key range as a resource: `key`, `prefix*`, `key..end`, `key..` (from key on), `*` (all).
pub fn range_label(key: &[u8], end: &[u8]) -> String {
    if end.is_empty() {
        return show(key);
    }
    if end == [0] {
        return if key == [0] || key.is_empty() { "*".into() } else { format!("{}..", show(key)) };
    }
    if prefix_end(key).as_deref() == Some(end) {
        return format!("{}*", show(key));
    }
    format!("{}..{}", show(key), show(end))
}

/// Does a Txn write (in either branch, nested ones included)? (writes, deletes)
fn txn_writes(t: &pb::TxnRequest) -> (bool, bool) {
    let (mut w, mut d) = (false, false);
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(pb::request_op::Request::RequestPut(_)) => w = true,
            Some(pb::request_op::Request::RequestDeleteRange(_)) => d = true,
            Some(pb::request_op::Request::RequestTxn(t)) => {
                let (a, b) = txn_writes(t);
                w |= a;
                d |= b;
            }
            _ => {}
        }
    }
    (w, d)
}

fn txn_keys(t: &pb::TxnRequest) -> String {
    let mut keys: Vec<String> = Vec::new();
    for c in &t.compare {
        keys.push(range_label(&c.key, &c.range_end));
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(pb::request_op::Request::RequestPut(p)) => keys.push(show(&p.key)),
            Some(pb::request_op::Request::RequestDeleteRange(r)) => keys.push(range_label(&r.key, &r.range_end)),
            Some(pb::request_op::Request::RequestRange(r)) => keys.push(range_label(&r.key, &r.range_end)),
            Some(pb::request_op::Request::RequestTxn(t)) => keys.push(txn_keys(t)),
            None => {}
        }
    }
    keys.dedup();
    keys.join(",")
}

fn decode<M: Message + Default>(msg: &[u8]) -> Option<M> {
    M::decode(msg).ok()
}

/// The class of a unary call by its path and message. A message that does not decode is
/// unclassified (fail closed).
pub fn classify(path: &str, msg: &[u8], endpoint: &str) -> Class {
    use Access::{Mutation, Read, Unclassified};
    use Category::{Admin, Delete, Write};
    let method = path.rsplit('/').next().unwrap_or(path);
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let unknown = || class(path, String::new(), Unclassified, None);
    let here = || endpoint.to_string();
    macro_rules! msg {
        ($t:ty) => {
            match decode::<$t>(msg) {
                Some(m) => m,
                None => return unknown(),
            }
        };
    }
    match (service, method) {
        ("etcdserverpb.KV", "Range") => {
            let r = msg!(pb::RangeRequest);
            class("Range", range_label(&r.key, &r.range_end), Read, None)
        }
        ("etcdserverpb.KV", "Put") => {
            let r = msg!(pb::PutRequest);
            class("Put", show(&r.key), Mutation, Some(Write))
        }
        ("etcdserverpb.KV", "DeleteRange") => {
            let r = msg!(pb::DeleteRangeRequest);
            class("DeleteRange", range_label(&r.key, &r.range_end), Mutation, Some(Delete))
        }
        ("etcdserverpb.KV", "Txn") => {
            let t = msg!(pb::TxnRequest);
            match txn_writes(&t) {
                (false, false) => class("Txn", txn_keys(&t), Read, None),
                (_, true) => class("Txn", txn_keys(&t), Mutation, Some(Delete)),
                _ => class("Txn", txn_keys(&t), Mutation, Some(Write)),
            }
        }
        // Compaction throws away every revision before the given one: history is destroyed.
        ("etcdserverpb.KV", "Compact") => {
            let r = msg!(pb::CompactionRequest);
            class("Compact", format!("revision {}", r.revision), Mutation, Some(Delete))
        }
        ("etcdserverpb.Lease", "LeaseGrant") => {
            let r = msg!(pb::LeaseGrantRequest);
            class("LeaseGrant", if r.id != 0 { format!("{:x}", r.id) } else { format!("ttl {}", r.ttl) }, Mutation, Some(Write))
        }
        // Revoking a lease deletes every key attached to it.
        ("etcdserverpb.Lease", "LeaseRevoke") => class("LeaseRevoke", format!("{:x}", msg!(pb::LeaseRevokeRequest).id), Mutation, Some(Delete)),
        ("etcdserverpb.Lease", "LeaseTimeToLive") => class("LeaseTimeToLive", format!("{:x}", msg!(pb::LeaseTimeToLiveRequest).id), Read, None),
        ("etcdserverpb.Lease", "LeaseLeases") => class("LeaseLeases", here(), Read, None),
        ("etcdserverpb.Lease", "LeaseCheckpoint") => class("LeaseCheckpoint", here(), Mutation, Some(Admin)),
        ("etcdserverpb.Cluster", "MemberList") => class("MemberList", here(), Read, None),
        ("etcdserverpb.Cluster", "MemberAdd") => {
            let r = msg!(pb::MemberAddRequest);
            class("MemberAdd", r.peer_ur_ls.join(","), Mutation, Some(Admin))
        }
        ("etcdserverpb.Cluster", "MemberRemove") => class("MemberRemove", format!("{:x}", msg!(pb::MemberRemoveRequest).id), Mutation, Some(Admin)),
        ("etcdserverpb.Cluster", "MemberUpdate") => class("MemberUpdate", format!("{:x}", msg!(pb::MemberUpdateRequest).id), Mutation, Some(Admin)),
        ("etcdserverpb.Cluster", "MemberPromote") => class("MemberPromote", format!("{:x}", msg!(pb::MemberPromoteRequest).id), Mutation, Some(Admin)),
        ("etcdserverpb.Maintenance", "Status" | "Hash" | "HashKV") => class(method, here(), Read, None),
        ("etcdserverpb.Maintenance", "Alarm") => {
            let r = msg!(pb::AlarmRequest);
            let alarm = pb::AlarmType::try_from(r.alarm).map(|a| a.as_str_name()).unwrap_or("?");
            let what = if r.member_id != 0 { format!("{alarm} {:x}", r.member_id) } else { alarm.to_string() };
            match pb::alarm_request::AlarmAction::try_from(r.action) {
                Ok(pb::alarm_request::AlarmAction::Get) => class("Alarm GET", here(), Read, None),
                Ok(a) => class(&format!("Alarm {}", a.as_str_name()), what, Mutation, Some(Admin)),
                Err(_) => unknown(),
            }
        }
        ("etcdserverpb.Maintenance", "Defragment") => class("Defragment", here(), Mutation, Some(Admin)),
        ("etcdserverpb.Maintenance", "MoveLeader") => class("MoveLeader", format!("{:x}", msg!(pb::MoveLeaderRequest).target_id), Mutation, Some(Admin)),
        ("etcdserverpb.Maintenance", "Downgrade") => class("Downgrade", here(), Mutation, Some(Admin)),
        ("etcdserverpb.Maintenance", "Snapshot") => class("Snapshot", here(), Read, None),
        // A token for the connection (as Redis AUTH): changes no stored state.
        ("etcdserverpb.Auth", "Authenticate") => class("Authenticate", msg!(pb::AuthenticateRequest).name, Read, None),
        ("etcdserverpb.Auth", "AuthStatus" | "UserList" | "RoleList") => class(method, here(), Read, None),
        ("etcdserverpb.Auth", "UserGet") => class("UserGet", msg!(pb::AuthUserGetRequest).name, Read, None),
        ("etcdserverpb.Auth", "RoleGet") => class("RoleGet", msg!(pb::AuthRoleGetRequest).role, Read, None),
        ("etcdserverpb.Auth", "AuthEnable" | "AuthDisable") => class(method, here(), Mutation, Some(Admin)),
        ("etcdserverpb.Auth", "UserAdd") => class("UserAdd", msg!(pb::AuthUserAddRequest).name, Mutation, Some(Admin)),
        ("etcdserverpb.Auth", "UserDelete") => class("UserDelete", msg!(pb::AuthUserDeleteRequest).name, Mutation, Some(Admin)),
        ("etcdserverpb.Auth", "UserChangePassword") => class("UserChangePassword", msg!(pb::AuthUserChangePasswordRequest).name, Mutation, Some(Admin)),
        ("etcdserverpb.Auth", "UserGrantRole") => {
            let r = msg!(pb::AuthUserGrantRoleRequest);
            class("UserGrantRole", format!("{} {}", r.user, r.role), Mutation, Some(Admin))
        }
        ("etcdserverpb.Auth", "UserRevokeRole") => {
            let r = msg!(pb::AuthUserRevokeRoleRequest);
            class("UserRevokeRole", format!("{} {}", r.name, r.role), Mutation, Some(Admin))
        }
        ("etcdserverpb.Auth", "RoleAdd") => class("RoleAdd", msg!(pb::AuthRoleAddRequest).name, Mutation, Some(Admin)),
        ("etcdserverpb.Auth", "RoleDelete") => class("RoleDelete", msg!(pb::AuthRoleDeleteRequest).role, Mutation, Some(Admin)),
        ("etcdserverpb.Auth", "RoleGrantPermission") => class("RoleGrantPermission", msg!(pb::AuthRoleGrantPermissionRequest).name, Mutation, Some(Admin)),
        ("etcdserverpb.Auth", "RoleRevokePermission") => class("RoleRevokePermission", msg!(pb::AuthRoleRevokePermissionRequest).role, Mutation, Some(Admin)),
        // The standard health check reads.
        ("grpc.health.v1.Health", "Check") => class("Health Check", here(), Read, None),
        // etcd's lock and election services (etcdctl lock/elect): by path, their messages are not
        // decoded; Leader and Observe read, the rest hold, give up or claim names.
        ("v3lockpb.Lock", "Lock") | ("v3electionpb.Election", "Campaign" | "Proclaim") => class(method, here(), Mutation, Some(Write)),
        ("v3lockpb.Lock", "Unlock") | ("v3electionpb.Election", "Resign") => class(method, here(), Mutation, Some(Delete)),
        ("v3electionpb.Election", "Leader") => class("Leader", here(), Read, None),
        _ => unknown(),
    }
}

/// Streams that stay open: (bidirectional or server-streaming, how the sink serves them).
fn streaming(path: &str) -> Option<&'static str> {
    match path {
        "/etcdserverpb.Watch/Watch" => Some("Watch"),
        "/etcdserverpb.Lease/LeaseKeepAlive" => Some("LeaseKeepAlive"),
        "/etcdserverpb.Maintenance/Snapshot" => Some("Snapshot"),
        "/v3electionpb.Election/Observe" => Some("Observe"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------- streams

async fn stream(conn: Arc<Conn>, req: Request<RecvStream>, mut respond: SendResponse<Bytes>) -> Result<(), Status> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    match streaming(&path) {
        Some("LeaseKeepAlive") if conn.dry() => return keep_alive(&conn, &parts, body, respond).await,
        Some(name) => return relay_stream(&conn, parts, body, respond, name).await,
        None => {}
    }
    let raw = collect(body).await?;
    let mut buf = BytesMut::from(&raw[..]);
    let msg = unframe(&mut buf).and_then(|m| m.into_iter().next());
    let c = match &msg {
        Some(m) => classify(&path, m, &conn.endpoint),
        None => class(&path, String::new(), Access::Unclassified, None),
    };
    let mut op = Op::new(c.operation.clone(), c.resource.clone(), c.access);
    op.category = c.category;
    op.bytes = raw.len() as u64;
    let result = unary(&conn, &parts, &path, raw, msg.unwrap_or_default(), &c, &mut op, &mut respond).await;
    if let Err(e) = &result {
        // The member could not be reached or the sink failed: say so as gRPC does.
        let _ = answer_error(&mut respond, e);
    }
    conn.record(op);
    Ok(())
}

/// One unary call: relayed, answered from the shadow, or captured.
#[allow(clippy::too_many_arguments)]
async fn unary(conn: &Conn, parts: &Parts, path: &str, raw: Bytes, msg: Bytes, c: &Class, op: &mut Op, respond: &mut SendResponse<Bytes>) -> Result<(), Status> {
    if c.access == Access::Unclassified && !conn.may_forward(Access::Unclassified) {
        op.disposition = Disposition::Captured;
        op.reply_bytes = answer_error(respond, &Status(UNIMPLEMENTED, format!("pilot: {path} was captured, not sent to the live server")))?;
        return Ok(());
    }
    if conn.may_forward(c.access) && !(c.access == Access::Read && conn.ctx.etcd.dirty() && shadow_read(c)) {
        op.disposition = Disposition::Forwarded;
        let reply = call_raw(conn, parts, path, raw).await?;
        op.reply_bytes = reply.relay(respond, None)?;
        return Ok(());
    }
    // Reads that may meet the pilot's writes, and every captured mutation, need the cluster.
    let cluster = match conn.cluster() {
        Some(id) => id,
        None => learn_cluster(conn, parts).await?,
    };
    let k = Kv { conn, parts, cluster, space: space(cluster) };
    if c.access != Access::Read {
        conn.ctx.etcd.set_dirty();
    }
    let result = match c.operation.as_str() {
        "Range" => k.range_call(decode(&msg).unwrap_or_default(), raw, op).await,
        "Txn" => k.txn_call(decode(&msg).unwrap_or_default(), op).await,
        "Put" | "DeleteRange" | "Compact" => k.write_call(&c.operation, &msg, op).await,
        "MemberList" => k.members_call(parts, raw, op).await,
        "LeaseTimeToLive" | "LeaseLeases" => k.lease_read(&c.operation, &msg, raw, op).await,
        _ => k.captured(&c.operation, &msg).await.map(Answer::Made),
    };
    let a = match result {
        Ok(a) => a,
        Err(st) => Answer::Error(st),
    };
    op.reply_bytes = match a {
        Answer::Made(m) => {
            op.disposition = if c.access == Access::Read { Disposition::Shadowed } else { Disposition::Captured };
            answer(respond, &m)?
        }
        Answer::Merged(m) => {
            op.disposition = Disposition::Forwarded;
            answer(respond, &m)?
        }
        Answer::Relayed(reply, data) => {
            op.disposition = Disposition::Forwarded;
            reply.relay(respond, data)?
        }
        Answer::Error(st) => {
            op.disposition = if c.access == Access::Read { Disposition::Forwarded } else { Disposition::Captured };
            answer_error(respond, &st)?
        }
    };
    Ok(())
}

/// Reads that the shadow layer or the pilot's cluster changes may answer differently.
fn shadow_read(c: &Class) -> bool {
    matches!(c.operation.as_str(), "Range" | "Txn" | "MemberList" | "LeaseTimeToLive" | "LeaseLeases")
}

/// The cluster id of this member (a Status call, when no answer said it yet).
async fn learn_cluster(conn: &Conn, parts: &Parts) -> Result<u64, Status> {
    let r: pb::StatusResponse = call(conn, parts, "/etcdserverpb.Maintenance/Status", &pb::StatusRequest {}).await?;
    r.header.map(|h| h.cluster_id).filter(|&id| id != 0).ok_or_else(|| Status(UNAVAILABLE, "pilot sink: the member did not say its cluster".into()))
}

enum Answer {
    Made(Vec<u8>),
    /// Made from the member's answer merged with the pilot's changes.
    Merged(Vec<u8>),
    /// The member's reply, with its message replaced when given.
    Relayed(Box<Reply>, Option<Bytes>),
    Error(Status),
}

/// A bidirectional or server stream relayed both ways (Watch, Snapshot; every stream in a
/// commit). Watch and Observe requests are recorded as they pass.
async fn relay_stream(conn: &Conn, parts: Parts, mut body: RecvStream, mut respond: SendResponse<Bytes>, name: &str) -> Result<(), Status> {
    let mut up = conn.upstream().await?;
    let (resp, mut tx) = up.send_request(Request::from_parts(parts, ()), body.is_end_stream())?;
    let endpoint = conn.endpoint.clone();
    let to_member = async {
        let mut pending = BytesMut::new();
        let mut sent = 0u64;
        while let Some(d) = body.data().await {
            let d = d?;
            let _ = body.flow_control().release_capacity(d.len());
            sent += d.len() as u64;
            pending.extend_from_slice(&d);
            for m in unframe(&mut pending).unwrap_or_default() {
                let (operation, resource) = watch_label(name, &m, &endpoint);
                let mut op = Op::new(operation, resource, Access::Read);
                op.disposition = Disposition::Forwarded;
                op.bytes = m.len() as u64 + 5;
                conn.record(op);
            }
            tx.send_data(d, false)?;
        }
        if sent == 0 && name != "Watch" {
            let mut op = Op::new(name, endpoint.clone(), Access::Read);
            op.disposition = Disposition::Forwarded;
            conn.record(op);
        }
        let _ = tx.send_data(Bytes::new(), true);
        Ok::<(), h2::Error>(())
    };
    let to_pilot = async {
        let resp = resp.await?;
        let (head, mut rx) = resp.into_parts();
        let end = rx.is_end_stream();
        let mut out = respond.send_response(Response::from_parts(head, ()), end)?;
        if end {
            return Ok(());
        }
        while let Some(d) = rx.data().await {
            let d = d?;
            let _ = rx.flow_control().release_capacity(d.len());
            out.send_data(d, false)?;
        }
        match rx.trailers().await? {
            Some(t) => out.send_trailers(t)?,
            None => out.send_data(Bytes::new(), true)?,
        }
        Ok::<(), h2::Error>(())
    };
    tokio::pin!(to_member, to_pilot);
    // The answer's end ends the stream; the pilot's side may end first (half-close).
    tokio::select! {
        r = &mut to_pilot => r?,
        r = &mut to_member => { r?; to_pilot.await? }
    }
    Ok(())
}

fn watch_label(name: &str, m: &[u8], endpoint: &str) -> (String, String) {
    if name != "Watch" {
        return (name.to_string(), endpoint.to_string());
    }
    match decode::<pb::WatchRequest>(m).and_then(|w| w.request_union) {
        Some(pb::watch_request::RequestUnion::CreateRequest(c)) => ("Watch".into(), range_label(&c.key, &c.range_end)),
        Some(pb::watch_request::RequestUnion::CancelRequest(c)) => ("Watch cancel".into(), c.watch_id.to_string()),
        _ => ("Watch progress".into(), endpoint.to_string()),
    }
}

/// LeaseKeepAlive in a pilot: each request is captured (keeping a live lease alive changes
/// what expires) and answered with the lease's TTL (the pilot's own lease's, or the member's
/// granted TTL; 0 when it is gone, as the member answers).
async fn keep_alive(conn: &Conn, parts: &Parts, mut body: RecvStream, mut respond: SendResponse<Bytes>) -> Result<(), Status> {
    let mut out: Option<SendStream<Bytes>> = None;
    let mut pending = BytesMut::new();
    while let Some(d) = body.data().await {
        let d = d?;
        let _ = body.flow_control().release_capacity(d.len());
        pending.extend_from_slice(&d);
        for m in unframe(&mut pending).unwrap_or_default() {
            let id = decode::<pb::LeaseKeepAliveRequest>(&m).map_or(0, |r| r.id);
            let cluster = match conn.cluster() {
                Some(c) => c,
                None => learn_cluster(conn, parts).await?,
            };
            let k = Kv { conn, parts, cluster, space: space(cluster) };
            let ttl = k.lease_ttl(id).await.map(|(ttl, _)| ttl.max(0)).unwrap_or(0);
            let reply = pb::LeaseKeepAliveResponse { header: Some(conn.made_header(cluster, None)), id, ttl };
            let tx = match out.as_mut() {
                Some(tx) => tx,
                None => out.insert(respond.send_response(grpc_headers(), false)?),
            };
            let f = frame(&reply.encode_to_vec());
            let mut op = Op::new("LeaseKeepAlive", format!("{id:x}"), Access::Mutation);
            op.category = Some(Category::Write);
            op.bytes = m.len() as u64 + 5;
            op.reply_bytes = f.len() as u64;
            conn.record(op);
            tx.send_data(f, false)?;
        }
    }
    match out.as_mut() {
        Some(tx) => tx.send_trailers(status_trailers(0, ""))?,
        None => {
            let mut r = grpc_headers();
            r.headers_mut().extend(status_trailers(0, ""));
            respond.send_response(r, true)?;
        }
    }
    Ok(())
}

// ----------------------------------------------------------------- the pilot's view of keys

/// Keys, leases and members as the pilot would see them: the member's, with the pilot's own
/// changes over them.
struct Kv<'a> {
    conn: &'a Conn,
    parts: &'a Parts,
    cluster: u64,
    space: String,
}

/// `[from, to)` of a request's key and range_end (etcd's conventions: empty end: the key
/// alone; end `\0`: every key from `key`; key and end `\0`: every key).
fn bounds(key: &[u8], end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    if end == [0] {
        let from = if key == [0] { Vec::new() } else { key.to_vec() };
        return (from, None);
    }
    (key.to_vec(), Some(end.to_vec()))
}

fn kv_of(l: &Lookup) -> Option<pb::KeyValue> {
    match l {
        Lookup::Value(v) => pb::KeyValue::decode(&v[..]).ok(),
        _ => None,
    }
}

/// A revision made for a Txn or a single write: the same for every write in it.
struct Rev(Option<i64>);

impl Kv<'_> {
    fn rev(&self, r: &mut Rev) -> i64 {
        *r.0.get_or_insert_with(|| {
            let live = self.conn.ctx.etcd.with(self.cluster, |c| c.revision);
            live + self.conn.ctx.shadow.bump(&self.space) as i64
        })
    }

    fn header(&self, rev: Option<i64>) -> Option<pb::ResponseHeader> {
        Some(self.conn.made_header(self.cluster, rev))
    }

    /// Does the pilot's shadow hold anything in this range?
    fn touched(&self, key: &[u8], end: &[u8]) -> bool {
        if end.is_empty() {
            return self.conn.ctx.shadow.get(&self.space, key) != Lookup::Live;
        }
        let (from, to) = bounds(key, end);
        !self.conn.ctx.shadow.written_in(&self.space, &from, to.as_deref()).is_empty() || self.conn.ctx.shadow.range_deleted(&self.space, &from, to.as_deref())
    }

    /// A Range as the pilot sees it: None when the shadow has nothing there (ask the member).
    async fn view(&self, r: &pb::RangeRequest) -> Result<Option<(pb::RangeResponse, bool)>, Status> {
        if !self.touched(&r.key, &r.range_end) {
            return Ok(None);
        }
        let shadow = &self.conn.ctx.shadow;
        if r.range_end.is_empty() {
            let l = shadow.get(&self.space, &r.key);
            if matches!(l, Lookup::Value(_) | Lookup::Deleted) {
                let kvs: Vec<pb::KeyValue> = kv_of(&l).into_iter().collect();
                return Ok(Some((self.shaped(r, kvs, None), true)));
            }
            return Ok(None);
        }
        // A range: the member's keys (values too unless asked without), the pilot's over them.
        let live_req = pb::RangeRequest { limit: 0, count_only: false, ..r.clone() };
        let live: pb::RangeResponse = call(self.conn, self.parts, "/etcdserverpb.KV/Range", &live_req).await?;
        let (from, to) = bounds(&r.key, &r.range_end);
        let written = shadow.written_in(&self.space, &from, to.as_deref());
        let mut kvs: Vec<pb::KeyValue> = live.kvs.into_iter().filter(|kv| matches!(shadow.get(&self.space, &kv.key), Lookup::Live | Lookup::Changed)).collect();
        kvs.extend(written.iter().filter_map(|(_, l)| kv_of(l)));
        kvs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Some((self.shaped(r, kvs, live.header), false)))
    }

    /// A RangeResponse for `r` from the pilot's `kvs` (sorted by key): limit, order, keys/count only.
    fn shaped(&self, r: &pb::RangeRequest, mut kvs: Vec<pb::KeyValue>, header: Option<pb::ResponseHeader>) -> pb::RangeResponse {
        if r.sort_order == pb::range_request::SortOrder::Descend as i32 {
            kvs.reverse();
        }
        let count = kvs.len() as i64;
        let more = r.limit > 0 && count > r.limit;
        if r.limit > 0 {
            kvs.truncate(r.limit as usize);
        }
        if r.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        if r.count_only {
            kvs.clear();
        }
        let mut h = header.or_else(|| self.header(None));
        if let Some(h) = h.as_mut() {
            h.revision = self.conn.revision(self.cluster);
        }
        pb::RangeResponse { header: h, kvs, more, count }
    }

    /// The key's current value in the pilot's eyes.
    async fn current(&self, key: &[u8]) -> Result<Option<pb::KeyValue>, Status> {
        let l = self.conn.ctx.shadow.get(&self.space, key);
        match l {
            Lookup::Value(_) => return Ok(kv_of(&l)),
            Lookup::Deleted => return Ok(None),
            _ => {}
        }
        let r: pb::RangeResponse = call(self.conn, self.parts, "/etcdserverpb.KV/Range", &pb::RangeRequest { key: key.to_vec(), ..Default::default() }).await?;
        Ok(r.kvs.into_iter().next())
    }

    /// Every key of a range in the pilot's eyes (values unless `keys_only`).
    async fn all(&self, key: &[u8], end: &[u8], keys_only: bool) -> Result<Vec<pb::KeyValue>, Status> {
        if end.is_empty() {
            return Ok(self.current(key).await?.into_iter().collect());
        }
        let r = pb::RangeRequest { key: key.to_vec(), range_end: end.to_vec(), keys_only, ..Default::default() };
        if let Some((resp, _)) = self.view(&r).await? {
            return Ok(resp.kvs);
        }
        let resp: pb::RangeResponse = call(self.conn, self.parts, "/etcdserverpb.KV/Range", &r).await?;
        Ok(resp.kvs)
    }

    async fn range_call(&self, r: pb::RangeRequest, raw: Bytes, op: &mut Op) -> Result<Answer, Status> {
        match self.view(&r).await? {
            Some((resp, from_shadow)) => {
                if from_shadow {
                    return Ok(Answer::Made(resp.encode_to_vec()));
                }
                Ok(Answer::Merged(resp.encode_to_vec()))
            }
            None => {
                let reply = call_raw(self.conn, self.parts, "/etcdserverpb.KV/Range", raw).await?;
                op.may_differ = self.conn.ctx.shadow.get(&self.space, &r.key) == Lookup::Changed;
                Ok(Answer::Relayed(Box::new(reply), None))
            }
        }
    }

    async fn write_call(&self, operation: &str, msg: &[u8], _op: &mut Op) -> Result<Answer, Status> {
        let mut rev = Rev(None);
        let resp = match operation {
            "Put" => self.put(decode(msg).unwrap_or_default(), &mut rev).await?.encode_to_vec(),
            "DeleteRange" => self.delete(decode(msg).unwrap_or_default(), &mut rev).await?.encode_to_vec(),
            _ => {
                let r: pb::CompactionRequest = decode(msg).unwrap_or_default();
                let current = self.conn.revision(self.cluster);
                if r.revision > current {
                    return Err(Status(OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision".into()));
                }
                pb::CompactionResponse { header: self.header(None) }.encode_to_vec()
            }
        };
        Ok(Answer::Made(resp))
    }

    async fn put(&self, r: pb::PutRequest, rev: &mut Rev) -> Result<pb::PutResponse, Status> {
        let prev = self.current(&r.key).await?;
        if (r.ignore_value || r.ignore_lease) && prev.is_none() {
            return Err(Status(INVALID_ARGUMENT, "etcdserver: key not found".into()));
        }
        let at = self.rev(rev);
        let kv = pb::KeyValue {
            key: r.key.clone(),
            value: if r.ignore_value { prev.as_ref().map(|p| p.value.clone()).unwrap_or_default() } else { r.value.clone() },
            lease: if r.ignore_lease { prev.as_ref().map_or(0, |p| p.lease) } else { r.lease },
            create_revision: prev.as_ref().map_or(at, |p| p.create_revision),
            mod_revision: at,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
        };
        self.conn.ctx.shadow.put(&self.space, &r.key, kv.encode_to_vec());
        Ok(pb::PutResponse { header: self.header(Some(at)), prev_kv: if r.prev_kv { prev } else { None } })
    }

    async fn delete(&self, r: pb::DeleteRangeRequest, rev: &mut Rev) -> Result<pb::DeleteRangeResponse, Status> {
        let gone = self.all(&r.key, &r.range_end, !r.prev_kv).await?;
        let at = if gone.is_empty() { None } else { Some(self.rev(rev)) };
        let shadow = &self.conn.ctx.shadow;
        if r.range_end.is_empty() {
            shadow.delete(&self.space, &r.key);
        } else {
            let (from, to) = bounds(&r.key, &r.range_end);
            shadow.delete_range(&self.space, &from, to.as_deref());
        }
        Ok(pb::DeleteRangeResponse { header: self.header(at), deleted: gone.len() as i64, prev_kvs: if r.prev_kv { gone } else { Vec::new() } })
    }

    async fn txn_call(&self, t: pb::TxnRequest, _op: &mut Op) -> Result<Answer, Status> {
        let mut rev = Rev(None);
        let resp = self.txn(t, &mut rev).await?;
        Ok(Answer::Made(resp.encode_to_vec()))
    }

    /// A Txn on the pilot's view: compares evaluated, the chosen branch applied to the shadow.
    fn txn<'b>(&'b self, t: pb::TxnRequest, rev: &'b mut Rev) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<pb::TxnResponse, Status>> + Send + 'b>> {
        Box::pin(async move {
            let mut ok = true;
            for c in &t.compare {
                ok &= self.compare(c).await?;
            }
            let branch = if ok { t.success } else { t.failure };
            let mut responses = Vec::new();
            for op in branch {
                use pb::request_op::Request as Q;
                use pb::response_op::Response as A;
                let a = match op.request {
                    Some(Q::RequestRange(r)) => {
                        let resp = match self.view(&r).await? {
                            Some((resp, _)) => resp,
                            None => call(self.conn, self.parts, "/etcdserverpb.KV/Range", &r).await?,
                        };
                        A::ResponseRange(resp)
                    }
                    Some(Q::RequestPut(p)) => A::ResponsePut(self.put(p, rev).await?),
                    Some(Q::RequestDeleteRange(d)) => A::ResponseDeleteRange(self.delete(d, rev).await?),
                    Some(Q::RequestTxn(t)) => A::ResponseTxn(self.txn(t, rev).await?),
                    None => continue,
                };
                responses.push(pb::ResponseOp { response: Some(a) });
            }
            Ok(pb::TxnResponse { header: self.header(rev.0), succeeded: ok, responses })
        })
    }

    /// One Txn compare on the pilot's view (a missing key compares as zero values; a range
    /// holds when every key in it does).
    async fn compare(&self, c: &pb::Compare) -> Result<bool, Status> {
        use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
        let kvs = self.all(&c.key, &c.range_end, false).await?;
        let kvs: Vec<Option<pb::KeyValue>> = if kvs.is_empty() && c.range_end.is_empty() { vec![None] } else { kvs.into_iter().map(Some).collect() };
        let result = R::try_from(c.result).unwrap_or(R::Equal);
        let holds = |ord: std::cmp::Ordering| match result {
            R::Equal => ord.is_eq(),
            R::NotEqual => ord.is_ne(),
            R::Greater => ord.is_gt(),
            R::Less => ord.is_lt(),
        };
        for kv in &kvs {
            let ok = match (T::try_from(c.target).unwrap_or(T::Version), &c.target_union) {
                (T::Value, Some(U::Value(v))) => match kv {
                    Some(kv) => holds(kv.value.as_slice().cmp(v.as_slice())),
                    None => false,
                },
                (T::Version, Some(U::Version(v))) => holds(kv.as_ref().map_or(0, |k| k.version).cmp(v)),
                (T::Create, Some(U::CreateRevision(v))) => holds(kv.as_ref().map_or(0, |k| k.create_revision).cmp(v)),
                (T::Mod, Some(U::ModRevision(v))) => holds(kv.as_ref().map_or(0, |k| k.mod_revision).cmp(v)),
                (T::Lease, Some(U::Lease(v))) => holds(kv.as_ref().map_or(0, |k| k.lease).cmp(v)),
                _ => false,
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The member list as the pilot would see it (its removals and additions applied).
    async fn members_call(&self, parts: &Parts, raw: Bytes, op: &mut Op) -> Result<Answer, Status> {
        let reply = call_raw(self.conn, parts, "/etcdserverpb.Cluster/MemberList", raw).await?;
        let (removed, added) = self.conn.ctx.etcd.with(self.cluster, |c| (c.removed.clone(), c.added.clone()));
        if removed.is_empty() && added.is_empty() || reply.status() != 0 {
            return Ok(Answer::Relayed(Box::new(reply), None));
        }
        let mut list = reply.message().and_then(|m| decode::<pb::MemberListResponse>(&m)).unwrap_or_default();
        list.members.retain(|m| !removed.contains(&m.id));
        list.members.extend(added);
        op.may_differ = true;
        let data = frame(&list.encode_to_vec());
        Ok(Answer::Relayed(Box::new(reply), Some(data)))
    }

    /// (TTL left, granted TTL) of a lease in the pilot's eyes: -1 when it does not exist.
    async fn lease_ttl(&self, id: i64) -> Result<(i64, i64), Status> {
        let (granted, revoked) = self.conn.ctx.etcd.with(self.cluster, |c| (c.granted.get(&id).copied(), c.revoked.contains(&id)));
        if revoked {
            return Ok((-1, 0));
        }
        if let Some(ttl) = granted {
            return Ok((ttl, ttl));
        }
        let r: pb::LeaseTimeToLiveResponse = call(self.conn, self.parts, "/etcdserverpb.Lease/LeaseTimeToLive", &pb::LeaseTimeToLiveRequest { id, keys: false }).await?;
        Ok((r.ttl, r.granted_ttl))
    }

    async fn lease_read(&self, operation: &str, msg: &[u8], raw: Bytes, op: &mut Op) -> Result<Answer, Status> {
        let path = format!("/etcdserverpb.Lease/{operation}");
        let (granted, revoked) = self.conn.ctx.etcd.with(self.cluster, |c| (c.granted.clone(), c.revoked.clone()));
        if operation == "LeaseTimeToLive" {
            let r: pb::LeaseTimeToLiveRequest = decode(msg).unwrap_or_default();
            if revoked.contains(&r.id) || granted.contains_key(&r.id) {
                let ttl = if revoked.contains(&r.id) { -1 } else { granted[&r.id] };
                let resp = pb::LeaseTimeToLiveResponse { header: self.header(None), id: r.id, ttl, granted_ttl: ttl.max(0), keys: Vec::new() };
                return Ok(Answer::Made(resp.encode_to_vec()));
            }
            return Ok(Answer::Relayed(Box::new(call_raw(self.conn, self.parts, &path, raw).await?), None));
        }
        let reply = call_raw(self.conn, self.parts, &path, raw).await?;
        if granted.is_empty() && revoked.is_empty() || reply.status() != 0 {
            return Ok(Answer::Relayed(Box::new(reply), None));
        }
        let mut list = reply.message().and_then(|m| decode::<pb::LeaseLeasesResponse>(&m)).unwrap_or_default();
        list.leases.retain(|l| !revoked.contains(&l.id));
        list.leases.extend(granted.keys().map(|&id| pb::LeaseStatus { id }));
        op.may_differ = true;
        let data = frame(&list.encode_to_vec());
        Ok(Answer::Relayed(Box::new(reply), Some(data)))
    }

    async fn live_members(&self) -> Result<Vec<pb::Member>, Status> {
        let r: pb::MemberListResponse = call(self.conn, self.parts, "/etcdserverpb.Cluster/MemberList", &pb::MemberListRequest { linearizable: false }).await?;
        let (removed, added) = self.conn.ctx.etcd.with(self.cluster, |c| (c.removed.clone(), c.added.clone()));
        let mut members: Vec<pb::Member> = r.members.into_iter().filter(|m| !removed.contains(&m.id)).collect();
        members.extend(added);
        Ok(members)
    }

    /// The answer to a captured call other than the key writes, as the member would give it.
    async fn captured(&self, operation: &str, msg: &[u8]) -> Result<Vec<u8>, Status> {
        let h = self.header(None);
        let etcd = &self.conn.ctx.etcd;
        Ok(match operation {
            "LeaseGrant" => {
                let r: pb::LeaseGrantRequest = decode(msg).unwrap_or_default();
                let id = if r.id != 0 { r.id } else { made_id() as i64 & i64::MAX };
                etcd.with(self.cluster, |c| c.granted.insert(id, r.ttl));
                pb::LeaseGrantResponse { header: h, id, ttl: r.ttl, error: String::new() }.encode_to_vec()
            }
            "LeaseRevoke" => {
                let r: pb::LeaseRevokeRequest = decode(msg).unwrap_or_default();
                if self.lease_ttl(r.id).await?.0 < 0 {
                    return Err(Status(NOT_FOUND, "etcdserver: requested lease not found".into()));
                }
                // The keys attached to it go with it.
                let keys = match etcd.with(self.cluster, |c| c.granted.contains_key(&r.id)) {
                    true => Vec::new(),
                    false => call::<_, pb::LeaseTimeToLiveResponse>(self.conn, self.parts, "/etcdserverpb.Lease/LeaseTimeToLive", &pb::LeaseTimeToLiveRequest { id: r.id, keys: true }).await?.keys,
                };
                for k in &keys {
                    self.conn.ctx.shadow.delete(&self.space, k);
                }
                let rev = if keys.is_empty() { None } else { Some(self.rev(&mut Rev(None))) };
                etcd.with(self.cluster, |c| {
                    c.granted.remove(&r.id);
                    c.revoked.insert(r.id)
                });
                pb::LeaseRevokeResponse { header: self.header(rev) }.encode_to_vec()
            }
            "MemberAdd" => {
                let r: pb::MemberAddRequest = decode(msg).unwrap_or_default();
                let mut members = self.live_members().await?;
                if members.iter().any(|m| m.peer_ur_ls.iter().any(|u| r.peer_ur_ls.contains(u))) {
                    return Err(Status(INVALID_ARGUMENT, "etcdserver: Peer URLs already exists".into()));
                }
                let m = pb::Member { id: made_id(), name: String::new(), peer_ur_ls: r.peer_ur_ls, client_ur_ls: Vec::new(), is_learner: r.is_learner };
                etcd.with(self.cluster, |c| c.added.push(m.clone()));
                members.push(m.clone());
                pb::MemberAddResponse { header: h, member: Some(m), members }.encode_to_vec()
            }
            "MemberRemove" => {
                let r: pb::MemberRemoveRequest = decode(msg).unwrap_or_default();
                let mut members = self.live_members().await?;
                if !members.iter().any(|m| m.id == r.id) {
                    return Err(Status(NOT_FOUND, "etcdserver: member not found".into()));
                }
                members.retain(|m| m.id != r.id);
                etcd.with(self.cluster, |c| {
                    c.added.retain(|m| m.id != r.id);
                    c.removed.insert(r.id)
                });
                pb::MemberRemoveResponse { header: h, members }.encode_to_vec()
            }
            "MemberUpdate" | "MemberPromote" => {
                let id = if operation == "MemberUpdate" { decode::<pb::MemberUpdateRequest>(msg).unwrap_or_default().id } else { decode::<pb::MemberPromoteRequest>(msg).unwrap_or_default().id };
                let members = self.live_members().await?;
                if !members.iter().any(|m| m.id == id) {
                    return Err(Status(NOT_FOUND, "etcdserver: member not found".into()));
                }
                pb::MemberUpdateResponse { header: h, members }.encode_to_vec()
            }
            "Alarm ACTIVATE" | "Alarm DEACTIVATE" => {
                let r: pb::AlarmRequest = decode(msg).unwrap_or_default();
                let alarms = if operation == "Alarm ACTIVATE" {
                    vec![pb::AlarmMember { member_id: r.member_id, alarm: r.alarm }]
                } else {
                    // The member answers with the alarms it disarmed: those that are raised.
                    let live: pb::AlarmResponse = call(self.conn, self.parts, "/etcdserverpb.Maintenance/Alarm", &pb::AlarmRequest { action: 0, member_id: 0, alarm: 0 }).await?;
                    live.alarms.into_iter().filter(|a| a.member_id == r.member_id && a.alarm == r.alarm).collect()
                };
                pb::AlarmResponse { header: h, alarms }.encode_to_vec()
            }
            "AuthEnable" => pb::AuthEnableResponse { header: h }.encode_to_vec(),
            "AuthDisable" => pb::AuthDisableResponse { header: h }.encode_to_vec(),
            // Every other captured call answers with a header alone (their responses have no
            // other field, or none a client relies on).
            _ => HeaderOnly { header: h }.encode_to_vec(),
        })
    }
}

/// An id for a lease or member the pilot made: random-looking, non-zero.
fn made_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(super::now_ms());
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_h2_preface() {
        assert_eq!(sniff(b"PRI * HT"), Sniff::NeedMore);
        assert_eq!(sniff(PREFACE), Sniff::Yes);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::No);
    }

    #[test]
    fn classifies_reads_and_mutations() {
        let put = pb::PutRequest { key: b"/app/x".to_vec(), value: b"1".to_vec(), ..Default::default() }.encode_to_vec();
        assert_eq!(classify("/etcdserverpb.KV/Put", &put, "e"), class("Put", "/app/x".into(), Access::Mutation, Some(Category::Write)));
        let all = pb::DeleteRangeRequest { key: vec![0], range_end: vec![0], prev_kv: false }.encode_to_vec();
        assert_eq!(classify("/etcdserverpb.KV/DeleteRange", &all, "e").resource, "*");
        let prefix = pb::RangeRequest { key: b"/app/".to_vec(), range_end: b"/app0".to_vec(), ..Default::default() }.encode_to_vec();
        assert_eq!(classify("/etcdserverpb.KV/Range", &prefix, "e"), class("Range", "/app/*".into(), Access::Read, None));
        let rm = pb::MemberRemoveRequest { id: 0x8e9e05c52164694d }.encode_to_vec();
        assert_eq!(classify("/etcdserverpb.Cluster/MemberRemove", &rm, "e"), class("MemberRemove", "8e9e05c52164694d".into(), Access::Mutation, Some(Category::Admin)));
        let get = pb::AlarmRequest { action: 0, member_id: 0, alarm: 0 }.encode_to_vec();
        assert_eq!(classify("/etcdserverpb.Maintenance/Alarm", &get, "e").access, Access::Read);
        let disarm = pb::AlarmRequest { action: 2, member_id: 5, alarm: 1 }.encode_to_vec();
        assert_eq!(classify("/etcdserverpb.Maintenance/Alarm", &disarm, "e"), class("Alarm DEACTIVATE", "NOSPACE 5".into(), Access::Mutation, Some(Category::Admin)));
        let read_txn = pb::TxnRequest {
            success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest { key: b"a".to_vec(), ..Default::default() })) }],
            ..Default::default()
        };
        assert_eq!(classify("/etcdserverpb.KV/Txn", &read_txn.encode_to_vec(), "e").access, Access::Read);
        let mut write_txn = read_txn.clone();
        write_txn.failure.push(pb::RequestOp { request: Some(pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest { key: b"a".to_vec(), ..Default::default() })) });
        assert_eq!(classify("/etcdserverpb.KV/Txn", &write_txn.encode_to_vec(), "e").category, Some(Category::Delete));
        assert_eq!(classify("/etcdserverpb.Maintenance/Defragment", &[], "e").category, Some(Category::Admin));
        assert_eq!(classify("/x.Y/Z", &[], "e").access, Access::Unclassified);
        assert_eq!(classify("/etcdserverpb.KV/Put", &[0xff, 0xff], "e").access, Access::Unclassified, "undecodable: fail closed");
    }

    #[test]
    fn frames_round_trip() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&frame(b"abc"));
        b.extend_from_slice(&frame(b""));
        b.extend_from_slice(&frame(b"de")[..3]);
        let got = unframe(&mut b).unwrap();
        assert_eq!(got, vec![Bytes::from_static(b"abc"), Bytes::new()]);
        assert_eq!(b.len(), 3, "a partial message stays");
    }
}
