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
    let mut out = HashMap::new();
    for (file, proto, listen_state) in
        [("tcp", "tcp", "0A"), ("tcp6", "tcp", "0A"), ("udp", "udp", "07"), ("udp6", "udp", "07")]
    {
        let text = fs::read_to_string(format!("/proc/net/{file}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != listen_state {
                continue;
            }
            let (Some((addr, port)), Ok(inode)) = (parse_hex_addr(f[1]), f[9].parse::<u64>()) else { continue };
            out.insert(inode, Listener { proto: proto.into(), addr: addr.to_string(), port: Some(port) });
        }
    }
    let text = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode [Path]; Flags 00010000 = listening.
        if f.len() < 8 || u32::from_str_radix(f[3], 16).unwrap_or(0) & 0x10000 == 0 {
            continue;
        }
        if let Ok(inode) = f[6].parse::<u64>() {
            out.insert(inode, Listener { proto: "unix".into(), addr: f[7].to_string(), port: None });
        }
    }
    out
}

/// `0100007F:1F90` (little-endian words) -> 127.0.0.1:8080.
fn parse_hex_addr(s: &str) -> Option<(IpAddr, u16)> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let addr = match a.len() {
        8 => IpAddr::from(u32::from_str_radix(a, 16).ok()?.to_le_bytes()),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let word = u32::from_str_radix(&a[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
            IpAddr::from(bytes)
        }
        _ => return None,
    };
    Some((addr, port))
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
    fn parses_proc_net_addresses() {
        assert_eq!(parse_hex_addr("0100007F:1F90"), Some(("127.0.0.1".parse().unwrap(), 8080)));
        assert_eq!(
            parse_hex_addr("00000000000000000000000001000000:0050"),
            Some(("::1".parse().unwrap(), 80))
        );
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
