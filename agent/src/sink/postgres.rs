//! PostgreSQL, protocol v3. Startup and authentication go through to the server (the pilot's
//! credentials, the server's checks); an SSLRequest or GSSENCRequest is answered `N`, so
//! `sslmode=prefer` clients go on in plaintext the sink can read. Simple queries are split
//! into statements and classified (sql.rs): reads are forwarded, transaction control too (the
//! server's transaction is the client's), mutations answered with a plausible CommandComplete
//! (`DROP TABLE`, `INSERT 0 1`, `DELETE 0`) and the transaction status the server last
//! reported; a query mixing both runs its reads one by one. Extended-query batches
//! (Parse/Bind/Describe/Execute up to Sync) go through whole when every statement in them
//! reads, else are answered by the sink. A replication connection (pg_basebackup,
//! pg_receivewal) speaks replication commands, whose streams (BASE_BACKUP's CopyOut,
//! START_REPLICATION's CopyBoth) are relayed. postgres-protocol would cover the framing, but
//! the sink must relay the server's exact bytes and make up only a few messages, so the
//! five-byte framing is read here.
use std::{
    collections::{HashMap, HashSet},
    io,
};

use super::session::{BoxFuture, Op, Session, Side};
use super::sql::{self, Repl, Stmt};
use super::{Access, Category, Disposition, Module, Sniff};

pub const MODULE: Module = Module { name: "postgresql", sniff, serve };

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;
const PROTOCOL_3: u32 = 196608;

fn sniff(b: &[u8]) -> Sniff {
    if b.len() < 8 {
        return if b[0] == 0 { Sniff::NeedMore } else { Sniff::No };
    }
    let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let code = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    match code {
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST if len == 8 || len == 16 => Sniff::Yes,
        PROTOCOL_3 if (8..10000).contains(&len) => Sniff::Yes,
        _ => Sniff::No,
    }
}

fn serve(s: Session) -> BoxFuture {
    Box::pin(serve_pg(s))
}

/// A startup-phase packet (no type byte): its whole bytes. None: need more.
fn startup_packet(buf: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    (buf.len() >= len).then_some(len)
}

/// A typed message (`T` + length): its whole bytes. None: need more.
fn message(buf: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(buf.get(1..5)?.try_into().ok()?) as usize;
    (buf.len() > len).then_some(len + 1)
}

async fn client_packet(s: &mut Session, typed: bool) -> io::Result<Option<Vec<u8>>> {
    loop {
        let n = if typed { message(&s.client.buf) } else { startup_packet(&s.client.buf) };
        if let Some(n) = n {
            return Ok(Some(s.client.take(n)));
        }
        if s.client.fill().await? == 0 {
            return Ok(None);
        }
    }
}

async fn server_message(s: &mut Session) -> io::Result<Vec<u8>> {
    loop {
        let up = s.upstream().await?;
        if let Some(n) = message(&up.buf) {
            return Ok(up.take(n));
        }
        if s.wait_upstream().await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
    }
}

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend(((body.len() + 4) as u32).to_be_bytes());
    out.extend(body);
    out
}

fn cstr(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b
}

/// What the sink knows of one connection.
struct State {
    /// The transaction status the server last reported (ReadyForQuery: `I` idle, `T` in a
    /// transaction, `E` in a failed one): transaction control goes through, so the server's
    /// word is the truth, and a captured statement's ReadyForQuery repeats it.
    status: u8,
    /// Named statements of the extended protocol: their text and whether they were captured.
    prepared: HashMap<String, (Stmt, bool)>,
    /// Statements PREPAREd in SQL, by name: what an EXECUTE of them runs.
    sql_prepared: HashMap<String, Stmt>,
    /// A replication connection (startup parameter `replication`).
    replication: Option<Replication>,
    /// Slots this connection created TEMPORARY (the server drops them with the session).
    temp_slots: HashSet<String>,
    /// Slots whose creation the sink captured (they exist in the pilot only).
    captured_slots: HashSet<String>,
}

