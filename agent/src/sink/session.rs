//! One connection the sink accepted: the client's stream (the pilot), the original destination
//! and, when a read goes through, the agent's own connection to it. Protocol modules drive it
//! with a handful of calls (see README.md): read the client's next bytes, `forward` a request
//! and relay its answer, `reply` with a made-up answer, `record` each request.
use std::{
    future::Future,
    io,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{Access, Caught, Category, Ctx, Disposition, IDLE, Mode, Rpc, Sniff, keep_head, now_ms, printable};
use super::origin::Sender;

pub type BoxFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How long the sink waits for the original destination to accept or answer a forwarded read.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the pilot meant a connection to go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl Target {
    /// As sink.json and the graph write it: `127.0.0.1:6379`, `[::1]:53`, `unix:/run/x.sock`.
    pub fn label(&self) -> String {
        match self {
            Target::Inet(a) => a.to_string(),
            Target::Unix(p) => format!("unix:{}", p.display()),
        }
    }
}

/// A byte stream with what was read from it and not consumed yet.
pub struct Stream {
    io: Box<dyn Io>,
    pub buf: Vec<u8>,
    /// Bytes read from it so far.
    pub read: u64,
    head: Vec<u8>,
}

impl Stream {
    pub fn new(io: Box<dyn Io>) -> Stream {
        Stream { io, buf: Vec::new(), read: 0, head: Vec::new() }
    }

    /// Read more; Ok(0) at EOF.
    pub async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.io.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        self.read += n as u64;
        keep_head(&mut self.head, &chunk[..n]);
        Ok(n)
    }

    /// `fill` within `t`: None when nothing came.
    pub async fn fill_within(&mut self, t: Duration) -> io::Result<Option<usize>> {
        match tokio::time::timeout(t, self.fill()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Take the first `n` buffered bytes.
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n.min(self.buf.len()));
        std::mem::replace(&mut self.buf, rest)
    }

    pub async fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.io.write_all(b).await?;
        self.io.flush().await
    }

    pub async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}

/// Which end of a session sent bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// One request as a module reports it.
pub struct Op {
    pub operation: String,
    pub resource: String,
    pub access: Access,
    pub category: Option<Category>,
    pub disposition: Disposition,
    pub bytes: u64,
    pub reply_bytes: u64,
    pub may_differ: bool,
    /// Why a read that looks like more is one, or what a captured request would do live.
    pub note: Option<String>,
}

impl Op {
    pub fn new(operation: impl Into<String>, resource: impl Into<String>, access: Access) -> Op {
        Op {
            operation: operation.into(),
            resource: resource.into(),
            access,
            category: None,
            disposition: Disposition::Captured,
            bytes: 0,
            reply_bytes: 0,
            may_differ: false,
            note: None,
        }
    }
}

/// What a module needs to serve one connection.
pub struct Session {
    pub ctx: Arc<Ctx>,
    pub client: Stream,
    pub to: Option<Target>,
    pub protocol: &'static str,
    upstream: Option<Stream>,
    /// The connection's sink.json entry, pushed when the session ends (or is dropped).
    caught: Option<Caught>,
    /// Bytes through streams handed to a module with framing of its own (`client_io`,
    /// `upstream_io`): client read, client written, upstream written, upstream read.
    raw: Arc<[AtomicU64; 4]>,
}

impl Session {
    /// May a request of this access go to the live server? Reads in a pilot, everything in a
    /// commit, nothing with `--rpc off`; unclassified and opaque never in a pilot.
    pub fn may_forward(&self, access: Access) -> bool {
        match self.ctx.options.mode {
            Mode::PassThrough => true,
            Mode::Dry => access == Access::Read || self.allowed(),
            Mode::Off => false,
        }
    }

    /// An `--allow`ed destination reached through the sink (the pilot's own network namespace):
    /// everything goes through, recorded.
    pub fn allowed(&self) -> bool {
        matches!(&self.to, Some(Target::Inet(a)) if self.ctx.options.allow.contains(a))
    }

    /// The agent's own connection to the original destination (opened on first use).
    pub async fn upstream(&mut self) -> io::Result<&mut Stream> {
        if self.upstream.is_none() {
            self.upstream = Some(Stream::new(connect(self.to.as_ref()).await?));
        }
        Ok(self.upstream.as_mut().expect("just set"))
    }

