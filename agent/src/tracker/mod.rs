//! From kernel records to resolved events: keeps, per traced process, its identity, cwd, root
//! and fd table, so every path comes out absolute, write bytes are attributed to the file or
//! peer the fd pointed at when they were written, and sockets to their addresses.
//!
//! Split by concern like the kernel side: `process.rs` (exec, fork, exit), `file.rs` (paths,
//! opens, fd tables, writes), `net.rs` (sockets), `signal.rs` (kill family, signals the kernel
//! generated). This file holds the state and routes each record.
//!
//! The kernel side guarantees ordering where it matters: aggregated writes for an fd are
//! emitted before the record of whatever changes that fd (close, dup2 over it, reuse).
mod fds;
mod file;
mod mapped;
mod net;
mod paths;
mod process;
mod signal;
mod host;
mod supervised;

use foldhash::HashMap;

use agent_common::{flags, syscalls as sc};

use crate::{
    decode::{self, Body, GroupDead, Record, Syscall, Writes},
    event::{self, Event, Kind},
    procfs,
};
pub use fds::{Fd, FdTable, Target};
pub use mapped::{FALLOC_DESTROYS, Mapping};

const AT_FDCWD: i64 = -100;

/// A traced process (thread group).
#[derive(Clone, Debug)]
pub struct Process {
    pub pid: u32,
    pub start_ns: u64,
    pub ppid: Option<u32>,
    pub comm: String,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    pub cwd: String,
    pub root: String,
    pub fds: FdTable,
    pub threads: Vec<u32>,
    pub alive: bool,
    pub exit_code: Option<i64>,
    pub exit_signal: Option<i64>,
    /// Shared mappings of files (issue 15): what an mprotect or msync on an address names.
    pub maps: Vec<mapped::Mapping>,
}

impl Process {
    /// A process that was running before we saw it start: read what /proc says.
    fn from_proc(pid: u32) -> Process {
        Process {
            pid,
            start_ns: procfs::start_ns(pid).unwrap_or(0),
            ppid: procfs::ppid(pid),
            comm: procfs::comm(pid).unwrap_or_default(),
            exe: procfs::exe(pid),
            argv: procfs::cmdline(pid),
            // Empty: not known (the process was gone before we could look).
            cwd: procfs::cwd(pid).unwrap_or_default(),
            root: procfs::root(pid).unwrap_or_else(|| "/".into()),
            fds: FdTable::from_proc(pid),
            threads: procfs::threads(pid),
            alive: true,
            exit_code: None,
            exit_signal: None,
            maps: Vec::new(),
        }
    }
}

struct PendingExec {
    path: String,
    argv: Vec<String>,
    truncated: bool,
}

/// Counts kept while tracking.
#[derive(Default, Debug, Clone)]
pub struct Counts {
    pub records: u64,
    pub decode_errors: u64,
    pub by_kind: std::collections::BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub struct Tracker {
    procs: HashMap<u32, Process>,
    /// Processes in the order they appeared (for reports).
    order: Vec<u32>,
    tids: HashMap<u32, u32>,
    pending_exec: HashMap<u32, PendingExec>,
    pub counts: Counts,
    /// What the first process we learn of holds (the pilot's first process, which we did not
    /// start ourselves): its fds and cwd at its exec.
    seed: Option<(FdTable, String)>,
    /// The events of the record being handled (kept to reuse its allocation).
    scratch: Vec<Event>,
    /// Issue 16: pids of the pilot's namespace a signal named, and their host pids.
    ns_pids: HashMap<i64, u32>,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// What the first process we learn of holds at its exec (the stdio pilot gave its sandbox,
    /// the cwd it chose): used instead of its /proc, which by the time its first record is
    /// read shows a later state (the fds the command has opened since, or nothing at all).
    pub fn seed(&mut self, fds: FdTable, cwd: String) {
        self.seed = Some((fds, cwd));
    }

    /// Start following a process we just started: it has exactly our inheritable fds, the cwd
    /// we gave it and our root (its /proc may already be gone when it is short-lived, or show
    /// a chroot it has made since: it runs before we look).
    pub fn adopt_child(&mut self, pid: u32, mut fds: FdTable, cwd: String) {
        self.adopt(pid);
        fds.mark_stdio();
        if let Some(p) = self.procs.get_mut(&pid) {
            p.fds = fds;
            p.cwd = cwd;
            p.root = "/".into();
        }
    }

    /// Start following a process that already runs (the root, `--pid` trees).
    pub fn adopt(&mut self, pid: u32) -> &Process {
        if !self.procs.contains_key(&pid) {
            let mut p = Process::from_proc(pid);
            if let Some((fds, cwd)) = self.seed.take() {
                p.fds = fds;
                p.cwd = cwd;
                p.root = "/".into();
            }
            for t in &p.threads {
                self.tids.insert(*t, pid);
            }
            self.tids.insert(pid, pid);
            self.order.push(pid);
            self.procs.insert(pid, p);
        }
        &self.procs[&pid]
    }

    /// Processes we never saw exit (their exit fell outside the trace): if /proc says they are
    /// gone, they are done.
    pub fn reconcile_exited(&mut self) {
        for p in self.procs.values_mut().filter(|p| p.alive) {
            if !procfs::exists(p.pid) || procfs::is_zombie(p.pid) {
                p.alive = false;
            }
        }
    }

    /// The process a thread belongs to, while it is known.
    pub fn process_of_tid(&self, tid: u32) -> Option<u32> {
        self.tids.get(&tid).copied()
    }

    pub fn process(&self, pid: u32) -> Option<&Process> {
        self.procs.get(&pid)
    }

    /// Processes in the order they appeared.
    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.order.iter().filter_map(|p| self.procs.get(p))
    }

