//! Maps and the loader-written configuration. Sizes here are defaults; the loader may resize.
use agent_common::{Config, EventBuf, FdKey, Inflight, TaskInfo, WriteAgg, loss};
use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
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

/// Records to userspace. Sized by the loader (default 16 MiB, shared by all CPUs).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Tasks (key: tid) whose effects are recorded. Children are added here in the kernel, at
/// task_newtask, before they can run, so no userspace round trip can miss their first syscall.
#[map]
pub static TRACKED: HashMap<u32, TaskInfo> = HashMap::with_max_entries(65536, 0);

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

/// Lost events per cause (agent_common::loss).
#[map]
pub static LOSS: PerCpuArray<u64> = PerCpuArray::with_max_entries(loss::COUNT, 0);

/// Count one lost event of `cause`.
#[inline(always)]
pub fn count_loss(cause: u32) {
    if let Some(counter) = LOSS.get_ptr_mut(cause) {
        let n = unsafe { *counter } + 1;
        unsafe { *counter = n };
        // Log the 1st, 2nd, 4th, 8th... loss of a cause on a CPU: a burst of a million losses
        // logs twenty lines, not a million.
        if n & (n - 1) == 0 {
            diag::log_loss(cause, n);
        }
    }
}
