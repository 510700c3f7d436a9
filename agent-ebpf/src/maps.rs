//! Maps and the loader-written configuration. Sizes here are defaults; the loader may resize.
//!
//! One probe set serves every run on the host (the daemon keeps it loaded): the tracked-task
//! table names each task's run, and each run has its own ring buffer and loss counters, so
//! runs never share records and one run's flood is never another run's loss.
use agent_common::{CgroupTarget, Config, EventBuf, FdKey, Inflight, MAX_RUNS, TaskInfo, WriteAgg, loss};
use aya_ebpf::{
    btf_maps::{ArrayOfMaps, RingBuf},
    macros::{btf_map, map},
    maps::{Array, HashMap, PerCpuArray},
};

use crate::diag;

/// Written by the loader before load (`EbpfLoader::set_global`); read-only here.
#[unsafe(no_mangle)]
pub(crate) static CONFIG: Config = Config::zeroed();

/// A copy of the configuration. `read_volatile` keeps LLVM from folding the zeroed default.
/// For one field on a hot path, `config_field!` reads just that field.
#[inline(always)]
pub fn config() -> Config {
    unsafe { core::ptr::read_volatile(&raw const CONFIG) }
}

/// One field of the configuration, read without copying the whole struct.
macro_rules! config_field {
    ($f:ident) => {
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::CONFIG.$f) }
    };
}
pub(crate) use config_field;

/// Records to userspace: each run's own ring buffer, at its slot (run id % MAX_RUNS), created
/// by that run at the size it asks for (the one-page template only gives the type).
#[btf_map]
pub static RUN_RINGS: ArrayOfMaps<RingBuf<u8, 4096>, { MAX_RUNS as usize }> = ArrayOfMaps::new();

/// The run each slot serves now (0: none). A record goes to its slot's ring only when the
/// slot still serves its run: a task left over from a run that ended reaches no other run.
#[map]
pub static RUN_IDS: Array<u32> = Array::with_max_entries(MAX_RUNS, 0);

/// Tasks (key: tid) whose effects are recorded, with their run. Children are added here in
/// the kernel, at task_newtask, before they can run, so no userspace round trip can miss
/// their first syscall.
#[map]
pub static TRACKED: HashMap<u32, TaskInfo> = HashMap::with_max_entries(65536, 0);

/// cgroups whose every task is tracked by a run (`pilot trace --cgroup`), by cgroup id.
#[map]
pub static CGROUPS: HashMap<u64, CgroupTarget> = HashMap::with_max_entries(256, 0);

/// Which levels of the cgroup hierarchy hold a target (1: some), and at index CGROUP_LEVELS
/// whether any does: with none, an untracked task's syscall costs one array read here.
#[map]
pub static CGROUP_LEVELS: Array<u32> = Array::with_max_entries(agent_common::CGROUP_LEVELS + 1, 0);

/// Syscall arguments between sys_enter and sys_exit (key: tid). An entry lives as long as its
/// task (removed at sched_process_exit); `nr` is CONSUMED once its syscall is recorded.
#[map]
pub static INFLIGHT: HashMap<u32, Inflight> = HashMap::with_max_entries(16384, 0);

/// Writes aggregated per (process, fd) until something changes what the fd refers to.
#[map]
pub static WRITES: HashMap<FdKey, WriteAgg> = HashMap::with_max_entries(65536, 0);

/// Where records are built (too big for the 512-byte BPF stack).
#[map]
pub static SCRATCH: PerCpuArray<EventBuf> = PerCpuArray::with_max_entries(1, 0);

/// Lost events per run and cause (agent_common::loss::index).
#[map]
pub static LOSS: PerCpuArray<u64> = PerCpuArray::with_max_entries(loss::ENTRIES, 0);

/// Count one lost event of `cause` against `run` (0: a run that has ended).
#[inline(always)]
pub fn count_loss(run: u32, cause: u32) {
    if let Some(counter) = LOSS.get_ptr_mut(loss::index(run, cause)) {
        let n = unsafe { *counter } + 1;
        unsafe { *counter = n };
        // Log the 1st, 2nd, 4th, 8th... loss of a cause on a CPU: a burst of a million losses
        // logs twenty lines, not a million.
        if n & (n - 1) == 0 {
            diag::log_loss(cause, n);
        }
    }
}
