//! Redis (RESP2 and RESP3; redis-protocol decodes the frames). Each command is classified by
//! the table below: reads (and connection state: AUTH, HELLO, SELECT) go through and their
//! replies are relayed frame by frame; mutations are captured and answered as Redis would
//! (`+OK`, a count, the new value of an INCR, SHUTDOWN: the connection closed); a command the
//! table does not know is unclassified: captured, answered `+OK`. String keys the pilot wrote
//! or deleted are kept in the shadow layer, so its later GET/MGET/EXISTS/STRLEN/TYPE see them;
//! other reads of a key it changed go live and are marked `may_differ`.
use std::io;

use redis_protocol::resp2::types::OwnedFrame;

use super::{Access, Category, Disposition, Module, Sniff};
use super::session::{BoxFuture, Op, Session};
use super::shadow::Lookup;

pub const MODULE: Module = Module { name: "redis", sniff, serve };

/// A RESP array of bulk strings (every client's framing), or an inline command the table knows.
fn sniff(b: &[u8]) -> Sniff {
    if b[0] == b'*' {
        return match redis_protocol::resp2::decode::decode(b) {
            Ok(Some((OwnedFrame::Array(a), _))) if a.iter().all(|f| matches!(f, OwnedFrame::BulkString(_))) => Sniff::Yes,
            Ok(None) if b.len() < 1024 => Sniff::NeedMore,
            _ => Sniff::No,
        };
    }
    let Some(end) = b.iter().position(|&c| c == b'\n') else {
        return if b.len() < 64 && b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') { Sniff::NeedMore } else { Sniff::No };
    };
    let line = String::from_utf8_lossy(&b[..end]);
    let word = line.split_whitespace().next().unwrap_or("").to_uppercase();
    if !line.contains(" HTTP/") && !matches!(classify(&[word.clone().into_bytes()]).reply, Reply::Unknown) { Sniff::Yes } else { Sniff::No }
}

/// How the sink answers a captured command.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reply {
    Ok,
    /// The server closes the connection (SHUTDOWN).
    Close,
    /// `:1`.
    One,
    /// How many of the named keys existed (DEL, UNLINK).
    KeysExisting,
    /// How many members/fields were given (SADD, HSET, LPUSH: approximate).
    Members,
    /// INCR family: the new value.
    Incr,
    Status(&'static str),
    /// Old value (GETSET, GETDEL, SET .. GET).
    OldValue,
    /// Not in the table.
    Unknown,
}

pub struct Class {
    pub access: Access,
    pub category: Option<Category>,
    pub reply: Reply,
    /// The operation as recorded: the command, with its subcommand for container commands.
    pub operation: String,
}

