//! Records and map keys shared by the kernel programs (`agent-ebpf`) and the userspace agent.
//!
//! Every type here is `#[repr(C)]`, has no implicit padding, and carries a `const` size assert:
//! the two sides are compiled by different compilers for different targets, and a silent layout
//! drift would decode garbage. The userspace side additionally derives `bytemuck::Pod`, which
//! refuses to compile if padding sneaks in.
#![no_std]

pub mod syscalls;

/// Bytes the kernel can attach to one record (paths, socket addresses, argv).
/// Twice PATH_MAX, so two full paths (rename, link) always fit.
pub const DATA_MAX: usize = 8192;
/// Longest single string read from the traced process (PATH_MAX).
pub const STR_MAX: usize = 4096;
/// Arguments of an exec copied into its record; the rest is counted and marked truncated.
pub const ARGV_MAX: usize = 64;
/// Socket address bytes kept (sizeof(struct sockaddr_storage)).
pub const SOCKADDR_MAX: usize = 128;
/// Runs one probe set serves at once. A run's id picks its slot (`id % MAX_RUNS`) in the
/// per-run maps: its ring buffer (`RUN_RINGS`), its id (`RUN_IDS`) and its loss counters.
pub const MAX_RUNS: u32 = 64;
/// Loss counters of records whose run had already ended (no slot holds their id): index
/// `MAX_RUNS` of the loss table, counted for no run.
pub const ORPHAN_SLOT: u32 = MAX_RUNS;
/// cgroup levels a `pilot trace --cgroup` target may sit at (root = 0).
pub const CGROUP_LEVELS: u32 = 16;

/// What a record describes. `kind` in [`EventHeader`].
pub mod kind {
    /// A syscall of a tracked task, recorded at its exit with its return value.
    /// `nr` names it, `args` are its raw arguments, data1/data2 its strings or socket address.
    pub const SYSCALL: u16 = 1;
    /// An execve/execveat about to run: data1 = filename as passed, data2 = argv (NUL-separated).
    /// `args[0]` = argc seen. Paired with EXEC (success) or a failed SYSCALL of the same tid.
    pub const EXEC_ARGS: u16 = 2;
    /// sched_process_exec: the exec succeeded. data1 = filename the kernel opened,
    /// `args[0]` = old tid (differs from tid when a non-leader thread exec'd), `args[1]` = the
    /// process's start time as its TRACKED entry has it (0: unknown).
    pub const EXEC: u16 = 3;
    /// task_newtask from a tracked parent: `args[0]` = child tid, `args[1]` = clone flags,
    /// `args[2]` = child start time (boot ns, the child's identity with its pid).
    pub const FORK: u16 = 4;
    /// sched_process_exit of a tracked task: `args[0]` = exit code passed to exit/exit_group,
    /// `args[1]` = exit flags (EXIT_*), `args[2]` = last signal aimed at it, `args[3]` = group_dead
    /// (1, 0, or 2 when the kernel does not say).
    pub const EXIT: u16 = 5;
    /// Writes aggregated in the kernel per (process, fd): `args[0]` = fd, `args[1]` = calls,
    /// `args[2]` = bytes, `args[3]` = failed calls, `args[4]` = first ts, `args[5]` = last errno.
    /// Emitted before anything changes what the fd refers to, so it is attributed correctly.
    pub const WRITE: u16 = 6;
    /// signal_generate for a user-sent signal from a tracked task: `args[0]` = target tid,
    /// `args[1]` = signal, `args[2]` = result (0 delivered, 1 ignored, 2 already pending...),
    /// `args[3]` = group, `args[4]` = si_code.
    pub const SIGNAL: u16 = 7;
}

/// Which `args` slot holds what, per record kind (see [`kind`]): the kernel writes them, the
/// agent's decoder reads them, both through these names.
pub mod arg {
    /// EXEC: the tid before the exec (a non-leader thread's exec changes it).
    pub const EXEC_OLD_TID: usize = 0;
    /// EXEC: the start time in the task's TRACKED entry (a pilot's first process sets its own
    /// before its exec: it may be gone before the agent could read /proc).
    pub const EXEC_START_NS: usize = 1;
    /// EXEC_ARGS: argc seen.
    pub const EXEC_ARGC: usize = 0;
    /// FORK: the child's tid, its clone flags, its start time.
    pub const FORK_CHILD: usize = 0;
    pub const FORK_FLAGS: usize = 1;
    pub const FORK_START: usize = 2;
    /// EXIT: the code passed to exit/exit_group, EXIT_* flags, the last signal aimed at the
    /// task, group_dead (1, 0, or 2 when the kernel does not say).
    pub const EXIT_CODE: usize = 0;
    pub const EXIT_FLAGS: usize = 1;
    pub const EXIT_SIGNAL: usize = 2;
    pub const EXIT_GROUP_DEAD: usize = 3;
    /// EXIT: the exiting process's start time.
    pub const EXIT_START: usize = 4;
    /// WRITE: fd, calls, bytes, failed calls, first timestamp, last errno.
    pub const WRITE_FD: usize = 0;
    pub const WRITE_CALLS: usize = 1;
    pub const WRITE_BYTES: usize = 2;
    pub const WRITE_FAILED: usize = 3;
    pub const WRITE_FIRST_NS: usize = 4;
    pub const WRITE_ERRNO: usize = 5;
    /// SIGNAL: target tid, signal, result, group, si_code.
    pub const SIGNAL_TARGET: usize = 0;
    pub const SIGNAL_SIG: usize = 1;
    pub const SIGNAL_RESULT: usize = 2;
    pub const SIGNAL_GROUP: usize = 3;
    pub const SIGNAL_CODE: usize = 4;
}