    /// The pilot's stream for a module with a framing of its own (h2): the bytes read so far
    /// come first; what passes is counted into sink.json.
    pub fn client_io(&mut self) -> Box<dyn Io> {
        let pending = std::mem::take(&mut self.client.buf);
        let io = std::mem::replace(&mut self.client.io, Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink())));
        Box::new(Counted { io, pending, at: 0, raw: self.raw.clone(), read: 0, written: 1 })
    }

    /// A connection of the agent's own to the original destination, for a module with a
    /// framing of its own (each call opens one); what passes is counted into sink.json.
    pub async fn upstream_io(&self) -> io::Result<Box<dyn Io>> {
        let io = connect(self.to.as_ref()).await?;
        Ok(Box::new(Counted { io, pending: Vec::new(), at: 0, raw: self.raw.clone(), read: 3, written: 2 }))
    }

    /// `upstream_io` as a future that does not borrow the session (opened outside its lock).
    pub fn upstream_opener(&self) -> impl Future<Output = io::Result<Box<dyn Io>>> + Send + 'static {
        let to = self.to.clone();
        let raw = self.raw.clone();
        async move {
            let io = connect(to.as_ref()).await?;
            Ok(Box::new(Counted { io, pending: Vec::new(), at: 0, raw, read: 3, written: 2 }) as Box<dyn Io>)
        }
    }

    /// Send request bytes to the original destination.
    pub async fn forward(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.upstream().await?.write_all(bytes).await?;
        if let Some(c) = self.caught.as_mut() {
            c.bytes_forwarded += bytes.len() as u64;
        }
        Ok(())
    }

    /// Read more of the destination's answer (with a timeout): Ok(0) when it closed.
    pub async fn fill_upstream(&mut self) -> io::Result<usize> {
        let up = self.upstream().await?;
        match tokio::time::timeout(UPSTREAM_TIMEOUT, up.fill()).await {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        }
    }

    /// Read more of the destination's answer, as long as it takes (a query that runs for
    /// minutes, a base backup waiting for its checkpoint, a replication stream idle between
    /// keepalives: the client waits as long live; the run's `--timeout` bounds it): Ok(0) when
    /// it closed.
    pub async fn wait_upstream(&mut self) -> io::Result<usize> {
        self.upstream().await?.fill().await
    }

    /// Read more from whichever side sends first, of those asked for (`client`, `upstream`):
    /// a protocol whose both ends talk at once (PostgreSQL's CopyBoth replication streams).
    pub async fn fill_either(&mut self, client: bool, upstream: bool) -> io::Result<(Side, usize)> {
        self.upstream().await?;
        let up = self.upstream.as_mut().expect("opened above");
        match (client, upstream) {
            (true, true) => tokio::select! {
                r = self.client.fill() => r.map(|n| (Side::Client, n)),
                r = up.fill() => r.map(|n| (Side::Upstream, n)),
            },
            (true, false) => self.client.fill().await.map(|n| (Side::Client, n)),
            (false, _) => up.fill().await.map(|n| (Side::Upstream, n)),
        }
    }

    /// Answer the pilot (relayed or made up).
    pub async fn reply(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.client.write_all(bytes).await?;
        if let Some(c) = self.caught.as_mut() {
            c.bytes_answered += bytes.len() as u64;
        }
        Ok(())
    }

    /// From here on, both ways unchanged (a subscriber, MONITOR, a commit's opaque bytes):
    /// returns the bytes the client sent and got.
    pub async fn relay_rest(&mut self) -> io::Result<(u64, u64)> {
        let first = std::mem::take(&mut self.client.buf);
        if !first.is_empty() {
            self.forward(&first).await?;
        }
        let pending = self.upstream().await.map(|u| std::mem::take(&mut u.buf))?;
        if !pending.is_empty() {
            self.reply(&pending).await?;
        }
        let up = self.upstream.as_mut().expect("opened above");
        let (sent, got) = tokio::io::copy_bidirectional(&mut self.client.io, &mut up.io).await.unwrap_or((0, 0));
        self.client.read += sent;
        if let Some(c) = self.caught.as_mut() {
            c.bytes_forwarded += sent;
            c.bytes_answered += got;
        }
        Ok((sent, got))
    }

    pub fn record(&mut self, op: Op) {
        let Some(c) = self.caught.as_mut() else { return };
        let rpc = Rpc {
            protocol: self.protocol.to_string(),
            operation: op.operation,
            resource: op.resource,
            access: op.access,
            category: op.category,
            disposition: op.disposition,
            requests: 1,
            bytes: op.bytes,
            reply_bytes: op.reply_bytes,
            may_differ: op.may_differ,
            note: op.note,
            first_unix_ms: now_ms(),
            last_unix_ms: now_ms(),
        };
        super::add_rpc(&mut c.rpc, rpc);
    }

    /// The shadow layer's namespace for this destination (one per server and protocol).
    pub fn space(&self) -> String {
        format!("{}:{}", self.protocol, self.to.as_ref().map(Target::label).unwrap_or_default())
    }

    fn finish(&mut self) {
        let Some(mut c) = self.caught.take() else { return };
        let raw = |i: usize| self.raw[i].load(Ordering::Relaxed);
        c.bytes = self.client.read + raw(0);
        c.bytes_answered += raw(1);
        c.bytes_forwarded += raw(2);
        c.head = printable(&self.client.head);
        c.protocol = Some(self.protocol.to_string());
        self.ctx.push(c);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The agent's own connection to `to` (outside the pilot's cgroup: the agent is not in it).