impl State {
    fn new(replication: Option<Replication>) -> State {
        State {
            status: b'I',
            prepared: HashMap::new(),
            sql_prepared: HashMap::new(),
            replication,
            temp_slots: HashSet::new(),
            captured_slots: HashSet::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replication {
    /// `replication=true`: a walsender speaking replication commands only (pg_basebackup,
    /// pg_receivewal, a standby).
    Physical,
    /// `replication=database`: replication commands and SQL (logical replication).
    Database,
}

/// The startup parameter `replication`: true/on/yes/1 physical, `database` logical.
fn replication_mode(v: Option<&str>) -> Option<Replication> {
    match v?.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(Replication::Physical),
        "database" => Some(Replication::Database),
        _ => None,
    }
}

async fn serve_pg(mut s: Session) -> io::Result<()> {
    // Startup: SSL/GSS requests answered here, the startup packet and authentication relayed.
    let replication;
    loop {
        let Some(p) = client_packet(&mut s, false).await? else { return Ok(()) };
        let code = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                s.reply(b"N").await?;
                let mut op = Op::new(if code == SSL_REQUEST { "SSLRequest" } else { "GSSENCRequest" }, "", Access::Read);
                op.disposition = Disposition::Captured;
                op.bytes = p.len() as u64;
                op.reply_bytes = 1;
                s.record(op);
            }
            CANCEL_REQUEST => {
                // Cancels a running query of the connection it names (a read of ours: the
                // keys come from the server's BackendKeyData we relayed).
                let mut op = Op::new("CancelRequest", "", Access::Read);
                op.bytes = p.len() as u64;
                if s.may_forward(Access::Read) {
                    op.disposition = Disposition::Forwarded;
                    s.forward(&p).await?;
                }
                s.record(op);
                return Ok(());
            }
            _ => {
                let user = startup_param(&p, "user").unwrap_or_default();
                let db = startup_param(&p, "database").unwrap_or_else(|| user.clone());
                replication = replication_mode(startup_param(&p, "replication").as_deref());
                let mut op = Op::new(if replication.is_some() { "startup (replication)" } else { "startup" }, db, Access::Read);
                op.bytes = p.len() as u64;
                op.disposition = Disposition::Forwarded;
                if !s.may_forward(Access::Read) {
                    op.disposition = Disposition::Blackholed;
                    s.record(op);
                    return Ok(());
                }
                s.forward(&p).await?;
                let r = authenticate(&mut s).await;
                s.record(op);
                if !r? {
                    return Ok(());
                }
                break;
            }
        }
    }
    let mut st = State::new(replication);
    let mut batch: Vec<Vec<u8>> = Vec::new();
    loop {
        let Some(m) = client_packet(&mut s, true).await? else { return Ok(()) };
        match m[0] {
            b'Q' if st.replication.is_some() => replication_query(&mut s, &mut st, &m).await?,
            b'Q' => simple_query(&mut s, &mut st, &m).await?,
            b'X' => {
                if s.may_forward(Access::Read) {
                    let _ = s.forward(&m).await;
                }
                return Ok(());
            }
            b'P' | b'B' | b'D' | b'E' | b'C' => batch.push(m),
            b'S' | b'H' => {
                batch.push(m);
                extended(&mut s, &mut st, std::mem::take(&mut batch)).await?;
            }
            b'F' => {
                // A fast-path function call (libpq's lo_* large-object calls): the function is
                // named by oid only, so the sink cannot tell what it does. Captured, and
                // answered as the server answers a call that failed.
                let mut op = Op::new("function call", "", Access::Unclassified);
                op.bytes = m.len() as u64;
                let answer = [error("0A000", "pilot captured this fast-path function call (not run: its effect cannot be judged)"), ready(&st)].concat();
                op.reply_bytes = answer.len() as u64;
                s.record(op);
                s.reply(&answer).await?;
            }
            _ => {
                // CopyData/CopyDone/CopyFail outside a COPY: nothing waits for an answer.
                let mut op = Op::new(format!("message {}", m[0] as char), "", Access::Unclassified);
                op.bytes = m.len() as u64;
                s.record(op);
            }
        }
    }
}