/// Bits in [`EventHeader::flags`].
pub mod flags {
    /// data1 filled its buffer: the string was cut.
    pub const TRUNC1: u16 = 1 << 0;
    /// data2 filled its buffer (or argv had more than ARGV_MAX arguments).
    pub const TRUNC2: u16 = 1 << 1;
    /// Reading data1 from the traced process faulted (the page was not resident).
    pub const FAULT1: u16 = 1 << 2;
    /// Reading data2 from the traced process faulted.
    pub const FAULT2: u16 = 1 << 3;
}

/// Bits in EXIT's `args[1]`.
pub mod exit_flags {
    /// The task called exit/exit_group; `args[0]` holds the code it passed.
    pub const CALLED_EXIT: u64 = 1 << 0;
}

/// Causes of lost events. Each is a counter per run: index `slot * COUNT + cause` of the
/// per-CPU `LOSS` array (`slot` = run id % MAX_RUNS), so a run's losses are its own.
pub mod loss {
    /// The ring buffer had no room for a record.
    pub const RINGBUF_FULL: u32 = 0;
    /// Too many syscalls in flight to remember their arguments until they return.
    pub const INFLIGHT_FULL: u32 = 1;
    /// The tracked-task table was full: a child of a tracked task is NOT tracked.
    pub const TRACKED_FULL: u32 = 2;
    /// The write-aggregation table was full: the write was emitted on its own instead, or lost
    /// if that failed too (then RINGBUF_FULL also counts it).
    pub const WRITE_AGG_FULL: u32 = 3;
    pub const COUNT: u32 = 4;
    pub const NAMES: [&str; COUNT as usize] =
        ["ringbuf_full", "inflight_full", "tracked_full", "write_agg_full"];
    /// Entries of the `LOSS` array: one row per run slot, and the orphans' row.
    pub const ENTRIES: u32 = (super::MAX_RUNS + 1) * COUNT;

    /// The counter of `cause` for run `run` (0: no run, the orphans' row).
    #[inline(always)]
    pub const fn index(run: u32, cause: u32) -> u32 {
        let slot = if run == 0 { super::ORPHAN_SLOT } else { run % super::MAX_RUNS };
        slot * COUNT + cause
    }
}

/// Fixed part of every record in the ring buffer; `len1` bytes of data1 then `len2` bytes of
/// data2 follow it directly.
#[repr(C)]
#[derive(Clone, Copy)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct EventHeader {
    /// bpf_ktime_get_boot_ns() when the record was made.
    pub ts_ns: u64,
    /// Syscall return value (SYSCALL), else 0.
    pub ret: i64,
    /// Raw syscall arguments (SYSCALL) or the kind's fields (see [`kind`]).
    pub args: [u64; 6],
    /// Process id (tgid) of the task that made the record.
    pub pid: u32,
    /// Thread id of the task that made the record.
    pub tid: u32,
    /// Syscall number (x86_64 numbering) for SYSCALL and EXEC_ARGS.
    pub nr: u32,
    pub kind: u16,
    pub flags: u16,
    pub len1: u16,
    pub len2: u16,
    /// The run whose task made the record (its id in the tracked-task map).
    pub run: u32,
    pub comm: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 104);
const _: () = assert!(core::mem::align_of::<EventHeader>() == 8);

/// Per-CPU scratch where the kernel builds a record before copying `header + len1 + len2`
/// bytes of it to the ring buffer (BPF stack is 512 bytes; records are up to 8 KiB).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EventBuf {
    pub header: EventHeader,
    pub data: [u8; DATA_MAX],
}
const _: () = assert!(core::mem::size_of::<EventBuf>() == 104 + DATA_MAX);

/// Value of the tracked-task map (key: tid).
#[repr(C)]
#[derive(Clone, Copy)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct TaskInfo {
    /// Start time (boot ns) of the task's process: its identity with the pid.
    pub start_ns: u64,
    /// Code passed to exit/exit_group, valid when `exit_flags` says so.
    pub exit_code: i64,
    pub exit_flags: u32,
    /// Last signal generated for this task (0 if none).
    pub last_signal: u32,
    /// The run tracking it (never 0): a child inherits its parent's, as it inherits tracking.
    pub run: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<TaskInfo>() == 32);