async fn connect(to: Option<&Target>) -> io::Result<Box<dyn Io>> {
    Ok(match to {
        Some(Target::Inet(a)) => {
            let s = tokio::time::timeout(UPSTREAM_TIMEOUT, tokio::net::TcpStream::connect(a)).await.map_err(|_| timed_out())??;
            let _ = s.set_nodelay(true);
            Box::new(s)
        }
        Some(Target::Unix(p)) => Box::new(tokio::time::timeout(UPSTREAM_TIMEOUT, tokio::net::UnixStream::connect(p)).await.map_err(|_| timed_out())??),
        None => return Err(io::Error::new(io::ErrorKind::NotFound, "the connection's original destination is unknown")),
    })
}

/// A stream that replays `pending` first and counts what passes into `raw[read]`/`raw[written]`.
struct Counted {
    io: Box<dyn Io>,
    pending: Vec<u8>,
    at: usize,
    raw: Arc<[AtomicU64; 4]>,
    read: usize,
    written: usize,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if me.at < me.pending.len() {
            let n = buf.remaining().min(me.pending.len() - me.at);
            buf.put_slice(&me.pending[me.at..me.at + n]);
            me.at += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut me.io).poll_read(cx, buf);
        me.raw[me.read].fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        let r = Pin::new(&mut me.io).poll_write(cx, b);
        if let Poll::Ready(Ok(n)) = r {
            me.raw[me.written].fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the original destination did not answer")
}

/// Serve one accepted connection: find its protocol, let the module serve it, record it.
pub async fn run(ctx: Arc<Ctx>, io: Box<dyn Io>, proto: &str, from: String, to: Option<Target>, sender: Option<Sender>) {
    let caught = Caught {
        proto: proto.into(),
        from,
        count: 1,
        first_unix_ms: now_ms(),
        to: to.as_ref().map(Target::label),
        pid: sender.map(|s| s.0),
        start_ns: sender.map(|s| s.1),
        ..Default::default()
    };
    let mut s = Session { ctx, client: Stream::new(io), to, protocol: "opaque", upstream: None, caught: Some(caught), raw: Default::default() };
    let module = match choose(&mut s).await {
        Ok(m) => m,
        Err(_) => None,
    };
    let result = match module {
        Some(m) => {
            s.protocol = m.name;
            (m.serve)(s).await
        }
        None => opaque(s).await,
    };
    if let Err(e) = result {
        tracing::debug!("sink session: {e}");
    }
}

/// The module for this connection: `--rpc ADDR:PORT=PROTO`, else the first bytes (with the
/// live listener's known protocol breaking ties). None: opaque.
async fn choose(s: &mut Session) -> io::Result<Option<&'static super::Module>> {
    if s.ctx.options.mode == Mode::Off {
        return Ok(None);
    }
    let label = s.to.as_ref().map(Target::label);
    if let Some(Target::Inet(a)) = &s.to {
        if let Some((_, p)) = s.ctx.options.protocols.iter().find(|(d, _)| d == a) {
            return Ok(super::module(p));
        }
    }
    let hint = label.as_deref().and_then(|l| s.ctx.hint(l));
    loop {
        if s.client.fill_within(IDLE).await?.unwrap_or(0) == 0 {
            return Ok(None);
        }
        if is_tls(&s.client.buf) {
            s.protocol = "tls";
            return Ok(None);
        }
        let mut undecided = false;
        let mut hit = None;
        for m in super::modules() {
            match (m.sniff)(&s.client.buf) {
                Sniff::Yes if hit.is_none() || hint.as_deref() == Some(m.name) => hit = Some(m),
                Sniff::NeedMore => undecided = true,
                _ => {}
            }
        }
        if hit.is_some() || !undecided || s.client.buf.len() > 4096 {
            return Ok(hit);
        }
    }
}

fn is_tls(b: &[u8]) -> bool {
    b.len() >= 3 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04
}

/// A protocol the sink does not speak: blackholed (read and recorded until the client stops
/// or is silent for IDLE), or in a commit relayed both ways.
async fn opaque(mut s: Session) -> io::Result<()> {
    if (s.ctx.options.mode == Mode::PassThrough || s.allowed()) && s.to.is_some() {
        return relay(s).await;
    }
    loop {
        match s.client.fill_within(IDLE).await {
            Ok(Some(n)) if n > 0 => {
                s.client.buf.clear();
            }
            _ => break,
        }
    }
    if s.client.read > 0 {
        let mut op = Op::new("bytes", "", Access::Opaque);
        op.disposition = Disposition::Blackholed;
        op.bytes = s.client.read;
        s.record(op);
    }
    Ok(())
}

/// Both ways, unchanged (a commit's traffic in a protocol the sink does not speak).
async fn relay(mut s: Session) -> io::Result<()> {
    let (_, got) = s.relay_rest().await?;
    let mut op = Op::new("bytes", "", Access::Opaque);
    op.disposition = Disposition::Forwarded;
    op.bytes = s.client.read;
    op.reply_bytes = got;
    s.record(op);
    Ok(())
}
