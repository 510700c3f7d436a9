//! The two raw tracepoints every syscall passes: sys_enter remembers the arguments of a tracked
//! task's recorded syscalls, sys_exit records them with the return value (so a failed unlink is
//! not a deletion) and reads user strings then, when the kernel has already faulted them in.
//!
//! Hot path for everyone else: one bitmap test (sys_enter: the syscall number is an argument;
//! sys_exit: one read of orig_rax) and, for recorded syscalls only, one hash lookup.
use agent_common::{
    Inflight, kind, loss,
    syscalls::{self, Class, F_DUPFD, F_DUPFD_CLOEXEC, Spec},
};
use aya_ebpf::{
    bindings::{BPF_ANY, pt_regs},
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    programs::RawTracePointContext,
};

use crate::{
    emit, file,
    maps::{INFLIGHT, count_loss},
    net, process,
};

pub fn try_sys_enter(ctx: &RawTracePointContext) -> Result<(), i64> {
    let nr: u64 = ctx.arg(1);
    if !syscalls::interesting(nr) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    if !process::current_tracked(tid) {
        return Ok(());
    }
    let nr = nr as u32;
    let mut args = read_args(ctx.arg(0))?;
    let spec = syscalls::spec(nr);
    match spec.class {
        Class::Exit => {
            process::remember_exit_code(tid, args[0]);
            return Ok(());
        }
        Class::Exec => file::exec_args(nr, &args, &spec),
        Class::Open => {
            file::open_flags(nr, &mut args);
        }
        Class::Close => file::flush_on_close(nr, (pid_tgid >> 32) as u32, &args),
        Class::Plain if nr == syscalls::FCNTL && args[1] != F_DUPFD && args[1] != F_DUPFD_CLOEXEC => {
            return Ok(());
        }
        _ => {}
    }
    let inflight = Inflight { args, nr, _pad: 0 };
    // A task's entry stays from one syscall to the next (sched_process_exit removes it):
    // writing it in place costs a lookup, where insert + delete cost two allocating updates.
    if let Some(slot) = INFLIGHT.get_ptr_mut(&tid) {
        unsafe { *slot = inflight };
    } else if INFLIGHT.insert(&tid, &inflight, BPF_ANY as u64).is_err() {
        count_loss(loss::INFLIGHT_FULL);
    }
    Ok(())
}

/// `Inflight::nr` of an entry whose syscall has been recorded (no syscall has this number).
const CONSUMED: u32 = u32::MAX;

pub fn try_sys_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let regs: *const pt_regs = ctx.arg(0);
    let nr: u64 = unsafe { bpf_probe_read_kernel(&raw const (*regs).orig_rax) }.map_err(|e| e as i64)?;
    if !syscalls::interesting(nr) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let inflight = match INFLIGHT.get_ptr_mut(&tid) {
        Some(slot) => unsafe {
            let inflight = *slot;
            (*slot).nr = CONSUMED;
            inflight
        },
        None => return Ok(()),
    };
    if inflight.nr as u64 != nr {
        return Ok(());
    }
    let ret: i64 = ctx.arg(1);
    let pid = (pid_tgid >> 32) as u32;
    let spec = syscalls::spec(inflight.nr);
    let args = &inflight.args;
    match spec.class {
        Class::Write => file::aggregate_write(pid, tid, arg(args, spec.fd_arg), ret),
        Class::SendTo | Class::SendMsg => net::send(pid, tid, inflight.nr, args, &spec, ret),
        Class::Exec if ret >= 0 => Ok(()), // sched_process_exec reported it
        Class::SockAddr | Class::Accept => net::with_address(pid, inflight.nr, args, &spec, ret),
        Class::FdPair => file::fd_pair(pid, inflight.nr, args, &spec, ret),
        Class::Open if !file::open_wanted(inflight.nr, args, ret) => Ok(()),
        _ => {
            if spec.returns_fd && ret >= 0 {
                file::flush_writes(pid, ret as u64);
            }
            record(inflight.nr, args, &spec, ret)
        }
    }
}

/// A SYSCALL record with the syscall's string arguments.
#[inline(always)]
pub fn record(nr: u32, args: &[u64; 6], spec: &Spec, ret: i64) -> Result<(), i64> {
    let buf = start_syscall(nr, args, ret)?;
    if spec.str1 != syscalls::NONE {
        emit::user_str1(buf, arg(args, spec.str1));
    }
    if spec.str2 != syscalls::NONE {
        emit::user_str2(buf, arg(args, spec.str2));
    }
    emit::submit(buf);
    Ok(())
}

#[inline(always)]
pub fn start_syscall(nr: u32, args: &[u64; 6], ret: i64) -> Result<&'static mut agent_common::EventBuf, i64> {
    let buf = emit::start(kind::SYSCALL).ok_or(0)?;
    buf.header.nr = nr;
    buf.header.args = *args;
    buf.header.ret = ret;
    Ok(buf)
}

/// The six syscall arguments (rdi, rsi, rdx, r10, r8, r9) in one read: in pt_regs they all lie
/// in the 64 bytes from r10 to rdi.
#[inline(always)]
fn read_args(regs: *const pt_regs) -> Result<[u64; 6], i64> {
    let r: [u64; 8] = unsafe { bpf_probe_read_kernel(&raw const (*regs).r10 as *const [u64; 8]) }
        .map_err(|e| e as i64)?;
    // r10, r9, r8, rax, rcx, rdx, rsi, rdi
    Ok([r[7], r[6], r[5], r[0], r[2], r[1]])
}

/// Argument `i` (a `Spec` index), 0 when absent. No slice indexing: a bounds-check panic path
/// would leave a call at the end of the program, which the verifier rejects.
#[inline(always)]
pub fn arg(args: &[u64; 6], i: u8) -> u64 {
    match i {
        0 => args[0],
        1 => args[1],
        2 => args[2],
        3 => args[3],
        4 => args[4],
        5 => args[5],
        _ => 0,
    }
}