fn startup_param(p: &[u8], key: &str) -> Option<String> {
    let parts: Vec<&[u8]> = p.get(8..)?.split(|b| *b == 0).collect();
    parts.chunks(2).find(|kv| kv[0] == key.as_bytes()).and_then(|kv| kv.get(1)).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Relay the server's authentication exchange until ReadyForQuery (true) or an error (false).
async fn authenticate(s: &mut Session) -> io::Result<bool> {
    loop {
        let m = server_message(s).await?;
        s.reply(&m).await?;
        match m[0] {
            b'Z' => return Ok(true),
            b'E' => return Ok(false),
            b'R' => {
                let code = u32::from_be_bytes([m[5], m[6], m[7], m[8]]);
                // Cleartext (3), MD5 (5), SASL (10), SASLContinue (11): the client answers.
                if matches!(code, 3 | 5 | 7 | 8 | 10 | 11) {
                    let Some(answer) = client_packet(s, true).await? else { return Ok(false) };
                    s.forward(&answer).await?;
                }
            }
            _ => {}
        }
    }
}

/// What the server answered a forwarded request with.
struct Relayed {
    /// Bytes relayed to the client.
    bytes: u64,
    /// The server answered with an error (it skips the rest of a multi-statement query).
    failed: bool,
}

/// Relay the server's messages up to ReadyForQuery (relayed too when `keep_ready`), noting
/// the transaction status it reports. COPY TO STDOUT and BASE_BACKUP streams (CopyOut) are
/// messages like any other; a CopyIn is fed from the client, a CopyBoth (START_REPLICATION)
/// relayed both ways until both ends are done.
async fn relay_until_ready(s: &mut Session, st: &mut State, keep_ready: bool) -> io::Result<Relayed> {
    let mut r = Relayed { bytes: 0, failed: false };
    loop {
        let m = server_message(s).await?;
        if m[0] == b'Z' {
            st.status = m.get(5).copied().unwrap_or(b'I');
            if keep_ready {
                r.bytes += m.len() as u64;
                s.reply(&m).await?;
            }
            return Ok(r);
        }
        r.failed |= m[0] == b'E';
        r.bytes += m.len() as u64;
        s.reply(&m).await?;
        match m[0] {
            b'G' => copy_in(s).await?,
            b'W' => r.bytes += copy_both(s).await?,
            _ => {}
        }
    }
}

/// CopyIn of a forwarded statement: the client's CopyData up to CopyDone or CopyFail to the
/// server.
async fn copy_in(s: &mut Session) -> io::Result<()> {
    while let Some(m) = client_packet(s, true).await? {
        s.forward(&m).await?;
        if matches!(m[0], b'c' | b'f') {
            break;
        }
    }
    Ok(())
}

/// CopyBoth (a replication stream): whole messages relayed each way as they come (WAL data
/// and keepalives from the server, standby status updates from the client) until each end
/// has sent CopyDone, or the server an error. Returns the bytes relayed to the client.
async fn copy_both(s: &mut Session) -> io::Result<u64> {
    let (mut client_done, mut server_done, mut bytes) = (false, false, 0u64);
    loop {
        while !client_done {
            let Some(n) = message(&s.client.buf) else { break };
            let m = s.client.take(n);
            s.forward(&m).await?;
            client_done = matches!(m[0], b'c' | b'f' | b'X');
        }
        while !server_done {
            let up = s.upstream().await?;
            let Some(n) = message(&up.buf) else { break };
            let m = up.take(n);
            if m[0] == b'E' {
                // The stream ended in an error: ReadyForQuery follows (relay_until_ready).
                up.buf.splice(0..0, m);
                return Ok(bytes);
            }
            bytes += m.len() as u64;
            s.reply(&m).await?;
            server_done = m[0] == b'c';
        }
        if client_done && server_done {
            return Ok(bytes);
        }
        let (side, n) = s.fill_either(!client_done, !server_done).await?;
        if n == 0 {
            let who = if side == Side::Client { "the client" } else { "the server" };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{who} closed the connection in a replication stream")));
        }
    }
}

fn ready(st: &State) -> Vec<u8> {
    msg(b'Z', &[st.status])
}

/// An ErrorResponse (severity ERROR, SQLSTATE `code`).
fn error(code: &str, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', text)] {
        body.push(k);
        body.extend(cstr(v));
    }
    body.push(0);
    msg(b'E', &body)
}

/// What the live server answers every statement but ROLLBACK/COMMIT in a failed transaction.
fn in_failed_transaction() -> Vec<u8> {
    error("25P02", "current transaction is aborted, commands ignored until end of transaction block")
}

/// A RowDescription's column type oids.
fn column_types(t: &[u8]) -> Vec<u32> {
    let Some(n) = t.get(5..7).map(|b| u16::from_be_bytes([b[0], b[1]])) else { return Vec::new() };
    let mut at = 7;
    let mut out = Vec::new();
    for _ in 0..n {
        let Some(end) = t.get(at..).and_then(|b| b.iter().position(|x| *x == 0)) else { break };
        at += end + 1 + 6; // name, table oid (4), column number (2)
        let Some(oid) = t.get(at..at + 4) else { break };
        out.push(u32::from_be_bytes([oid[0], oid[1], oid[2], oid[3]]));
        at += 4 + 2 + 4 + 2; // type oid, size, modifier, format
    }
    out
}

