//! Kernel diagnostics (aya-log), on rare paths only: a loss being counted, a program ending in
//! an unexpected helper failure, a table insert failing. Never on the per-syscall path.
//!
//! Every statement logs under one target, `pilot::kernel`, so `RUST_LOG=pilot=debug` (or
//! `pilot::kernel=debug`) selects them all. The loader writes the most verbose level RUST_LOG
//! enables for it into aya-log's read-only `AYA_LOG_LEVEL` before loading: the verifier then
//! knows each disabled statement is unreachable and removes it (agent/src/probes/kernel_log.rs).
//!
//! A statement sits on the rare branch it reports, so the per-syscall path does not change,
//! and takes literals and numbers only (a `&str` argument naming the program was stored on the
//! stack on every sys_exit). One reached from several places is an out-of-line global function
//! here (`no_mangle`): the object holds its code once (a statement is about 500 instructions)
//! and the verifier checks it once per program, on its own. Inlined at each of the dozens of
//! places a loss can be counted, the loss statement made loading with debug enabled take
//! 0.25 s longer. The programs' own failures are logged inline, in main.rs.
use agent_common::loss;

/// The `log` target of every kernel record (agent/src/probes/kernel_log.rs reads it too).
pub const TARGET: &str = "pilot::kernel";

macro_rules! warning {
    ($($arg:tt)+) => {
        aya_log_ebpf::warn!(&(), target: $crate::diag::TARGET, $($arg)+)
    };
}

macro_rules! debug {
    ($($arg:tt)+) => {
        aya_log_ebpf::debug!(&(), target: $crate::diag::TARGET, $($arg)+)
    };
}

pub(crate) use warning;

/// The `n`th loss of `cause` on this CPU. Debug-level: losses are counted, and shown in the
/// summary and on stderr already.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn log_loss(cause: u32, n: u64) -> i32 {
    // No `loss::NAMES[cause]`: indexing by a variable leaves a panic path, which the verifier
    // rejects.
    let name = match cause {
        loss::RINGBUF_FULL => loss::NAMES[loss::RINGBUF_FULL as usize],
        loss::INFLIGHT_FULL => loss::NAMES[loss::INFLIGHT_FULL as usize],
        loss::TRACKED_FULL => loss::NAMES[loss::TRACKED_FULL as usize],
        _ => loss::NAMES[loss::WRITE_AGG_FULL as usize],
    };
    debug!("lost an event: {} (loss {} of this cause on this CPU)", name, n);
    0
}

/// Task `tid` could not be added to the tracked-task table (full). Debug-level: counted as a
/// `tracked_full` loss.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn log_untracked(tid: u32) -> i32 {
    debug!("tracked-task table full: task {} is not tracked", tid);
    0
}

/// A redirected socket's original destination could not be stored: getpeername will show the
/// sink. Not counted anywhere, hence warn-level.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn log_original_lost(port: u32) -> i32 {
    warning!("original-destination table insert failed: getpeername shows the sink, not port {}", port);
    0
}

/// A port the pilot bound could not be remembered: its own loopback connects to it will go to
/// the sink. Not counted anywhere, hence warn-level.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn log_bound_lost(port: u32) -> i32 {
    warning!("pilot-bound table full: loopback connects to port {} go to the sink", port);
    0
}
