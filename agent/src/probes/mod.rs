//! The kernel side as userspace sees it. A probe set (`set.rs`: the programs from agent-ebpf,
//! configured and attached, and the maps every run shares) serves one run in-process, or every
//! run on the host when the daemon keeps it resident and hands each run its part by fd
//! (`handoff.rs`). `Probes` is one run's use of a set: its id, its ring buffer, its tracked
//! tasks, aggregated writes and losses, its containment (`contain.rs`). Dropping it gives the
//! run's slot back, and detaches the set when it was the run's own.
pub mod contain;
pub mod handoff;
pub mod kernel_log;
pub mod raw;
pub mod set;
mod tracefs;

use std::{
    os::fd::{AsRawFd, RawFd},
    path::Path,
};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, Map, MapData, RingBuf},
};

use agent_common::{FdKey, TaskInfo, WriteAgg, loss};

use crate::error::UsageError;
pub use set::{ProbeSet, SetMaps};

pub use tracefs::ensure_mounted;

/// The compiled kernel programs, built by build.rs.
static PROBES_ELF: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pilot-probes"));

/// The eBPF object the agent loads, byte for byte (tests/layout.rs reads its BTF).
pub fn probes_elf() -> &'static [u8] {
    PROBES_ELF
}

/// What to track and how the transport behaves.
pub struct Options {
    /// cgroup v2 directory whose processes are all tracked.
    pub cgroup: Option<(u64, u32)>,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
    /// Wake the reader once this many bytes are waiting.
    pub wakeup_bytes: u64,
    /// Report aggregated writes at least this often while an fd stays open.
    pub write_flush_ns: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { cgroup: None, ringbuf_bytes: 16 << 20, wakeup_bytes: 256 << 10, write_flush_ns: 1_000_000_000 }
    }
}

/// One run's use of a probe set: the set itself (its own, or the daemon's reached by fd), the
/// run's id, its ring buffer, and its containment programs. Dropping it gives the run's slot
/// back (and detaches the set when it is the run's own).
pub struct Probes {
    source: Source,
    run: u32,
    ring: RingBuf<MapData>,
    positions: Option<RingPositions>,
    ring_bytes: u64,
    /// A containment set the daemon handed over, until `contain` attaches it.
    contain: Option<contain::ContainSet>,
    /// The original-destination map of the attached containment, until the sink takes it.
    origins: Option<Map>,
}

enum Source {
    /// Loaded by this process for this run (no daemon).
    Own(ProbeSet),
    /// The daemon's resident set: attached while the daemon (`daemon`, a pid) lives.
    Resident { maps: SetMaps, daemon: u32 },
}

impl Source {
    fn maps(&mut self) -> &mut SetMaps {
        match self {
            Source::Own(set) => &mut set.maps,
            Source::Resident { maps, .. } => maps,
        }
    }

    fn maps_ref(&self) -> &SetMaps {
        match self {
            Source::Own(set) => &set.maps,
            Source::Resident { maps, .. } => maps,
        }
    }
}

/// An attachment of a program; dropping it detaches the program.
pub type Link = Box<dyn std::any::Any + Send>;

impl Drop for Probes {
    fn drop(&mut self) {
        // Stop the kernel sending to the slot. What the run left in the shared maps goes with
        // its own set, or is removed by the daemon once this process has exited.
        let run = self.run;
        self.source.maps().free_slot(run);
    }
}

/// Detach every link, in parallel: a detach waits out RCU grace periods (tens of milliseconds
/// on a busy host). The four perf-event tracepoints still wait one after another (the kernel
/// synchronizes under its event_mutex); the rest overlap with them.
pub fn detach_all(links: Vec<Link>) {
    std::thread::scope(|scope| {
        for link in links {
            scope.spawn(move || drop(link));
        }
    });
}

/// A read-only view of the ring buffer's consumer and producer positions (the first two pages
/// of its mapping): their difference is how full it is.
struct RingPositions {
    ptr: *mut libc::c_void,
    page: usize,
}

impl RingPositions {
    fn map(fd: RawFd) -> Option<RingPositions> {
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), 2 * page, libc::PROT_READ, libc::MAP_SHARED, fd, 0) };
        (ptr != libc::MAP_FAILED).then_some(RingPositions { ptr, page })
    }

    fn fill(&self) -> u64 {
        let read = |off: usize| unsafe { std::ptr::read_volatile((self.ptr as *const u8).add(off) as *const u64) };
        read(self.page).saturating_sub(read(0))
    }
}

