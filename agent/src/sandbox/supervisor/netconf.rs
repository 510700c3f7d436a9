//! Network configuration: interface ioctls (SIOCSIFMTU, SIOCSIFFLAGS, SIOCSIFADDR, routes,
//! ARP...) and rtnetlink / nftables messages (what `ip`, `ifconfig`, `route`, `nft` send).
//! The pilot shares the host's network namespace without CAP_NET_ADMIN: the kernel refuses
//! them all. Each is recorded as a `netconf` effect on the host.
//!
//! An ioctl is answered as done (harmless: nothing changed). A netlink change cannot be: the
//! kernel answers it with an error message in the socket, and a forged acknowledgement would
//! come from another netlink port than the kernel's, which `ip` rightly ignores; so the call
//! goes on to the kernel and the pilot sees the refusal (`RTNETLINK answers: Operation not
//! permitted`) where live it would succeed. The verdict judges the change all the same.
use crate::event::Kind;
use std::os::fd::OwnedFd;

use super::{Call, Ctx, event, mem, notify::Answer, pids};

const AF_NETLINK: u16 = 16;
const NETLINK_ROUTE: i32 = 0;
const NETLINK_NETFILTER: i32 = 12;
/// Most bytes of a netlink message read.
const MSG_MAX: usize = 8192;

pub fn handle(ctx: &mut Ctx, call: &Call) -> Answer {
    match call.name {
        "ioctl" => ioctl(ctx, call),
        _ => netlink(ctx, call),
    }
}

fn ioctl(ctx: &mut Ctx, call: &Call) -> Answer {
    let cmd = call.args[1] as u32;
    let (Some(mem), Some(sender)) = (ctx.mem(call), pids::host_process(call.tid)) else { return Answer::Continue };
    let Ok(req) = mem.read(call.args[2], 40) else { return Answer::Continue };
    if !ctx.valid(call) {
        return Answer::Continue;
    }
    let (target, value) = describe_ioctl(cmd, &req);
    if sender.uids[1] != 0 {
        return Answer::Continue; // live it fails too (EPERM)
    }
    let mut e = event(call, &sender, Kind::Netconf, "held back");
    e.target = Some(target);
    e.value = Some(value);
    ctx.event(e);
    Answer::Value(0)
}

/// (interface or table, what changes) of a SIOC* request on `req` (struct ifreq / rtentry).
pub fn describe_ioctl(cmd: u32, req: &[u8]) -> (String, String) {
    let name = || String::from_utf8_lossy(&req[..16.min(req.len())]).trim_end_matches('\0').to_string();
    let int = |off: usize| mem::u32_at(req, off) as i32;
    let ipv4 = |off: usize| req.get(off + 4..off + 8).map(|a| std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()).unwrap_or_default();
    match cmd {
        0x890B | 0x890C => {
            // struct rtentry: rt_pad1, rt_dst (sockaddr at 8), rt_gateway (24), rt_genmask (40)
            let verb = if cmd == 0x890B { "add" } else { "delete" };
            ("routes".into(), format!("route {verb} {} via {}", ipv4(8), ipv4(24)))
        }
        0x8922 => (name(), format!("mtu {}", int(16))),
        0x8914 => (name(), format!("flags {:#x} ({})", int(16) as u16, if int(16) & 1 != 0 { "up" } else { "down" })),
        0x8916 => (name(), format!("address {}", ipv4(16))),
        0x891c => (name(), format!("netmask {}", ipv4(16))),
        0x891a => (name(), format!("broadcast {}", ipv4(16))),
        0x8918 => (name(), format!("peer address {}", ipv4(16))),
        0x8923 => (name(), format!("rename to {}", String::from_utf8_lossy(&req[16..32.min(req.len())]).trim_end_matches('\0'))),
        0x8924 => (name(), "hardware address".into()),
        0x8943 => (name(), format!("txqueuelen {}", int(16))),
        0x8936 => (name(), "delete address".into()),
        0x8953 | 0x8955 | 0x8960 | 0x8962 => ("arp".into(), if cmd == 0x8955 || cmd == 0x8962 { "set entry".into() } else { "delete entry".into() }),
        0x89a0 | 0x89a1 => (name(), if cmd == 0x89a0 { "add bridge".into() } else { "delete bridge".into() }),
        0x89a2 | 0x89a3 => (name(), if cmd == 0x89a2 { "add bridge port".into() } else { "delete bridge port".into() }),
        c => (name(), format!("ioctl {c:#x}")),
    }
}