const BOOL_OID: u32 = 16;
const VOID_OID: u32 = 2278;

/// A statement whose answer carries rows: the SELECT family (not SELECT INTO) and RETURNING.
fn returns_rows(x: &Stmt) -> bool {
    (x.tag.starts_with("SELECT") && x.operation != "SELECT INTO") || x.text.to_uppercase().contains("RETURNING")
}

/// The sink's answer to one captured statement (without ReadyForQuery). `described`: the
/// server's RowDescription for it (see `describe`). Rows are made up only in the columns the
/// server described, so a client reading them by name or number finds each one: one row for
/// a function's answer (`t` where an admin function returns boolean: it succeeded), the rows
/// an INSERT's tag counts, none for the rest. Without a description, a row-returning
/// statement gets an empty result (no columns, no rows) rather than columns guessed.
fn made_up(x: &Stmt, described: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    if !returns_rows(x) {
        out.extend(msg(b'C', &cstr(&x.tag)));
        return out;
    }
    let desc = described.map(<[u8]>::to_vec).unwrap_or_else(|| msg(b'T', &0u16.to_be_bytes()));
    let types = column_types(&desc);
    let admin = x.columns.iter().any(|(_, v)| v.is_some());
    let rows = if x.tag.starts_with("SELECT") {
        usize::from(!x.columns.is_empty() && !types.is_empty())
    } else if x.operation == "INSERT" {
        x.tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    } else {
        0
    };
    out.extend(desc);
    for _ in 0..rows {
        let mut row = (types.len() as u16).to_be_bytes().to_vec();
        for oid in &types {
            let value = match *oid {
                BOOL_OID if admin => Some("t"),
                VOID_OID => Some(""),
                _ => None,
            };
            match value {
                Some(v) => {
                    row.extend((v.len() as i32).to_be_bytes());
                    row.extend(v.as_bytes());
                }
                None => row.extend((-1i32).to_be_bytes()),
            }
        }
        out.extend(msg(b'D', &row));
    }
    let tag = if x.tag.starts_with("SELECT") { format!("SELECT {rows}") } else { x.tag.clone() };
    out.extend(msg(b'C', &cstr(&tag)));
    out
}

/// How the server describes a statement it did not run.
enum Described {
    Rows(Vec<u8>),
    NoData,
    /// It refused it (no such function or table...): live, the statement fails the same way.
    Error(Vec<u8>),
}

/// The statement's result columns as the server describes them without running it: Parse
/// and Describe of a statement of the sink's own name, then Close and Sync. Parse analysis
/// takes the locks a read takes (ACCESS SHARE, released at once outside a transaction).
async fn describe(s: &mut Session, st: &mut State, text: &str) -> io::Result<Described> {
    const NAME: &str = "pilot_sink_describe";
    let mut parse = cstr(NAME);
    parse.extend(cstr(text));
    parse.extend(0u16.to_be_bytes());
    let name = [&[b'S'][..], &cstr(NAME)].concat();
    let out = [msg(b'P', &parse), msg(b'D', &name), msg(b'C', &name), msg(b'S', &[])].concat();
    s.forward(&out).await?;
    let mut result = Described::NoData;
    loop {
        let m = server_message(s).await?;
        match m[0] {
            b'T' => result = Described::Rows(m),
            b'E' => result = Described::Error(m),
            b'Z' => {
                st.status = m.get(5).copied().unwrap_or(b'I');
                return Ok(result);
            }
            _ => {}
        }
    }
}

/// Should a captured statement's columns be asked of the server? Only on a SQL connection
/// (a walsender has no extended protocol), and inside a transaction only for statements
/// whose parse takes no lock beyond a read's (not FOR UPDATE, not data-modifying).
fn describable(x: &Stmt, st: &State) -> bool {
    let lock_free = x.tag.starts_with("SELECT") && !matches!(x.operation.as_str(), "SELECT FOR UPDATE" | "WITH (data-modifying)");
    returns_rows(x) && st.replication.is_none() && (st.status == b'I' || lock_free)
}