/// The command table: access, category and the captured reply of each command Redis 7 has.
pub fn classify(args: &[Vec<u8>]) -> Class {
    let up = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).to_uppercase()).unwrap_or_default();
    let cmd = up(0);
    let sub = up(1);
    let read = |op: String| Class { access: Access::Read, category: None, reply: Reply::Ok, operation: op };
    let m = |op: String, category: Category, reply: Reply| Class { access: Access::Mutation, category: Some(category), reply, operation: op };
    use Category::*;
    match cmd.as_str() {
        "GET" | "MGET" | "GETRANGE" | "SUBSTR" | "STRLEN" | "EXISTS" | "TYPE" | "TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME" | "KEYS"
        | "SCAN" | "RANDOMKEY" | "DBSIZE" | "INFO" | "PING" | "ECHO" | "TIME" | "LASTSAVE" | "ROLE" | "HGET" | "HMGET" | "HGETALL"
        | "HKEYS" | "HVALS" | "HLEN" | "HEXISTS" | "HSTRLEN" | "HSCAN" | "HRANDFIELD" | "LRANGE" | "LLEN" | "LINDEX" | "LPOS"
        | "SMEMBERS" | "SISMEMBER" | "SMISMEMBER" | "SCARD" | "SSCAN" | "SRANDMEMBER" | "SINTER" | "SUNION" | "SDIFF" | "SINTERCARD"
        | "ZRANGE" | "ZRANGEBYSCORE" | "ZREVRANGE" | "ZREVRANGEBYSCORE" | "ZRANGEBYLEX" | "ZREVRANGEBYLEX" | "ZSCORE" | "ZMSCORE"
        | "ZCARD" | "ZCOUNT" | "ZLEXCOUNT" | "ZRANK" | "ZREVRANK" | "ZSCAN" | "ZRANDMEMBER" | "ZINTER" | "ZUNION" | "ZDIFF"
        | "ZINTERCARD" | "XRANGE" | "XREVRANGE" | "XLEN" | "XREAD" | "XPENDING" | "XINFO" | "GEOPOS" | "GEODIST" | "GEOHASH"
        | "GEORADIUS_RO" | "GEORADIUSBYMEMBER_RO" | "GEOSEARCH" | "PFCOUNT" | "BITCOUNT" | "BITPOS" | "GETBIT" | "BITFIELD_RO" | "LCS"
        | "SORT_RO" | "DUMP" | "OBJECT" | "TOUCH" | "COMMAND" | "EVAL_RO" | "EVALSHA_RO" | "FCALL_RO" | "WAIT" | "WAITAOF"
        | "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE" | "MONITOR" | "LOLWUT"
        // Connection state only: the agent's own connection carries it.
        | "AUTH" | "HELLO" | "SELECT" | "READONLY" | "READWRITE" | "RESET" | "QUIT" => read(cmd),
        "CONFIG" => match sub.as_str() {
            "GET" | "HELP" => read(format!("CONFIG {sub}")),
            _ => m(format!("CONFIG {sub}"), Admin, Reply::Ok),
        },
        "CLIENT" => match sub.as_str() {
            "LIST" | "INFO" | "GETNAME" | "ID" | "GETREDIR" | "TRACKINGINFO" | "HELP" | "SETNAME" | "SETINFO" | "REPLY" => read(format!("CLIENT {sub}")),
            "KILL" => m("CLIENT KILL".into(), Admin, Reply::One),
            _ => m(format!("CLIENT {sub}"), Admin, Reply::Ok),
        },
        "CLUSTER" => match sub.as_str() {
            "INFO" | "NODES" | "SLOTS" | "SHARDS" | "MYID" | "MYSHARDID" | "KEYSLOT" | "COUNTKEYSINSLOT" | "GETKEYSINSLOT" | "LINKS"
            | "REPLICAS" | "SLAVES" | "COUNT-FAILURE-REPORTS" | "HELP" => read(format!("CLUSTER {sub}")),
            _ => m(format!("CLUSTER {sub}"), Admin, Reply::Ok),
        },
        "MEMORY" => match sub.as_str() {
            "PURGE" => m("MEMORY PURGE".into(), Admin, Reply::Ok),
            _ => read(format!("MEMORY {sub}")),
        },
        "SLOWLOG" | "LATENCY" => match sub.as_str() {
            "RESET" => m(format!("{cmd} RESET"), Admin, Reply::Members),
            _ => read(format!("{cmd} {sub}")),
        },
        "SCRIPT" => match sub.as_str() {
            "EXISTS" | "HELP" => read(format!("SCRIPT {sub}")),
            _ => m(format!("SCRIPT {sub}"), Admin, Reply::Ok),
        },
        "FUNCTION" => match sub.as_str() {
            "LIST" | "STATS" | "DUMP" | "HELP" => read(format!("FUNCTION {sub}")),
            _ => m(format!("FUNCTION {sub}"), Admin, Reply::Ok),
        },
        "ACL" => match sub.as_str() {
            "LIST" | "USERS" | "WHOAMI" | "GETUSER" | "CAT" | "LOG" | "GENPASS" | "DRYRUN" | "HELP" => read(format!("ACL {sub}")),
            _ => m(format!("ACL {sub}"), Admin, Reply::Ok),
        },
        "MODULE" => match sub.as_str() {
            "LIST" | "HELP" => read(format!("MODULE {sub}")),
            _ => m(format!("MODULE {sub}"), Admin, Reply::Ok),
        },
        "PUBSUB" => read(format!("PUBSUB {sub}")),
        "SHUTDOWN" => m(cmd, Admin, Reply::Close),
        "SAVE" => m(cmd, Admin, Reply::Ok),
        "BGSAVE" => m(cmd, Admin, Reply::Status("Background saving started")),
        "BGREWRITEAOF" => m(cmd, Admin, Reply::Status("Background append only file rewriting started")),
        "REPLICAOF" | "SLAVEOF" | "FAILOVER" | "DEBUG" | "SWAPDB" | "MIGRATE" | "SYNC" | "PSYNC" | "REPLCONF" => m(cmd, Admin, Reply::Ok),
        "FLUSHALL" | "FLUSHDB" => m(cmd, Delete, Reply::Ok),
        "DEL" | "UNLINK" => m(cmd, Delete, Reply::KeysExisting),
        "GETDEL" => m(cmd, Delete, Reply::OldValue),
        "HDEL" | "LREM" | "SREM" | "ZREM" | "XDEL" | "XTRIM" | "LTRIM" | "ZREMRANGEBYSCORE" | "ZREMRANGEBYRANK" | "ZREMRANGEBYLEX" => {
            m(cmd, Delete, Reply::Members)
        }
        "LPOP" | "RPOP" | "SPOP" | "ZPOPMIN" | "ZPOPMAX" | "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" | "LMPOP" | "BLMPOP" | "ZMPOP"
        | "BZMPOP" => m(cmd, Delete, Reply::OldValue),
        "SET" => {
            let get = args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"GET"));
            m(cmd, Write, if get { Reply::OldValue } else { Reply::Ok })
        }
        "SETEX" | "PSETEX" | "MSET" | "LSET" | "RENAME" | "RESTORE" | "PFMERGE" | "XGROUP" | "HMSET" => m(cmd, Write, Reply::Ok),
        "SETNX" | "MSETNX" | "RENAMENX" | "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" | "PERSIST" | "COPY" | "MOVE" | "HSETNX"
        | "PFADD" | "SMOVE" => m(cmd, Write, Reply::One),
        "INCR" | "DECR" | "INCRBY" | "DECRBY" => m(cmd, Write, Reply::Incr),
        "GETSET" => m(cmd, Write, Reply::OldValue),
        "APPEND" | "SETRANGE" | "HSET" | "HINCRBY" | "HINCRBYFLOAT" | "INCRBYFLOAT" | "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" | "LINSERT"
        | "LMOVE" | "BLMOVE" | "RPOPLPUSH" | "BRPOPLPUSH" | "SADD" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" | "ZADD" | "ZINCRBY"
        | "ZRANGESTORE" | "ZINTERSTORE" | "ZUNIONSTORE" | "ZDIFFSTORE" | "XADD" | "XACK" | "XCLAIM" | "XAUTOCLAIM" | "XREADGROUP"
        | "XSETID" | "SORT" | "SETBIT" | "BITOP" | "BITFIELD" | "GEOADD" | "GEORADIUS" | "GEORADIUSBYMEMBER" | "GEOSEARCHSTORE"
        | "PUBLISH" | "SPUBLISH" | "GETEX" => m(cmd, Write, Reply::Members),
        _ => Class { access: Access::Unclassified, category: None, reply: Reply::Unknown, operation: cmd },
    }
}

