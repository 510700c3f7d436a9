//! The tracked set (the `TRACKED` map): which run tracks the current task, start tracking one,
//! and what its exit record will say. A cgroup target tracks every task of its cgroup subtree
//! lazily, on its first recorded syscall.
use agent_common::{CGROUP_LEVELS, TaskInfo, exit_flags, loss};
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_pid_tgid},
};

use crate::{
    diag,
    maps::{CGROUP_LEVELS as LEVELS, CGROUPS, TRACKED, count_loss},
};

/// The run tracking the current task, if any. Adds the task when it sits in a tracked cgroup.
#[inline(always)]
pub fn current_run(tid: u32) -> Option<u32> {
    if let Some(info) = unsafe { TRACKED.get(&tid) } {
        return Some(info.run);
    }
    let run = cgroup_run()?;
    track(tid, 0, run).then_some(run)
}

/// The run whose cgroup target holds the current task (never the run's own agent: tracing its
/// own writes would feed back).
#[inline(always)]
pub fn cgroup_run() -> Option<u32> {
    // Every recorded syscall of every untracked task comes here: one array read when no run
    // follows a cgroup.
    if LEVELS.get(CGROUP_LEVELS).is_none_or(|any| *any == 0) {
        return None;
    }
    for level in 0..CGROUP_LEVELS {
        if LEVELS.get(level).is_none_or(|used| *used == 0) {
            continue;
        }
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if let Some(target) = unsafe { CGROUPS.get(&id) } {
            let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
            return (tgid != target.agent_pid).then_some(target.run);
        }
    }
    None
}

/// Start tracking `tid` for `run`. `start_ns` 0 means unknown (userspace reads it from /proc).
#[inline(always)]
pub fn track(tid: u32, start_ns: u64, run: u32) -> bool {
    if TRACKED.insert(&tid, &TaskInfo::new(run, start_ns), BPF_ANY as u64).is_err() {
        count_loss(run, loss::TRACKED_FULL);
        diag::log_untracked(tid);
        return false;
    }
    true
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