/// sendmsg/sendmmsg/sendto on a netlink socket: the changes its messages ask for.
fn netlink(ctx: &mut Ctx, call: &Call) -> Answer {
    let Some(sock) = ctx.caller_fd(call, call.int(0)) else { return Answer::Continue };
    let Some(protocol) = netlink_protocol(&sock) else { return Answer::Continue };
    let Some(mem) = ctx.mem(call) else { return Answer::Continue };
    let bytes = match call.name {
        "sendto" => mem.read(call.args[1], (call.args[2] as usize).min(MSG_MAX)).unwrap_or_default(),
        // struct msghdr (sendmmsg: the first struct mmsghdr starts with one): msg_iov at 16,
        // its first iovec's base and length.
        _ => {
            let hdr = mem.read(call.args[1], 56).unwrap_or_default();
            let iov = mem.read(mem::u64_at(&hdr, 16), 16).unwrap_or_default();
            mem.read(mem::u64_at(&iov, 0), (mem::u64_at(&iov, 8) as usize).min(MSG_MAX)).unwrap_or_default()
        }
    };
    if !ctx.valid(call) {
        return Answer::Continue;
    }
    let changes = match protocol {
        NETLINK_ROUTE => rtnetlink_changes(&bytes),
        NETLINK_NETFILTER => nftables_changes(&bytes),
        _ => Vec::new(),
    };
    if changes.is_empty() {
        return Answer::Continue;
    }
    let Some(sender) = pids::host_process(call.tid) else { return Answer::Continue };
    for (target, value) in changes {
        let mut e = event(call, &sender, Kind::Netconf, "refused");
        e.target = Some(target);
        e.value = Some(value);
        ctx.event(e);
    }
    Answer::Continue
}

fn netlink_protocol(sock: &OwnedFd) -> Option<i32> {
    let domain = rustix::net::sockopt::socket_domain(sock).ok()?;
    if domain.as_raw() != AF_NETLINK {
        return None;
    }
    rustix::net::sockopt::socket_protocol(sock).ok().map(|p| p.map_or(0, |p| p.as_raw().get() as i32))
}

/// The netlink messages in `b`: (type, flags, payload).
fn messages(b: &[u8]) -> Vec<(u16, u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= b.len() {
        let len = mem::u32_at(b, at) as usize;
        if len < 16 || at + len > b.len() {
            break;
        }
        out.push((mem::u16_at(b, at + 4), mem::u16_at(b, at + 6), &b[at + 16..at + len]));
        at += (len + 3) & !3;
        if out.len() >= 64 {
            break;
        }
    }
    out
}

