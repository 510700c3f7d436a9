//! The sink: where a pilot's outbound TCP and UDP traffic lands instead of its real
//! destination (the cgroup hooks rewrite the destination to here). It accepts, reads and
//! records what the pilot tried to send, so the pilot's connect succeeds and it behaves as it
//! would live, while nothing reaches production.
use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};

use agent_common::SinkConfig;

use crate::{probes::contain::user_port, rundir::Caught};

/// Bytes of payload kept per connection or datagram source, as evidence.
const HEAD_BYTES: usize = 256;
/// A connection that sends nothing for this long is closed, as a server that answered nothing.
const IDLE: Duration = Duration::from_secs(2);

pub struct Sink {
    config: SinkConfig,
    stop: Arc<AtomicBool>,
    caught: Arc<Mutex<Vec<Caught>>>,
    threads: Vec<JoinHandle<()>>,
    /// The UDP sockets' addresses: `stop` wakes their threads with an empty datagram.
    udp: Vec<SocketAddr>,
}

impl Sink {
    pub fn start() -> Result<Sink> {
        let stop = Arc::new(AtomicBool::new(false));
        let caught = Arc::new(Mutex::new(Vec::new()));
        let mut config = SinkConfig { tcp4_port: 0, udp4_port: 0, tcp6_port: 0, udp6_port: 0 };
        let mut threads = Vec::new();
        let mut udp_addrs = Vec::new();
        for (addr, v6) in [("127.0.0.1:0", false), ("[::1]:0", true)] {
            let Ok(tcp) = TcpListener::bind(addr) else {
                if v6 {
                    tracing::warn!("no IPv6 loopback: IPv6 connects of the pilot are refused");
                    continue;
                }
                return Err(anyhow::anyhow!("binding the sink on {addr}"));
            };
            let udp = UdpSocket::bind(addr).with_context(|| format!("binding the UDP sink on {addr}"))?;
            let (tcp_port, udp_port) = (tcp.local_addr()?.port(), udp.local_addr()?.port());
            udp_addrs.push(udp.local_addr()?);
            if v6 {
                config.tcp6_port = user_port(tcp_port);
                config.udp6_port = user_port(udp_port);
            } else {
                config.tcp4_port = user_port(tcp_port);
                config.udp4_port = user_port(udp_port);
            }
            threads.push(spawn_tcp(tcp, stop.clone(), caught.clone())?);
            threads.push(spawn_udp(udp, stop.clone(), caught.clone())?);
        }
        Ok(Sink { config, stop, caught, threads, udp: udp_addrs })
    }

    pub fn config(&self) -> SinkConfig {
        self.config
    }

    /// Stop listening and return what was caught.
    pub fn stop(self) -> crate::rundir::SinkLog {
        self.stop.store(true, Ordering::SeqCst);
        for addr in &self.udp {
            let local = if addr.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
            if let Ok(s) = UdpSocket::bind(local) {
                let _ = s.send_to(&[], addr);
            }
        }
        for t in self.threads {
            let _ = t.join();
        }
        self.caught.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

fn spawn_tcp(listener: TcpListener, stop: Arc<AtomicBool>, caught: Arc<Mutex<Vec<Caught>>>) -> Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    Ok(std::thread::Builder::new().name("pilot-sink-tcp".into()).spawn(move || {
        let mut conns: Vec<JoinHandle<()>> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, peer)) => {
                    let (stop, caught) = (stop.clone(), caught.clone());
                    conns.push(std::thread::spawn(move || drain(stream, peer, &stop, &caught)));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        for c in conns {
            let _ = c.join();
        }
    })?)
}

fn drain(mut stream: TcpStream, peer: SocketAddr, stop: &AtomicBool, caught: &Mutex<Vec<Caught>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let first = now_ms();
    let mut head = Vec::new();
    let mut bytes = 0u64;
    let mut buf = [0u8; 16384];
    let mut last = Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes += n as u64;
                keep_head(&mut head, &buf[..n]);
                last = Instant::now();
            }
            Err(_) => {
                if stop.load(Ordering::SeqCst) || last.elapsed() > IDLE {
                    break;
                }
            }
        }
    }
    if let Ok(mut c) = caught.lock() {
        c.push(Caught { proto: "tcp".into(), from: peer.to_string(), bytes, count: 1, first_unix_ms: first, head: printable(&head) });
    }
}

fn spawn_udp(socket: UdpSocket, stop: Arc<AtomicBool>, caught: Arc<Mutex<Vec<Caught>>>) -> Result<JoinHandle<()>> {
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(std::thread::Builder::new().name("pilot-sink-udp".into()).spawn(move || {
        let mut buf = [0u8; 65536];
        let mut by_source: Vec<(SocketAddr, Caught, Vec<u8>)> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
            if stop.load(Ordering::SeqCst) {
                break; // the wake-up datagram of `Sink::stop`
            }
            let i = match by_source.iter().position(|(s, ..)| *s == from) {
                Some(i) => i,
                None => {
                    let c = Caught { proto: "udp".into(), from: from.to_string(), bytes: 0, count: 0, first_unix_ms: now_ms(), head: String::new() };
                    by_source.push((from, c, Vec::new()));
                    by_source.len() - 1
                }
            };
            let (_, c, head) = &mut by_source[i];
            c.bytes += n as u64;
            c.count += 1;
            keep_head(head, &buf[..n]);
        }
        if let Ok(mut out) = caught.lock() {
            out.extend(by_source.into_iter().map(|(_, mut c, head)| {
                c.head = printable(&head);
                c
            }));
        }
    })?)
}

fn keep_head(head: &mut Vec<u8>, data: &[u8]) {
    let room = HEAD_BYTES.saturating_sub(head.len());
    head.extend_from_slice(&data[..data.len().min(room)]);
}

fn printable(b: &[u8]) -> String {
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
