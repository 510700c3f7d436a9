//! ZooKeeper: its jute protocol, as `zkCli.sh` and every client library speak it (hand-written:
//! no maintained Rust crate serves the server side of it, and its framing is small: a 4-byte
//! length, a request header {xid, type}, a body of big-endian ints, longs, length-prefixed
//! buffers and strings). The session handshake (ConnectRequest) is relayed, so the pilot holds a
//! real session on the agent's connection; reads (exists, getData, getChildren/2, getACL,
//! sync, ping, auth, setWatches, multiRead, a multi of checks...) go through and the server's
//! answers are relayed in xid order, watch notifications included; mutations (create and its
//! variants, delete, setData, setACL, a multi with writes, reconfig) are captured and answered
//! as the server would (the reply header with the xid and the last zxid seen, ZNONODE,
//! ZNODEEXISTS, ZBADVERSION, ZNOTEMPTY from the pilot's view), kept in a shadow subtree (as
//! PILOT's ZooKeeper wrapper does), so later reads in the run see the pilot's znodes. The
//! four-letter admin words (`stat`, `mntr`, `conf`... read; `srst`, `crst` reset) are served
//! too. An op code the sink does not know is unclassified: captured, answered ZUNIMPLEMENTED.
use std::io;

use super::session::{BoxFuture, Op, Session};
use super::shadow::Lookup;
use super::{Access, Category, Disposition, Module, Sniff};

pub const MODULE: Module = Module { name: "zookeeper", sniff, serve };

/// The four-letter words and whether they change the server (stats resets).
const WORDS: &[(&str, bool)] = &[
    ("conf", false),
    ("cons", false),
    ("crst", true),
    ("dump", false),
    ("envi", false),
    ("ruok", false),
    ("srst", true),
    ("srvr", false),
    ("stat", false),
    ("wchs", false),
    ("wchc", false),
    ("wchp", false),
    ("mntr", false),
    ("isro", false),
    ("hash", false),
    ("dirs", false),
    ("gtmk", false),
    ("stmk", true),
];

/// A ConnectRequest (length, protocolVersion 0, lastZxidSeen, timeOut, sessionId, passwd), or
/// a four-letter word.
fn sniff(b: &[u8]) -> Sniff {
    if b.len() < 4 {
        let partial = WORDS.iter().any(|(w, _)| w.as_bytes().starts_with(b));
        return if partial || b.iter().all(|&c| c == 0) { Sniff::NeedMore } else { Sniff::No };
    }
    if WORDS.iter().any(|(w, _)| w.as_bytes() == &b[..4]) && b.len() <= 6 {
        return Sniff::Yes;
    }
    let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if !(28..=4096).contains(&len) {
        return Sniff::No;
    }
    if b.len() < 8 {
        return Sniff::NeedMore;
    }
    if b[4..8] != [0, 0, 0, 0] {
        return Sniff::No;
    }
    if b.len() < 32 {
        return Sniff::NeedMore;
    }
    // timeOut is positive, and the password is a buffer of at most 64 bytes (or -1).
    let timeout = i32::from_be_bytes([b[16], b[17], b[18], b[19]]);
    let pw = i32::from_be_bytes([b[28], b[29], b[30], b[31]]);
    if timeout > 0 && (-1..=64).contains(&pw) { Sniff::Yes } else { Sniff::No }
}

fn serve(s: Session) -> BoxFuture {
    Box::pin(serve_async(s))
}

// Op codes (ZooDefs.OpCode).
const CREATE: i32 = 1;
const DELETE: i32 = 2;
const EXISTS: i32 = 3;
const GET_DATA: i32 = 4;
const SET_DATA: i32 = 5;
const GET_ACL: i32 = 6;
const SET_ACL: i32 = 7;
const GET_CHILDREN: i32 = 8;
const SYNC: i32 = 9;
const PING: i32 = 11;
const GET_CHILDREN2: i32 = 12;
const CHECK: i32 = 13;
const MULTI: i32 = 14;
const CREATE2: i32 = 15;
const RECONFIG: i32 = 16;
const CHECK_WATCHES: i32 = 17;
const REMOVE_WATCHES: i32 = 18;
const CREATE_CONTAINER: i32 = 19;
const DELETE_CONTAINER: i32 = 20;
const CREATE_TTL: i32 = 21;
const MULTI_READ: i32 = 22;
const AUTH: i32 = 100;
const SET_WATCHES: i32 = 101;
const SASL: i32 = 102;
const GET_EPHEMERALS: i32 = 103;
const GET_ALL_CHILDREN_NUMBER: i32 = 104;
const SET_WATCHES2: i32 = 105;
const ADD_WATCH: i32 = 106;
const WHO_AM_I: i32 = 107;
const CLOSE_SESSION: i32 = -11;
const ERROR: i32 = -1;