/// The keys a command names (for the resource and the shadow): the first argument of
/// key commands, every argument of multi-key ones.
fn keys(op: &str, args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    match op {
        "MGET" | "EXISTS" | "DEL" | "UNLINK" | "TOUCH" => args[1..].to_vec(),
        "MSET" | "MSETNX" => args[1..].iter().step_by(2).cloned().collect(),
        o if o.contains(' ') || matches!(o, "PING" | "ECHO" | "INFO" | "AUTH" | "HELLO" | "SELECT" | "DBSIZE" | "KEYS" | "SCAN" | "FLUSHALL" | "FLUSHDB" | "SHUTDOWN" | "TIME" | "ROLE" | "COMMAND" | "SAVE" | "BGSAVE" | "BGREWRITEAOF" | "QUIT" | "RESET" | "LASTSAVE" | "RANDOMKEY" | "MONITOR" | "PUBLISH" | "SUBSCRIBE" | "PSUBSCRIBE" | "REPLICAOF" | "SLAVEOF" | "FAILOVER" | "DEBUG" | "SWAPDB" | "WAIT") => Vec::new(),
        _ => args.get(1).cloned().into_iter().collect(),
    }
}

fn resource(op: &str, args: &[Vec<u8>]) -> String {
    let k = keys(op, args);
    if let Some(first) = k.first() {
        let mut r = String::from_utf8_lossy(first).into_owned();
        if k.len() > 1 {
            r.push_str(&format!(" (+{} more)", k.len() - 1));
        }
        return r;
    }
    match op {
        "CONFIG SET" | "CONFIG GET" => args.get(2).map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default(),
        "KEYS" => args.get(1).map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default(),
        _ => String::new(),
    }
}

