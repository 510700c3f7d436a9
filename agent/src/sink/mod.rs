//! The sink: where a pilot's outbound TCP and UDP traffic lands instead of its real destination
//! (the cgroup hooks of agent-ebpf/src/contain.rs rewrite every destination to here), and what
//! answers the pilot's Unix-socket connects to live servers (the sandbox bind-mounts one of
//! the sink's sockets over each live listener's path). An async proxy (tokio) that knows, for
//! each connection and datagram, where the pilot meant it to go (`origin.rs`) and speaks the
//! protocols of the servers it stands in for, one module per protocol: reads go through to the
//! original destination on the agent's own connection (outside the pilot's cgroup), mutations
//! are captured and answered as the server would, and everything is recorded as rpc effects.
//! Bytes of a protocol no module speaks are blackholed as before: read, recorded, unanswered.
//! See README.md in this folder for the module interface.
pub mod dns;
pub mod etcd;
pub mod h2c;
pub mod http;
pub mod live;
pub mod netns;
pub mod origin;
pub mod postgres;
pub mod redis;
pub mod session;
pub mod shadow;
pub mod sql;
pub mod zookeeper;

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener, UdpSocket},
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow};


use agent_common::SinkConfig;

use crate::probes::contain::user_port;
use crate::snapshot::sockets::Listener;
pub use session::{Session, Target};
// The records it writes are the run directory's (sink.json).
pub use crate::rundir::{Access, Caught, Category, Disposition, Rpc};

/// Bytes of payload kept per connection or datagram source, as evidence.
const HEAD_BYTES: usize = 256;
/// A connection that sends nothing for this long is closed, as a server that answered nothing.
const IDLE: Duration = Duration::from_secs(2);
/// Distinct (operation, resource, ...) entries kept per connection; more aggregate as `*`.
const RPC_ENTRIES_MAX: usize = 256;

/// How the sink treats what it understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `pilot run`: reads go through, mutations are captured.
    Dry,
    /// `pilot commit`: everything goes through, recorded.
    PassThrough,
    /// `--rpc off`: record and blackhole everything, as before the protocol sessions.
    Off,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// `--rpc ADDR:PORT=PROTO`: the protocol of a destination where sniffing cannot tell.
    pub protocols: Vec<(SocketAddr, String)>,
    /// HTTP GET paths (globs) that change state on the servers they reach.
    pub unsafe_get: Vec<String>,
    /// Live Unix listener paths the sink stands in for (bind-mounted over them in the pilot).
    pub unix_paths: Vec<String>,
    /// Where the sink's own Unix sockets live (inside the run directory).
    pub dir: PathBuf,
    /// Before Linux 6.7: the pilot's own network namespace, where the sink listens too
    /// (netns.rs).
    pub netns: Option<Arc<netns::PilotNetns>>,
    /// `--allow`ed destinations when the pilot has a network namespace of its own (they are not
    /// reachable from it): everything to them goes through the sink, recorded.
    pub allow: Vec<SocketAddr>,
}

impl Default for Options {
    fn default() -> Options {
        Options { mode: Mode::Dry, protocols: Vec::new(), unsafe_get: Vec::new(), unix_paths: Vec::new(), dir: std::env::temp_dir(), netns: None, allow: Vec::new() }
    }
}

/// A protocol module: how to recognise it and how to serve one connection of it. The etcd
/// (gRPC over h2c) and ZooKeeper (jute) modules implement the same (see README.md).
pub struct Module {
    pub name: &'static str,
    /// Does a connection whose client sent `first` (at least one byte) speak this protocol?
    pub sniff: fn(first: &[u8]) -> Sniff,
    /// Serve the connection to its end. The client's first bytes are still in
    /// `session.client.buf`.
    pub serve: fn(Session) -> session::BoxFuture,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    Yes,
    No,
    /// Too few bytes to tell.
    NeedMore,
}

/// Every protocol the sink speaks, in sniffing order (binary framings first).
pub fn modules() -> &'static [Module] {
    static MODULES: [Module; 6] = [etcd::MODULE, postgres::MODULE, zookeeper::MODULE, http::MODULE, redis::MODULE, dns::MODULE];
    &MODULES
}

pub fn module(name: &str) -> Option<&'static Module> {
    modules().iter().find(|m| m.name == name)
}