// SAFETY: a read-only shared mapping owned by this value alone; any thread may read or unmap it
// (the probes are dropped on a helper thread to overlap detaching with other work).
unsafe impl Send for RingPositions {}

impl Drop for RingPositions {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr, 2 * self.page) };
    }
}

/// Checks that must pass before loading anything; each failure is bad input (exit 2).
pub fn preflight() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        return Err(UsageError::new("pilot needs root to load BPF programs: run it with sudo").into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(UsageError::new(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux): pilot needs a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y (every major distribution's kernel since 2021 has it)",
        )
        .into());
    }
    ensure_mounted()
}

impl Probes {
    /// The probe set for this run: the one the daemon handed over when it started this
    /// process, else one loaded here; then the run registers (its ring buffer, its slot) and,
    /// for a cgroup target, its cgroup.
    pub fn load(opts: &Options) -> Result<Probes> {
        if opts.ringbuf_bytes.count_ones() != 1 || opts.ringbuf_bytes < 4096 {
            bail!(UsageError::new("the ring buffer size must be a power of two of at least 4096 bytes"));
        }
        let (source, run, contain, ring) = match handoff::Handoff::from_env()? {
            Some(mut h) => {
                let maps = SetMaps {
                    tracked: h.map("TRACKED")?,
                    writes: h.map("WRITES")?,
                    loss: h.map("LOSS")?,
                    rings: h.map("RUN_RINGS")?,
                    run_ids: h.map("RUN_IDS")?,
                    cgroups: h.map("CGROUPS")?,
                    levels: h.map("CGROUP_LEVELS")?,
                };
                let contain = contain::ContainSet::from_handoff(&mut h)?;
                // The daemon's ready-made ring buffer, when it is the size this run asks for.
                let ring = h.fds.remove("ring").filter(|_| h.ring_bytes == opts.ringbuf_bytes);
                (Source::Resident { maps, daemon: h.daemon }, h.run, contain, ring)
            }
            None => (Source::Own(ProbeSet::load(opts)?), OWN_RUN, None, None),
        };
        let _phase = tracing::debug_span!("phase", name = "probes: run registered").entered();
        // The daemon's ring is in the run's slot already; one made here is put there.
        let (ring_fd, install) = match ring {
            Some(fd) => (fd, false),
            None => (new_ring(opts.ringbuf_bytes)?, true),
        };
        let positions = RingPositions::map(ring_fd.as_raw_fd());
        let ring = RingBuf::try_from(Map::RingBuf(MapData::from_fd(ring_fd)?))?;
        let mut probes = Probes { positions, ring, ring_bytes: opts.ringbuf_bytes as u64, source, run, contain, origins: None };
        let ring = install.then(|| probes.ring.as_raw_fd());
        probes.source.maps().register(run, ring)?;
        if let Some((id, level)) = opts.cgroup {
            probes.source.maps().add_cgroup(run, id, level, std::process::id())?;
        }
        Ok(probes)
    }

    /// This run's id: its records carry it, its tracked tasks are tagged with it.
    pub fn run_id(&self) -> u32 {
        self.run
    }

    /// The set this run used is gone (the daemon holding it exited): effects after that were
    /// not traced.
    pub fn detached(&self) -> bool {
        match &self.source {
            Source::Own(_) => false,
            Source::Resident { daemon, .. } => *daemon != 0 && unsafe { libc::getppid() } as u32 != *daemon,
        }
    }

    /// Contain the network of a pilot cgroup (see contain.rs). The returned fds hold the
    /// links: keep them as long as the pilot runs.
    pub fn contain(
        &mut self,
        unix: contain::UnixContainment,
        cgroup: &std::fs::File,
        sink: agent_common::SinkConfig,
        allowed: &[std::net::SocketAddr],
        live_ports: &[u16],
    ) -> Result<(contain::UnixContainment, Vec<std::os::fd::OwnedFd>)> {
        let set = match (self.contain.take(), &mut self.source) {
            (Some(set), _) => set,
            (None, Source::Own(own)) => contain::ContainSet::load_from(&mut own.ebpf)?,
            // The daemon had none ready (many runs starting at once): load one here.
            (None, Source::Resident { .. }) => contain::ContainSet::load()?,
        };
        let (unix, links, origins) = set.attach(unix, cgroup, sink, allowed, live_ports)?;
        self.origins = Some(origins);
        Ok((unix, links))
    }