/// One client command: its arguments and its bytes on the wire. None: need more bytes.
fn next_command(buf: &[u8]) -> io::Result<Option<(Vec<Vec<u8>>, usize)>> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'*' {
        return match redis_protocol::resp2::decode::decode(buf) {
            Ok(Some((OwnedFrame::Array(a), n))) => Ok(Some((
                a.into_iter().map(|f| match f {
                    OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => b,
                    other => format!("{other:?}").into_bytes(),
                }).collect(),
                n,
            ))),
            Ok(Some((_, n))) => Ok(Some((Vec::new(), n))),
            Ok(None) => Ok(None),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        };
    }
    // An inline command: one line of words.
    let Some(end) = buf.iter().position(|&c| c == b'\n') else { return Ok(None) };
    let line = &buf[..end];
    let args = line.split(|c| *c == b' ').filter(|w| !w.is_empty()).map(|w| w.strip_suffix(b"\r").unwrap_or(w).to_vec()).filter(|w| !w.is_empty()).collect();
    Ok(Some((args, end + 1)))
}

/// The length of the first complete reply frame (RESP3 decoding covers RESP2), None: more.
fn reply_len(buf: &[u8]) -> io::Result<Option<usize>> {
    // RESP2 first: RESP3's decoder refuses RESP2's null bulk string (`$-1`).
    if let Ok(r) = redis_protocol::resp2::decode::decode_range(buf) {
        return Ok(r.map(|(_, n)| n));
    }
    match redis_protocol::resp3::decode::complete::decode_range(buf) {
        Ok(Some((_, n))) => Ok(Some(n)),
        Ok(None) => Ok(None),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    }
}

struct State {
    db: i64,
    resp3: bool,
}

fn serve(s: Session) -> BoxFuture {
    Box::pin(serve_redis(s))
}

async fn serve_redis(mut s: Session) -> io::Result<()> {
    let mut st = State { db: 0, resp3: false };
    loop {
        let (args, n) = loop {
            if let Some(c) = next_command(&s.client.buf)? {
                break c;
            }
            if s.client.fill().await? == 0 {
                return Ok(());
            }
        };
        let raw = s.client.take(n);
        if args.is_empty() {
            continue;
        }
        let class = classify(&args);
        let mut op = Op::new(class.operation.clone(), resource(&class.operation, &args), class.access);
        op.category = class.category;
        op.bytes = raw.len() as u64;
        if s.may_forward(class.access) {
            if let Some(answer) = shadow_read(&s, &st, &class.operation, &args) {
                op.disposition = Disposition::Shadowed;
                op.reply_bytes = answer.len() as u64;
                s.reply(&answer).await?;
                s.record(op);
                continue;
            }
            op.may_differ = touched(&s, &st, &class.operation, &args);
            op.disposition = Disposition::Forwarded;
            let reply = match forward_one(&mut s, &raw).await {
                Ok(r) => r,
                Err(e) => {
                    s.record(op);
                    return Err(e);
                }
            };
            op.reply_bytes = reply.len() as u64;
            follow_state(&mut st, &class.operation, &args, &reply);
            s.reply(&reply).await?;
            s.record(op);
            if matches!(class.operation.as_str(), "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "MONITOR") {
                return relay_rest(s).await;
            }
            if class.operation == "QUIT" {
                return Ok(());
            }
            continue;
        }
        let answer = captured(&mut s, &st, &class, &args).await?;
        op.reply_bytes = answer.as_ref().map_or(0, |a| a.len() as u64);
        s.record(op);
        match answer {
            Some(a) => s.reply(&a).await?,
            None => {
                // As the live server does: close without answering.
                s.client.shutdown().await;
                return Ok(());
            }
        }
    }
}

