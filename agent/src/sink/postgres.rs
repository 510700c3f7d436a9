//! PostgreSQL, protocol v3. Startup and authentication go through to the server (the pilot's
//! credentials, the server's checks); an SSLRequest or GSSENCRequest is answered `N`, so
//! `sslmode=prefer` clients go on in plaintext the sink can read. Simple queries are split
//! into statements and classified (sql.rs): reads are forwarded, mutations answered with a
//! plausible CommandComplete (`DROP TABLE`, `INSERT 0 1`, `DELETE 0`); a query mixing both runs
//! its reads one by one. Extended-query batches (Parse/Bind/Describe/Execute up to Sync) go
//! through whole when every statement in them reads, else are answered by the sink.
//! postgres-protocol would cover the framing, but the sink must relay the server's exact
//! bytes and make up only a few messages, so the five-byte framing is read here.
use std::{collections::HashMap, io};

use super::{Access, Disposition, Module, Sniff};
use super::session::{BoxFuture, Op, Session};
use super::sql::{self, Stmt};

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
        if s.fill_upstream().await? == 0 {
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

/// The client's view of its transaction, when the sink made up a BEGIN.
#[derive(Default)]
struct State {
    /// The pilot believes it is in a transaction the server never saw.
    faked_txn: bool,
    /// Named statements: their text and whether they were captured.
    prepared: HashMap<String, (Stmt, bool)>,
}

async fn serve_pg(mut s: Session) -> io::Result<()> {
    // Startup: SSL/GSS requests answered here, the startup packet and authentication relayed.
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
                let mut op = Op::new("startup", db, Access::Read);
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
    let mut st = State::default();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    loop {
        let Some(m) = client_packet(&mut s, true).await? else { return Ok(()) };
        match m[0] {
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
            _ => {
                // CopyData/CopyDone/CopyFail outside a COPY the sink runs, function calls...
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

/// Relay the server's messages up to and including ReadyForQuery (its status the client's).
async fn relay_until_ready(s: &mut Session, st: &State, keep_ready: bool) -> io::Result<u64> {
    let mut bytes = 0;
    loop {
        let mut m = server_message(s).await?;
        if m[0] == b'Z' {
            if !keep_ready {
                return Ok(bytes);
            }
            if st.faked_txn && m.len() == 6 && m[5] == b'I' {
                m[5] = b'T';
            }
        }
        bytes += m.len() as u64;
        s.reply(&m).await?;
        if m[0] == b'Z' {
            return Ok(bytes);
        }
    }
}

fn ready(st: &State) -> Vec<u8> {
    msg(b'Z', &[if st.faked_txn { b'T' } else { b'I' }])
}

/// The sink's answer to one captured statement (without ReadyForQuery).
fn made_up(st: &mut State, stmt: &Stmt) -> Vec<u8> {
    match stmt.operation.as_str() {
        "BEGIN" | "START TRANSACTION" => st.faked_txn = true,
        "COMMIT" | "END" | "ROLLBACK" | "ABORT" => st.faked_txn = false,
        _ => {}
    }
    let mut out = Vec::new();
    if stmt.tag.starts_with("SELECT") && !stmt.columns.is_empty() {
        // One made-up row: a function's answer (`t` for an admin function that succeeded).
        let mut desc = (stmt.columns.len() as u16).to_be_bytes().to_vec();
        let mut row = (stmt.columns.len() as u16).to_be_bytes().to_vec();
        for (name, value) in &stmt.columns {
            desc.extend(cstr(name));
            let oid: u32 = if value.as_deref() == Some("t") { 16 } else { 25 };
            desc.extend(0u32.to_be_bytes());
            desc.extend(0u16.to_be_bytes());
            desc.extend(oid.to_be_bytes());
            desc.extend((-1i16).to_be_bytes());
            desc.extend((-1i32).to_be_bytes());
            desc.extend(0u16.to_be_bytes());
            match value {
                Some(v) => {
                    row.extend((v.len() as i32).to_be_bytes());
                    row.extend(v.as_bytes());
                }
                None => row.extend((-1i32).to_be_bytes()),
            }
        }
        out.extend(msg(b'T', &desc));
        out.extend(msg(b'D', &row));
        out.extend(msg(b'C', &cstr("SELECT 1")));
        return out;
    }
    out.extend(msg(b'C', &cstr(&stmt.tag)));
    out
}

fn record_stmt(s: &mut Session, stmt: &Stmt, disposition: Disposition, bytes: u64, reply: u64) {
    let mut op = Op::new(stmt.operation.clone(), stmt.resource.clone(), stmt.access);
    op.category = stmt.category;
    op.disposition = disposition;
    op.bytes = bytes;
    op.reply_bytes = reply;
    s.record(op);
}

async fn simple_query(s: &mut Session, st: &mut State, m: &[u8]) -> io::Result<()> {
    let text = String::from_utf8_lossy(m.get(5..m.len().saturating_sub(1)).unwrap_or_default()).into_owned();
    let stmts = sql::statements(&text);
    if stmts.is_empty() {
        s.reply(&msg(b'I', &[])).await?;
        return s.reply(&ready(st)).await;
    }
    if stmts.iter().all(|x| s.may_forward(x.access)) {
        s.forward(m).await?;
        let reply = relay_until_ready(s, st, true).await?;
        for (i, x) in stmts.iter().enumerate() {
            record_stmt(s, x, Disposition::Forwarded, if i == 0 { m.len() as u64 } else { 0 }, if i == 0 { reply } else { 0 });
        }
        return Ok(());
    }
    // Mixed or all captured: statement by statement, reads alone to the server.
    for x in &stmts {
        if s.may_forward(x.access) {
            let q = msg(b'Q', &cstr(&x.text));
            s.forward(&q).await?;
            let reply = relay_until_ready(s, st, false).await?;
            record_stmt(s, x, Disposition::Forwarded, q.len() as u64, reply);
            continue;
        }
        let mut answer = made_up(st, x);
        if x.operation == "COPY FROM" && x.text.to_uppercase().contains("STDIN") {
            // CopyInResponse (text, no columns), then swallow the data up to CopyDone.
            s.reply(&msg(b'G', &[0, 0, 0])).await?;
            while let Some(d) = client_packet(s, true).await? {
                if d[0] != b'd' {
                    break;
                }
            }
        }
        record_stmt(s, x, Disposition::Captured, x.text.len() as u64, answer.len() as u64);
        s.reply(&std::mem::take(&mut answer)).await?;
    }
    s.reply(&ready(st)).await
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
        let reply = if batch.last().is_some_and(|m| m[0] == b'S') { relay_until_ready(s, st, true).await? } else { 0 };
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
                if let Some(stmt) = stmt {
                    let mut x = stmt.clone();
                    x.columns.clear(); // Describe said NoData: no rows follow
                    answer.extend(made_up(st, &x));
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
        let mut st = State::default();
        let drop = sql::statements("DROP TABLE t").remove(0);
        assert_eq!(made_up(&mut st, &drop), msg(b'C', b"DROP TABLE\0"));
        made_up(&mut st, &sql::statements("BEGIN").remove(0));
        assert_eq!(ready(&st), msg(b'Z', b"T"), "in the transaction the pilot began");
        let kill = sql::statements("SELECT pg_terminate_backend(7)").remove(0);
        let a = made_up(&mut st, &kill);
        assert_eq!(a[0], b'T', "a row description, then the row");
    }
}
