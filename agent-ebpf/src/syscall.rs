//! The two raw tracepoints every syscall passes: sys_enter remembers the arguments of a tracked
//! task's recorded syscalls, sys_exit records them with the return value (so a failed unlink is
//! not a deletion) and reads user strings then, when the kernel has already faulted them in.
//! This is the dispatcher: what a syscall's record holds is decided by its concern module.
//!
//! Hot path for everyone else: one bitmap test (sys_enter: the syscall number is an argument;
//! sys_exit: one read of orig_rax) and, for recorded syscalls only, one hash lookup.
use agent_common::{
    Inflight, loss,
    syscalls::{self, Class},
};
use aya_ebpf::{
    bindings::{BPF_ANY, pt_regs},
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    programs::RawTracePointContext,
};

use crate::{
    args::{self, arg},
    emit, file,
    maps::{INFLIGHT, count_loss},
    net, process, tracked, writes,
};

pub fn try_sys_enter(ctx: &RawTracePointContext) -> Result<(), i64> {
    let nr: u64 = ctx.arg(1);
    if !syscalls::interesting(nr) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(run) = tracked::current_run(tid) else { return Ok(()) };
    let nr = nr as u32;
    let mut args = args::read(ctx.arg(0))?;
    let spec = syscalls::spec(nr);
    match spec.class {
        Class::Exit => {
            tracked::remember_exit_code(tid, args[0]);
            return Ok(());
        }
        Class::Exec => process::exec_args(nr, &args, &spec, run),
        Class::Open => {
            file::open_flags(nr, &mut args);
        }
        Class::Close => {
            // Reporting the writes is all a close needs: it is not recorded itself.
            file::flush_on_close(nr, (pid_tgid >> 32) as u32, &args);
            return Ok(());
        }
        Class::Plain if !syscalls::plain_recorded(nr, &args) => return Ok(()),
        Class::Plain if nr == syscalls::IOCTL => file::clone_range_args(&mut args),
        _ => {}
    }
    let inflight = Inflight { args, nr, run };
    // A task's entry stays from one syscall to the next (sched_process_exit removes it):
    // writing it in place costs a lookup, where insert + delete cost two allocating updates.
    if let Some(slot) = INFLIGHT.get_ptr_mut(&tid) {
        unsafe { *slot = inflight };
    } else if INFLIGHT.insert(&tid, &inflight, BPF_ANY as u64).is_err() {
        count_loss(run, loss::INFLIGHT_FULL);
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
    let (args, run) = (&inflight.args, inflight.run);
    match spec.class {
        Class::Write => writes::aggregate(((pid as u64) << 32) | tid as u64, run, arg(args, spec.fd_arg), ret),
        Class::SendTo | Class::SendMsg => net::send(pid, tid, run, inflight.nr, args, &spec, ret),
        Class::SendMmsg => net::sendmmsg(pid, tid, run, args, ret),
        Class::Exec if ret >= 0 => Ok(()), // sched_process_exec reported it
        Class::SockAddr | Class::Accept => net::with_address(pid, run, inflight.nr, args, &spec, ret),
        Class::FdPair => file::fd_pair(pid, run, inflight.nr, args, &spec, ret),
        Class::Open if !file::open_wanted(inflight.nr, args, ret) => Ok(()),
        _ => {
            if spec.returns_fd && ret >= 0 {
                writes::flush(pid, ret as u64);
            }
            emit::record(inflight.nr, args, &spec, ret, run)
        }
    }
}
