//! Signals: the kill-family syscalls (who, which signal, to whom, with what result) and each
//! task the kernel then signalled (a process-group kill reaches many).
use agent_common::syscalls as sc;

use super::Tracker;
use crate::{
    decode::{Record, Syscall},
    event::{self, Event, Kind},
};

impl Tracker {
    pub(super) fn kill(&mut self, rec: &Record, s: &Syscall, out: &mut Vec<Event>) {
        let a = s.args;
        let mut e = self.base(rec, Kind::Signal);
        let (target, sig) = match s.nr {
            sc::TGKILL => (Some(a[1] as i32 as i64), a[2]),
            sc::PIDFD_SEND_SIGNAL => (self.procs[&rec.pid].fds.pidfd_target(a[0] as i32 as i64), a[1]),
            _ => (Some(a[0] as i32 as i64), a[1]),
        };
        // Issue 16: a pid of the pilot's namespace names a host pid.
        e.target_pid = target.map(|t| if s.nr == sc::PIDFD_SEND_SIGNAL { t } else { self.host_pid(t) });
        e.signal = Some(sig as i64);
        e.signal_name = Some(event::signal_name(sig as i64));
        out.push(e);
    }

    pub(super) fn signal_generated(&mut self, rec: &Record, target: i64, signal: i64, result: i64, out: &mut Vec<Event>) {
        let mut e = self.base(rec, Kind::SignalGenerated);
        e.target_pid = Some(target);
        e.signal = Some(signal);
        e.signal_name = Some(event::signal_name(signal));
        e.ret = result;
        out.push(e);
    }
}