/// The answer to a captured statement, and whether it is an error.
async fn captured_answer(s: &mut Session, st: &mut State, x: &Stmt) -> io::Result<(Vec<u8>, bool)> {
    if st.status == b'E' {
        return Ok((in_failed_transaction(), true));
    }
    if !describable(x, st) || !s.may_forward(Access::Read) {
        return Ok((made_up(x, None), false));
    }
    Ok(match describe(s, st, &x.text).await? {
        Described::Rows(t) => (made_up(x, Some(&t)), false),
        Described::NoData => (made_up(x, None), false),
        Described::Error(e) => (e, true),
    })
}

fn record_stmt(s: &mut Session, stmt: &Stmt, disposition: Disposition, bytes: u64, reply: u64) {
    let mut op = Op::new(stmt.operation.clone(), stmt.resource.clone(), stmt.access);
    op.category = stmt.category;
    op.disposition = disposition;
    op.bytes = bytes;
    op.reply_bytes = reply;
    s.record(op);
}

/// An EXECUTE of a statement the session PREPAREd is what it prepared (its text kept).
fn resolve(st: &State, x: Stmt) -> Stmt {
    if x.operation != "EXECUTE" {
        return x;
    }
    match st.sql_prepared.get(&x.resource) {
        Some(p) => Stmt { text: x.text, resource: if p.resource.is_empty() { x.resource } else { p.resource.clone() }, ..p.clone() },
        None => x,
    }
}

/// What a statement that went through leaves in the session.
fn remember(st: &mut State, x: &Stmt) {
    if let Some(p) = &x.prepared {
        st.sql_prepared.insert(x.resource.clone(), (**p).clone());
    }
}

async fn simple_query(s: &mut Session, st: &mut State, m: &[u8]) -> io::Result<()> {
    let text = String::from_utf8_lossy(m.get(5..m.len().saturating_sub(1)).unwrap_or_default()).into_owned();
    let stmts: Vec<Stmt> = sql::statements(&text).into_iter().map(|x| resolve(st, x)).collect();
    if stmts.is_empty() {
        s.reply(&msg(b'I', &[])).await?;
        return s.reply(&ready(st)).await;
    }
    if stmts.iter().all(|x| s.may_forward(x.access)) {
        s.forward(m).await?;
        let reply = relay_until_ready(s, st, true).await?;
        for (i, x) in stmts.iter().enumerate() {
            remember(st, x);
            record_stmt(s, x, Disposition::Forwarded, if i == 0 { m.len() as u64 } else { 0 }, if i == 0 { reply.bytes } else { 0 });
        }
        return Ok(());
    }
    // Mixed or all captured: statement by statement, reads alone to the server, stopping at
    // the first error as the server does.
    for x in &stmts {
        if s.may_forward(x.access) {
            let q = msg(b'Q', &cstr(&x.text));
            s.forward(&q).await?;
            let reply = relay_until_ready(s, st, false).await?;
            remember(st, x);
            record_stmt(s, x, Disposition::Forwarded, q.len() as u64, reply.bytes);
            if reply.failed {
                break;
            }
            continue;
        }
        let (answer, failed) = captured_answer(s, st, x).await?;
        if !failed && x.operation == "COPY FROM" && x.text.to_uppercase().contains("STDIN") {
            // CopyInResponse (text, no columns), then swallow the data up to CopyDone.
            s.reply(&msg(b'G', &[0, 0, 0])).await?;
            while let Some(d) = client_packet(s, true).await? {
                if d[0] != b'd' {
                    break;
                }
            }
        }
        record_stmt(s, x, Disposition::Captured, x.text.len() as u64, answer.len() as u64);
        s.reply(&answer).await?;
        if failed {
            break;
        }
    }
    s.reply(&ready(st)).await
}