/// rtnetlink attributes after a fixed header of `skip` bytes: (type, value).
fn attrs(p: &[u8], skip: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = skip;
    while at + 4 <= p.len() {
        let len = mem::u16_at(p, at) as usize;
        if len < 4 || at + len > p.len() {
            break;
        }
        out.push((mem::u16_at(p, at + 2) & 0x3fff, &p[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

fn ifname(index: u32) -> String {
    for e in std::fs::read_dir("/sys/class/net").into_iter().flatten().flatten() {
        let idx = std::fs::read_to_string(e.path().join("ifindex")).unwrap_or_default();
        if idx.trim().parse::<u32>().ok() == Some(index) {
            return e.file_name().to_string_lossy().into_owned();
        }
    }
    format!("ifindex {index}")
}

fn addr(v: &[u8]) -> String {
    match v.len() {
        4 => std::net::Ipv4Addr::new(v[0], v[1], v[2], v[3]).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(v).expect("16 bytes")).to_string(),
        _ => format!("{} bytes", v.len()),
    }
}

/// (interface or table, change) for each rtnetlink message that changes something.
pub fn rtnetlink_changes(b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (ty, _flags, p) in messages(b) {
        let verb = match ty {
            16 | 19 => "set",
            17 => "delete",
            20 => "add address",
            21 => "delete address",
            24 => "add route",
            25 => "delete route",
            28 => "add neighbour",
            29 => "delete neighbour",
            32 => "add rule",
            33 => "delete rule",
            36 | 40 | 44 => "add traffic control",
            37 | 41 | 45 => "delete traffic control",
            88 => "add netns id",
            104 => "add nexthop",
            105 => "delete nexthop",
            _ => continue, // GET* and the rest: no change
        };
        let (target, detail) = match ty {
            16 | 17 | 19 => {
                // struct ifinfomsg (16 bytes): family, pad, type, index, flags, change
                let index = mem::u32_at(p, 4);
                let (flags, change) = (mem::u32_at(p, 8), mem::u32_at(p, 12));
                let mut name = if index != 0 { ifname(index) } else { String::new() };
                let mut what = Vec::new();
                if change & 1 != 0 {
                    what.push(if flags & 1 != 0 { "up".to_string() } else { "down".to_string() });
                }
                for (t, v) in attrs(p, 16) {
                    match t {
                        3 if name.is_empty() => name = String::from_utf8_lossy(v).trim_end_matches('\0').to_string(),
                        3 => what.push(format!("name {}", String::from_utf8_lossy(v).trim_end_matches('\0'))),
                        4 => what.push(format!("mtu {}", mem::u32_at(v, 0))),
                        13 => what.push(format!("txqueuelen {}", mem::u32_at(v, 0))),
                        10 => what.push(format!("master {}", ifname(mem::u32_at(v, 0)))),
                        1 => what.push("address".into()),
                        _ => {}
                    }
                }
                let verb = if ty == 16 && index == 0 { "add link" } else { verb };
                (if name.is_empty() { "links".into() } else { name }, format!("{verb} {}", what.join(" ")).trim().to_string())
            }
            20 | 21 => {
                // struct ifaddrmsg (8 bytes): family, prefixlen, flags, scope, index
                let prefix = p.get(1).copied().unwrap_or(0);
                let a = attrs(p, 8).into_iter().find(|(t, _)| *t == 2 || *t == 1).map(|(_, v)| addr(v)).unwrap_or_default();
                (ifname(mem::u32_at(p, 4)), format!("{verb} {a}/{prefix}"))
            }
            24 | 25 => {
                // struct rtmsg (12 bytes): family, dst_len, ...
                let dst_len = p.get(1).copied().unwrap_or(0);
                let a = attrs(p, 12);
                let dst = a.iter().find(|(t, _)| *t == 1).map(|(_, v)| format!("{}/{dst_len}", addr(v))).unwrap_or_else(|| "default".into());
                let via = a.iter().find(|(t, _)| *t == 5).map(|(_, v)| format!(" via {}", addr(v))).unwrap_or_default();
                ("routes".into(), format!("{verb} {dst}{via}"))
            }
            _ => ("network".into(), verb.to_string()),
        };
        out.push((target, detail));
    }
    out
}

/// (table, change) for nftables messages (NFNL_SUBSYS_NFTABLES) that change the ruleset.
pub fn nftables_changes(b: &[u8]) -> Vec<(String, String)> {
    const NAMES: [&str; 15] = [
        "add table", "", "delete table", "add chain", "", "delete chain", "add rule", "", "delete rule", "add set", "",
        "delete set", "add set element", "", "delete set element",
    ];
    let mut out = Vec::new();
    for (ty, _, _) in messages(b) {
        let (subsys, msg) = (ty >> 8, (ty & 0xff) as usize);
        if subsys == 10 && NAMES.get(msg).is_some_and(|n| !n.is_empty()) {
            out.push(("nftables".to_string(), NAMES[msg].to_string()));
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTM_NEWLINK for ifindex 1 with IFLA_MTU 1400, as `ip link set lo mtu 1400` sends it.
    fn newlink_mtu() -> Vec<u8> {
        let mut p = vec![0u8; 16];
        p[4..8].copy_from_slice(&1u32.to_ne_bytes());
        p.extend(8u16.to_ne_bytes());
        p.extend(4u16.to_ne_bytes());
        p.extend(1400u32.to_ne_bytes());
        let mut m = Vec::new();
        m.extend(((16 + p.len()) as u32).to_ne_bytes());
        m.extend(16u16.to_ne_bytes());
        m.extend(5u16.to_ne_bytes());
        m.extend([0u8; 8]);
        m.extend(p);
        m
    }

    #[test]
    fn rtnetlink_link_changes_are_read() {
        let c = rtnetlink_changes(&newlink_mtu());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, ifname(1));
        assert_eq!(c[0].1, "set mtu 1400");
        let mut get = newlink_mtu();
        get[4..6].copy_from_slice(&18u16.to_ne_bytes()); // RTM_GETLINK
        assert!(rtnetlink_changes(&get).is_empty());
    }

    #[test]
    fn ioctls_are_described() {
        let mut req = vec![0u8; 40];
        req[..2].copy_from_slice(b"lo");
        req[16..20].copy_from_slice(&1400i32.to_ne_bytes());
        assert_eq!(describe_ioctl(0x8922, &req), ("lo".into(), "mtu 1400".into()));
    }
}
