//! Network containment of one pilot cgroup: the sock_addr programs of agent-ebpf/contain.rs,
//! their maps, and a Unix-socket deny program loaded through libbpf (aya 0.14 has no attach type
//! for `cgroup/connect_unix`, which the kernel has since 6.7). Every program is linked to the
//! cgroup through BPF_LINK_CREATE (libbpf), whether it was loaded by the run or handed over
//! loaded by the daemon: closing the link fds detaches them.
use std::{
    fs::File,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd, OwnedFd},
};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map},
    programs::{CgroupSock, CgroupSockAddr},
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
    /// connect/sendmsg to abstract Unix addresses are refused in the kernel (cgroup unix
    /// hooks); paths reach only what the pilot's mount view holds (the sink's sockets).
    Denied,
    /// The kernel has no cgroup hooks for Unix sockets (before 6.7): the sandbox's seccomp
    /// filter refuses creating AF_UNIX sockets instead (when no network namespace could be
    /// made for the pilot).
    Unavailable,
    /// No cgroup Unix hooks (before 6.7): the pilot has a network namespace of its own, where
    /// no host abstract socket exists (sink/netns.rs); paths as with `Denied`.
    Netns,
}

/// The sock_addr programs and where each attaches (enum bpf_attach_type, stable uapi).
const SOCK_ADDR: [(&str, u32); 8] = [
    ("connect4", libbpf_sys::BPF_CGROUP_INET4_CONNECT),
    ("connect6", libbpf_sys::BPF_CGROUP_INET6_CONNECT),
    ("sendmsg4", libbpf_sys::BPF_CGROUP_UDP4_SENDMSG),
    ("sendmsg6", libbpf_sys::BPF_CGROUP_UDP6_SENDMSG),
    ("getpeername4", libbpf_sys::BPF_CGROUP_INET4_GETPEERNAME),
    ("getpeername6", libbpf_sys::BPF_CGROUP_INET6_GETPEERNAME),
    ("bind4", libbpf_sys::BPF_CGROUP_INET4_BIND),
    ("bind6", libbpf_sys::BPF_CGROUP_INET6_BIND),
];
const SOCK: [(&str, u32); 2] =
    [("post_bind4", libbpf_sys::BPF_CGROUP_INET4_POST_BIND), ("post_bind6", libbpf_sys::BPF_CGROUP_INET6_POST_BIND)];
/// The maps of one pilot's containment.
const MAPS: [&str; 5] = ["SINK", "ALLOWED", "LIVE_PORTS", "PILOT_BOUND", "ORIGINAL"];

/// One pilot's containment programs, loaded (verified) but not attached, with their maps:
/// loaded from the run's own probe object in-process, or ahead of time by the daemon, which
/// hands a set to each run it starts (attaching to the pilot's cgroup is then all a run does).
pub struct ContainSet {
    progs: Vec<(&'static str, u32, OwnedFd)>,
    maps: std::collections::BTreeMap<&'static str, Map>,
}

impl ContainSet {
    /// Load the programs of `ebpf` (an object loaded with the programs' `.rodata` written)
    /// and take their maps out of it.
    pub fn load_from(ebpf: &mut Ebpf) -> Result<ContainSet> {
        let mut progs = Vec::new();
        for (name, attach_type) in SOCK_ADDR {
            let prog: &mut CgroupSockAddr = ebpf.program_mut(name).ok_or_else(|| anyhow!("no {name}"))?.try_into()?;
            prog.load().with_context(|| format!("loading {name}"))?;
            progs.push((name, attach_type, prog.fd()?.as_fd().try_clone_to_owned()?));
        }
        for (name, attach_type) in SOCK {
            let prog: &mut CgroupSock = ebpf.program_mut(name).ok_or_else(|| anyhow!("no {name}"))?.try_into()?;
            prog.load().with_context(|| format!("loading {name}"))?;
            progs.push((name, attach_type, prog.fd()?.as_fd().try_clone_to_owned()?));
        }
        let mut maps = std::collections::BTreeMap::new();
        for name in MAPS {
            maps.insert(name, ebpf.take_map(name).ok_or_else(|| anyhow!("no {name} map"))?);
        }
        Ok(ContainSet { progs, maps })
    }

    /// A set of its own, from a fresh copy of the object whose tracing maps are cut to one
    /// entry (they are not used): what the daemon prepares for its next run.
    pub fn load() -> Result<ContainSet> {
        let mut loader = EbpfLoader::new();
        super::kernel_log::configure(&mut loader, &0);
        for map in ["TRACKED", "WRITES", "INFLIGHT", "CGROUPS"] {
            loader.map_max_entries(map, 1);
        }
        let mut ebpf = loader.load(super::PROBES_ELF).context("loading the containment programs")?;
        ContainSet::load_from(&mut ebpf)
    }

    /// The set a daemon handed over (`prog:NAME` and `map:NAME` fds), if it handed one.
    pub fn from_handoff(h: &mut super::handoff::Handoff) -> Result<Option<ContainSet>> {
        if !h.fds.contains_key("prog:connect4") {
            return Ok(None);
        }
        let mut progs = Vec::new();
        for (name, attach_type) in SOCK_ADDR.into_iter().chain(SOCK) {
            let fd = h.fds.remove(&format!("prog:{name}")).ok_or_else(|| anyhow!("no program {name} in the hand-off"))?;
            progs.push((name, attach_type, fd));
        }
        let mut maps = std::collections::BTreeMap::new();
        for name in MAPS {
            maps.insert(name, h.map(&format!("map:{name}"))?);
        }
        Ok(Some(ContainSet { progs, maps }))
    }