    /// Would this record end its process? (Its aggregated writes must be collected first.)
    pub fn ends_process(&self, rec: &Record) -> Option<u32> {
        let Body::Exit(x) = &rec.body else { return None };
        let last_thread = self.procs.get(&rec.pid).is_none_or(|p| p.threads.iter().all(|t| *t == rec.tid));
        match x.group_dead {
            GroupDead::Yes => Some(rec.pid),
            GroupDead::Unknown if last_thread => Some(rec.pid),
            _ => None,
        }
    }

    /// Turn one kernel record into zero or more resolved events.
    pub fn handle(&mut self, rec: &Record, out: &mut dyn FnMut(Event)) {
        self.counts.records += 1;
        // One buffer for every record's events (most make one or none).
        let mut events = std::mem::take(&mut self.scratch);
        match &rec.body {
            Body::Syscall(s) => self.syscall(rec, s, &mut events),
            Body::ExecArgs { nr, args, filename, argv } => self.exec_args(rec, *nr, args, filename, argv),
            Body::Exec { filename, old_tid, start_ns } => self.exec(rec, filename, *old_tid, *start_ns, &mut events),
            Body::Fork { child, clone_flags, child_start_ns } => self.fork(rec, *child, *clone_flags, *child_start_ns, &mut events),
            Body::Exit(x) => self.exit(rec, *x, &mut events),
            Body::Writes(w) => {
                // A process gone before /proc could be read has its name from the record.
                let p = self.proc_mut(rec.pid, rec.tid);
                if p.comm.is_empty() {
                    p.comm = decode::text(&rec.comm);
                }
                self.write(rec.pid, rec.tid, rec.ts_ns, w, &mut events)
            }
            Body::Signal { target, signal, result } => self.signal_generated(rec, *target, *signal, *result, &mut events),
        }
        self.emit(events, out);
    }

    /// Aggregated writes collected from the kernel map (process exit, end of trace).
    pub fn handle_writes(&mut self, pid: u32, tid: u32, ts_ns: u64, w: &Writes, out: &mut dyn FnMut(Event)) {
        let mut events = Vec::new();
        self.write(pid, tid, ts_ns, w, &mut events);
        self.emit(events, out);
    }

    fn emit(&mut self, mut events: Vec<Event>, out: &mut dyn FnMut(Event)) {
        for e in events.drain(..) {
            *self.counts.by_kind.entry(e.kind.as_str()).or_default() += 1;
            out(e);
        }
        self.scratch = events;
    }

