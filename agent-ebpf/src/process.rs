//! Who is tracked: the tree grows at task_newtask (in the parent's context, before the child
//! can run), shrinks at sched_process_exit, and survives exec. A cgroup root tracks every task
//! of the cgroup subtree lazily, on its first recorded syscall.
use agent_common::{NO_OFFSET, TaskInfo, arg, exit_flags, kind, loss};
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    EbpfContext,
    programs::TracePointContext,
};

use crate::{
    emit,
    maps::{INFLIGHT, TRACKED, config, config_field, count_loss},
};

const CLONE_THREAD: u64 = 0x0001_0000;

/// Is the current task tracked? Adds it when it sits in the tracked cgroup.
#[inline(always)]
pub fn current_tracked(tid: u32) -> bool {
    if unsafe { TRACKED.get(&tid) }.is_some() {
        return true;
    }
    in_tracked_cgroup() && !is_agent() && track(tid, 0)
}

/// The agent itself may sit in the traced cgroup: tracing its own writes would feed back.
#[inline(always)]
fn is_agent() -> bool {
    (bpf_get_current_pid_tgid() >> 32) as u32 == config_field!(agent_pid)
}

#[inline(always)]
fn in_tracked_cgroup() -> bool {
    // Every recorded syscall of every untracked task comes here: one field, not the struct.
    let cgroup_id = config_field!(cgroup_id);
    if cgroup_id == 0 {
        return false;
    }
    let level = config_field!(cgroup_level) as i32;
    let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
    ancestor == cgroup_id
}

/// Start tracking `tid`. `start_ns` 0 means unknown (userspace reads it from /proc).
#[inline(always)]
fn track(tid: u32, start_ns: u64) -> bool {
    let info = TaskInfo { start_ns, exit_code: 0, exit_flags: 0, last_signal: 0 };
    if TRACKED.insert(&tid, &info, BPF_ANY as u64).is_err() {
        count_loss(loss::TRACKED_FULL);
        return false;
    }
    true
}

#[inline(always)]
unsafe fn field<T>(ctx: &TracePointContext, offset: u16) -> Result<T, i64> {
    if offset == NO_OFFSET {
        return Err(0);
    }
    unsafe { ctx.read_at::<T>(offset as usize) }.map_err(|e| e as i64)
}

/// task_newtask fires in the parent. A tracked parent's child (process or thread) is tracked.
pub fn try_task_newtask(ctx: &TracePointContext) -> Result<(), i64> {
    let parent_tid = bpf_get_current_pid_tgid() as u32;
    if !current_tracked(parent_tid) {
        return Ok(());
    }
    let cfg = config();
    let child: i32 = unsafe { field(ctx, cfg.newtask_pid)? };
    let clone_flags: u64 = unsafe { field(ctx, cfg.newtask_clone_flags) }.unwrap_or(0);
    let start_ns = if clone_flags & CLONE_THREAD != 0 {
        // A thread belongs to its parent's process: same identity.
        unsafe { TRACKED.get(&parent_tid) }.map(|t| t.start_ns).unwrap_or(0)
    } else {
        unsafe { bpf_ktime_get_boot_ns() }
    };
    track(child as u32, start_ns);
    let buf = emit::start(kind::FORK).ok_or(0)?;
    buf.header.args[0] = child as u64;
    buf.header.args[1] = clone_flags;
    buf.header.args[2] = start_ns;
    emit::submit(buf);
    Ok(())
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
            let _ = TRACKED.insert(&tid, &info, BPF_ANY as u64);
            let _ = TRACKED.remove(&(old_tid as u32));
        }
        let _ = INFLIGHT.remove(&(old_tid as u32));
    }
    if !current_tracked(tid) {
        return Ok(());
    }
    let start_ns = unsafe { TRACKED.get(&tid) }.map(|t| t.start_ns).unwrap_or(0);
    let buf = emit::start(kind::EXEC).ok_or(0)?;
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
        None if in_tracked_cgroup() && !is_agent() => TaskInfo { start_ns: 0, exit_code: 0, exit_flags: 0, last_signal: 0 },
        None => return Ok(()),
    };
    let _ = TRACKED.remove(&tid);
    let _ = INFLIGHT.remove(&tid);
    let offset = config_field!(exit_group_dead);
    let group_dead: u64 = match unsafe { field::<u8>(ctx, offset) } {
        Ok(v) => v as u64,
        Err(_) => 2,
    };
    let buf = emit::start(kind::EXIT).ok_or(0)?;
    buf.header.args[0] = info.exit_code as u64;
    buf.header.args[1] = info.exit_flags as u64;
    buf.header.args[2] = info.last_signal as u64;
    buf.header.args[3] = group_dead;
    buf.header.args[4] = info.start_ns;
    emit::submit(buf);
    Ok(())
}

/// exit/exit_group entry: remember the code for the exit record.
#[inline(always)]
pub fn remember_exit_code(tid: u32, code: u64) {
    if let Some(info) = TRACKED.get_ptr_mut(&tid) {
        unsafe {
            (*info).exit_code = code as i32 as i64;
            (*info).exit_flags |= exit_flags::CALLED_EXIT as u32;
        }
    }
}

/// Remember the last signal aimed at a tracked task (how it died, when it did not call exit).
#[inline(always)]
pub fn remember_signal(tid: u32, sig: u32) {
    if let Some(info) = TRACKED.get_ptr_mut(&tid) {
        unsafe { (*info).last_signal = sig };
    }
}
