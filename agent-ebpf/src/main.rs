//! The pilot's kernel programs. One module per concern, as in Falco's modern_bpf, and
//! dependencies that run one way (README.md draws the graph):
//! - `syscall`: the raw sys_enter/sys_exit dispatcher; calls the concern modules;
//! - `process` (fork, exec, exit), `file`, `net`, `signal` (what tracked tasks do), and
//!   `contain` (the cgroup network hooks): they use only the shared layer below, never each
//!   other;
//! - the shared layer: `tracked` (the tracked set), `writes` (write aggregation), `emit`
//!   (building and submitting records), `args` (syscall arguments), `maps`, `diag` (kernel
//!   logs); `layout` only puts the shared records into the object's BTF.
//!
//! Every program is a thin `#[...]` wrapper around a `try_<prog>() -> Result` function; an
//! error there means a helper that should not fail did, and a record is lost without being
//! counted, so the wrapper logs it (warn-level: shown by default, like any other warning).
#![no_std]
#![no_main]
// Inline asm for the BPF atomic add (writes.rs); this crate is built with nightly anyway.
#![feature(asm_experimental_arch)]

// The dispatcher.
mod syscall;
// Concern modules.
mod contain;
mod file;
mod net;
mod process;
mod signal;
// Shared layer.
mod args;
mod diag;
mod emit;
mod layout;
mod maps;
mod tracked;
mod writes;

use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    if let Err(err) = syscall::try_sys_enter(&ctx) {
        diag::warning!("sys_enter: a helper failed ({}): a record is lost", err);
    }
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    if let Err(err) = syscall::try_sys_exit(&ctx) {
        diag::warning!("sys_exit: a helper failed ({}): a record is lost", err);
    }
    0
}

#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    if let Err(err) = process::try_task_newtask(&ctx) {
        diag::warning!("task_newtask: a helper failed ({}): a record is lost", err);
    }
    0
}

// Program names are cut to 15 characters in the kernel (what `pilot_bpf_*` metrics and bpftool
// show): keep them distinct there.
#[tracepoint]
pub fn sched_exec(ctx: TracePointContext) -> u32 {
    if let Err(err) = process::try_sched_process_exec(&ctx) {
        diag::warning!("sched_exec: a helper failed ({}): a record is lost", err);
    }
    0
}

#[tracepoint]
pub fn sched_exit(ctx: TracePointContext) -> u32 {
    if let Err(err) = process::try_sched_process_exit(&ctx) {
        diag::warning!("sched_exit: a helper failed ({}): a record is lost", err);
    }
    0
}

#[tracepoint]
pub fn signal_generate(ctx: TracePointContext) -> u32 {
    if let Err(err) = signal::try_signal_generate(&ctx) {
        diag::warning!("signal_generate: a helper failed ({}): a record is lost", err);
    }
    0
}

/// The floor `cargo xtask bench` compares against: an empty program on the same hooks, which
/// costs what attaching anything there costs. Loaded only by `pilot __bench load floor`.
#[raw_tracepoint]
pub fn floor_raw(_ctx: RawTracePointContext) -> i32 {
    0
}

/// The floor for the four plain tracepoints (see `floor_raw`).
#[tracepoint]
pub fn floor_tp(_ctx: TracePointContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
