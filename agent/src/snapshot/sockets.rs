//! Listening sockets of this network namespace, by socket inode, from /proc/net.
use std::{collections::HashMap, fs, net::IpAddr};

use serde::{Deserialize, Serialize};

/// A listening TCP socket, a bound UDP socket, or a listening Unix socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Listener {
    /// tcp, udp or unix.
    pub proto: String,
    /// IP address (`0.0.0.0`/`::` for any) or Unix socket path (`@name`: abstract).
    pub addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Listener {
    /// Would a connection to (`family`, `addr`, `port`) reach this listener?
    /// `127.0.0.1:5432`, `[::1]:6379`, `/run/x.sock`.
    pub fn display(&self) -> String {
        match self.port {
            Some(p) if self.addr.contains(':') => format!("[{}]:{p}", self.addr),
            Some(p) => format!("{}:{p}", self.addr),
            None => self.addr.clone(),
        }
    }

    pub fn serves(&self, family: &str, addr: &str, port: Option<u16>, local: &[IpAddr]) -> bool {
        if family == "unix" {
            return self.proto == "unix" && self.addr == addr;
        }
        if self.proto == "unix" || self.port != port {
            return false;
        }
        let Ok(target) = addr.parse::<IpAddr>() else { return false };
        let target = canonical(target);
        let Ok(bound) = self.addr.parse::<IpAddr>() else { return false };
        let bound = canonical(bound);
        if bound.is_unspecified() {
            // A wildcard listener serves every local address of the host.
            return target.is_loopback() || target.is_unspecified() || local.contains(&target);
        }
        bound == target || (bound.is_loopback() && target.is_unspecified())
    }
}

/// ::ffff:127.0.0.1 is 127.0.0.1.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Listening sockets by inode (matched against `socket:[inode]` fds of processes).
pub fn listeners() -> HashMap<u64, Listener> {
    use procfs::net::{TcpState, UdpState};
    let mut out = HashMap::new();
    let mut add = |inode: u64, proto: &str, addr: std::net::SocketAddr| {
        out.insert(inode, Listener { proto: proto.into(), addr: addr.ip().to_string(), port: Some(addr.port()) });
    };
    for e in table("tcp", procfs::net::tcp()).into_iter().chain(table("tcp6", procfs::net::tcp6())).filter(|e| e.state == TcpState::Listen) {
        add(e.inode, "tcp", e.local_address);
    }
    // A bound, unconnected UDP socket shows as TCP_CLOSE (7).
    for e in table("udp", procfs::net::udp()).into_iter().chain(table("udp6", procfs::net::udp6())).filter(|e| e.state == UdpState::Close) {
        add(e.inode, "udp", e.local_address);
    }
    // Hand-read: procfs's UnixNetEntry has no Flags column, and only its __SO_ACCEPTCON bit
    // (00010000) tells a listening stream socket from a bound one.
    let text = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode [Path]
        if f.len() < 8 || u32::from_str_radix(f[3], 16).unwrap_or(0) & 0x10000 == 0 {
            continue;
        }
        if let Ok(inode) = f[6].parse::<u64>() {
            out.insert(inode, Listener { proto: "unix".into(), addr: f[7].to_string(), port: None });
        }
    }
    out
}

/// A /proc/net table; one that does not parse is reported, not silently empty.
fn table<T>(name: &str, entries: procfs::ProcResult<Vec<T>>) -> Vec<T> {
    entries.unwrap_or_else(|e| {
        tracing::warn!("/proc/net/{name}: {e}: its listeners are missing from the snapshot");
        Vec::new()
    })
}

/// Addresses of this host's interfaces (what a wildcard listener also answers on).
pub fn local_addrs() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return out;
    }
    let mut cur = ifap;
    while !cur.is_null() {
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if family == libc::AF_INET {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
            } else if family == libc::AF_INET6 {
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        cur = ifa.ifa_next;
    }
    unsafe { libc::freeifaddrs(ifap) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_listening() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp6 = std::net::TcpListener::bind("[::1]:0").ok();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let all: Vec<Listener> = listeners().into_values().collect();
        let has = |proto: &str, addr: std::net::SocketAddr| {
            all.contains(&Listener { proto: proto.into(), addr: addr.ip().to_string(), port: Some(addr.port()) })
        };
        assert!(has("tcp", tcp.local_addr().unwrap()), "{all:?}");
        assert!(has("udp", udp.local_addr().unwrap()), "{all:?}");
        if let Some(l) = tcp6 {
            assert!(has("tcp", l.local_addr().unwrap()), "IPv6 addresses in kernel order: {all:?}");
        }
    }

    #[test]
    fn wildcard_listeners_serve_loopback_and_local_addresses() {
        let any = Listener { proto: "tcp".into(), addr: "0.0.0.0".into(), port: Some(5432) };
        let local = ["10.0.0.5".parse().unwrap()];
        assert!(any.serves("inet", "127.0.0.1", Some(5432), &local));
        assert!(any.serves("inet", "10.0.0.5", Some(5432), &local));
        assert!(!any.serves("inet", "10.9.9.9", Some(5432), &local), "a remote host is not us");
        assert!(!any.serves("inet", "127.0.0.1", Some(5433), &local));
        let lo6 = Listener { proto: "tcp".into(), addr: "::".into(), port: Some(80) };
        assert!(lo6.serves("inet6", "::ffff:127.0.0.1", Some(80), &local));
        let unix = Listener { proto: "unix".into(), addr: "/run/db.sock".into(), port: None };
        assert!(unix.serves("unix", "/run/db.sock", None, &local));
    }
}