impl TaskInfo {
    /// A task `run` starts tracking (`start_ns` 0: unknown, userspace reads /proc).
    pub const fn new(run: u32, start_ns: u64) -> TaskInfo {
        TaskInfo { start_ns, exit_code: 0, exit_flags: 0, last_signal: 0, run, _pad: 0 }
    }
}

/// A syscall between its entry and its exit (key: tid).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Inflight {
    pub args: [u64; 6],
    pub nr: u32,
    /// The run of the task, from its tracked-task entry at syscall entry.
    pub run: u32,
}
const _: () = assert!(core::mem::size_of::<Inflight>() == 56);

/// Key of the write-aggregation map.
#[repr(C)]
#[derive(Clone, Copy)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FdKey {
    pub pid: u32,
    pub fd: u32,
}
const _: () = assert!(core::mem::size_of::<FdKey>() == 8);

/// Writes to one fd since the last flush.
#[repr(C)]
#[derive(Clone, Copy)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct WriteAgg {
    pub calls: u64,
    pub bytes: u64,
    pub failed: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub last_errno: i64,
    /// Thread that made the first write (the record's tid).
    pub tid: u32,
    /// The writer's run.
    pub run: u32,
}
const _: () = assert!(core::mem::size_of::<WriteAgg>() == 56);

/// Value of the cgroup-target map (key: cgroup v2 id): every task of that cgroup subtree is
/// tracked by `run`, lazily, at its first recorded syscall (`pilot trace --cgroup`).
#[repr(C)]
#[derive(Clone, Copy)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CgroupTarget {
    pub run: u32,
    /// Level of the cgroup in the hierarchy (root = 0), below CGROUP_LEVELS.
    pub level: u32,
    /// The tgid of the run's agent, which may sit in the cgroup: never tracked (its own
    /// writes would feed back).
    pub agent_pid: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<CgroupTarget>() == 16);

/// No offset: the field does not exist on this kernel.
pub const NO_OFFSET: u16 = u16::MAX;

/// Settings the loader writes into the kernel programs before loading them (a `.rodata`
/// global), including tracepoint field offsets read from tracefs, since those layouts move
/// between kernels (6.18's sched_process_fork differs from 6.1's).
#[repr(C)]
#[derive(Clone, Copy)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Config {
    /// Flush aggregated writes at least this often (ns) while the fd stays open.
    pub write_flush_ns: u64,
    /// Wake the reader once this many bytes wait in a run's ring buffer (batched wakeups).
    pub wakeup_bytes: u64,
    pub newtask_pid: u16,
    pub newtask_clone_flags: u16,
    pub exec_filename: u16,
    pub exec_pid: u16,
    pub exec_old_pid: u16,
    pub exit_pid: u16,
    pub exit_group_dead: u16,
    pub sig_sig: u16,
    pub sig_code: u16,
    pub sig_pid: u16,
    pub sig_group: u16,
    pub sig_result: u16,
}
const _: () = assert!(core::mem::size_of::<Config>() == 40);

impl Config {
    pub const fn zeroed() -> Self {
        Config {
            write_flush_ns: 0,
            wakeup_bytes: 0,
            newtask_pid: NO_OFFSET,
            newtask_clone_flags: NO_OFFSET,
            exec_filename: NO_OFFSET,
            exec_pid: NO_OFFSET,
            exec_old_pid: NO_OFFSET,
            exit_pid: NO_OFFSET,
            exit_group_dead: NO_OFFSET,
            sig_sig: NO_OFFSET,
            sig_code: NO_OFFSET,
            sig_pid: NO_OFFSET,
            sig_group: NO_OFFSET,
            sig_result: NO_OFFSET,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers, no padding (size asserts above).
    unsafe impl aya::Pod for super::TaskInfo {}
    unsafe impl aya::Pod for super::FdKey {}
    unsafe impl aya::Pod for super::WriteAgg {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::CgroupTarget {}
}

/// Where the contained network sends what a pilot tries to send (the agent's sink), and what
/// it may reach for real. Index 0 of the `SINK` array.
#[repr(C)]
#[derive(Clone, Copy)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct SinkConfig {
    /// Ports of the agent's sink on 127.0.0.1 and ::1, network byte order in the low 16 bits
    /// (as `bpf_sock_addr.user_port`). 0: no sink, connects are refused.
    pub tcp4_port: u32,
    pub udp4_port: u32,
    pub tcp6_port: u32,
    pub udp6_port: u32,
}
const _: () = assert!(core::mem::size_of::<SinkConfig>() == 16);

/// An IPv4 or IPv6 destination (IPv4 in `ip[0]`, `family` 2 or 10), ports in network order.
#[repr(C)]
#[derive(Clone, Copy)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Dest {
    pub family: u32,
    pub port: u32,
    pub ip: [u32; 4],
}
const _: () = assert!(core::mem::size_of::<Dest>() == 24);

#[cfg(feature = "user")]
mod pod_contain {
    // SAFETY: plain #[repr(C)] integers, no padding (size asserts above).
    unsafe impl aya::Pod for super::SinkConfig {}
    unsafe impl aya::Pod for super::Dest {}
}