/// A query on a replication connection: a replication command (classified by
/// `sql::replication`), else SQL (`replication=database`, and SHOW).
async fn replication_query(s: &mut Session, st: &mut State, m: &[u8]) -> io::Result<()> {
    let text = String::from_utf8_lossy(m.get(5..m.len().saturating_sub(1)).unwrap_or_default()).into_owned();
    let Some(cmd) = sql::replication(&text) else {
        let show = text.trim_start().get(..4).is_some_and(|w| w.eq_ignore_ascii_case("SHOW"));
        if st.replication == Some(Replication::Database) || show {
            return simple_query(s, st, m).await;
        }
        // A walsender knows no other command: the server would answer a syntax error.
        let mut op = Op::new(text.split_whitespace().next().unwrap_or("").to_uppercase(), "", Access::Unclassified);
        op.bytes = m.len() as u64;
        let answer = [error("42601", "pilot captured this command (not a replication command it knows)"), ready(st)].concat();
        op.reply_bytes = answer.len() as u64;
        s.record(op);
        return s.reply(&answer).await;
    };
    let mut op = Op::new(cmd.operation.clone(), "", Access::Read);
    op.bytes = m.len() as u64;
    match cmd.kind {
        Repl::Read => forward_command(s, st, m, op).await,
        Repl::BackupOnServer => {
            op.access = Access::Mutation;
            op.category = Some(Category::Admin);
            op.note = Some("the server would write a base backup on its own host".into());
            capture_command(s, st, op, error("0A000", "pilot captured BASE_BACKUP to a server target (not run)")).await
        }
        Repl::CreateSlot { name, temporary: true, .. } => {
            op.resource = name.clone();
            op.note = Some("a temporary slot: the server drops it when the session ends".into());
            st.temp_slots.insert(name);
            forward_command(s, st, m, op).await
        }
        Repl::CreateSlot { name, temporary: false, plugin } => {
            // A permanent slot makes the server keep WAL for it until it is dropped (a full
            // disk when nobody consumes it).
            op.resource = name.clone();
            op.access = Access::Mutation;
            op.category = Some(Category::Admin);
            let lsn = current_lsn(s, st).await?.unwrap_or_else(|| "0/0".into());
            st.captured_slots.insert(name.clone());
            capture_command(s, st, op, slot_created(&name, &lsn, plugin.as_deref())).await
        }
        Repl::DropSlot { name } if st.temp_slots.contains(&name) => {
            op.resource = name.clone();
            op.note = Some("the session's own temporary slot".into());
            st.temp_slots.remove(&name);
            forward_command(s, st, m, op).await
        }
        Repl::DropSlot { name } | Repl::AlterSlot { name } => {
            op.resource = name;
            op.access = Access::Mutation;
            op.category = Some(Category::Admin);
            let tag = cmd.operation.clone();
            capture_command(s, st, op, msg(b'C', &cstr(&tag))).await
        }
        Repl::Start { slot, logical, without_slot } => {
            op.resource = slot.clone().unwrap_or_default();
            let own = slot.as_ref().is_none_or(|n| st.temp_slots.contains(n));
            if own {
                return forward_command(s, st, m, op).await;
            }
            let name = slot.unwrap_or_default();
            if logical {
                // Decoding from a permanent logical slot consumes its changes: its consumer
                // (a subscriber, a CDC pipeline) never gets them.
                op.access = Access::Mutation;
                op.category = Some(Category::Write);
                op.note = Some("consumes the slot's changes (its consumer would not get them)".into());
                return capture_command(s, st, op, error("55000", "pilot captured START_REPLICATION from a permanent logical slot (not run)")).await;
            }
            // The same WAL stream, without the slot: the pilot's flush reports must not move a
            // live slot (nor take it from its owner while the pilot streams).
            op.note = Some(if st.captured_slots.contains(&name) {
                "streamed without the slot (its creation was captured)".into()
            } else {
                "streamed without the slot, which the pilot leaves where it is (live, the client's flush reports advance it)".into()
            });
            forward_command(s, st, &msg(b'Q', &cstr(&without_slot)), op).await
        }
    }
}

/// Forward a replication command and relay its answer (streams included). A stream is
/// recorded before it starts: it lasts as long as the client wants.
async fn forward_command(s: &mut Session, st: &mut State, q: &[u8], mut op: Op) -> io::Result<()> {
    op.disposition = Disposition::Forwarded;
    s.forward(q).await?;
    if op.operation == "START_REPLICATION" {
        s.record(op);
        relay_until_ready(s, st, true).await?;
        return Ok(());
    }
    op.reply_bytes = relay_until_ready(s, st, true).await?.bytes;
    s.record(op);
    Ok(())
}

async fn capture_command(s: &mut Session, st: &mut State, mut op: Op, answer: Vec<u8>) -> io::Result<()> {
    op.disposition = Disposition::Captured;
    let answer = [answer, ready(st)].concat();
    op.reply_bytes = answer.len() as u64;
    s.record(op);
    s.reply(&answer).await
}

