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
//! stack on every sys_exit). The loss statement, reached from dozens of places, is an
//! out-of-line global function instead (`log_loss`), which the verifier checks once, on its
//! own: inlined, it made loading with debug enabled take 0.25 s longer.
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

pub(crate) use {debug, warning};

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