/// Send one command to the server and read back its whole reply.
async fn forward_one(s: &mut Session, raw: &[u8]) -> io::Result<Vec<u8>> {
    s.forward(raw).await?;
    loop {
        let up = s.upstream().await?;
        if let Some(n) = reply_len(&up.buf)? {
            return Ok(up.take(n));
        }
        if s.fill_upstream().await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
    }
}

/// A subscriber or MONITOR: the server talks on its own; relay both ways from here on.
async fn relay_rest(mut s: Session) -> io::Result<()> {
    s.relay_rest().await.map(|_| ())
}

fn follow_state(st: &mut State, op: &str, args: &[Vec<u8>], reply: &[u8]) {
    match op {
        "SELECT" if reply.starts_with(b"+OK") => {
            st.db = args.get(1).and_then(|a| String::from_utf8_lossy(a).parse().ok()).unwrap_or(st.db);
        }
        "HELLO" if reply.starts_with(b"%") => st.resp3 = args.get(1).is_some_and(|v| v.as_slice() == b"3"),
        "RESET" => *st = State { db: 0, resp3: false },
        _ => {}
    }
}

fn key_of(st: &State, key: &[u8]) -> Vec<u8> {
    let mut k = format!("db{}\0", st.db).into_bytes();
    k.extend_from_slice(key);
    k
}

fn bulk(st: &State, v: Option<&[u8]>) -> Vec<u8> {
    match v {
        Some(v) => {
            let mut out = format!("${}\r\n", v.len()).into_bytes();
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
            out
        }
        None if st.resp3 => b"_\r\n".to_vec(),
        None => b"$-1\r\n".to_vec(),
    }
}

fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

/// A read the shadow can answer alone: every key it names is one the pilot wrote or deleted.
fn shadow_read(s: &Session, st: &State, op: &str, args: &[Vec<u8>]) -> Option<Vec<u8>> {
    let space = s.space();
    let look = |k: &[u8]| s.ctx.shadow.get(&space, &key_of(st, k));
    let known = |l: &Lookup| matches!(l, Lookup::Value(_) | Lookup::Deleted);
    match op {
        "GET" | "STRLEN" | "TYPE" | "TTL" | "PTTL" if args.len() == 2 => {
            let l = look(&args[1]);
            if !known(&l) {
                return None;
            }
            let v = match &l {
                Lookup::Value(v) => Some(v.as_slice()),
                _ => None,
            };
            Some(match op {
                "GET" => bulk(st, v),
                "STRLEN" => int(v.map_or(0, |v| v.len() as i64)),
                "TYPE" => format!("+{}\r\n", if v.is_some() { "string" } else { "none" }).into_bytes(),
                _ => int(if v.is_some() { -1 } else { -2 }),
            })
        }
        "MGET" | "EXISTS" if args.len() > 1 => {
            let all: Vec<Lookup> = args[1..].iter().map(|k| look(k)).collect();
            if !all.iter().all(known) {
                return None;
            }
            if op == "EXISTS" {
                return Some(int(all.iter().filter(|l| matches!(l, Lookup::Value(_))).count() as i64));
            }
            let mut out = format!("*{}\r\n", all.len()).into_bytes();
            for l in &all {
                out.extend(bulk(st, if let Lookup::Value(v) = l { Some(v) } else { None }));
            }
            Some(out)
        }
        _ => None,
    }
}