    /// Every fd, named as `from_handoff` reads them.
    pub fn named_fds(&self) -> Vec<(String, std::os::fd::BorrowedFd<'_>)> {
        let progs = self.progs.iter().map(|(name, _, fd)| (format!("prog:{name}"), fd.as_fd()));
        let maps = self.maps.iter().map(|(name, m)| (format!("map:{name}"), super::set::map_data(m).fd().as_fd()));
        progs.chain(maps).collect()
    }

    /// Attach every program to the pilot's cgroup and fill the maps; the Unix hooks only when
    /// `unix` (what `doctor` found) is `Denied`. Returns the links (closing them detaches) and
    /// the original-destination map the sink reads.
    pub fn attach(
        mut self,
        unix: UnixContainment,
        cgroup: &File,
        sink: SinkConfig,
        allowed: &[SocketAddr],
        live_ports: &[u16],
    ) -> Result<(UnixContainment, Vec<OwnedFd>, Map)> {
        let map = |m: &mut std::collections::BTreeMap<&'static str, Map>, name: &str| m.remove(name).ok_or_else(|| anyhow!("no {name} map"));
        let mut sinks: Array<_, SinkConfig> = Array::try_from(map(&mut self.maps, "SINK")?)?;
        sinks.set(0, sink, 0)?;
        let mut allow: HashMap<_, Dest, u8> = HashMap::try_from(map(&mut self.maps, "ALLOWED")?)?;
        for a in allowed {
            allow.insert(dest(a), 1, 0)?;
            // A v4 destination may be reached from a dual-stack v6 socket as ::ffff:a.b.c.d.
            if let IpAddr::V4(v4) = a.ip() {
                allow.insert(dest(&SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port())), 1, 0)?;
            }
        }
        let mut live: HashMap<_, u32, u8> = HashMap::try_from(map(&mut self.maps, "LIVE_PORTS")?)?;
        for p in live_ports {
            live.insert(user_port(*p), 1, 0)?;
        }
        let mut links = Vec::new();
        for (name, attach_type, prog) in &self.progs {
            links.push(raw::link_cgroup(prog, cgroup, *attach_type).with_context(|| format!("attaching {name} to the pilot cgroup"))?);
        }
        let origins = map(&mut self.maps, "ORIGINAL")?;
        if unix != UnixContainment::Denied {
            return Ok((unix, links, origins));
        }
        for attach_type in [BPF_CGROUP_UNIX_CONNECT, BPF_CGROUP_UNIX_SENDMSG] {
            // The probe said this kernel has the hook: failing now is the agent failing.
            links.extend(deny_unix(cgroup, attach_type).context("attaching the Unix-socket hooks to the pilot cgroup")?);
        }
        Ok((unix, links, origins))
    }
}

/// enum bpf_attach_type values (stable uapi since 6.7).
pub use libbpf_sys::{BPF_CGROUP_UNIX_CONNECT, BPF_CGROUP_UNIX_SENDMSG};

/// One BPF instruction: opcode, registers, offset, immediate.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    code as u64 | ((dst as u64) << 8) | ((src as u64) << 12) | ((off as u16 as u64) << 16) | ((imm as u32 as u64) << 32)
}

/// The cgroup Unix hook (issue 18): refuse abstract destinations (sun_path[0] == 0: the
/// host's abstract namespace is shared with the pilot), let paths through: which socket a
/// path reaches is the pilot's mount view's business (a sink socket bind-mounted over a live
/// listener's path, or an overlay whose inode no live server bound: ECONNREFUSED). The
/// program reads `uaddr` of its context (struct bpf_sock_addr_kern: sk, then uaddr) and the
/// first byte of sun_path with bpf_probe_read_kernel (root: pointer reads allowed).
pub const UNIX_PATHS_ONLY: [u64; 20] = [
    insn(0xbf, 6, 1, 0, 0),    // r6 = ctx
    insn(0xbf, 1, 10, 0, 0),   // r1 = fp
    insn(0x07, 1, 0, 0, -16),  // r1 -= 16
    insn(0xb7, 2, 0, 0, 16),   // r2 = 16
    insn(0xbf, 3, 6, 0, 0),    // r3 = ctx
    insn(0x85, 0, 0, 0, 113),  // probe_read_kernel(fp-16, 16, ctx): sk, uaddr
    insn(0x55, 0, 0, 11, 0),   // if r0 != 0 goto reject
    insn(0x79, 3, 10, -8, 0),  // r3 = uaddr
    insn(0x07, 3, 0, 0, 2),    // r3 += 2 (sun_path)
    insn(0xbf, 1, 10, 0, 0),   // r1 = fp
    insn(0x07, 1, 0, 0, -24),  // r1 -= 24
    insn(0xb7, 2, 0, 0, 1),    // r2 = 1
    insn(0x85, 0, 0, 0, 113),  // probe_read_kernel(fp-24, 1, sun_path)
    insn(0x55, 0, 0, 4, 0),    // if r0 != 0 goto reject
    insn(0x71, 0, 10, -24, 0), // r0 = sun_path[0]
    insn(0x15, 0, 0, 2, 0),    // if r0 == 0 goto reject (abstract)
    insn(0xb7, 0, 0, 0, 1),    // r0 = 1: a path
    insn(0x95, 0, 0, 0, 0),    // exit
    insn(0xb7, 0, 0, 0, 0),    // reject: r0 = 0 (EPERM)
    insn(0x95, 0, 0, 0, 0),    // exit
];

/// Load the Unix hook above and link it to the cgroup. Returns the program and link fds:
/// closing them detaches.
fn deny_unix(cgroup: &File, attach_type: u32) -> std::io::Result<Vec<OwnedFd>> {
    let prog = Prog { prog_type: raw::PROG_CGROUP_SOCK_ADDR, attach_type, attach_btf_id: 0 };
    let prog = raw::load(prog, &UNIX_PATHS_ONLY, c"pilot_unix")?;
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
