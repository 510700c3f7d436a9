//! Signals sent by tracked tasks. The syscalls (kill, tgkill, tkill, pidfd_send_signal) are
//! recorded by `syscall`; signal_generate adds each signal the kernel actually generated, which
//! names every target of a process-group kill or `kill -1` one by one.
use agent_common::{arg, kind};
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::TracePointContext};

use crate::{emit, maps::config, tracked};

pub fn try_signal_generate(ctx: &TracePointContext) -> Result<(), i64> {
    let cfg = config();
    let sig: i32 = unsafe { ctx.read_at(cfg.sig_sig as usize) }.map_err(|e| e as i64)?;
    let target: i32 = unsafe { ctx.read_at(cfg.sig_pid as usize) }.map_err(|e| e as i64)?;
    tracked::remember_signal(target as u32, sig as u32);

    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(run) = tracked::current_run(tid) else { return Ok(()) };
    let code: i32 = unsafe { ctx.read_at(cfg.sig_code as usize) }.map_err(|e| e as i64)?;
    // si_code <= 0 is a signal a process sent (SI_USER, SI_QUEUE, SI_TKILL...); positive codes
    // are the kernel's own (SIGCHLD on exit, faults), not an effect of the tracee.
    if code > 0 {
        return Ok(());
    }
    let group: i32 = unsafe { ctx.read_at(cfg.sig_group as usize) }.unwrap_or(0);
    let result: i32 = unsafe { ctx.read_at(cfg.sig_result as usize) }.unwrap_or(0);
    let buf = emit::start(kind::SIGNAL, run).ok_or(0)?;
    let a = &mut buf.header.args;
    a[arg::SIGNAL_TARGET] = target as u64;
    a[arg::SIGNAL_SIG] = sig as u64;
    a[arg::SIGNAL_RESULT] = result as u64;
    a[arg::SIGNAL_GROUP] = group as u64;
    a[arg::SIGNAL_CODE] = code as i64 as u64;
    emit::submit(buf);
    Ok(())
}