/// A read going live that names something the pilot changed (its answer may differ).
fn touched(s: &Session, st: &State, op: &str, args: &[Vec<u8>]) -> bool {
    let space = s.space();
    if matches!(op, "KEYS" | "SCAN" | "DBSIZE" | "RANDOMKEY" | "INFO") {
        return s.ctx.shadow.any(&space);
    }
    keys(op, args).iter().any(|k| s.ctx.shadow.get(&space, &key_of(st, k)) != Lookup::Live)
}

/// The current value of a string key: the shadow's, else the live server's (a GET, recorded).
async fn current(s: &mut Session, st: &State, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
    match s.ctx.shadow.get(&s.space(), &key_of(st, key)) {
        Lookup::Value(v) => return Ok(Some(v)),
        Lookup::Deleted => return Ok(None),
        _ => {}
    }
    if s.ctx.options.mode == super::Mode::Off || s.to.is_none() {
        return Ok(None);
    }
    let mut raw = format!("*2\r\n$3\r\nGET\r\n${}\r\n", key.len()).into_bytes();
    raw.extend_from_slice(key);
    raw.extend_from_slice(b"\r\n");
    let reply = forward_one(s, &raw).await?;
    let mut op = Op::new("GET", String::from_utf8_lossy(key), Access::Read);
    op.disposition = Disposition::Forwarded;
    op.bytes = raw.len() as u64;
    op.reply_bytes = reply.len() as u64;
    s.record(op);
    Ok(match redis_protocol::resp2::decode::decode(&reply) {
        Ok(Some((OwnedFrame::BulkString(v), _))) => Some(v),
        _ => None,
    })
}

