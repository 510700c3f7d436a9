//! Network containment of one pilot cgroup: the sock_addr programs of agent-ebpf/contain.rs,
//! their maps, and a Unix-socket deny program loaded by hand (aya 0.14 has no attach type for
//! `cgroup/connect_unix`, which the kernel has since 6.7).
use std::{
    fs::File,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf,
    maps::{Array, HashMap},
    programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr},
};

use agent_common::{Dest, SinkConfig};

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
    /// The kernel has no cgroup hooks for Unix sockets (before 6.7).
    Unavailable,
}

/// Attach every containment program to the pilot's cgroup and fill their maps.
pub fn attach(
    ebpf: &mut Ebpf,
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
    let mut links = Vec::new();
    let mut unix = UnixContainment::Denied;
    for attach_type in [BPF_CGROUP_UNIX_CONNECT, BPF_CGROUP_UNIX_SENDMSG] {
        match deny_unix(cgroup, attach_type) {
            Ok(fds) => links.extend(fds),
            Err(e) => {
                tracing::warn!("no cgroup hook for Unix sockets on this kernel: {e}");
                unix = UnixContainment::Unavailable;
            }
        }
    }
    Ok((unix, links))
}

const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
/// enum bpf_attach_type values, read from this kernel's BTF (stable uapi since 6.7).
const BPF_CGROUP_UNIX_CONNECT: u32 = 49;
const BPF_CGROUP_UNIX_SENDMSG: u32 = 50;

/// Load `r0 = 0; exit` (reject: EPERM) as a cgroup Unix-socket hook and link it to the cgroup.
/// Returns the program and link fds: closing them detaches.
fn deny_unix(cgroup: &File, attach_type: u32) -> std::io::Result<Vec<OwnedFd>> {
    // BPF_MOV64_IMM(r0, 0); BPF_EXIT_INSN()
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"pilot_unix");
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: attach_type,
        ..Default::default()
    };
    let prog = bpf(5 /* BPF_PROG_LOAD */, &load as *const ProgLoad as *const u8, std::mem::size_of::<ProgLoad>())?;
    let prog = unsafe { OwnedFd::from_raw_fd(prog) };
    #[repr(C)]
    #[derive(Default)]
    struct LinkCreate {
        prog_fd: u32,
        target_fd: u32,
        attach_type: u32,
        flags: u32,
        _rest: [u64; 4],
    }
    let link = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    let link = bpf(28 /* BPF_LINK_CREATE */, &link as *const LinkCreate as *const u8, std::mem::size_of::<LinkCreate>())?;
    Ok(vec![prog, unsafe { OwnedFd::from_raw_fd(link) }])
}

fn bpf(cmd: libc::c_long, attr: *const u8, size: usize) -> std::io::Result<i32> {
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
    if fd < 0 { Err(std::io::Error::last_os_error()) } else { Ok(fd as i32) }
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
