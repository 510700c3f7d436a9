//! Who is tracked: the tree grows at task_newtask (in the parent's context, before the child
//! can run), shrinks at sched_process_exit, and survives exec. A cgroup root tracks every task
//! of the cgroup subtree lazily, on its first recorded syscall.
use agent_common::{NO_OFFSET, TaskInfo, arg, kind, syscalls::Spec};
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    EbpfContext,
    programs::TracePointContext,
};

use crate::{
    args::arg,
    diag, emit,
    maps::{INFLIGHT, TRACKED, config, config_field},
    tracked::{cgroup_run, current_run, track},
};

const CLONE_THREAD: u64 = 0x0001_0000;

#[inline(always)]
unsafe fn field<T>(ctx: &TracePointContext, offset: u16) -> Result<T, i64> {
    if offset == NO_OFFSET {
        return Err(0);
    }
    unsafe { ctx.read_at::<T>(offset as usize) }.map_err(|e| e as i64)
}

/// task_newtask fires in the parent. A tracked parent's child (process or thread) is tracked,
/// by the parent's run.
pub fn try_task_newtask(ctx: &TracePointContext) -> Result<(), i64> {
    let parent_tid = bpf_get_current_pid_tgid() as u32;
    let Some(run) = current_run(parent_tid) else { return Ok(()) };
    let cfg = config();
    let child: i32 = unsafe { field(ctx, cfg.newtask_pid)? };
    let clone_flags: u64 = unsafe { field(ctx, cfg.newtask_clone_flags) }.unwrap_or(0);
    let start_ns = if clone_flags & CLONE_THREAD != 0 {
        // A thread belongs to its parent's process: same identity.
        unsafe { TRACKED.get(&parent_tid) }.map(|t| t.start_ns).unwrap_or(0)
    } else {
        unsafe { bpf_ktime_get_boot_ns() }
    };
    track(child as u32, start_ns, run);
    let buf = emit::start(kind::FORK, run).ok_or(0)?;
    buf.header.args[arg::FORK_CHILD] = child as u64;
    buf.header.args[arg::FORK_FLAGS] = clone_flags;
    buf.header.args[arg::FORK_START] = start_ns;
    emit::submit(buf);
    Ok(())
}

/// EXEC_ARGS at execve entry: after a successful exec the old argv is gone.
#[inline(always)]
pub fn exec_args(nr: u32, args: &[u64; 6], spec: &Spec, run: u32) {
    let Some(buf) = emit::start(kind::EXEC_ARGS, run) else { return };
    buf.header.nr = nr;
    buf.header.args = *args;
    emit::user_str1(buf, arg(args, spec.str1));
    buf.header.ret = emit::user_argv(buf, arg(args, spec.addr_arg)) as i64;
    emit::submit(buf);
}

/// sched_process_exec: the new program runs. The filename is the one the kernel opened.
pub fn try_sched_process_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let cfg = config();
    let old_tid: i32 = unsafe { field(ctx, cfg.exec_old_pid) }.unwrap_or(tid as i32);
    if old_tid as u32 != tid {
        // A non-leader thread exec'd and took over the leader's tid (the leader's exit already
        // dropped that tid from the map): move its entry to the tid it has now.
        if let Some(info) = unsafe { TRACKED.get(&(old_tid as u32)) }.copied() {
            if TRACKED.insert(&tid, &info, BPF_ANY as u64).is_err() {
                diag::log_untracked(tid);
            }
            let _ = TRACKED.remove(&(old_tid as u32));
        }
        let _ = INFLIGHT.remove(&(old_tid as u32));
    }
    let Some(run) = current_run(tid) else { return Ok(()) };
    let start_ns = unsafe { TRACKED.get(&tid) }.map(|t| t.start_ns).unwrap_or(0);
    let buf = emit::start(kind::EXEC, run).ok_or(0)?;
    buf.header.args[arg::EXEC_OLD_TID] = old_tid as u64;
    buf.header.args[arg::EXEC_START_NS] = start_ns;
    if let Ok(loc) = unsafe { field::<u32>(ctx, cfg.exec_filename) } {
        // __data_loc: low 16 bits offset from the record start, high 16 bits length.
        let src = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
        emit::kernel_str1(buf, src);
    }
    emit::submit(buf);
    Ok(())
}

/// sched_process_exit: a tracked task ends; release it and report how.
pub fn try_sched_process_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let info = match unsafe { TRACKED.get(&tid) } {
        Some(info) => *info,
        // A task of the tracked cgroup that never made a recorded syscall still ends.
        None => match cgroup_run() {
            Some(run) => TaskInfo::new(run, 0),
            None => return Ok(()),
        },
    };
    let _ = TRACKED.remove(&tid);
    let _ = INFLIGHT.remove(&tid);
    let offset = config_field!(exit_group_dead);
    let group_dead: u64 = match unsafe { field::<u8>(ctx, offset) } {
        Ok(v) => v as u64,
        Err(_) => 2,
    };
    let buf = emit::start(kind::EXIT, info.run).ok_or(0)?;
    buf.header.args[arg::EXIT_CODE] = info.exit_code as u64;
    buf.header.args[arg::EXIT_FLAGS] = info.exit_flags as u64;
    buf.header.args[arg::EXIT_SIGNAL] = info.last_signal as u64;
    buf.header.args[arg::EXIT_GROUP_DEAD] = group_dead;
    buf.header.args[arg::EXIT_START] = info.start_ns;
    emit::submit(buf);
    Ok(())
}
