//! HTTP/1.1 (httparse reads the heads; bodies are framed by Content-Length or chunked, as the
//! messages say). GET, HEAD and OPTIONS are reads and go through, unless their path matches an
//! unsafe-GET pattern (some admin APIs change state on GET: `/shutdown`, `/flush`...; more
//! from the policy's `[rpc] unsafe_get`); every other method is a mutation, captured and
//! answered `200 OK` with an empty body. Keep-alive connections are served request by request.
use std::io;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{Access, Category, Disposition, Module, Sniff};
use super::session::{BoxFuture, Op, Session};

pub const MODULE: Module = Module { name: "http", sniff, serve };

/// Paths (with their query) whose GET changes state on common admin APIs.
pub const UNSAFE_GET: &[&str] = &[
    "*/shutdown*", "*/restart*", "*/reboot*", "*/kill*", "*/delete*", "*/drop*", "*/flush*", "*/purge*", "*/reset*", "*/reload*",
    "*/terminate*", "*/decommission*", "*/failover*", "*action=delete*", "*action=kill*",
];
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];
/// Heads larger than this are not HTTP the sink serves.
const HEAD_MAX: usize = 64 * 1024;

fn sniff(b: &[u8]) -> Sniff {
    let word_end = b.iter().position(|&c| c == b' ');
    let Some(end) = word_end else {
        let partial = METHODS.iter().any(|m| m.as_bytes().starts_with(b));
        return if partial { Sniff::NeedMore } else { Sniff::No };
    };
    if !METHODS.contains(&String::from_utf8_lossy(&b[..end]).as_ref()) {
        return Sniff::No;
    }
    match b.iter().position(|&c| c == b'\n') {
        Some(nl) => if String::from_utf8_lossy(&b[..nl]).trim_end().ends_with(" HTTP/1.1") || String::from_utf8_lossy(&b[..nl]).trim_end().ends_with(" HTTP/1.0") { Sniff::Yes } else { Sniff::No },
        None if b.len() < 8192 => Sniff::NeedMore,
        None => Sniff::No,
    }
}

pub fn unsafe_get_set(extra: &[String]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for p in UNSAFE_GET.iter().map(|s| s.to_string()).chain(extra.iter().cloned()) {
        if let Ok(g) = Glob::new(&p.to_lowercase()) {
            b.add(g);
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

pub fn classify(method: &str, target: &str, unsafe_get: &GlobSet) -> (Access, Option<Category>) {
    let lower = target.to_lowercase();
    let admin = ["shutdown", "restart", "reboot", "reload", "config", "drain", "decommission", "failover", "promote", "kill", "terminate", "member"]
        .iter()
        .any(|w| lower.contains(w));
    match method {
        "GET" | "HEAD" | "OPTIONS" if !unsafe_get.is_match(&lower) => (Access::Read, None),
        "GET" | "HEAD" | "OPTIONS" | "POST" | "PUT" | "PATCH" | "DELETE" if admin => (Access::Mutation, Some(Category::Admin)),
        "DELETE" => (Access::Mutation, Some(Category::Delete)),
        "GET" | "HEAD" | "OPTIONS" => (Access::Mutation, Some(Category::Delete)),
        "POST" | "PUT" | "PATCH" => (Access::Mutation, Some(Category::Write)),
        _ => (Access::Unclassified, None),
    }
}

struct Head {
    method: String,
    target: String,
    len: usize,
    body: Body,
    close: bool,
    expect_continue: bool,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Body {
    None,
    Length(usize),
    Chunked,
    /// Until the connection closes (a response without length).
    ToEof,
}

fn framing(headers: &[httparse::Header]) -> (Body, bool, bool) {
    let get = |n: &str| headers.iter().find(|h| h.name.eq_ignore_ascii_case(n)).map(|h| String::from_utf8_lossy(h.value).to_lowercase());
    let close = get("connection").is_some_and(|v| v.contains("close"));
    let expect = get("expect").is_some_and(|v| v.contains("100-continue"));
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return (Body::Chunked, close, expect);
    }
    match get("content-length").and_then(|v| v.trim().parse().ok()) {
        Some(n) => (Body::Length(n), close, expect),
        None => (Body::None, close, expect),
    }
}

fn request_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let (body, close, expect_continue) = framing(req.headers);
            let close = close || req.version == Some(0);
            Ok(Some(Head { method: req.method.unwrap_or("").to_string(), target: req.path.unwrap_or("").to_string(), len, body, close, expect_continue }))
        }
        Ok(httparse::Status::Partial) if buf.len() < HEAD_MAX => Ok(None),
        Ok(httparse::Status::Partial) => Err(io::Error::new(io::ErrorKind::InvalidData, "HTTP head too large")),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    }
}

/// Bytes of a complete body at the start of `buf` (after the head). None: more needed.
fn body_len(buf: &[u8], body: Body) -> Option<usize> {
    match body {
        Body::None => Some(0),
        Body::Length(n) => (buf.len() >= n).then_some(n),
        Body::ToEof => None,
        Body::Chunked => {
            let mut at = 0;
            loop {
                let line_end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
                let size = usize::from_str_radix(String::from_utf8_lossy(&buf[at..line_end]).split(';').next()?.trim(), 16).ok()?;
                at = line_end + 2;
                if size == 0 {
                    // Trailers, then an empty line.
                    loop {
                        let e = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
                        let empty = e == at;
                        at = e + 2;
                        if empty {
                            return Some(at);
                        }
                    }
                }
                at += size + 2;
                if at > buf.len() {
                    return None;
                }
            }
        }
    }
}

