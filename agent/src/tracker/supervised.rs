//! Issue 16: notices of the sandbox's supervisor (sandbox/supervisor): its events get the
//! process identity the tracker knows, descriptors it installed get their paths, and pids of
//! the pilot's namespace their host pids.
use super::{Fd, Target, Tracker};
use crate::{event::Event, sandbox::supervisor::Notice};

impl Tracker {
    pub fn supervised(&mut self, n: Notice, out: &mut dyn FnMut(Event)) {
        match n {
            Notice::Event(e) => {
                let mut e = *e;
                let p = self.proc_mut(e.pid, e.tid);
                e.start_ns = p.start_ns;
                if !p.comm.is_empty() {
                    e.comm = p.comm.clone();
                }
                *self.counts.by_kind.entry(e.kind.as_str()).or_default() += 1;
                out(e);
            }
            Notice::Fd { pid, fd, path, .. } => {
                self.proc_mut(pid, pid).fds.set(fd, Fd { target: Target::File(path), cloexec: false, closed: false });
            }
            Notice::NsPid { ns, host, .. } => {
                self.ns_pids.insert(ns, host);
            }
        }
    }

    /// The host pid of a signal's target named by a pid of the pilot's namespace.
    pub fn host_pid(&self, target: i64) -> i64 {
        self.ns_pids.get(&target).map_or(target, |h| *h as i64)
    }
}