/// The server's current WAL position (IDENTIFY_SYSTEM's xlogpos), asked on the agent's own
/// connection and not relayed.
async fn current_lsn(s: &mut Session, st: &mut State) -> io::Result<Option<String>> {
    if !s.may_forward(Access::Read) {
        return Ok(None);
    }
    s.forward(&msg(b'Q', &cstr("IDENTIFY_SYSTEM"))).await?;
    let mut lsn = None;
    loop {
        let m = server_message(s).await?;
        match m[0] {
            b'D' => lsn = data_row(&m).get(2).cloned().flatten(),
            b'Z' => {
                st.status = m.get(5).copied().unwrap_or(b'I');
                return Ok(lsn);
            }
            _ => {}
        }
    }
}

/// A DataRow's values (text).
fn data_row(d: &[u8]) -> Vec<Option<String>> {
    let Some(n) = d.get(5..7).map(|b| u16::from_be_bytes([b[0], b[1]])) else { return Vec::new() };
    let mut at = 7;
    let mut out = Vec::new();
    for _ in 0..n {
        let Some(len) = d.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])) else { break };
        at += 4;
        if len < 0 {
            out.push(None);
            continue;
        }
        let Some(v) = d.get(at..at + len as usize) else { break };
        out.push(Some(String::from_utf8_lossy(v).into_owned()));
        at += len as usize;
    }
    out
}

/// CREATE_REPLICATION_SLOT's answer: slot_name, consistent_point, snapshot_name,
/// output_plugin (text columns), as the server sends it.
fn slot_created(name: &str, lsn: &str, plugin: Option<&str>) -> Vec<u8> {
    let columns = ["slot_name", "consistent_point", "snapshot_name", "output_plugin"];
    let mut desc = (columns.len() as u16).to_be_bytes().to_vec();
    for c in columns {
        desc.extend(cstr(c));
        desc.extend(0u32.to_be_bytes());
        desc.extend(0u16.to_be_bytes());
        desc.extend(25u32.to_be_bytes());
        desc.extend((-1i16).to_be_bytes());
        desc.extend((-1i32).to_be_bytes());
        desc.extend(0u16.to_be_bytes());
    }
    let mut row = (columns.len() as u16).to_be_bytes().to_vec();
    for v in [Some(name), Some(lsn), None, plugin] {
        match v {
            Some(v) => {
                row.extend((v.len() as i32).to_be_bytes());
                row.extend(v.as_bytes());
            }
            None => row.extend((-1i32).to_be_bytes()),
        }
    }
    [msg(b'T', &desc), msg(b'D', &row), msg(b'C', &cstr("CREATE_REPLICATION_SLOT"))].concat()
}

/// Parse: name, query. Bind: portal, statement. Execute: portal. Describe/Close: kind, name.
fn fields(m: &[u8]) -> Vec<String> {
    let body = &m[5..];
    let body = if matches!(m[0], b'D' | b'C') { &body[1..] } else { body };
    body.split(|b| *b == 0).take(2).map(|x| String::from_utf8_lossy(x).into_owned()).collect()
}

