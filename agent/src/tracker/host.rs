//! Issue 16: changes to the host and to other processes the trace sees (the syscalls of
//! agent-common's issue-16 table entries): priority, affinity, limits, the clock, swap,
//! modules, mounts. In `pilot trace` and a commit's live run they are what the action did;
//! in a pilot the supervisor answers most of them (those the kernel runs land here too).
use agent_common::syscalls as sc;

use super::{AT_FDCWD, Tracker};
use crate::{
    decode::{Record, Syscall},
    event::{Event, Kind},
};

/// Is `nr` one of these?
pub fn recorded(nr: u32) -> bool {
    matches!(
        nr,
        sc::SETPRIORITY | sc::SCHED_SETPARAM | sc::SCHED_SETSCHEDULER | sc::SETTIMEOFDAY | sc::MOUNT | sc::UMOUNT2
            | sc::SWAPON | sc::SWAPOFF | sc::INIT_MODULE | sc::DELETE_MODULE | sc::SCHED_SETAFFINITY | sc::CLOCK_SETTIME
            | sc::IOPRIO_SET | sc::PRLIMIT64 | sc::FINIT_MODULE | sc::SCHED_SETATTR
    )
}

impl Tracker {
    pub(super) fn host_change(&mut self, rec: &Record, s: &Syscall, out: &mut Vec<Event>) {
        let a = s.args;
        let pid = rec.pid;
        let int = |i: usize| a[i] as i32 as i64;
        // A pid argument: 0 is the caller.
        let process = |t: &Tracker, who: i64| if who == 0 { pid as i64 } else { t.host_pid(who) };
        let (kind, target_pid, target, value, path): (Kind, Option<i64>, Option<String>, Option<String>, Option<String>) = match s.nr {
            sc::SETPRIORITY | sc::IOPRIO_SET => {
                let value = if s.nr == sc::SETPRIORITY { format!("nice {}", int(2)) } else { format!("ioprio class {} level {}", a[2] >> 13, a[2] & 0x1fff) };
                // which: PRIO_PROCESS 0 / PRIO_PGRP 1 / PRIO_USER 2 (ioprio: 1, 2, 3)
                let which = if s.nr == sc::IOPRIO_SET { a[0].saturating_sub(1) } else { a[0] };
                match which {
                    0 => (Kind::Setpriority, Some(process(self, int(1))), None, Some(value), None),
                    1 => (Kind::Setpriority, Some(if int(1) == 0 { 0 } else { -int(1) }), None, Some(value), None),
                    _ => (Kind::Setpriority, None, Some(format!("uid {}", a[1] as u32)), Some(value), None),
                }
            }
            sc::SCHED_SETSCHEDULER => (Kind::Setpriority, Some(process(self, int(0))), None, Some(format!("policy {}", a[1])), None),
            sc::SCHED_SETPARAM | sc::SCHED_SETATTR => (Kind::Setpriority, Some(process(self, int(0))), None, None, None),
            sc::SCHED_SETAFFINITY => (Kind::Setaffinity, Some(process(self, int(0))), None, None, None),
            sc::PRLIMIT64 => {
                if a[2] == 0 {
                    return; // a query
                }
                (Kind::Setrlimit, Some(process(self, int(0))), None, Some(format!("resource {}", a[1])), None)
            }
            sc::CLOCK_SETTIME | sc::SETTIMEOFDAY => (Kind::Clock, None, Some("CLOCK_REALTIME".into()), None, None),
            sc::SWAPON | sc::SWAPOFF => {
                let mut e = Event::default();
                let p = self.resolve(pid, AT_FDCWD, s.data1, &mut e);
                (Kind::Swap, None, Some(p.clone()), Some(if s.nr == sc::SWAPON { "on" } else { "off" }.into()), Some(p))
            }
            sc::INIT_MODULE => (Kind::Module, None, Some("(module image)".into()), Some("load".into()), None),
            sc::FINIT_MODULE => {
                let file = self.procs.get(&pid).and_then(|p| p.fds.path_of(int(0)));
                let name = file.as_deref().and_then(|f| f.rsplit('/').next()).map(|n| n.split(".ko").next().unwrap_or(n).replace('-', "_"));
                (Kind::Module, None, name, Some("load".into()), file)
            }
            sc::DELETE_MODULE => (Kind::Module, None, Some(crate::decode::text(s.data1)), Some("unload".into()), None),
            sc::MOUNT | sc::UMOUNT2 => {
                let mut e = Event::default();
                let raw = if s.nr == sc::MOUNT { s.data2 } else { s.data1 };
                let p = self.resolve(pid, AT_FDCWD, raw, &mut e);
                let value = if s.nr == sc::MOUNT { format!("mount {}", crate::decode::text(s.data1)) } else { "unmount".into() };
                (Kind::Mount, None, Some(p.clone()), Some(value), Some(p))
            }
            _ => return,
        };
        let mut e = self.base(rec, kind);
        e.target_pid = target_pid;
        e.target = target;
        e.value = value;
        e.path = path;
        out.push(e);
    }
}
