//! Issue 16: changes to the host and to other processes the trace sees (the syscalls of
//! agent-common's issue-16 table entries): priority, affinity, limits, the clock, swap,
//! modules, mounts. In `pilot trace` and a commit's live run they are what the action did;
//! in a pilot the supervisor answers most of them (those the kernel runs land here too).
use agent_common::syscalls as sc;

use super::{AT_FDCWD, Tracker};
use crate::{decode::Record, event::Event};

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
    pub(super) fn host_change(&mut self, rec: &Record, out: &mut Vec<Event>) {
        let h = &rec.h;
        let a = h.args;
        let pid = h.pid;
        let int = |i: usize| a[i] as i32 as i64;
        // A pid argument: 0 is the caller.
        let process = |t: &Tracker, who: i64| if who == 0 { pid as i64 } else { t.host_pid(who) };
        let (kind, target_pid, target, value, path): (&'static str, Option<i64>, Option<String>, Option<String>, Option<String>) = match h.nr {
            sc::SETPRIORITY | sc::IOPRIO_SET => {
                let value = if h.nr == sc::SETPRIORITY { format!("nice {}", int(2)) } else { format!("ioprio class {} level {}", a[2] >> 13, a[2] & 0x1fff) };
                // which: PRIO_PROCESS 0 / PRIO_PGRP 1 / PRIO_USER 2 (ioprio: 1, 2, 3)
                let which = if h.nr == sc::IOPRIO_SET { a[0].saturating_sub(1) } else { a[0] };
                match which {
                    0 => ("setpriority", Some(process(self, int(1))), None, Some(value), None),
                    1 => ("setpriority", Some(if int(1) == 0 { 0 } else { -int(1) }), None, Some(value), None),
                    _ => ("setpriority", None, Some(format!("uid {}", a[1] as u32)), Some(value), None),
                }
            }
            sc::SCHED_SETSCHEDULER => ("setpriority", Some(process(self, int(0))), None, Some(format!("policy {}", a[1])), None),
            sc::SCHED_SETPARAM | sc::SCHED_SETATTR => ("setpriority", Some(process(self, int(0))), None, None, None),
            sc::SCHED_SETAFFINITY => ("setaffinity", Some(process(self, int(0))), None, None, None),
            sc::PRLIMIT64 => {
                if a[2] == 0 {
                    return; // a query
                }
                ("setrlimit", Some(process(self, int(0))), None, Some(format!("resource {}", a[1])), None)
            }
            sc::CLOCK_SETTIME | sc::SETTIMEOFDAY => ("clock", None, Some("CLOCK_REALTIME".into()), None, None),
            sc::SWAPON | sc::SWAPOFF => {
                let mut e = Event::default();
                let p = self.resolve(pid, AT_FDCWD, rec.data1, &mut e);
                ("swap", None, Some(p.clone()), Some(if h.nr == sc::SWAPON { "on" } else { "off" }.into()), Some(p))
            }
            sc::INIT_MODULE => ("module", None, Some("(module image)".into()), Some("load".into()), None),
            sc::FINIT_MODULE => {
                let file = self.procs.get(&pid).and_then(|p| p.fds.path_of(int(0)));
                let name = file.as_deref().and_then(|f| f.rsplit('/').next()).map(|n| n.split(".ko").next().unwrap_or(n).replace('-', "_"));
                ("module", None, name, Some("load".into()), file)
            }
            sc::DELETE_MODULE => ("module", None, Some(crate::decode::text(rec.data1)), Some("unload".into()), None),
            sc::MOUNT | sc::UMOUNT2 => {
                let mut e = Event::default();
                let raw = if h.nr == sc::MOUNT { rec.data2 } else { rec.data1 };
                let p = self.resolve(pid, AT_FDCWD, raw, &mut e);
                let value = if h.nr == sc::MOUNT { format!("mount {}", crate::decode::text(rec.data1)) } else { "unmount".into() };
                ("mount", None, Some(p.clone()), Some(value), Some(p))
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