    /// The original destination of each socket the hooks redirected (by socket cookie), for
    /// the sink. Call after `contain`.
    pub fn take_origins(&mut self) -> Result<HashMap<MapData, u64, agent_common::Dest>> {
        Ok(HashMap::try_from(self.origins.take().ok_or_else(|| anyhow!("the network is not contained yet"))?)?)
    }

    pub fn ring(&mut self) -> &mut RingBuf<MapData> {
        &mut self.ring
    }

    /// Raw fd of the TRACKED map (a child adds itself through it before exec).
    pub fn tracked_fd(&mut self) -> RawFd {
        self.source.maps_ref().tracked_fd()
    }

    /// Bytes waiting in the run's ring buffer now, and its size.
    pub fn ring_fill(&self) -> (u64, u64) {
        (self.positions.as_ref().map_or(0, RingPositions::fill), self.ring_bytes)
    }

    pub fn ring_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.ring.as_fd()
    }

    /// Start tracking a task that already runs (the root, or `--pid` and its tree).
    pub fn track(&mut self, tid: u32, start_ns: u64) -> Result<()> {
        let run = self.run;
        self.source.maps().track(run, tid, start_ns)
    }

    pub fn untrack(&mut self, tid: u32) -> Result<()> {
        let run = self.run;
        self.source.maps().untrack(run, tid)
    }

    /// Tids the kernel currently tracks for this run.
    pub fn tracked(&mut self) -> Result<Vec<u32>> {
        let run = self.run;
        self.source.maps().tracked(run)
    }

    /// Take the writes still aggregated in the kernel for `pid` (all processes of the run if
    /// None). Only for processes that no longer run.
    pub fn take_writes(&mut self, pid: Option<u32>) -> Result<Vec<(FdKey, WriteAgg)>> {
        let run = self.run;
        self.source.maps().take_writes(run, pid)
    }

    /// This run's lost events per cause, summed over CPUs, in agent_common::loss order.
    pub fn losses(&self) -> Result<[u64; loss::COUNT as usize]> {
        self.source.maps_ref().losses(self.run)
    }
}

/// A run's ring buffer of `bytes` (a power of two, a page at least): what the kernel sends the
/// run's records to once it is in the run's slot.
pub fn new_ring(bytes: u32) -> Result<std::os::fd::OwnedFd> {
    raw::create_map(libbpf_sys::BPF_MAP_TYPE_RINGBUF, 0, 0, bytes).context("creating the run's ring buffer (out of locked memory?)")
}

/// The run id of a run that loads its own probe set (it is the set's only run).
pub const OWN_RUN: u32 = 1;

/// The benchmarks' floor: empty programs on the same hooks (`floor_tp`, `floor_raw`). They
/// stay attached as long as the returned links live.
pub fn load_floor() -> Result<(Ebpf, Vec<Link>)> {
    let mut loader = EbpfLoader::new();
    kernel_log::configure(&mut loader, &0);
    let mut ebpf = loader.load(PROBES_ELF).context("loading the BPF programs")?;
    let tracepoints: Vec<(&str, &str)> = set::TRACEPOINTS.iter().map(|(_, c, e)| (*c, *e)).collect();
    let mut links = set::attach_tracepoint(&mut ebpf, "floor_tp", &tracepoints)?;
    links.extend(set::attach_raw(&mut ebpf, "floor_raw", &set::RAW_TRACEPOINTS)?);
    Ok((ebpf, links))
}

/// Insert `pid` into the TRACKED map for `run` through its raw fd: no allocation,
/// async-signal-safe, so it is safe between fork and exec (the child tracks itself before its
/// first instruction).
pub fn track_pid(map_fd: RawFd, pid: u32, run: u32) -> std::io::Result<()> {
    track_pid_since(map_fd, pid, run, 0)
}

/// `track_pid` with the process's start time (0: unknown), which its exec record then carries.
pub fn track_pid_since(map_fd: RawFd, pid: u32, run: u32, start_ns: u64) -> std::io::Result<()> {
    raw::map_update(map_fd, &pid, &TaskInfo::new(run, start_ns))
}