fn serve(s: Session) -> BoxFuture {
    Box::pin(serve_http(s))
}

async fn serve_http(mut s: Session) -> io::Result<()> {
    let unsafe_get = unsafe_get_set(&s.ctx.options.unsafe_get);
    loop {
        let head = loop {
            if s.client.buf.is_empty() && s.client.fill().await? == 0 {
                return Ok(());
            }
            if let Some(h) = request_head(&s.client.buf)? {
                break h;
            }
            if s.client.fill().await? == 0 {
                return Ok(());
            }
        };
        if head.expect_continue && body_len(&s.client.buf[head.len..], head.body).is_none() {
            s.reply(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = loop {
            if let Some(n) = body_len(&s.client.buf[head.len..], head.body) {
                break n;
            }
            if s.client.fill().await? == 0 {
                return Ok(());
            }
        };
        let request = s.client.take(head.len + body);
        let path = head.target.split('?').next().unwrap_or("").to_string();
        let (access, category) = classify(&head.method, &head.target, &unsafe_get);
        let mut op = Op::new(head.method.clone(), path, access);
        op.category = category;
        op.bytes = request.len() as u64;
        if s.may_forward(access) {
            op.disposition = Disposition::Forwarded;
            s.forward(&request).await?;
            let (reply, close) = relay_response(&mut s, &head.method).await?;
            op.reply_bytes = reply;
            s.record(op);
            if close || head.close {
                s.client.shutdown().await;
                return Ok(());
            }
            continue;
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pilot: captured\r\n{}\r\n",
            if head.close { "Connection: close\r\n" } else { "" }
        );
        op.reply_bytes = answer.len() as u64;
        s.record(op);
        s.reply(answer.as_bytes()).await?;
        if head.close {
            s.client.shutdown().await;
            return Ok(());
        }
    }
}

/// Relay one whole response (after any 1xx ones); returns its bytes and whether the server
/// closes the connection after it.
async fn relay_response(s: &mut Session, method: &str) -> io::Result<(u64, bool)> {
    let mut total = 0;
    loop {
        let (len, status, body, close) = loop {
            let up = s.upstream().await?;
            let mut headers = [httparse::EMPTY_HEADER; 96];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&up.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = resp.code.unwrap_or(0);
                    let (mut body, close, _) = framing(resp.headers);
                    let explicit = resp.headers.iter().any(|h| h.name.eq_ignore_ascii_case("content-length") || h.name.eq_ignore_ascii_case("transfer-encoding"));
                    if method == "HEAD" || status < 200 || status == 204 || status == 304 {
                        body = Body::None;
                    } else if !explicit {
                        body = Body::ToEof;
                    }
                    break (len, status, body, close || resp.version == Some(0));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            if s.fill_upstream().await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
            }
        };
        loop {
            let up = s.upstream().await?;
            if let Some(n) = body_len(&up.buf[len..], body) {
                let bytes = up.take(len + n);
                total += bytes.len() as u64;
                s.reply(&bytes).await?;
                break;
            }
            if s.fill_upstream().await? == 0 {
                if body == Body::ToEof {
                    let bytes = std::mem::take(&mut s.upstream().await?.buf);
                    total += bytes.len() as u64;
                    s.reply(&bytes).await?;
                    return Ok((total, true));
                }
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed mid-response"));
            }
        }
        if status >= 200 || status == 101 {
            return Ok((total, close));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_unsafe_gets() {
        let set = unsafe_get_set(&["/api/v1/compact*".into()]);
        assert_eq!(classify("GET", "/status", &set).0, Access::Read);
        assert_eq!(classify("GET", "/admin/shutdown?now=1", &set).0, Access::Mutation);
        assert_eq!(classify("GET", "/api/v1/compact", &set).0, Access::Mutation, "a site's pattern");
        assert_eq!(classify("DELETE", "/keys/a", &set), (Access::Mutation, Some(Category::Delete)));
        assert_eq!(classify("POST", "/v1/drain", &set), (Access::Mutation, Some(Category::Admin)));
        assert_eq!(classify("BREW", "/pot", &set).0, Access::Unclassified);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\nHost: x\r\n"), Sniff::Yes);
        assert_eq!(sniff(b"GE"), Sniff::NeedMore);
        assert_eq!(sniff(b"*1\r\n"), Sniff::No);
    }

    #[test]
    fn bodies_frame_by_length_and_chunks() {
        assert_eq!(body_len(b"abcdef", Body::Length(4)), Some(4));
        assert_eq!(body_len(b"ab", Body::Length(4)), None);
        assert_eq!(body_len(b"3\r\nabc\r\n0\r\n\r\nNEXT", Body::Chunked), Some(13));
        assert_eq!(body_len(b"3\r\nabc\r\n", Body::Chunked), None);
    }
}