/// What every connection of one run shares.
pub struct Ctx {
    pub options: Options,
    pub origins: origin::Origins,
    pub shadow: shadow::Shadow,
    /// What etcd pilots changed beside keys (leases, members), per cluster.
    pub etcd: etcd::Clusters,
    caught: Mutex<Vec<Caught>>,
    /// The protocol each live listener is known to speak (from the host snapshot).
    hints: RwLock<HashMap<String, String>>,
    /// The sink's Unix sockets: own path -> the live path it stands in for.
    unix_targets: HashMap<PathBuf, String>,
    /// Connection sessions still running (the stop waits for them, not a fixed time).
    sessions: std::sync::atomic::AtomicUsize,
}

/// Counts a connection's session in `Ctx::sessions` while it runs.
struct Running(Arc<Ctx>);

impl Running {
    fn new(ctx: &Arc<Ctx>) -> Running {
        ctx.sessions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(ctx.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Ctx {
    pub fn hint(&self, to: &str) -> Option<String> {
        self.hints.read().ok()?.get(to).cloned()
    }

    fn push(&self, c: Caught) {
        self.caught.lock().unwrap_or_else(|e| e.into_inner()).push(c);
    }
}

pub struct Sink {
    config: SinkConfig,
    ctx: Arc<Ctx>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    unix: Vec<(String, PathBuf)>,
}

impl Sink {
    /// The built-in protocol sessions, every read going through, every mutation captured.
    pub fn start() -> Result<Sink> {
        Sink::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Result<Sink> {
        let mut config = SinkConfig { tcp4_port: 0, udp4_port: 0, tcp6_port: 0, udp6_port: 0 };
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for (addr, v6) in [("127.0.0.1:0", false), ("[::1]:0", true)] {
            let Ok(t) = TcpListener::bind(addr) else {
                if v6 {
                    tracing::warn!("no IPv6 loopback: IPv6 connects of the pilot are refused");
                    continue;
                }
                return Err(anyhow!("binding the sink on {addr}"));
            };
            let u = UdpSocket::bind(addr).with_context(|| format!("binding the UDP sink on {addr}"))?;
            let (tp, up) = (t.local_addr()?.port(), u.local_addr()?.port());
            if v6 {
                (config.tcp6_port, config.udp6_port) = (user_port(tp), user_port(up));
            } else {
                (config.tcp4_port, config.udp4_port) = (user_port(tp), user_port(up));
            }
            t.set_nonblocking(true)?;
            u.set_nonblocking(true)?;
            tcp.push(t);
            udp.push(u);
        }
        if let Some(ns) = &options.netns {
            let addrs = |v: &[SocketAddr]| v.to_vec();
            let t: Vec<SocketAddr> = tcp.iter().filter_map(|l: &TcpListener| l.local_addr().ok()).collect();
            let u: Vec<SocketAddr> = udp.iter().filter_map(|s: &UdpSocket| s.local_addr().ok()).collect();
            let (t, u) = ns.listen(&addrs(&t), &addrs(&u)).context("the sink's listeners in the pilot's network namespace")?;
            for l in &t {
                l.set_nonblocking(true)?;
            }
            for s in &u {
                s.set_nonblocking(true)?;
            }
            tcp.extend(t);
            udp.extend(u);
        }
        let (unix, listeners) = unix_listeners(&options)?;
        let origins = origin::Origins::default();
        origins.set_netns(options.netns.clone());
        let ctx = Arc::new(Ctx {
            unix_targets: unix.iter().map(|(live, own)| (own.clone(), live.clone())).collect(),
            options,
            origins,
            shadow: Default::default(),
            etcd: Default::default(),
            caught: Mutex::new(Vec::new()),
            hints: RwLock::new(HashMap::new()),
            sessions: Default::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let c = ctx.clone();
        let thread = std::thread::Builder::new().name("pilot-sink".into()).spawn(move || serve(c, tcp, udp, listeners, stopped))?;
        Ok(Sink { config, ctx, stop: Some(stop), thread: Some(thread), unix })
    }

    pub fn config(&self) -> SinkConfig {
        self.config
    }

    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// (live path, the sink's socket standing in for it): what the sandbox bind-mounts.
    pub fn unix_sockets(&self) -> &[(String, PathBuf)] {
        &self.unix
    }

    /// The protocol each live destination is known to speak (`127.0.0.1:6379` -> redis).
    pub fn set_hints(&self, hints: HashMap<String, String>) {
        if let Ok(mut h) = self.ctx.hints.write() {
            *h = hints;
        }
    }

    /// Stop listening and return what was caught, in the order connections began.
    pub fn stop(mut self) -> Vec<Caught> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for (_, own) in &self.unix {
            let _ = std::fs::remove_file(own);
        }
        let mut caught = std::mem::take(&mut *self.ctx.caught.lock().unwrap_or_else(|e| e.into_inner()));
        caught.sort_by_key(|c| c.first_unix_ms);
        caught
    }
}

/// One Unix listener of the sink per live path, in `options.dir`.
fn unix_listeners(options: &Options) -> Result<(Vec<(String, PathBuf)>, Vec<UnixListener>)> {
    let mut pairs = Vec::new();
    let mut listeners = Vec::new();
    if options.unix_paths.is_empty() {
        return Ok((pairs, listeners));
    }
    std::fs::create_dir_all(&options.dir).with_context(|| format!("creating {}", options.dir.display()))?;
    for (i, live) in options.unix_paths.iter().enumerate() {
        let own = options.dir.join(format!("unix-{i}.sock"));
        let _ = std::fs::remove_file(&own);
        let l = UnixListener::bind(&own).with_context(|| format!("binding the sink's socket {}", own.display()))?;
        // Anyone in the pilot may connect, as to most live sockets (the live one's own mode
        // is what the pilot sees through the bind mount... of this inode: keep it open).
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777));
        l.set_nonblocking(true)?;
        pairs.push((live.clone(), own));
        listeners.push(l);
    }
    Ok((pairs, listeners))
}

fn serve(ctx: Arc<Ctx>, tcp: Vec<TcpListener>, udp: Vec<UdpSocket>, unix: Vec<UnixListener>, stopped: tokio::sync::oneshot::Receiver<()>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("the sink cannot start its runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        for l in tcp {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => drop(tokio::spawn(accept_tcp(ctx.clone(), l))),
                Err(e) => tracing::error!("sink: {e}"),
            }
        }
        for u in udp {
            match tokio::net::UdpSocket::from_std(u) {
                Ok(u) => drop(tokio::spawn(dns::serve_udp(ctx.clone(), Arc::new(u)))),
                Err(e) => tracing::error!("sink: {e}"),
            }
        }
        for l in unix {
            match tokio::net::UnixListener::from_std(l) {
                Ok(l) => drop(tokio::spawn(accept_unix(ctx.clone(), l))),
                Err(e) => tracing::error!("sink: {e}"),
            }
        }
        let _ = stopped.await;
        // The pilot is gone: sessions see their clients' EOF at once. Give them a moment to
        // finish recording (100 ms at most, not at all when none runs: a pilot that sent
        // nothing stops at once); what is still open is recorded when its task is dropped.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        while ctx.sessions.load(std::sync::atomic::Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    drop(rt);
}

async fn accept_tcp(ctx: Arc<Ctx>, l: tokio::net::TcpListener) {
    let local = l.local_addr().ok();
    loop {
        let Ok((stream, peer)) = l.accept().await else { continue };
        let ctx = ctx.clone();
        let running = Running::new(&ctx);
        tokio::spawn(async move {
            let _running = running;
            let local = local.unwrap_or(peer);
            let (to, sender) = ctx.origins.lookup(false, peer, local);
            let _ = stream.set_nodelay(true);
            let target = to.map(Target::Inet);
            session::run(ctx, Box::new(stream), "tcp", peer.to_string(), target, sender).await;
        });
    }
}

async fn accept_unix(ctx: Arc<Ctx>, l: tokio::net::UnixListener) {
    let own = l.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf));
    let live = own.as_ref().and_then(|o| ctx.unix_targets.get(o).cloned());
    loop {
        let Ok((stream, _)) = l.accept().await else { continue };
        let ctx = ctx.clone();
        let live = live.clone();
        let running = Running::new(&ctx);
        tokio::spawn(async move {
            let _running = running;
            // SO_PEERCRED: the connecting process, as the host sees it.
            let sender = stream.peer_cred().ok().and_then(|c| c.pid()).map(|pid| (pid as u32, crate::procfs::start_ns(pid as u32).unwrap_or(0)));
            let target = live.map(|p| Target::Unix(PathBuf::from(p)));
            session::run(ctx, Box::new(stream), "unix", "unix".into(), target, sender).await;
        });
    }
}

