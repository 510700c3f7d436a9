//! Network containment of one pilot cgroup: the sock_addr programs of agent-ebpf/contain.rs,
//! their maps, and a Unix-socket deny program loaded through libbpf (aya 0.14 has no attach type
//! for `cgroup/connect_unix`, which the kernel has since 6.7).
use std::{
    fs::File,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd, OwnedFd},
};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf,
    maps::{Array, HashMap},
    programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr},
};

use agent_common::{Dest, SinkConfig};

use super::raw::{self, Prog};

/// Ports in `bpf_sock_addr.user_port` form: network order in the low 16 bits.
pub fn user_port(port: u16) -> u32 {
    port.to_be() as u32
}

pub fn dest(addr: &SocketAddr) -> Dest {
    match addr.ip() {
        IpAddr::V4(v4) => Dest { family: 2, port: user_port(addr.port()), ip: [u32::from_ne_bytes(v4.octets()), 0, 0, 0] },
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            Dest { family: 10, port: user_port(addr.port()), ip: [word(0), word(4), word(8), word(12)] }
        }
    }
}

/// What `Unix` containment this kernel gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnixContainment {
    /// connect/sendmsg to Unix socket paths are refused in the kernel (cgroup unix hooks).
    Denied,
    /// The kernel has no cgroup hooks for Unix sockets (before 6.7): the sandbox's seccomp
    /// filter refuses creating AF_UNIX sockets instead.
    Unavailable,
}

/// Attach every containment program to the pilot's cgroup and fill their maps; the Unix
/// hooks only when `unix` (what `doctor` found) is `Denied`.
pub fn attach(
    ebpf: &mut Ebpf,
    unix: UnixContainment,
    cgroup: &File,
    sink: SinkConfig,
    allowed: &[SocketAddr],
    live_ports: &[u16],
) -> Result<(UnixContainment, Vec<OwnedFd>)> {
    let mut sinks: Array<_, SinkConfig> = Array::try_from(ebpf.map_mut("SINK").ok_or_else(|| anyhow!("no SINK map"))?)?;
    sinks.set(0, sink, 0)?;
    let mut allow: HashMap<_, Dest, u8> = HashMap::try_from(ebpf.map_mut("ALLOWED").ok_or_else(|| anyhow!("no ALLOWED"))?)?;
    for a in allowed {
        allow.insert(dest(a), 1, 0)?;
        // A v4 destination may be reached from a dual-stack v6 socket as ::ffff:a.b.c.d.
        if let IpAddr::V4(v4) = a.ip() {
            allow.insert(dest(&SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port())), 1, 0)?;
        }
    }
    let mut live: HashMap<_, u32, u8> = HashMap::try_from(ebpf.map_mut("LIVE_PORTS").ok_or_else(|| anyhow!("no LIVE_PORTS"))?)?;
    for p in live_ports {
        live.insert(user_port(*p), 1, 0)?;
    }
    for name in ["connect4", "connect6", "sendmsg4", "sendmsg6", "getpeername4", "getpeername6", "bind4", "bind6"] {
        let prog: &mut CgroupSockAddr = ebpf.program_mut(name).ok_or_else(|| anyhow!("no {name}"))?.try_into()?;
        prog.load().with_context(|| format!("loading {name}"))?;
        prog.attach(cgroup.as_fd(), CgroupAttachMode::Single).with_context(|| format!("attaching {name} to the pilot cgroup"))?;
    }
    for name in ["post_bind4", "post_bind6"] {
        let prog: &mut CgroupSock = ebpf.program_mut(name).ok_or_else(|| anyhow!("no {name}"))?.try_into()?;
        prog.load().with_context(|| format!("loading {name}"))?;
        prog.attach(cgroup.as_fd(), CgroupAttachMode::Single).with_context(|| format!("attaching {name}"))?;
    }
    if unix == UnixContainment::Unavailable {
        return Ok((unix, Vec::new()));
    }
    let mut links = Vec::new();
    for attach_type in [BPF_CGROUP_UNIX_CONNECT, BPF_CGROUP_UNIX_SENDMSG] {
        // The probe said this kernel has the hook: failing now is the agent failing.
        links.extend(deny_unix(cgroup, attach_type).context("attaching the Unix-socket hooks to the pilot cgroup")?);
    }
    Ok((unix, links))
}

/// enum bpf_attach_type values (stable uapi since 6.7).
pub use libbpf_sys::{BPF_CGROUP_UNIX_CONNECT, BPF_CGROUP_UNIX_SENDMSG};

/// Load `r0 = 0; exit` (reject: EPERM) as a cgroup Unix-socket hook and link it to the cgroup.
/// Returns the program and link fds: closing them detaches.
fn deny_unix(cgroup: &File, attach_type: u32) -> std::io::Result<Vec<OwnedFd>> {
    let prog = Prog { prog_type: raw::PROG_CGROUP_SOCK_ADDR, attach_type, attach_btf_id: 0 };
    let prog = raw::load(prog, &raw::RETURN_0, c"pilot_unix")?;
    let link = raw::link_cgroup(&prog, cgroup, attach_type)?;
    Ok(vec![prog, link])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_match_the_kernel_layout() {
        let d = dest(&"127.0.0.1:8080".parse().unwrap());
        assert_eq!(d.ip[0].to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!((d.port as u16).to_ne_bytes(), [0x1f, 0x90], "network order");
        let d6 = dest(&"[::1]:80".parse().unwrap());
        assert_eq!(d6.ip[3].to_ne_bytes(), [0, 0, 0, 1]);
    }
}