/// The captured command's answer (None: close the connection), and its effect on the shadow.
async fn captured(s: &mut Session, st: &State, class: &Class, args: &[Vec<u8>]) -> io::Result<Option<Vec<u8>>> {
    let space = s.space();
    let op = class.operation.as_str();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let answer = match class.reply {
        Reply::Close => return Ok(None),
        Reply::Ok | Reply::Unknown => b"+OK\r\n".to_vec(),
        Reply::Status(t) => format!("+{t}\r\n").into_bytes(),
        Reply::One => int(1),
        Reply::Members => int(args.len().saturating_sub(2).max(1) as i64),
        Reply::KeysExisting => {
            let mut n = 0;
            for k in &args[1..] {
                n += current(s, st, k).await?.is_some() as i64;
            }
            int(n)
        }
        Reply::Incr => {
            let by: i64 = match op {
                "INCR" => 1,
                "DECR" => -1,
                "INCRBY" => String::from_utf8_lossy(&arg(2)).parse().unwrap_or(0),
                _ => -String::from_utf8_lossy(&arg(2)).parse::<i64>().unwrap_or(0),
            };
            let now = current(s, st, &arg(1)).await?;
            match now.as_deref().map(|v| String::from_utf8_lossy(v).parse::<i64>()) {
                None => int(by),
                Some(Ok(v)) => int(v + by),
                Some(Err(_)) => b"-ERR value is not an integer or out of range\r\n".to_vec(),
            }
        }
        Reply::OldValue => {
            let old = if matches!(op, "GETSET" | "GETDEL" | "SET") { current(s, st, &arg(1)).await? } else { None };
            bulk(st, old.as_deref())
        }
    };
    // What the shadow keeps: string keys written or deleted; anything else changed is touched.
    let key = |k: &[u8]| key_of(st, k);
    match op {
        "SET" | "SETEX" | "PSETEX" | "GETSET" | "SETNX" => {
            let (k, v) = if matches!(op, "SETEX" | "PSETEX") { (arg(1), arg(3)) } else { (arg(1), arg(2)) };
            let exists = s.ctx.shadow.get(&space, &key(&k));
            let nx = op == "SETNX" || (op == "SET" && args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"NX")));
            if !(nx && matches!(exists, Lookup::Value(_))) {
                s.ctx.shadow.put(&space, &key(&k), v);
            }
        }
        "MSET" => {
            for pair in args[1..].chunks(2) {
                if let [k, v] = pair {
                    s.ctx.shadow.put(&space, &key(k), v.clone());
                }
            }
        }
        "INCR" | "DECR" | "INCRBY" | "DECRBY" => {
            if let Some(v) = answer.strip_prefix(b":").and_then(|r| r.strip_suffix(b"\r\n")) {
                s.ctx.shadow.put(&space, &key(&arg(1)), v.to_vec());
            }
        }
        "APPEND" => {
            let mut v = current(s, st, &arg(1)).await?.unwrap_or_default();
            v.extend(arg(2));
            s.ctx.shadow.put(&space, &key(&arg(1)), v);
        }
        "DEL" | "UNLINK" | "GETDEL" => {
            for k in &args[1..] {
                s.ctx.shadow.delete(&space, &key(k));
            }
        }
        "FLUSHDB" => s.ctx.shadow.delete_prefix(&space, &key(b"")),
        "FLUSHALL" => s.ctx.shadow.delete_prefix(&space, b""),
        _ => {
            for k in keys(op, args) {
                s.ctx.shadow.touch(&space, &key(&k));
            }
        }
    }
    Ok(Some(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<Vec<u8>> {
        s.split_whitespace().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn the_table_tells_reads_from_mutations() {
        for r in ["GET k", "mget a b", "INFO keyspace", "CONFIG GET maxmemory", "PING", "SCAN 0", "CLIENT LIST", "HGETALL h", "AUTH pw"] {
            assert_eq!(classify(&a(r)).access, Access::Read, "{r}");
        }
        for (m, cat) in [
            ("SET k v", Category::Write),
            ("DEL k", Category::Delete),
            ("FLUSHALL", Category::Delete),
            ("SHUTDOWN NOSAVE", Category::Admin),
            ("CONFIG SET maxmemory 1", Category::Admin),
            ("REPLICAOF 10.0.0.1 6379", Category::Admin),
            ("CLUSTER FORGET abc", Category::Admin),
            ("hset h f v", Category::Write),
        ] {
            let c = classify(&a(m));
            assert_eq!((c.access, c.category), (Access::Mutation, Some(cat)), "{m}");
        }
        assert_eq!(classify(&a("SHUTDOWN")).reply, Reply::Close);
        assert_eq!(classify(&a("EVAL x 0")).access, Access::Unclassified, "a script can do anything");
        assert_eq!(classify(&a("CONFIG SET x y")).operation, "CONFIG SET");
        assert_eq!(resource("CONFIG SET", &a("CONFIG SET maxmemory 1")), "maxmemory");
        assert_eq!(resource("DEL", &a("DEL a b c")), "a (+2 more)");
    }

    #[test]
    fn commands_frame_as_resp_arrays_and_inline() {
        let (args, n) = next_command(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest").unwrap().unwrap();
        assert_eq!((args, n), (a("GET k"), 20));
        assert_eq!(next_command(b"*2\r\n$3\r\nGET\r\n").unwrap(), None);
        assert_eq!(next_command(b"PING\r\n").unwrap().unwrap().0, a("PING"));
        assert_eq!(sniff(b"*1\r\n$4\r\nPING\r\n"), Sniff::Yes);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::No);
        assert_eq!(reply_len(b"+OK\r\n:1\r\n").unwrap(), Some(5));
        assert_eq!(reply_len(b"%1\r\n+a\r\n:1\r\n").unwrap(), Some(12), "RESP3 map");
        assert_eq!(reply_len(b"$5\r\nab").unwrap(), None);
        assert_eq!(reply_len(b"$-1\r\n").unwrap(), Some(5), "RESP2 nil");
    }
}