pub fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

fn keep_head(head: &mut Vec<u8>, data: &[u8]) {
    let room = HEAD_BYTES.saturating_sub(head.len());
    head.extend_from_slice(&data[..data.len().min(room)]);
}

pub fn printable(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b' '..=b'~' => s.push(c as char),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

/// Add one request to a connection's aggregated rpc effects.
pub fn add_rpc(list: &mut Vec<Rpc>, op: Rpc) {
    let same = |r: &Rpc, resource: &str| {
        r.operation == op.operation && r.resource == resource && r.access == op.access && r.disposition == op.disposition && r.protocol == op.protocol
    };
    if let Some(r) = list.iter_mut().find(|r| same(r, &op.resource)) {
        merge(r, &op);
        return;
    }
    if list.len() >= RPC_ENTRIES_MAX {
        if let Some(r) = list.iter_mut().find(|r| same(r, "*")) {
            merge(r, &op);
            return;
        }
        list.push(Rpc { resource: "*".into(), ..op });
        return;
    }
    list.push(op);
}

fn merge(r: &mut Rpc, op: &Rpc) {
    r.requests += op.requests;
    r.bytes += op.bytes;
    r.reply_bytes += op.reply_bytes;
    r.may_differ |= op.may_differ;
    if r.note.is_none() {
        r.note = op.note.clone();
    }
    r.last_unix_ms = r.last_unix_ms.max(op.first_unix_ms);
}

/// Fill each entry's `component` from the host snapshot (who listens at its destination).
pub fn attribute(caught: &mut [Caught], snap: &crate::snapshot::Snapshot) {
    for c in caught.iter_mut() {
        let Some(to) = c.to.as_deref() else { continue };
        let owner = match to.strip_prefix("unix:") {
            Some(path) => snap.owner_of_endpoint("unix", path, None),
            None => to.parse::<SocketAddr>().ok().and_then(|a| {
                let fam = if a.is_ipv6() { "inet6" } else { "inet" };
                snap.owner_of_endpoint(fam, &a.ip().to_string(), Some(a.port()))
            }),
        };
        c.component = owner.map(|i| snap.components[i].name.clone());
    }
}

/// The protocol each live listener speaks, guessed from the program behind it: used when the
/// first bytes alone cannot tell (`--rpc ADDR:PORT=PROTO` overrides it).
pub fn hints(snap: &crate::snapshot::Snapshot) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for c in &snap.components {
        let name = c.name.to_lowercase();
        let exe = c.exe.as_deref().unwrap_or("").to_lowercase();
        let proto = if name.starts_with("redis") || exe.contains("redis") {
            "redis"
        } else if name.starts_with("postgres") || exe.contains("postgres") {
            "postgresql"
        } else if ["dnsmasq", "named", "unbound", "systemd-resolved"].iter().any(|d| name.starts_with(d)) {
            "dns"
        } else if name.starts_with("etcd") || exe.ends_with("/etcd") {
            "etcd"
        } else if name.contains("zookeeper") || name.contains("quorumpeermain") {
            "zookeeper"
        } else {
            continue;
        };
        for l in &c.listens {
            let key = match (l.proto.as_str(), l.port) {
                ("unix", _) => format!("unix:{}", l.addr),
                (_, Some(p)) => SocketAddr::new(l.addr.parse().unwrap_or([0, 0, 0, 0].into()), p).to_string(),
                _ => continue,
            };
            out.insert(key, proto.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(operation: &str, resource: &str) -> Rpc {
        Rpc {
            protocol: "redis".into(),
            operation: operation.into(),
            resource: resource.into(),
            access: Access::Read,
            category: None,
            disposition: Disposition::Forwarded,
            requests: 1,
            bytes: 10,
            reply_bytes: 5,
            may_differ: false,
            note: None,
            first_unix_ms: 0,
            last_unix_ms: 0,
        }
    }

    #[test]
    fn requests_aggregate_by_operation_and_resource_and_stay_bounded() {
        let mut list = Vec::new();
        add_rpc(&mut list, op("GET", "a"));
        add_rpc(&mut list, op("GET", "a"));
        add_rpc(&mut list, op("GET", "b"));
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].requests, list[0].bytes), (2, 20));
        for i in 0..1000 {
            add_rpc(&mut list, op("GET", &format!("k{i}")));
        }
        assert_eq!(list.len(), RPC_ENTRIES_MAX + 1);
        assert_eq!(list.iter().map(|r| r.requests).sum::<u64>(), 1003, "nothing dropped");
    }

    #[test]
    fn old_sink_json_still_reads() {
        let old = r#"[{"proto":"tcp","from":"127.0.0.1:5","bytes":3,"count":1,"first_unix_ms":1,"head":"abc"}]"#;
        let c: Vec<Caught> = serde_json::from_str(old).unwrap();
        assert_eq!(c[0].bytes, 3);
        assert!(c[0].rpc.is_empty());
    }
}

