//! The tracked set (the `TRACKED` map): is the current task tracked, start tracking one, and
//! what its exit record will say. A cgroup root tracks every task of the cgroup subtree lazily,
//! on its first recorded syscall.
use agent_common::{TaskInfo, exit_flags, loss};
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_pid_tgid},
};

use crate::{
    diag,
    maps::{TRACKED, config_field, count_loss},
};

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
pub fn is_agent() -> bool {
    (bpf_get_current_pid_tgid() >> 32) as u32 == config_field!(agent_pid)
}

#[inline(always)]
pub fn in_tracked_cgroup() -> bool {
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
pub fn track(tid: u32, start_ns: u64) -> bool {
    let info = TaskInfo { start_ns, exit_code: 0, exit_flags: 0, last_signal: 0 };
    if TRACKED.insert(&tid, &info, BPF_ANY as u64).is_err() {
        count_loss(loss::TRACKED_FULL);
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
