//! Where a connection the sink accepted was meant to go, and which process of the pilot made
//! it. The cgroup hooks (agent-ebpf/src/contain.rs) record the original destination of every
//! redirected socket in the ORIGINAL map, keyed by socket cookie. The sink sees only the
//! pilot's side of the connection (its local address), so it asks the kernel (sock_diag, an
//! exact 4-tuple lookup) for the cookie and inode of the pilot's socket, reads ORIGINAL, and
//! finds the process holding that inode among the pilot cgroup's processes.
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Mutex,
};

use agent_common::Dest;
use aya::maps::{HashMap, MapData};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};

/// The pilot's process behind a connection: (pid, start time).
pub type Sender = (u32, u64);

#[derive(Default)]
pub struct Origins {
    map: Mutex<Option<HashMap<MapData, u64, Dest>>>,
    cgroup: Mutex<Option<PathBuf>>,
    /// The pilot's network namespace (before 6.7): its sockets are found there.
    netns: Mutex<Option<std::sync::Arc<super::netns::PilotNetns>>>,
}

/// What the kernel says about the pilot's socket.
struct PilotSocket {
    cookie: u64,
    inode: u32,
}

impl Origins {
    /// The ORIGINAL map and the pilot's cgroup, once the probes are loaded and attached.
    pub fn attach(&self, map: HashMap<MapData, u64, Dest>, cgroup: PathBuf) {
        *self.map.lock().unwrap_or_else(|e| e.into_inner()) = Some(map);
        *self.cgroup.lock().unwrap_or_else(|e| e.into_inner()) = Some(cgroup);
    }

    pub fn set_netns(&self, ns: Option<std::sync::Arc<super::netns::PilotNetns>>) {
        *self.netns.lock().unwrap_or_else(|e| e.into_inner()) = ns;
    }

    /// Original destination and sender of a TCP connection from `peer` (the pilot's side) to
    /// `local` (the sink), or of UDP datagrams from `peer`.
    pub fn lookup(&self, udp: bool, peer: SocketAddr, local: SocketAddr) -> (Option<SocketAddr>, Option<Sender>) {
        let ns = self.netns.lock().ok().and_then(|n| n.clone());
        let sock = match ns {
            // sock_diag answers for the namespace its netlink socket was made in.
            Some(ns) => ns.within(|| Ok(diag(udp, peer, local))).ok().flatten(),
            None => diag(udp, peer, local),
        };
        let Some(sock) = sock else { return (None, None) };
        let dest = self.map.lock().ok().and_then(|m| m.as_ref().and_then(|m| m.get(&sock.cookie, 0).ok())).map(|d| from_dest(&d));
        (dest, self.holder(sock.inode as u64))
    }

    /// The pilot process holding socket `inode` (pid and start time), from the cgroup's procs.
    pub fn holder(&self, inode: u64) -> Option<Sender> {
        let cgroup = self.cgroup.lock().ok()?.clone()?;
        let want = format!("socket:[{inode}]");
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten();
            if fds.filter_map(|e| std::fs::read_link(e.path()).ok()).any(|t| t.as_os_str() == want.as_str()) {
                return Some((pid, crate::procfs::start_ns(pid).unwrap_or(0)));
            }
        }
        None
    }
}

/// A kernel `Dest` (network order, as the hooks store it) as a socket address.
pub fn from_dest(d: &Dest) -> SocketAddr {
    let port = u16::from_be(d.port as u16);
    if d.family == 10 {
        let mut o = [0u8; 16];
        for (i, w) in d.ip.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        let v6 = std::net::Ipv6Addr::from(o);
        // A dual-stack socket's IPv4 destination: what the program meant is the IPv4 address.
        match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
            None => SocketAddr::new(IpAddr::V6(v6), port),
        }
    } else {
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::from(d.ip[0].to_ne_bytes())), port)
    }
}

/// One exact sock_diag lookup of the pilot's socket. TCP finds the socket whose local end is
/// `source`; UDP the one that would receive from `source` at `destination` (the kernel's two
/// lookups are mirrored), so the pilot's side goes where each expects it.
fn diag(udp: bool, pilot: SocketAddr, sink: SocketAddr) -> Option<PilotSocket> {
    // Both ends of a dual-stack connection look IPv6 to the sink: ask in the family of the
    // pilot's socket as the kernel keeps it.
    let (src, dst) = if udp { (sink, pilot) } else { (pilot, sink) };
    let family = if src.is_ipv6() { AF_INET6 } else { AF_INET };
    let mut id = if family == AF_INET6 { SocketId::new_v6() } else { SocketId::new_v4() };
    id.source_port = src.port();
    id.destination_port = dst.port();
    id.source_address = src.ip();
    id.destination_address = dst.ip();
    id.cookie = [0xff; 8]; // INET_DIAG_NOCOOKIE: match by address alone
    let req = InetRequest {
        family,
        protocol: if udp { IPPROTO_UDP } else { IPPROTO_TCP },
        extensions: ExtensionFlags::empty(),
        states: StateFlags::all(),
        socket_id: id,
    };
    let found = crate::snapshot::sockets::inet_diag(req, false).ok()?.pop()?;
    let id = &found.socket_id;
    // The pilot's own socket, not the sink's end.
    if id.source_port != pilot.port() {
        return None;
    }
    Some(PilotSocket { cookie: u64::from_ne_bytes(id.cookie), inode: found.inode })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_destinations_read_back_as_addresses() {
        let d = crate::probes::contain::dest(&"10.1.2.3:6379".parse().unwrap());
        assert_eq!(from_dest(&d), "10.1.2.3:6379".parse::<SocketAddr>().unwrap());
        let d = crate::probes::contain::dest(&"[::ffff:127.0.0.1]:53".parse().unwrap());
        assert_eq!(from_dest(&d), "127.0.0.1:53".parse::<SocketAddr>().unwrap(), "mapped: the IPv4 address meant");
    }

    #[test]
    fn finds_the_client_end_of_a_loopback_connection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, peer) = l.accept().unwrap();
        let Some(sock) = diag(false, peer, l.local_addr().unwrap()) else {
            eprintln!("SKIP: no sock_diag here (not root?)");
            return;
        };
        use std::os::fd::AsRawFd;
        let inode = std::fs::read_link(format!("/proc/self/fd/{}", c.as_raw_fd())).unwrap();
        assert_eq!(inode.to_string_lossy(), format!("socket:[{}]", sock.inode));
    }
}