/// The sink of a `pilot run`: its `--rpc` flags, the policies' `[rpc]` tables, and every
/// live Unix listener of the host (each gets a socket of the sink at its path).
pub fn run_options(rpc: &[String], policies: &[crate::policy::Loaded], run_dir: &Path, listeners: &HashMap<u64, Listener>) -> Result<Options> {
    let mut o = Options { dir: run_dir.join("sink"), ..Default::default() };
    for flag in rpc {
        if flag == "off" {
            o.mode = Mode::Off;
            continue;
        }
        let bad = || {
            let known: Vec<&str> = modules().iter().map(|m| m.name).collect();
            crate::error::UsageError::new(format!("--rpc {flag}: give `off` or ADDR:PORT=PROTO, e.g. 10.0.0.5:7000=redis (PROTO: {})", known.join(", ")))
        };
        let (addr, proto) = flag.split_once('=').ok_or_else(bad)?;
        let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
        module(proto).ok_or_else(bad)?;
        o.protocols.push((addr, proto.to_string()));
    }
    o.unsafe_get = policies.iter().filter_map(|p| p.policy.rpc.as_ref()).flat_map(|r| r.unsafe_get.clone()).collect();
    if o.mode != Mode::Off {
        o.unix_paths = live_unix_paths(run_dir, listeners);
    }
    Ok(o)
}

