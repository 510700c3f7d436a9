//! The kernel side as userspace sees it: loads the programs from agent-ebpf, configures them,
//! attaches them, and exposes their maps (tracked tasks, aggregated writes, loss counters,
//! ring buffer). Dropping `Probes` detaches every program and frees every map.
pub mod contain;
pub mod kernel_log;
pub mod raw;
mod tracefs;

use std::{
    os::fd::{AsRawFd, RawFd},
    path::Path,
};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
};

use agent_common::{Config, FdKey, TaskInfo, WriteAgg, loss};

use crate::error::UsageError;

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

pub struct Probes {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
    positions: Option<RingPositions>,
    ring_bytes: u64,
    /// The attachments, owned here so that dropping `Probes` detaches them all at once.
    links: Vec<Link>,
    /// Forwards the programs' diagnostics when RUST_LOG asks for them.
    _kernel_log: Option<kernel_log::Reader>,
}

/// An attachment of a program; dropping it detaches the program.
pub type Link = Box<dyn std::any::Any + Send>;

impl Drop for Probes {
    fn drop(&mut self) {
        let t0 = std::time::Instant::now();
        detach_all(std::mem::take(&mut self.links));
        tracing::debug!("probes detached in {:?}", t0.elapsed());
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
    pub fn load(opts: &Options) -> Result<Probes> {
        let _phase = tracing::debug_span!("phase", name = "probes load").entered();
        let config = build_config(opts)?;
        let mut loader = EbpfLoader::new();
        let log_level = kernel_log::level();
        kernel_log::configure(&mut loader, &log_level);
        let mut ebpf = loader
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", opts.ringbuf_bytes)
            .load(PROBES_ELF)
            .context("loading the BPF programs")?;
        let _kernel_log = kernel_log::start(&mut ebpf, log_level);
        let links = attach(&mut ebpf)?;
        tracing::debug!("probes loaded and attached: {} links", links.len());
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").ok_or_else(|| anyhow!("no EVENTS map"))?)?;
        let positions = RingPositions::map(ring.as_raw_fd());
        Ok(Probes { ebpf, ring, positions, ring_bytes: opts.ringbuf_bytes as u64, links, _kernel_log })
    }

    /// Contain the network of a pilot cgroup (see contain.rs). The returned fds hold the
    /// hand-loaded Unix hooks: keep them as long as the pilot runs.
    pub fn contain(
        &mut self,
        unix: contain::UnixContainment,
        cgroup: &std::fs::File,
        sink: agent_common::SinkConfig,
        allowed: &[std::net::SocketAddr],
        live_ports: &[u16],
    ) -> Result<(contain::UnixContainment, Vec<std::os::fd::OwnedFd>)> {
        contain::attach(&mut self.ebpf, unix, cgroup, sink, allowed, live_ports)
    }

    /// The original destination of each socket the hooks redirected (by socket cookie), for
    /// the sink. Taken out of the object: call after `contain`.
    pub fn take_origins(&mut self) -> Result<HashMap<MapData, u64, agent_common::Dest>> {
        Ok(HashMap::try_from(self.ebpf.take_map("ORIGINAL").ok_or_else(|| anyhow!("no ORIGINAL map"))?)?)
    }

    pub fn ring(&mut self) -> &mut RingBuf<MapData> {
        &mut self.ring
    }

    /// Raw fd of the TRACKED map (a child adds itself through it before exec).
    pub fn tracked_fd(&mut self) -> RawFd {
        use std::os::fd::AsFd;
        let map = self.ebpf.map("TRACKED").expect("TRACKED map");
        let aya::maps::Map::HashMap(data) = map else { panic!("TRACKED is a hash map") };
        data.fd().as_fd().as_raw_fd()
    }

    /// Bytes waiting in the ring buffer now, and its size.
    pub fn ring_fill(&self) -> (u64, u64) {
        (self.positions.as_ref().map_or(0, RingPositions::fill), self.ring_bytes)
    }

    pub fn ring_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.ring.as_fd()
    }

    fn tracked_map(&mut self) -> Result<HashMap<&mut MapData, u32, TaskInfo>> {
        Ok(HashMap::try_from(self.ebpf.map_mut("TRACKED").ok_or_else(|| anyhow!("no TRACKED map"))?)?)
    }

    /// Start tracking a task that already runs (the root, or `--pid` and its tree).
    pub fn track(&mut self, tid: u32, start_ns: u64) -> Result<()> {
        let info = TaskInfo { start_ns, exit_code: 0, exit_flags: 0, last_signal: 0 };
        self.tracked_map()?.insert(tid, info, 0).with_context(|| format!("tracking task {tid}"))
    }

    pub fn untrack(&mut self, tid: u32) -> Result<()> {
        let _ = self.tracked_map()?.remove(&tid);
        Ok(())
    }

    /// Tids the kernel currently tracks.
    pub fn tracked(&mut self) -> Result<Vec<u32>> {
        let map = self.tracked_map()?;
        Ok(map.keys().filter_map(|k| k.ok()).collect())
    }

    /// Take the writes still aggregated in the kernel for `pid` (all processes if None).
    /// Only for processes that no longer run: a live writer could add to an entry as we read it.
    pub fn take_writes(&mut self, pid: Option<u32>) -> Result<Vec<(FdKey, WriteAgg)>> {
        let mut map: HashMap<&mut MapData, FdKey, WriteAgg> =
            HashMap::try_from(self.ebpf.map_mut("WRITES").ok_or_else(|| anyhow!("no WRITES map"))?)?;
        let keys: Vec<FdKey> =
            map.keys().filter_map(|k| k.ok()).filter(|k| pid.is_none_or(|p| k.pid == p)).collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Ok(agg) = map.get(&key, 0) {
                out.push((key, agg));
                let _ = map.remove(&key);
            }
        }
        Ok(out)
    }

    /// Lost events per cause, summed over CPUs, in agent_common::loss order.
    pub fn losses(&self) -> Result<[u64; loss::COUNT as usize]> {
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map("LOSS").ok_or_else(|| anyhow!("no LOSS map"))?)?;
        let mut out = [0u64; loss::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = map.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(out)
    }
}

