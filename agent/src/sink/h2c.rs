//! The pilot's HTTP/2 byte stream as h2 accepts it. grpc-go (etcdctl 3.4's `endpoint status`,
//! `endpoint health`, every client dialled with a `passthrough:///http://host:port` target)
//! sends `:authority: http://127.0.0.1:2379`, which etcd's Go server takes and h2 refuses as a
//! malformed authority, resetting the stream (hyperium/h2#525, #442: h2 keeps the check). So
//! between the client and h2 every header block (HEADERS and its CONTINUATIONs) is decoded
//! with the client's HPACK state and encoded again with an encoder of the shim's own, whose
//! table h2's decoder follows; an authority with a scheme loses it. Other frames pass as they
//! are; the server's side is not touched.
use std::io;

use fluke_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::session::Io;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE's initial value (h2 keeps it unless configured).
const MAX_FRAME: usize = 16384;

/// The client's stream, header blocks rewritten on the way in.
pub fn shim(client: Box<dyn Io>) -> Box<dyn Io> {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let (mut from_h2, mut to_h2) = tokio::io::split(theirs);
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_h2, &mut to_client).await;
        let _ = to_client.shutdown().await;
    });
    tokio::spawn(async move {
        if let Err(e) = rewrite(&mut from_client, &mut to_h2).await {
            tracing::debug!("h2c shim: {e}");
        }
        let _ = to_h2.shutdown().await;
    });
    Box::new(ours)
}

/// A header block being gathered: stream, END_STREAM, priority fields, the HPACK bytes.
struct Block {
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    hpack: Vec<u8>,
}

async fn rewrite(r: &mut (impl AsyncRead + Unpin), w: &mut (impl AsyncWrite + Unpin)) -> io::Result<()> {
    let mut preface = [0u8; 24];
    r.read_exact(&mut preface).await?;
    w.write_all(&preface).await?;
    let mut decoder = Decoder::new();
    let mut encoder = Encoder::new();
    let mut block: Option<Block> = None;
    loop {
        let mut head = [0u8; 9];
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await?;
        match kind {
            HEADERS => {
                let mut p = &payload[..];
                let mut pad = 0;
                if flags & PADDED != 0 && !p.is_empty() {
                    pad = p[0] as usize;
                    p = &p[1..];
                }
                let mut priority = None;
                if flags & PRIORITY != 0 && p.len() >= 5 {
                    priority = Some([p[0], p[1], p[2], p[3], p[4]]);
                    p = &p[5..];
                }
                let hpack = p[..p.len().saturating_sub(pad)].to_vec();
                block = Some(Block { stream: [head[5], head[6], head[7], head[8]], end_stream: flags & END_STREAM != 0, priority, hpack });
            }
            CONTINUATION => match block.as_mut() {
                Some(b) => b.hpack.extend_from_slice(&payload),
                None => return Err(io::Error::new(io::ErrorKind::InvalidData, "CONTINUATION without HEADERS")),
            },
            _ => {
                w.write_all(&head).await?;
                w.write_all(&payload).await?;
                continue;
            }
        }
        if flags & END_HEADERS == 0 {
            continue;
        }
        let Some(b) = block.take() else { continue };
        let headers = decoder.decode(&b.hpack).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("HPACK: {e:?}")))?;
        let headers: Vec<(Vec<u8>, Vec<u8>)> = headers.into_iter().map(|(n, v)| if n == b":authority" { (n, authority(&v)) } else { (n, v) }).collect();
        let hpack = encoder.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
        w.write_all(&frames(&b, &hpack)).await?;
    }
}

/// HEADERS then CONTINUATIONs carrying `hpack`, at most MAX_FRAME bytes each.
fn frames(b: &Block, hpack: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut first = Vec::new();
    if let Some(p) = b.priority {
        first.extend_from_slice(&p);
    }
    let room = MAX_FRAME - first.len();
    let (head, mut rest) = hpack.split_at(hpack.len().min(room));
    first.extend_from_slice(head);
    let mut flags = if b.end_stream { END_STREAM } else { 0 };
    if b.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    push_frame(&mut out, HEADERS, flags, b.stream, &first);
    while !rest.is_empty() {
        let (chunk, more) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = more;
        push_frame(&mut out, CONTINUATION, if rest.is_empty() { END_HEADERS } else { 0 }, b.stream, chunk);
    }
    out
}

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: [u8; 4], payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream);
    out.extend_from_slice(payload);
}

/// An authority h2 accepts: `http://host:port[/...]` loses its scheme and path; what still is
/// no authority (a socket path) becomes `localhost`.
fn authority(v: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(v);
    let s = s.split_once("://").map_or(&*s, |(_, rest)| rest);
    let s = s.split('/').next().unwrap_or("");
    match http::uri::Authority::try_from(s) {
        Ok(_) if !s.is_empty() => s.as_bytes().to_vec(),
        _ => b"localhost".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_h2_accepts() {
        assert_eq!(authority(b"http://127.0.0.1:2379"), b"127.0.0.1:2379");
        assert_eq!(authority(b"127.0.0.1:2379"), b"127.0.0.1:2379");
        assert_eq!(authority(b"/var/run/x.sock"), b"localhost");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn header_blocks_are_reencoded_and_other_frames_pass() {
        let mut enc = Encoder::new();
        let hpack = enc.encode([(&b":method"[..], &b"POST"[..]), (b":authority", b"http://127.0.0.1:2379"), (b":path", b"/x")]);
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // HEADERS split in two, a CONTINUATION, then a DATA frame.
        let (a, b) = hpack.split_at(3);
        push_frame(&mut input, HEADERS, 0, [0, 0, 0, 1], a);
        push_frame(&mut input, CONTINUATION, END_HEADERS, [0, 0, 0, 1], b);
        push_frame(&mut input, 0x0, END_STREAM, [0, 0, 0, 1], b"abc");
        let mut out = Vec::new();
        rewrite(&mut &input[..], &mut out).await.unwrap();
        let frames = &out[24..];
        assert_eq!(frames[3], HEADERS);
        assert_eq!(frames[4], END_HEADERS);
        let len = u32::from_be_bytes([0, frames[0], frames[1], frames[2]]) as usize;
        let got = Decoder::new().decode(&frames[9..9 + len]).unwrap();
        assert!(got.contains(&(b":authority".to_vec(), b"127.0.0.1:2379".to_vec())));
        assert_eq!(&frames[9 + len + 3..9 + len + 5], &[0x0, END_STREAM]);
        assert!(frames.ends_with(b"abc"));
    }
}