/// Paths of the host's listening Unix sockets (abstract ones have none; those inside other
/// mount namespaces are not at their path here, and stay hidden by the overlay). Other
/// pilots' sinks are not production: standing in for their sockets too would grow every
/// concurrent pilot's sink by the others' (and the sandbox's spec past ARG_MAX).
fn live_unix_paths(run_dir: &Path, listeners: &HashMap<u64, Listener>) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let agents = pilot_socket_inodes();
    let mut paths: Vec<String> = listeners
        .iter()
        .filter(|(inode, _)| !agents.contains(inode))
        .map(|(_, l)| l)
        .filter(|l| l.proto == "unix" && l.addr.starts_with('/'))
        .map(|l| l.addr.clone())
        .filter(|p| !Path::new(p).starts_with(run_dir))
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// Socket inodes held by pilot agents (this one and any other running on the host).
fn pilot_socket_inodes() -> std::collections::HashSet<u64> {
    let mut out = std::collections::HashSet::new();
    for pid in crate::procfs::pids() {
        if !crate::procfs::runs_pilot(pid) {
            continue;
        }
        for (_, target) in crate::procfs::fds(pid) {
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')).and_then(|s| s.parse().ok()) {
                out.insert(inode);
            }
        }
    }
    out
}

/// The sink's requests as the account on stderr lists them (at most 20 lines).
pub fn render(caught: &[Caught]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut lines = 0;
    let total: usize = caught.iter().map(|c| c.rpc.len()).sum();
    for c in caught {
        let to = match (&c.component, &c.to) {
            (Some(comp), Some(to)) => format!("{comp} ({to})"),
            (None, Some(to)) => to.clone(),
            _ => "an unknown destination".into(),
        };
        for r in &c.rpc {
            if lines == 20 {
                let _ = writeln!(out, "  ... {} more in sink.json", total - lines);
                return out;
            }
            let access = serde_json::to_value(r.access).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let disp = serde_json::to_value(r.disposition).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let differ = if r.may_differ { " (may differ from live: the pilot changed it)" } else { "" };
            let note = r.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            let _ = writeln!(out, "  rpc {} {} {} -> {to}: {access}, {disp}, {} request(s){differ}{note}", r.protocol, r.operation, r.resource, r.requests);
            lines += 1;
        }
    }
    out
}