/// The tracepoints the agent attaches to (program, category, event), lifecycle first: a task
/// picked up by its syscalls must already have its fork, exec and exit seen. Program names
/// stay within the kernel's 15 characters, so per-program metrics can tell them apart.
const TRACEPOINTS: [(&str, &str, &str); 4] = [
    ("task_newtask", "task", "task_newtask"),
    ("sched_exec", "sched", "sched_process_exec"),
    ("sched_exit", "sched", "sched_process_exit"),
    ("signal_generate", "signal", "signal_generate"),
];
const RAW_TRACEPOINTS: [&str; 2] = ["sys_enter", "sys_exit"];

fn attach(ebpf: &mut Ebpf) -> Result<Vec<Link>> {
    let mut links = Vec::new();
    for (name, category, event) in TRACEPOINTS {
        links.extend(attach_tracepoint(ebpf, name, &[(category, event)])?);
    }
    for name in RAW_TRACEPOINTS {
        links.extend(attach_raw(ebpf, name, &[name])?);
    }
    Ok(links)
}

/// The benchmarks' floor: empty programs on the same hooks (`floor_tp`, `floor_raw`). They
/// stay attached as long as the returned links live.
pub fn load_floor() -> Result<(Ebpf, Vec<Link>)> {
    let mut loader = EbpfLoader::new();
    kernel_log::configure(&mut loader, &0);
    let mut ebpf = loader.load(PROBES_ELF).context("loading the BPF programs")?;
    let tracepoints: Vec<(&str, &str)> = TRACEPOINTS.iter().map(|(_, c, e)| (*c, *e)).collect();
    let mut links = attach_tracepoint(&mut ebpf, "floor_tp", &tracepoints)?;
    links.extend(attach_raw(&mut ebpf, "floor_raw", &RAW_TRACEPOINTS)?);
    Ok((ebpf, links))
}

/// Load program `name` and attach it to each (category, event).
fn attach_tracepoint(ebpf: &mut Ebpf, name: &str, events: &[(&str, &str)]) -> Result<Vec<Link>> {
    let prog: &mut TracePoint = ebpf.program_mut(name).ok_or_else(|| anyhow!("no {name}"))?.try_into()?;
    prog.load().with_context(|| format!("loading {name}"))?;
    let mut links: Vec<Link> = Vec::new();
    for (category, event) in events {
        let id = prog.attach(category, event).with_context(|| format!("attaching tracepoint {category}:{event}"))?;
        links.push(Box::new(prog.take_link(id)?));
    }
    Ok(links)
}

/// Load raw tracepoint program `name` and attach it to each event.
fn attach_raw(ebpf: &mut Ebpf, name: &str, events: &[&str]) -> Result<Vec<Link>> {
    let prog: &mut RawTracePoint = ebpf.program_mut(name).ok_or_else(|| anyhow!("no {name}"))?.try_into()?;
    prog.load().with_context(|| format!("loading {name}"))?;
    let mut links: Vec<Link> = Vec::new();
    for event in events {
        let id = prog.attach(event).with_context(|| format!("attaching raw tracepoint {event}"))?;
        links.push(Box::new(prog.take_link(id)?));
    }
    Ok(links)
}

fn build_config(opts: &Options) -> Result<Config> {
    let newtask = tracefs::Format::read("task", "task_newtask")?;
    let exec = tracefs::Format::read("sched", "sched_process_exec")?;
    let exit = tracefs::Format::read("sched", "sched_process_exit")?;
    let sig = tracefs::Format::read("signal", "signal_generate")?;
    let (cgroup_id, cgroup_level) = opts.cgroup.unwrap_or((0, 0));
    if opts.ringbuf_bytes.count_ones() != 1 || opts.ringbuf_bytes < 4096 {
        bail!(UsageError::new("the ring buffer size must be a power of two of at least 4096 bytes"));
    }
    Ok(Config {
        cgroup_id,
        write_flush_ns: opts.write_flush_ns,
        wakeup_bytes: opts.wakeup_bytes,
        cgroup_level,
        agent_pid: std::process::id(),
        newtask_pid: newtask.require("pid")?,
        newtask_clone_flags: newtask.offset("clone_flags"),
        exec_filename: exec.require("filename")?,
        exec_pid: exec.require("pid")?,
        exec_old_pid: exec.offset("old_pid"),
        exit_pid: exit.require("pid")?,
        exit_group_dead: exit.offset("group_dead"),
        sig_sig: sig.require("sig")?,
        sig_code: sig.require("code")?,
        sig_pid: sig.require("pid")?,
        sig_group: sig.offset("group"),
        sig_result: sig.offset("result"),
    })
}

/// Insert `pid` into the TRACKED map through its raw fd: no allocation, async-signal-safe, so
/// it is safe between fork and exec (the child tracks itself before its first instruction).
pub fn track_pid(map_fd: RawFd, pid: u32) -> std::io::Result<()> {
    track_pid_since(map_fd, pid, 0)
}

/// `track_pid` with the process's start time (0: unknown), which its exec record then carries.
pub fn track_pid_since(map_fd: RawFd, pid: u32, start_ns: u64) -> std::io::Result<()> {
    let info = TaskInfo { start_ns, exit_code: 0, exit_flags: 0, last_signal: 0 };
    raw::map_update(map_fd, &pid, &info)
}
