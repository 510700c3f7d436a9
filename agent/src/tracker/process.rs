//! Who is traced: exec (its argv arrives before it, in EXEC_ARGS), fork (threads and
//! processes), exit (a thread, or the whole process: its code or the signal that ended it).
use agent_common::{flags, syscalls as sc};

use super::{AT_FDCWD, PendingExec, Process, Tracker};
use crate::{
    decode::{self, Exit, Record},
    event::{self, Event, Kind},
    procfs,
};

const CLONE_THREAD: u64 = 0x0001_0000;

impl Tracker {
    pub(super) fn exec_args(&mut self, rec: &Record, nr: u32, args: &[u64; 6], filename: &[u8], argv: &[u8]) {
        let dirfd = if nr == sc::EXECVEAT { args[0] as i32 as i64 } else { AT_FDCWD };
        self.proc_mut(rec.pid, rec.tid);
        let mut scratch = Event::default();
        let path = self.resolve(rec.pid, dirfd, filename, &mut scratch);
        let argv = procfs::split_nul(argv);
        self.pending_exec.insert(rec.tid, PendingExec { path, argv, truncated: rec.flags & flags::TRUNC2 != 0 });
    }

    /// A failed execve/execveat (success is an EXEC record).
    pub(super) fn exec_failed(&mut self, rec: &Record, out: &mut Vec<Event>) {
        let mut e = self.base(rec, Kind::Exec);
        if let Some(pending) = self.pending_exec.remove(&rec.tid) {
            e.path = Some(pending.path);
            e.argv = Some(pending.argv);
        }
        out.push(e);
    }

    pub(super) fn exec(&mut self, rec: &Record, filename: &[u8], old_tid: u32, start_ns: u64, out: &mut Vec<Event>) {
        let pending = self.pending_exec.remove(&old_tid).or_else(|| self.pending_exec.remove(&rec.tid));
        // A root that set its own start time before its exec (the pilot's first process): its
        // /proc may be gone by now, the kernel's entry is not.
        let p = self.proc_mut(rec.pid, rec.tid);
        if p.start_ns == 0 {
            p.start_ns = start_ns;
        }
        let mut e = self.base(rec, Kind::Exec);
        let mut filename = self.resolve(rec.pid, AT_FDCWD, filename, &mut e);
        // execveat(fd, ...) and fexecve run "/dev/fd/N[/name]": the program is what the fd names.
        if filename.starts_with("/dev/fd/") {
            if let Some(p) = &pending {
                if !p.path.starts_with("/dev/fd/") && !p.path.starts_with("<fd") {
                    filename = p.path.clone();
                }
            }
        }
        let (argv, truncated) = match pending {
            Some(p) => (p.argv, p.truncated),
            None => (procfs::cmdline(rec.pid), false),
        };
        if truncated {
            e.truncated = Some(true);
        }
        let p = self.proc_mut(rec.pid, rec.tid);
        if old_tid != rec.tid {
            p.threads.retain(|t| *t != old_tid);
        }
        p.exe = Some(filename.clone());
        p.argv = argv.clone();
        p.comm = decode::text(&rec.comm);
        p.fds.close_on_exec();
        p.maps.clear();
        e.path = Some(filename);
        e.argv = Some(argv);
        out.push(e);
    }

    pub(super) fn fork(&mut self, rec: &Record, child: u32, clone_flags: u64, start_ns: u64, out: &mut Vec<Event>) {
        let thread = clone_flags & CLONE_THREAD != 0;
        let parent = self.proc_mut(rec.pid, rec.tid).clone();
        let start_ns = if thread { parent.start_ns } else { start_ns };
        if thread {
            self.tids.insert(child, rec.pid);
            self.procs.get_mut(&rec.pid).expect("parent").threads.push(child);
        } else {
            let p = Process {
                pid: child,
                start_ns,
                ppid: Some(rec.pid),
                threads: vec![child],
                alive: true,
                exit_code: None,
                exit_signal: None,
                ..parent
            };
            self.tids.insert(child, child);
            if !self.procs.contains_key(&child) {
                self.order.push(child);
            }
            self.procs.insert(child, p);
        }
        let mut e = self.base(rec, Kind::Fork);
        e.child_pid = Some(child);
        e.child_start_ns = Some(start_ns);
        e.flags = Some(clone_flags);
        if thread {
            e.thread = Some(true);
        }
        out.push(e);
    }

    pub(super) fn exit(&mut self, rec: &Record, x: Exit, out: &mut Vec<Event>) {
        let ends = self.ends_process(rec).is_some();
        let p = self.proc_mut(rec.pid, rec.tid);
        p.threads.retain(|t| *t != rec.tid);
        if x.called_exit {
            p.exit_code = Some(x.code as i32 as i64);
        }
        if !ends {
            return;
        }
        p.alive = false;
        if p.exit_code.is_none() && x.last_signal != 0 {
            p.exit_signal = Some(x.last_signal);
        }
        let (exit_code, exit_signal) = (p.exit_code, p.exit_signal);
        self.tids.retain(|_, pid| *pid != rec.pid);
        let mut e = self.base(rec, Kind::Exit);
        e.exit_code = exit_code;
        if let Some(sig) = exit_signal {
            e.signal = Some(sig);
            e.signal_name = Some(event::signal_name(sig));
        }
        out.push(e);
    }
}