async fn extended(s: &mut Session, st: &mut State, batch: Vec<Vec<u8>>) -> io::Result<()> {
    // The statements this batch runs: parsed in it, or prepared earlier.
    let mut stmts: Vec<(Stmt, bool)> = Vec::new();
    let mut portals: HashMap<String, String> = HashMap::new();
    for m in &batch {
        let f = fields(m);
        match m[0] {
            b'P' => {
                let stmt = sql::statements(f.get(1).map(String::as_str).unwrap_or("")).into_iter().next().unwrap_or_else(|| sql::statements("SELECT").remove(0));
                let capture = !s.may_forward(stmt.access);
                st.prepared.insert(f[0].clone(), (stmt.clone(), capture));
                stmts.push((stmt, capture));
            }
            b'B' => {
                portals.insert(f[0].clone(), f.get(1).cloned().unwrap_or_default());
                if let Some(p) = st.prepared.get(f.get(1).map(String::as_str).unwrap_or("")) {
                    stmts.push(p.clone());
                }
            }
            _ => {}
        }
    }
    let bytes: u64 = batch.iter().map(|m| m.len() as u64).sum();
    let capture = stmts.iter().any(|(_, c)| *c);
    if !capture {
        for m in &batch {
            s.forward(m).await?;
        }
        let reply = if batch.last().is_some_and(|m| m[0] == b'S') { relay_until_ready(s, st, true).await?.bytes } else { 0 };
        stmts.dedup();
        for (i, (x, _)) in stmts.iter().enumerate() {
            record_stmt(s, x, Disposition::Forwarded, if i == 0 { bytes } else { 0 }, if i == 0 { reply } else { 0 });
        }
        return Ok(());
    }
    let mut answer = Vec::new();
    for m in &batch {
        let f = fields(m);
        match m[0] {
            b'P' => answer.extend(msg(b'1', &[])),
            b'B' => answer.extend(msg(b'2', &[])),
            b'D' => {
                if m[5] == b'S' {
                    answer.extend(msg(b't', &0u16.to_be_bytes()));
                }
                answer.extend(msg(b'n', &[]));
            }
            b'E' => {
                let stmt = portals.get(&f[0]).and_then(|name| st.prepared.get(name)).map(|p| p.0.clone());
                if let Some(x) = stmt {
                    // Describe said NoData: no rows follow.
                    let tag = if x.tag.starts_with("SELECT") { "SELECT 0".to_string() } else { x.tag.clone() };
                    answer.extend(msg(b'C', &cstr(&tag)));
                } else {
                    answer.extend(msg(b'C', &cstr("SELECT 0")));
                }
            }
            b'C' => answer.extend(msg(b'3', &[])),
            b'S' => answer.extend(ready(st)),
            _ => {}
        }
    }
    stmts.dedup();
    for (i, (x, _)) in stmts.iter().enumerate() {
        record_stmt(s, x, Disposition::Captured, if i == 0 { bytes } else { 0 }, if i == 0 { answer.len() as u64 } else { 0 });
    }
    s.reply(&answer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_startup_and_ssl_requests() {
        assert_eq!(sniff(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), Sniff::Yes, "SSLRequest");
        let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
        startup.extend(b"user\0postgres\0\0");
        let n = startup.len() as u32;
        startup[..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(sniff(&startup), Sniff::Yes);
        assert_eq!(startup_param(&startup, "user").as_deref(), Some("postgres"));
        assert_eq!(sniff(b"*1\r\n$4\r\nPING\r\n"), Sniff::No);
        assert_eq!(message(&msg(b'Z', b"I")), Some(6));
    }

    #[test]
    fn captured_statements_answer_like_the_server() {
        let st = State::new(None);
        let drop = sql::statements("DROP TABLE t").remove(0);
        assert_eq!(made_up(&drop, None), msg(b'C', b"DROP TABLE\0"));
        assert_eq!(ready(&st), msg(b'Z', b"I"));
        // The server's description of `SELECT pid, pg_terminate_backend(pid) FROM ...`: two
        // columns (int4, bool); the made-up row has both, `t` in the boolean.
        let kill = sql::statements("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity").remove(0);
        let mut desc = 2u16.to_be_bytes().to_vec();
        for (name, oid) in [("pid", 23u32), ("pg_terminate_backend", 16)] {
            desc.extend(cstr(name));
            desc.extend([0; 6]);
            desc.extend(oid.to_be_bytes());
            desc.extend([0; 8]);
        }
        let desc = msg(b'T', &desc);
        assert_eq!(column_types(&desc), [23, 16]);
        let a = made_up(&kill, Some(&desc));
        let row = [&2u16.to_be_bytes()[..], &(-1i32).to_be_bytes(), &1i32.to_be_bytes(), b"t"].concat();
        assert_eq!(a, [desc.clone(), msg(b'D', &row), msg(b'C', b"SELECT 1\0")].concat());
        // Without a description: an empty result, never guessed columns.
        assert_eq!(made_up(&kill, None), [msg(b'T', &[0, 0]), msg(b'C', b"SELECT 0\0")].concat());
        assert_eq!(data_row(&msg(b'D', &row)), [None, Some("t".to_string())]);
    }

    #[test]
    fn replication_startup_and_slot_answers() {
        assert_eq!(replication_mode(Some("true")), Some(Replication::Physical));
        assert_eq!(replication_mode(Some("database")), Some(Replication::Database));
        assert_eq!(replication_mode(Some("false")), None);
        let a = slot_created("s1", "0/3000060", None);
        assert_eq!(a[0], b'T');
        let d = a[message(&a).unwrap()..].to_vec();
        assert_eq!(data_row(&d), [Some("s1".into()), Some("0/3000060".into()), None, None]);
    }
}