// Error codes (KeeperException.Code).
const ZOK: i32 = 0;
const ZRUNTIMEINCONSISTENCY: i32 = -2;
const ZUNIMPLEMENTED: i32 = -6;
const ZNONODE: i32 = -101;
const ZBADVERSION: i32 = -103;
const ZNOCHILDRENFOREPHEMERALS: i32 = -108;
const ZNODEEXISTS: i32 = -110;
const ZNOTEMPTY: i32 = -111;

/// The operation's name as ZooKeeper's clients call it, its access and category.
pub fn class(op: i32) -> (&'static str, Access, Option<Category>) {
    use Access::{Mutation, Read, Unclassified};
    use Category::{Admin, Delete, Write};
    match op {
        CREATE => ("create", Mutation, Some(Write)),
        CREATE2 => ("create2", Mutation, Some(Write)),
        CREATE_CONTAINER => ("createContainer", Mutation, Some(Write)),
        CREATE_TTL => ("createTTL", Mutation, Some(Write)),
        DELETE => ("delete", Mutation, Some(Delete)),
        DELETE_CONTAINER => ("deleteContainer", Mutation, Some(Delete)),
        SET_DATA => ("setData", Mutation, Some(Write)),
        // Who may read and change a subtree.
        SET_ACL => ("setACL", Mutation, Some(Admin)),
        // Membership of the ensemble.
        RECONFIG => ("reconfig", Mutation, Some(Admin)),
        MULTI => ("multi", Mutation, Some(Write)),
        EXISTS => ("exists", Read, None),
        GET_DATA => ("getData", Read, None),
        GET_ACL => ("getACL", Read, None),
        GET_CHILDREN => ("getChildren", Read, None),
        GET_CHILDREN2 => ("getChildren2", Read, None),
        SYNC => ("sync", Read, None),
        CHECK => ("check", Read, None),
        MULTI_READ => ("multiRead", Read, None),
        GET_EPHEMERALS => ("getEphemerals", Read, None),
        GET_ALL_CHILDREN_NUMBER => ("getAllChildrenNumber", Read, None),
        WHO_AM_I => ("whoAmI", Read, None),
        // Session and watch state of the connection only (the agent's session carries them).
        PING => ("ping", Read, None),
        AUTH => ("auth", Read, None),
        SASL => ("sasl", Read, None),
        SET_WATCHES => ("setWatches", Read, None),
        SET_WATCHES2 => ("setWatches2", Read, None),
        ADD_WATCH => ("addWatch", Read, None),
        CHECK_WATCHES => ("checkWatches", Read, None),
        REMOVE_WATCHES => ("removeWatches", Read, None),
        CLOSE_SESSION => ("closeSession", Read, None),
        _ => ("unknown", Unclassified, None),
    }
}

// ------------------------------------------------------------------------------- jute