    /// Route a syscall record to its concern.
    fn syscall(&mut self, rec: &Record, s: &Syscall, out: &mut Vec<Event>) {
        match s.nr {
            sc::OPEN | sc::CREAT | sc::OPENAT | sc::OPENAT2 => self.open(rec, s, out),
            sc::CONNECT | sc::BIND | sc::ACCEPT | sc::ACCEPT4 | sc::SENDTO | sc::SENDMSG | sc::LISTEN => self.socket(rec, s, out),
            sc::KILL | sc::TKILL | sc::TGKILL | sc::PIDFD_SEND_SIGNAL => self.kill(rec, s, out),
            sc::EXECVE | sc::EXECVEAT => self.exec_failed(rec, out),
            n if host::recorded(n) => self.host_change(rec, s, out),
            n if mapped::handles(n) => self.mapped_syscall(rec, s, out),
            _ => {
                if !self.file_syscall(rec, s, out) {
                    self.counts.decode_errors += 1;
                }
            }
        }
    }

    fn proc_mut(&mut self, pid: u32, tid: u32) -> &mut Process {
        if !self.procs.contains_key(&pid) {
            self.adopt(pid);
        }
        self.tids.entry(tid).or_insert(pid);
        let p = self.procs.get_mut(&pid).expect("adopted above");
        if !p.threads.contains(&tid) {
            p.threads.push(tid);
        }
        p
    }

    /// The event every record starts as: who, when, and for syscalls which one and its result.
    fn base(&mut self, rec: &Record, kind: Kind) -> Event {
        let p = self.proc_mut(rec.pid, rec.tid);
        let mut e = Event {
            ts_ns: rec.ts_ns,
            pid: rec.pid,
            tid: rec.tid,
            start_ns: p.start_ns,
            comm: decode::text(&rec.comm),
            kind,
            ..Default::default()
        };
        if let Body::Syscall(s) = &rec.body {
            e.ret = s.ret;
            e.syscall = Some(sc::name(s.nr));
            if s.ret < 0 {
                e.error = Some(event::errno_name(-s.ret));
            }
        }
        if rec.flags & (flags::TRUNC1 | flags::TRUNC2) != 0 {
            e.truncated = Some(true);
        }
        if rec.flags & (flags::FAULT1 | flags::FAULT2) != 0 {
            e.unreadable = Some(true);
        }
        e
    }

    /// Resolve a path argument of `pid` against `dirfd` (AT_FDCWD: the cwd) and its root.
    fn resolve(&self, pid: u32, dirfd: i64, raw: &[u8], e: &mut Event) -> String {
        // Borrowed when the kernel's bytes are UTF-8: the result is the only new string.
        let raw = decode::text_ref(raw);
        let Some(p) = self.procs.get(&pid) else { return raw.into_owned() };
        if let Some((fd, rest)) = paths::proc_self_fd(&raw, pid) {
            // /proc/self/fd/N (tar and glibc change files through O_PATH fds this way).
            if let Some(path) = p.fds.path_ref(fd) {
                return paths::join(path, rest);
            }
        }
        if raw.starts_with('/') {
            return paths::under_root(&p.root, &raw);
        }
        if dirfd == AT_FDCWD {
            if p.cwd.is_empty() {
                // Better a relative path marked as such than a wrong absolute one.
                e.resolved_via = Some("unknown-cwd");
                return raw.into_owned();
            }
            return paths::join(&p.cwd, &raw);
        }
        if let Some(path) = p.fds.path_ref(dirfd) {
            return paths::join(path, &raw);
        }
        let base = match procfs::fd_target(pid, dirfd as i32) {
            Some(path) => {
                e.resolved_via = Some("proc");
                path
            }
            None => {
                e.resolved_via = Some("unknown-fd");
                format!("<fd {dirfd}>")
            }
        };
        paths::join(&base, &raw)
    }

    /// What an fd names, for syscalls on fds (fchmod, ftruncate, fchdir, writes).
    fn fd_path(&self, pid: u32, fd: i64, e: &mut Event) -> Option<String> {
        let p = self.procs.get(&pid)?;
        if let Some(path) = p.fds.path_of(fd) {
            return Some(path);
        }
        if p.fds.get(fd).is_some() {
            return None; // a socket or pipe: not a path
        }
        let path = procfs::fd_target(pid, fd as i32);
        e.resolved_via = Some(if path.is_some() { "proc" } else { "unknown-fd" });
        path
    }
}