/// A reader over a jute record (big-endian; buffers and strings prefixed by an int length,
/// -1 for null).
pub struct Jute<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Jute<'a> {
    pub fn new(b: &'a [u8]) -> Jute<'a> {
        Jute { b, at: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }

    pub fn int(&mut self) -> Option<i32> {
        self.take(4).map(|s| i32::from_be_bytes(s.try_into().unwrap_or_default()))
    }

    pub fn long(&mut self) -> Option<i64> {
        self.take(8).map(|s| i64::from_be_bytes(s.try_into().unwrap_or_default()))
    }

    pub fn bool(&mut self) -> Option<bool> {
        self.take(1).map(|s| s[0] != 0)
    }

    pub fn buffer(&mut self) -> Option<Vec<u8>> {
        let n = self.int()?;
        if n < 0 {
            return Some(Vec::new());
        }
        self.take(n as usize).map(<[u8]>::to_vec)
    }

    pub fn string(&mut self) -> Option<String> {
        self.buffer().map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// A vector of ACLs {perms int, id {scheme, id}}: kept as its raw bytes.
    fn acls(&mut self) -> Option<Vec<u8>> {
        let start = self.at;
        let n = self.int()?;
        for _ in 0..n.max(0) {
            self.int()?;
            self.string()?;
            self.string()?;
        }
        Some(self.b[start..self.at].to_vec())
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.at.min(self.b.len())..]
    }
}

#[derive(Default)]
pub struct Out(pub Vec<u8>);

impl Out {
    pub fn int(&mut self, v: i32) -> &mut Out {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn long(&mut self, v: i64) -> &mut Out {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Out {
        self.0.push(v as u8);
        self
    }

    pub fn buffer(&mut self, v: &[u8]) -> &mut Out {
        self.int(v.len() as i32);
        self.0.extend_from_slice(v);
        self
    }

    pub fn raw(&mut self, v: &[u8]) -> &mut Out {
        self.0.extend_from_slice(v);
        self
    }

    /// The whole record with its length in front.
    pub fn framed(&self) -> Vec<u8> {
        let mut f = (self.0.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&self.0);
        f
    }
}

/// A znode's Stat (czxid, mzxid, ctime, mtime, version, cversion, aversion, ephemeralOwner,
/// dataLength, numChildren, pzxid): 68 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

impl Stat {
    fn read(j: &mut Jute) -> Option<Stat> {
        Some(Stat {
            czxid: j.long()?,
            mzxid: j.long()?,
            ctime: j.long()?,
            mtime: j.long()?,
            version: j.int()?,
            cversion: j.int()?,
            aversion: j.int()?,
            ephemeral_owner: j.long()?,
            data_length: j.int()?,
            num_children: j.int()?,
            pzxid: j.long()?,
        })
    }

    fn write(&self, o: &mut Out) {
        o.long(self.czxid).long(self.mzxid).long(self.ctime).long(self.mtime);
        o.int(self.version).int(self.cversion).int(self.aversion).long(self.ephemeral_owner);
        o.int(self.data_length).int(self.num_children).long(self.pzxid);
    }
}

/// A znode in the pilot's view: its stat, data and ACL (raw jute vector).
#[derive(Clone, Debug, PartialEq)]
struct Node {
    stat: Stat,
    data: Vec<u8>,
    acl: Vec<u8>,
}

impl Node {
    fn encode(&self) -> Vec<u8> {
        let mut o = Out::default();
        self.stat.write(&mut o);
        o.buffer(&self.data).raw(&self.acl);
        o.0
    }

    fn decode(b: &[u8]) -> Option<Node> {
        let mut j = Jute::new(b);
        let stat = Stat::read(&mut j)?;
        let data = j.buffer()?;
        Some(Node { stat, data, acl: j.rest().to_vec() })
    }
}

/// The ACL `world:anyone` with every permission (ZooDefs.Ids.OPEN_ACL_UNSAFE), jute-encoded.
fn open_acl() -> Vec<u8> {
    let mut o = Out::default();
    o.int(1).int(31).buffer(b"world").buffer(b"anyone");
    o.0
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn child(parent: &str, name: &str) -> String {
    if parent == "/" { format!("/{name}") } else { format!("{parent}/{name}") }
}

// ---------------------------------------------------------------------------- the session

/// The connection's state: the live session's id and the highest zxid a reply showed.
struct Zk {
    session_id: i64,
    zxid: i64,
    /// xids for the sink's own lookups on the agent's session (the pilot's are positive and
    /// grow from 1; these count down from far below).
    own_xid: i32,
}

/// One whole frame from the pilot (None at EOF).
async fn client_frame(s: &mut Session) -> io::Result<Option<Vec<u8>>> {
    loop {
        if s.client.buf.len() >= 4 {
            let n = u32::from_be_bytes([s.client.buf[0], s.client.buf[1], s.client.buf[2], s.client.buf[3]]) as usize;
            if n > 64 << 20 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a ZooKeeper frame over 64 MiB"));
            }
            if s.client.buf.len() >= 4 + n {
                return Ok(Some(s.client.take(4 + n)));
            }
        }
        if s.client.fill().await? == 0 {
            return Ok(None);
        }
    }
}

/// One whole frame from the server.
async fn server_frame(s: &mut Session) -> io::Result<Vec<u8>> {
    loop {
        let up = s.upstream().await?;
        if up.buf.len() >= 4 {
            let n = u32::from_be_bytes([up.buf[0], up.buf[1], up.buf[2], up.buf[3]]) as usize;
            if up.buf.len() >= 4 + n {
                return Ok(up.take(4 + n));
            }
        }
        if s.fill_upstream().await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the ZooKeeper server closed the session"));
        }
    }
}

async fn serve_async(mut s: Session) -> io::Result<()> {
    if s.client.buf.len() <= 6 && WORDS.iter().any(|(w, _)| s.client.buf.starts_with(w.as_bytes())) {
        return four_letter_word(s).await;
    }
    let Some(connect) = client_frame(&mut s).await? else { return Ok(()) };
    // The handshake goes through: the pilot's session is a real one, on the agent's connection.
    let mut op = Op::new("connect", s.to.as_ref().map(|t| t.label()).unwrap_or_default(), Access::Read);
    op.bytes = connect.len() as u64;
    if !s.may_forward(Access::Read) {
        s.record(op);
        return Ok(());
    }
    op.disposition = Disposition::Forwarded;
    s.forward(&connect).await?;
    let answer = server_frame(&mut s).await?;
    let mut j = Jute::new(&answer[4..]);
    let (_proto, _timeout, session_id) = (j.int(), j.int(), j.long().unwrap_or(0));
    op.reply_bytes = answer.len() as u64;
    s.reply(&answer).await?;
    s.record(op);
    let mut zk = Zk { session_id, zxid: 0, own_xid: -1_000_000 };
    while let Some(frame) = client_frame(&mut s).await? {
        let mut j = Jute::new(&frame[4..]);
        let (Some(xid), Some(code)) = (j.int(), j.int()) else { break };
        let body = j.rest().to_vec();
        let (name, mut access, mut category) = class(code);
        if code == MULTI {
            (access, category) = multi_class(&body);
        }
        let mut op = Op::new(name, resource(code, &body), access);
        op.category = category;
        op.bytes = frame.len() as u64;
        if s.may_forward(access) && !(access == Access::Read && s.ctx.shadow.any(SPACE) && shadowed_read(code)) {
            op.disposition = Disposition::Forwarded;
            op.may_differ = access == Access::Read && s.ctx.shadow.get(SPACE, op.resource.as_bytes()) == Lookup::Changed;
            s.forward(&frame).await?;
            let reply = relay_until(&mut s, &mut zk, xid).await?;
            op.reply_bytes = reply as u64;
            s.record(op);
            if code == CLOSE_SESSION {
                break;
            }
            continue;
        }
        let (err, reply_body, disposition) = if access == Access::Unclassified {
            (ZUNIMPLEMENTED, Vec::new(), Disposition::Captured)
        } else if access == Access::Read {
            let (e, b) = shadow_answer(&mut s, &mut zk, code, &body).await?;
            (e, b, Disposition::Shadowed)
        } else {
            let (e, b) = captured(&mut s, &mut zk, code, &body).await?;
            (e, b, Disposition::Captured)
        };
        let zxid = zk.zxid + s.ctx.shadow.bumps(SPACE) as i64;
        let mut o = Out::default();
        o.int(xid).long(zxid).int(err).raw(&reply_body);
        let f = o.framed();
        op.disposition = disposition;
        op.reply_bytes = f.len() as u64;
        s.reply(&f).await?;
        s.record(op);
    }
    Ok(())
}

/// The shadow subtree of the run (one for every ZooKeeper server the pilot reaches: the
/// members of an ensemble answer alike; a run reaching two ensembles shares it).
const SPACE: &str = "zookeeper";

/// Reads whose answer the pilot's own znodes may change.
fn shadowed_read(code: i32) -> bool {
    matches!(code, EXISTS | GET_DATA | GET_CHILDREN | GET_CHILDREN2 | GET_ACL)
}

/// Relay the server's frames to the pilot until the reply to `xid` (notifications, xid -1,
/// pass on the way). Returns the reply's size.
async fn relay_until(s: &mut Session, zk: &mut Zk, xid: i32) -> io::Result<usize> {
    loop {
        let f = server_frame(s).await?;
        let mut j = Jute::new(&f[4..]);
        let (got, zxid) = (j.int().unwrap_or(0), j.long().unwrap_or(0));
        if zxid > zk.zxid {
            zk.zxid = zxid;
        }
        s.reply(&f).await?;
        if got == xid {
            return Ok(f.len());
        }
    }
}

/// The path a request names (the first string of every path request), or the server.
fn resource(code: i32, body: &[u8]) -> String {
    match code {
        CREATE | CREATE2 | CREATE_CONTAINER | CREATE_TTL | DELETE | DELETE_CONTAINER | SET_DATA | SET_ACL | EXISTS | GET_DATA | GET_ACL
        | GET_CHILDREN | GET_CHILDREN2 | SYNC | CHECK_WATCHES | REMOVE_WATCHES | GET_EPHEMERALS | GET_ALL_CHILDREN_NUMBER | ADD_WATCH => {
            Jute::new(body).string().unwrap_or_default()
        }
        MULTI | MULTI_READ => multi_ops(body).iter().map(|(_, p, _)| p.clone()).collect::<Vec<_>>().join(","),
        RECONFIG => {
            let mut j = Jute::new(body);
            let (join, leave, members) = (j.string().unwrap_or_default(), j.string().unwrap_or_default(), j.string().unwrap_or_default());
            [("join", join), ("leave", leave), ("members", members)].iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join("; ")
        }
        _ => String::new(),
    }
}

/// The ops of a multi: (op code, path, the op's body).
fn multi_ops(body: &[u8]) -> Vec<(i32, String, Vec<u8>)> {
    let mut j = Jute::new(body);
    let mut out = Vec::new();
    while let (Some(t), Some(done), Some(_err)) = (j.int(), j.bool(), j.int()) {
        if done || t == ERROR {
            break;
        }
        let start = j.at;
        let path = j.string().unwrap_or_default();
        let ok = match t {
            CREATE | CREATE2 | CREATE_CONTAINER => j.buffer().and(j.acls()).and(j.int()).is_some(),
            CREATE_TTL => j.buffer().and(j.acls()).and(j.int()).and(j.long()).is_some(),
            DELETE | CHECK => j.int().is_some(),
            SET_DATA => j.buffer().and(j.int()).is_some(),
            GET_DATA | GET_CHILDREN => true,
            _ => false,
        };
        if !ok {
            break;
        }
        out.push((t, path, body[start..j.at].to_vec()));
    }
    out
}

/// A multi is a read when it only checks versions; else by its worst op.
fn multi_class(body: &[u8]) -> (Access, Option<Category>) {
    let ops = multi_ops(body);
    if ops.is_empty() {
        return (Access::Unclassified, None);
    }
    if ops.iter().all(|(t, _, _)| *t == CHECK) {
        return (Access::Read, None);
    }
    if ops.iter().any(|(t, _, _)| *t == DELETE) {
        return (Access::Mutation, Some(Category::Delete));
    }
    (Access::Mutation, Some(Category::Write))
}

// ------------------------------------------------------------------ the pilot's view

/// A request of the sink's own on the agent's session (its reply read back, not relayed).
async fn own(s: &mut Session, zk: &mut Zk, code: i32, body: &[u8]) -> io::Result<(i32, Vec<u8>)> {
    zk.own_xid -= 1;
    let xid = zk.own_xid;
    let mut o = Out::default();
    o.int(xid).int(code).raw(body);
    s.forward(&o.framed()).await?;
    loop {
        let f = server_frame(s).await?;
        let mut j = Jute::new(&f[4..]);
        let (got, zxid, err) = (j.int().unwrap_or(0), j.long().unwrap_or(0), j.int().unwrap_or(0));
        if zxid > zk.zxid {
            zk.zxid = zxid;
        }
        if got == xid {
            return Ok((err, j.rest().to_vec()));
        }
        // A notification meanwhile: the pilot's.
        s.reply(&f).await?;
    }
}

fn path_req(path: &str, watch: Option<bool>) -> Vec<u8> {
    let mut o = Out::default();
    o.buffer(path.as_bytes());
    if let Some(w) = watch {
        o.bool(w);
    }
    o.0
}

/// A znode as the pilot sees it (None: it does not exist).
async fn node(s: &mut Session, zk: &mut Zk, path: &str) -> io::Result<Option<Node>> {
    match s.ctx.shadow.get(SPACE, path.as_bytes()) {
        Lookup::Value(v) => return Ok(Node::decode(&v)),
        Lookup::Deleted => return Ok(None),
        _ => {}
    }
    let (err, b) = own(s, zk, GET_DATA, &path_req(path, Some(false))).await?;
    if err != ZOK {
        return Ok(None);
    }
    let mut j = Jute::new(&b);
    let data = j.buffer().unwrap_or_default();
    let stat = Stat::read(&mut j).unwrap_or_default();
    let (_, acl) = own(s, zk, GET_ACL, &path_req(path, None)).await?;
    let acl = Jute::new(&acl).acls().unwrap_or_else(open_acl);
    let mut n = Node { stat, data, acl };
    // Children the pilot created or deleted change what it would see of the parent.
    n.stat.num_children = children(s, zk, path).await?.map_or(n.stat.num_children, |c| c.len() as i32);
    Ok(Some(n))
}

/// A znode's children as the pilot sees them.
async fn children(s: &mut Session, zk: &mut Zk, path: &str) -> io::Result<Option<Vec<String>>> {
    let mut names: Vec<String> = match s.ctx.shadow.get(SPACE, path.as_bytes()) {
        Lookup::Deleted => return Ok(None),
        Lookup::Value(_) => Vec::new(),
        _ => {
            let (err, b) = own(s, zk, GET_CHILDREN, &path_req(path, Some(false))).await?;
            if err != ZOK && s.ctx.shadow.get(SPACE, path.as_bytes()) == Lookup::Live {
                return Ok(None);
            }
            let mut j = Jute::new(&b);
            (0..j.int().unwrap_or(0).max(0)).filter_map(|_| j.string()).collect()
        }
    };
    names.retain(|c| !matches!(s.ctx.shadow.get(SPACE, child(path, c).as_bytes()), Lookup::Deleted));
    let under = if path == "/" { "/".to_string() } else { format!("{path}/") };
    for (k, l) in s.ctx.shadow.written_under(SPACE, under.as_bytes()) {
        let name = String::from_utf8_lossy(&k[under.len()..]).into_owned();
        if !name.contains('/') && matches!(l, Lookup::Value(_)) && !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(Some(names))
}

/// A read answered from the pilot's view: (error code, reply body).
async fn shadow_answer(s: &mut Session, zk: &mut Zk, code: i32, body: &[u8]) -> io::Result<(i32, Vec<u8>)> {
    let path = Jute::new(body).string().unwrap_or_default();
    let mut o = Out::default();
    match code {
        GET_CHILDREN | GET_CHILDREN2 => {
            let Some(names) = children(s, zk, &path).await? else { return Ok((ZNONODE, Vec::new())) };
            o.int(names.len() as i32);
            for n in &names {
                o.buffer(n.as_bytes());
            }
            if code == GET_CHILDREN2 {
                let Some(n) = node(s, zk, &path).await? else { return Ok((ZNONODE, Vec::new())) };
                n.stat.write(&mut o);
            }
        }
        _ => {
            let Some(n) = node(s, zk, &path).await? else { return Ok((ZNONODE, Vec::new())) };
            match code {
                GET_DATA => {
                    o.buffer(&n.data);
                    n.stat.write(&mut o);
                }
                GET_ACL => {
                    o.raw(&n.acl);
                    n.stat.write(&mut o);
                }
                _ => n.stat.write(&mut o),
            }
        }
    }
    Ok((ZOK, o.0))
}

fn now_ms() -> i64 {
    super::now_ms() as i64
}

/// The zxid of the pilot's next change.
fn next_zxid(s: &Session, zk: &Zk) -> i64 {
    zk.zxid + s.ctx.shadow.bump(SPACE) as i64
}

/// A captured mutation applied to the pilot's view: (error code, reply body).
async fn captured(s: &mut Session, zk: &mut Zk, code: i32, body: &[u8]) -> io::Result<(i32, Vec<u8>)> {
    if code == MULTI {
        return multi(s, zk, body).await;
    }
    if code == RECONFIG {
        // The answer is the configuration znode; the pilot's reconfig changes nothing here.
        let (err, b) = own(s, zk, GET_DATA, &path_req("/zookeeper/config", Some(false))).await?;
        return Ok((err, b));
    }
    let (err, reply) = apply(s, zk, code, body).await?;
    Ok((err, reply))
}

/// One write on the pilot's view (alone or inside a multi).
async fn apply(s: &mut Session, zk: &mut Zk, code: i32, body: &[u8]) -> io::Result<(i32, Vec<u8>)> {
    let mut j = Jute::new(body);
    let path = j.string().unwrap_or_default();
    let mut o = Out::default();
    match code {
        CREATE | CREATE2 | CREATE_CONTAINER | CREATE_TTL => {
            let data = j.buffer().unwrap_or_default();
            let acl = j.acls().unwrap_or_else(open_acl);
            let flags = j.int().unwrap_or(0);
            let up = parent(&path).to_string();
            let Some(p) = node(s, zk, &up).await? else { return Ok((ZNONODE, Vec::new())) };
            if p.stat.ephemeral_owner != 0 {
                return Ok((ZNOCHILDRENFOREPHEMERALS, Vec::new()));
            }
            // Sequential (flags bit 2): the parent's child version as a 10-digit suffix.
            let path = if flags & 2 != 0 { format!("{path}{:010}", p.stat.cversion + s.ctx.shadow.bumps(SPACE) as i32) } else { path };
            if node(s, zk, &path).await?.is_some() {
                return Ok((ZNODEEXISTS, Vec::new()));
            }
            let zxid = next_zxid(s, zk);
            let now = now_ms();
            let ephemeral = flags & 1 != 0;
            let stat = Stat {
                czxid: zxid,
                mzxid: zxid,
                ctime: now,
                mtime: now,
                ephemeral_owner: if ephemeral { zk.session_id } else { 0 },
                data_length: data.len() as i32,
                pzxid: zxid,
                ..Default::default()
            };
            s.ctx.shadow.put(SPACE, path.as_bytes(), Node { stat, data, acl }.encode());
            s.ctx.shadow.touch(SPACE, up.as_bytes());
            o.buffer(path.as_bytes());
            if code != CREATE {
                stat.write(&mut o);
            }
        }
        DELETE | DELETE_CONTAINER => {
            let version = j.int().unwrap_or(-1);
            let Some(n) = node(s, zk, &path).await? else { return Ok((ZNONODE, Vec::new())) };
            if version != -1 && version != n.stat.version {
                return Ok((ZBADVERSION, Vec::new()));
            }
            if children(s, zk, &path).await?.is_some_and(|c| !c.is_empty()) {
                return Ok((ZNOTEMPTY, Vec::new()));
            }
            next_zxid(s, zk);
            s.ctx.shadow.delete(SPACE, path.as_bytes());
            s.ctx.shadow.touch(SPACE, parent(&path).as_bytes());
        }
        SET_DATA | SET_ACL => {
            let (data, acl) = if code == SET_DATA { (j.buffer(), None) } else { (None, j.acls()) };
            let version = j.int().unwrap_or(-1);
            let Some(mut n) = node(s, zk, &path).await? else { return Ok((ZNONODE, Vec::new())) };
            let current = if code == SET_DATA { n.stat.version } else { n.stat.aversion };
            if version != -1 && version != current {
                return Ok((ZBADVERSION, Vec::new()));
            }
            let zxid = next_zxid(s, zk);
            if let Some(d) = data {
                n.stat.version += 1;
                n.stat.mzxid = zxid;
                n.stat.mtime = now_ms();
                n.stat.data_length = d.len() as i32;
                n.data = d;
            }
            if let Some(a) = acl {
                n.stat.aversion += 1;
                n.acl = a;
            }
            s.ctx.shadow.put(SPACE, path.as_bytes(), n.encode());
            n.stat.write(&mut o);
        }
        CHECK => {
            let version = j.int().unwrap_or(-1);
            let Some(n) = node(s, zk, &path).await? else { return Ok((ZNONODE, Vec::new())) };
            if version != -1 && version != n.stat.version {
                return Ok((ZBADVERSION, Vec::new()));
            }
        }
        _ => return Ok((ZUNIMPLEMENTED, Vec::new())),
    }
    Ok((ZOK, o.0))
}

/// A multi with writes: every op applied in order on the pilot's view; the first failure fails
/// all (ops before it answer ZOK, after it ZRUNTIMEINCONSISTENCY, as the server does) and
/// the pilot's view is left as it was.
async fn multi(s: &mut Session, zk: &mut Zk, body: &[u8]) -> io::Result<(i32, Vec<u8>)> {
    let ops = multi_ops(body);
    let mut results: Vec<(i32, i32, Vec<u8>)> = Vec::new();
    let mut failed = None;
    let undo: Vec<(String, Lookup)> = ops.iter().flat_map(|(_, p, _)| [p.clone(), parent(p).to_string()]).map(|p| {
        let l = s.ctx.shadow.get(SPACE, p.as_bytes());
        (p, l)
    }).collect();
    for (i, (code, _, op)) in ops.iter().enumerate() {
        let (err, reply) = apply(s, zk, *code, op).await?;
        if err != ZOK {
            failed = Some((i, err));
            break;
        }
        results.push((*code, err, reply));
    }
    let mut o = Out::default();
    if let Some((at, err)) = failed {
        for (p, l) in undo.into_iter().rev() {
            match l {
                Lookup::Value(v) => s.ctx.shadow.put(SPACE, p.as_bytes(), v),
                Lookup::Deleted => s.ctx.shadow.delete(SPACE, p.as_bytes()),
                // Not restorable one by one: reads of it go live and may differ.
                _ => s.ctx.shadow.touch(SPACE, p.as_bytes()),
            }
        }
        for i in 0..ops.len() {
            let e = if i < at { ZOK } else if i == at { err } else { ZRUNTIMEINCONSISTENCY };
            o.int(ERROR).bool(false).int(e).int(e);
        }
        o.int(-1).bool(true).int(-1);
        return Ok((err, o.0));
    }
    for (code, err, reply) in results {
        o.int(code).bool(false).int(err).raw(&reply);
    }
    o.int(-1).bool(true).int(-1);
    Ok((ZOK, o.0))
}

/// A four-letter word: relayed when it reads (the server answers and closes), else answered as
/// the server does.
async fn four_letter_word(mut s: Session) -> io::Result<()> {
    let word = String::from_utf8_lossy(&s.client.buf[..4]).into_owned();
    let writes = WORDS.iter().any(|(w, m)| *w == word && *m);
    let mut op = Op::new(word.clone(), s.to.as_ref().map(|t| t.label()).unwrap_or_default(), if writes { Access::Mutation } else { Access::Read });
    op.bytes = s.client.buf.len() as u64;
    if writes {
        op.category = Some(Category::Admin);
    }
    if s.may_forward(op.access) {
        op.disposition = Disposition::Forwarded;
        let (_, got) = s.relay_rest().await?;
        op.reply_bytes = got;
    } else {
        let answer: &[u8] = match word.as_str() {
            "srst" => b"Server stats reset.\n",
            "crst" => b"Connection stats reset.\n",
            _ => b"",
        };
        op.reply_bytes = answer.len() as u64;
        s.reply(answer).await?;
        s.client.shutdown().await;
    }
    s.record(op);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_request() -> Vec<u8> {
        let mut o = Out::default();
        o.int(0).long(0).int(30000).long(0).buffer(&[0; 16]).bool(false);
        o.framed()
    }

    #[test]
    fn sniffs_a_connect_request_and_four_letter_words() {
        let c = connect_request();
        assert_eq!(sniff(&c), Sniff::Yes);
        assert_eq!(sniff(&c[..6]), Sniff::NeedMore);
        assert_eq!(sniff(b"srvr"), Sniff::Yes);
        assert_eq!(sniff(b"*1\r\n$4\r\nPING\r\n"), Sniff::No);
        assert_eq!(sniff(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), Sniff::No, "PostgreSQL's SSLRequest");
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::No);
    }

    #[test]
    fn classifies_ops_and_multis() {
        assert_eq!(class(SET_DATA), ("setData", Access::Mutation, Some(Category::Write)));
        assert_eq!(class(GET_CHILDREN2).1, Access::Read);
        assert_eq!(class(999).1, Access::Unclassified);
        let mut o = Out::default();
        o.int(DELETE).bool(false).int(-1).buffer(b"/a").int(-1);
        o.int(CHECK).bool(false).int(-1).buffer(b"/b").int(3);
        o.int(-1).bool(true).int(-1);
        let ops = multi_ops(&o.0);
        assert_eq!(ops.iter().map(|(t, p, _)| (*t, p.as_str())).collect::<Vec<_>>(), [(DELETE, "/a"), (CHECK, "/b")]);
        assert_eq!(multi_class(&o.0), (Access::Mutation, Some(Category::Delete)));
        assert_eq!(resource(MULTI, &o.0), "/a,/b");
        let mut c = Out::default();
        c.int(CHECK).bool(false).int(-1).buffer(b"/b").int(3).int(-1).bool(true).int(-1);
        assert_eq!(multi_class(&c.0).0, Access::Read);
    }

    #[test]
    fn nodes_round_trip_and_paths() {
        let n = Node { stat: Stat { version: 3, data_length: 2, ..Default::default() }, data: b"hi".to_vec(), acl: open_acl() };
        assert_eq!(Node::decode(&n.encode()), Some(n));
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(child("/", "a"), "/a");
        assert_eq!(Jute::new(&open_acl()).acls(), Some(open_acl()));
    }
}
