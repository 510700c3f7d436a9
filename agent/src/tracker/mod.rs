//! From kernel records to resolved events: keeps, per traced process, its identity, cwd, root
//! and fd table, so every path comes out absolute, write bytes are attributed to the file or
//! peer the fd pointed at when they were written, and sockets to their addresses.
//!
//! The kernel side guarantees ordering where it matters: aggregated writes for an fd are
//! emitted before the record of whatever changes that fd (close, dup2 over it, reuse).
mod fds;
mod host;
mod paths;
mod supervised;

use std::collections::HashMap;

use agent_common::{EventHeader, exit_flags, flags, kind, syscalls as sc};

use crate::{
    decode::{self, Record},
    event::{self, Event},
    procfs,
};
pub use fds::{Fd, FdTable, Target};

const AT_FDCWD: i64 = -100;
const AT_REMOVEDIR: u64 = 0x200;
const CLONE_THREAD: u64 = 0x0001_0000;
const EINPROGRESS: i64 = -115;

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
    /// What to assume of a process we learn of too late to read its /proc (the pilot's first
    /// process): its fds and cwd.
    seed: Option<(FdTable, String)>,
    /// Issue 16: pids of the pilot's namespace a signal named, and their host pids.
    ns_pids: HashMap<i64, u32>,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// What a process we learn of too late to read its /proc holds (e.g. the stdio pilot gave
    /// its sandbox).
    pub fn seed(&mut self, fds: FdTable, cwd: String) {
        self.seed = Some((fds, cwd));
    }

    /// Start following a process we just started: it has exactly our inheritable fds, the cwd
    /// we gave it and our root (its /proc may already be gone when it is short-lived, or show
    /// a chroot it has made since: it runs before we look).
    pub fn adopt_child(&mut self, pid: u32, fds: FdTable, cwd: String) {
        self.adopt(pid);
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
            if let Some((fds, cwd)) = &self.seed {
                if !procfs::exists(pid) || p.fds.is_empty() {
                    p.fds = fds.clone();
                    p.cwd = cwd.clone();
                }
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
        if rec.h.kind != kind::EXIT {
            return None;
        }
        let last_thread = self.procs.get(&rec.h.pid).is_none_or(|p| p.threads.iter().all(|t| *t == rec.h.tid));
        match rec.h.args[3] {
            1 => Some(rec.h.pid),
            2 if last_thread => Some(rec.h.pid),
            _ => None,
        }
    }

    /// Turn one kernel record into zero or more resolved events.
    pub fn handle(&mut self, rec: &Record, out: &mut dyn FnMut(Event)) {
        self.counts.records += 1;
        let mut emit = |e: Event, counts: &mut Counts| {
            *counts.by_kind.entry(e.kind).or_default() += 1;
            out(e);
        };
        let mut events = Vec::new();
        match rec.h.kind {
            kind::SYSCALL => self.syscall(rec, &mut events),
            kind::EXEC_ARGS => self.exec_args(rec),
            kind::EXEC => self.exec(rec, &mut events),
            kind::FORK => self.fork(rec, &mut events),
            kind::EXIT => self.exit(rec, &mut events),
            kind::WRITE => self.write(&rec.h, &mut events),
            kind::SIGNAL => self.signal_generated(rec, &mut events),
            _ => self.counts.decode_errors += 1,
        }
        for e in events {
            emit(e, &mut self.counts);
        }
    }

    /// Aggregated writes collected from the kernel map (process exit, end of trace).
    pub fn handle_writes(&mut self, h: &EventHeader, out: &mut dyn FnMut(Event)) {
        let mut events = Vec::new();
        self.write(h, &mut events);
        for e in events {
            *self.counts.by_kind.entry(e.kind).or_default() += 1;
            out(e);
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

    fn base(&mut self, rec: &Record, kind: &'static str) -> Event {
        let h = &rec.h;
        let p = self.proc_mut(h.pid, h.tid);
        let ret = h.ret;
        let mut e = Event {
            ts_ns: h.ts_ns,
            pid: h.pid,
            tid: h.tid,
            start_ns: p.start_ns,
            comm: decode::comm(h),
            kind,
            ret,
            ..Default::default()
        };
        if h.kind == kind::SYSCALL {
            e.syscall = Some(sc::name(h.nr));
            if ret < 0 {
                e.error = Some(event::errno_name(-ret));
            }
        }
        if h.flags & (flags::TRUNC1 | flags::TRUNC2) != 0 {
            e.truncated = Some(true);
        }
        if h.flags & (flags::FAULT1 | flags::FAULT2) != 0 {
            e.unreadable = Some(true);
        }
        e
    }

    /// Resolve a path argument of `pid` against `dirfd` (AT_FDCWD: the cwd) and its root.
    fn resolve(&self, pid: u32, dirfd: i64, raw: &[u8], e: &mut Event) -> String {
        let raw = decode::text(raw);
        let Some(p) = self.procs.get(&pid) else { return raw };
        if let Some((fd, rest)) = paths::proc_self_fd(&raw, pid) {
            // /proc/self/fd/N (tar and glibc change files through O_PATH fds this way).
            if let Some(path) = p.fds.path_of(fd) {
                return paths::join(&path, rest);
            }
        }
        if raw.starts_with('/') {
            return paths::under_root(&p.root, &raw);
        }
        let base = if dirfd == AT_FDCWD {
            if p.cwd.is_empty() {
                // Better a relative path marked as such than a wrong absolute one.
                e.resolved_via = Some("unknown-cwd");
                return raw;
            }
            p.cwd.clone()
        } else {
            match p.fds.path_of(dirfd) {
                Some(path) => path,
                None => match procfs::fd_target(pid, dirfd as i32) {
                    Some(path) => {
                        e.resolved_via = Some("proc");
                        path
                    }
                    None => {
                        e.resolved_via = Some("unknown-fd");
                        format!("<fd {dirfd}>")
                    }
                },
            }
        };
        paths::join(&base, &raw)
    }

    fn syscall(&mut self, rec: &Record, out: &mut Vec<Event>) {
        let h = &rec.h;
        let a = h.args;
        let (pid, ret) = (h.pid, h.ret);
        match h.nr {
            sc::OPEN | sc::CREAT | sc::OPENAT | sc::OPENAT2 => self.open(rec, out),
            sc::UNLINK | sc::RMDIR | sc::MKDIR | sc::TRUNCATE | sc::CHMOD | sc::CHOWN | sc::LCHOWN
            | sc::MKNOD | sc::SETXATTR | sc::LSETXATTR | sc::REMOVEXATTR | sc::LREMOVEXATTR => {
                let kind = path_kind(h.nr, 0);
                let mut e = self.base(rec, kind);
                e.path = Some(self.resolve(pid, AT_FDCWD, rec.data1, &mut e));
                fill_path_args(h.nr, &a, &mut e);
                out.push(e);
            }
            sc::UNLINKAT | sc::MKDIRAT | sc::MKNODAT | sc::FCHOWNAT | sc::FCHMODAT | sc::FCHMODAT2 => {
                let mut e = self.base(rec, path_kind(h.nr, a[2]));
                e.path = Some(self.resolve(pid, a[0] as i32 as i64, rec.data1, &mut e));
                fill_path_args(h.nr, &a, &mut e);
                out.push(e);
            }
            sc::FTRUNCATE | sc::FCHMOD | sc::FCHOWN | sc::FSETXATTR | sc::FREMOVEXATTR => {
                let mut e = self.base(rec, path_kind(h.nr, 0));
                e.fd = Some(a[0] as i32 as i64);
                e.path = self.fd_path(pid, a[0] as i32 as i64, &mut e);
                fill_path_args(h.nr, &a, &mut e);
                out.push(e);
            }
            sc::RENAME | sc::LINK => {
                let mut e = self.base(rec, if h.nr == sc::RENAME { "rename" } else { "link" });
                e.path = Some(self.resolve(pid, AT_FDCWD, rec.data1, &mut e));
                e.path2 = Some(self.resolve(pid, AT_FDCWD, rec.data2, &mut e));
                out.push(e);
            }
            sc::RENAMEAT | sc::RENAMEAT2 | sc::LINKAT => {
                let mut e = self.base(rec, if h.nr == sc::LINKAT { "link" } else { "rename" });
                e.path = Some(self.resolve(pid, a[0] as i32 as i64, rec.data1, &mut e));
                e.path2 = Some(self.resolve(pid, a[2] as i32 as i64, rec.data2, &mut e));
                if h.nr != sc::RENAMEAT && a[4] != 0 {
                    e.flags = Some(a[4]);
                    if h.nr == sc::RENAMEAT2 {
                        e.flag_names = Some(rename_flag_names(a[4]));
                    }
                }
                out.push(e);
            }
            sc::SYMLINK | sc::SYMLINKAT => {
                let mut e = self.base(rec, "symlink");
                let dirfd = if h.nr == sc::SYMLINKAT { a[1] as i32 as i64 } else { AT_FDCWD };
                e.path = Some(self.resolve(pid, dirfd, rec.data2, &mut e));
                e.path2 = Some(decode::text(rec.data1));
                out.push(e);
            }
            sc::CHDIR | sc::CHROOT => {
                let mut e = self.base(rec, if h.nr == sc::CHDIR { "chdir" } else { "chroot" });
                let path = self.resolve(pid, AT_FDCWD, rec.data1, &mut e);
                if ret == 0 {
                    let p = self.proc_mut(pid, h.tid);
                    if h.nr == sc::CHDIR { p.cwd = path.clone() } else { p.root = path.clone() }
                }
                e.path = Some(path);
                out.push(e);
            }
            sc::FCHDIR => {
                let mut e = self.base(rec, "chdir");
                e.fd = Some(a[0] as i32 as i64);
                e.path = self.fd_path(pid, a[0] as i32 as i64, &mut e);
                if let (0, Some(path)) = (ret, e.path.clone()) {
                    self.proc_mut(pid, h.tid).cwd = path;
                }
                out.push(e);
            }
            sc::CLOSE | sc::CLOSE_RANGE | sc::DUP | sc::DUP2 | sc::DUP3 | sc::FCNTL | sc::SOCKET
            | sc::PIDFD_OPEN | sc::PIPE | sc::PIPE2 | sc::SOCKETPAIR => {
                self.proc_mut(pid, h.tid).fds.apply(h.nr, &a, ret);
            }
            n if sc::creates_anon_fd(n) => self.proc_mut(pid, h.tid).fds.apply(n, &a, ret),
            sc::MEMFD_CREATE => {
                if ret >= 0 {
                    let name = format!("memfd:{}", decode::text(rec.data1));
                    self.proc_mut(pid, h.tid).fds.set(ret, Fd { target: Target::Memfd(name), cloexec: false, closed: false });
                }
            }
            sc::CONNECT | sc::BIND | sc::ACCEPT | sc::ACCEPT4 | sc::SENDTO | sc::SENDMSG | sc::LISTEN => {
                self.socket(rec, out)
            }
            sc::KILL | sc::TKILL | sc::TGKILL | sc::PIDFD_SEND_SIGNAL => {
                let mut e = self.base(rec, "signal");
                let (target, sig) = match h.nr {
                    sc::TGKILL => (Some(a[1] as i32 as i64), a[2]),
                    sc::PIDFD_SEND_SIGNAL => (self.procs[&pid].fds.pidfd_target(a[0] as i32 as i64), a[1]),
                    _ => (Some(a[0] as i32 as i64), a[1]),
                };
                e.target_pid = target.map(|t| if h.nr == sc::PIDFD_SEND_SIGNAL { t } else { self.host_pid(t) });
                e.signal = Some(sig as i64);
                e.signal_name = Some(event::signal_name(sig as i64));
                out.push(e);
            }
            sc::EXECVE | sc::EXECVEAT => {
                // Only failures reach here; success is an EXEC record.
                let mut e = self.base(rec, "exec");
                if let Some(pending) = self.pending_exec.remove(&h.tid) {
                    e.path = Some(pending.path);
                    e.argv = Some(pending.argv);
                }
                out.push(e);
            }
            n if host::recorded(n) => self.host_change(rec, out),
            _ => self.counts.decode_errors += 1,
        }
    }

    fn open(&mut self, rec: &Record, out: &mut Vec<Event>) {
        let h = &rec.h;
        let a = h.args;
        let (dirfd, open_flags) = match h.nr {
            sc::OPEN => (AT_FDCWD, a[1]),
            sc::CREAT => (AT_FDCWD, sc::O_CREAT | sc::O_WRONLY | sc::O_TRUNC),
            _ => (a[0] as i32 as i64, a[2]),
        };
        let mut e = self.base(rec, "open");
        let path = self.resolve(h.pid, dirfd, rec.data1, &mut e);
        if h.ret >= 0 {
            let target = if open_flags & (sc::O_DIRECTORY | sc::O_PATH) != 0 {
                Target::Dir(path.clone())
            } else {
                Target::File(path.clone())
            };
            let fd = Fd { target, cloexec: open_flags & sc::O_CLOEXEC != 0, closed: false };
            self.proc_mut(h.pid, h.tid).fds.set(h.ret, fd);
        }
        if open_flags & sc::WRITE_INTENT != 0 {
            e.path = Some(path);
            e.flags = Some(open_flags);
            e.flag_names = Some(event::open_flag_names(open_flags));
            if open_flags & sc::O_CREAT != 0 {
                e.mode = Some(match h.nr {
                    sc::OPENAT | sc::OPENAT2 => a[3],
                    sc::CREAT => a[1],
                    _ => a[2],
                } as u32);
            }
            if h.ret >= 0 {
                e.fd = Some(h.ret);
            }
            out.push(e);
        }
    }

    fn socket(&mut self, rec: &Record, out: &mut Vec<Event>) {
        let h = &rec.h;
        let fd = h.args[0] as i32 as i64;
        let kind = match h.nr {
            sc::CONNECT => "connect",
            sc::BIND => "bind",
            sc::LISTEN => "listen",
            sc::ACCEPT | sc::ACCEPT4 => "accept",
            _ => "send",
        };
        let mut e = self.base(rec, kind);
        e.fd = Some(fd);
        let mut addr = event::parse_sockaddr(rec.data1);
        if let Some(a) = addr.as_mut().filter(|a| a.family == "unix" && !a.addr.is_empty() && !a.addr.starts_with(['/', '@'])) {
            let cwd = self.procs.get(&h.pid).map(|p| p.cwd.clone()).unwrap_or_else(|| "/".into());
            a.addr = paths::join(&cwd, &a.addr);
        }
        let ok = h.ret >= 0 || (h.nr == sc::CONNECT && h.ret == EINPROGRESS);
        let p = self.proc_mut(h.pid, h.tid);
        match h.nr {
            sc::CONNECT if ok => p.fds.set_peer(fd, addr.clone()),
            sc::BIND if ok => p.fds.set_local(fd, addr.clone()),
            sc::ACCEPT | sc::ACCEPT4 if ok => {
                let family = p.fds.socket_family(fd);
                p.fds.set(h.ret, Fd { target: Target::Socket { family, local: p.fds.local_of(fd), peer: addr.clone() }, cloexec: false, closed: false });
                e.fd = Some(h.ret);
            }
            _ => {}
        }
        let shown = if h.nr == sc::LISTEN {
            // Bound to port 0: the kernel picked the port; ask /proc which.
            match p.fds.local_of(fd) {
                Some(mut l) if l.port == Some(0) => {
                    l.port = procfs::socket_port(h.pid, fd as i32).or(l.port);
                    p.fds.set_local(fd, Some(l.clone()));
                    Some(l)
                }
                other => other,
            }
        } else {
            addr
        };
        if let Some(a) = shown {
            e.family = Some(a.family);
            e.addr = Some(a.addr);
            e.port = a.port;
        }
        if matches!(h.nr, sc::SENDTO | sc::SENDMSG) && h.ret >= 0 {
            e.bytes = Some(h.ret as u64);
            e.count = Some(1);
        }
        out.push(e);
    }

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

    fn exec_args(&mut self, rec: &Record) {
        let h = &rec.h;
        let dirfd = if h.nr == sc::EXECVEAT { h.args[0] as i32 as i64 } else { AT_FDCWD };
        self.proc_mut(h.pid, h.tid);
        let mut scratch = Event::default();
        let path = self.resolve(h.pid, dirfd, rec.data1, &mut scratch);
        let argv = procfs::split_nul(rec.data2);
        self.pending_exec.insert(h.tid, PendingExec { path, argv, truncated: h.flags & flags::TRUNC2 != 0 });
    }

    fn exec(&mut self, rec: &Record, out: &mut Vec<Event>) {
        let h = &rec.h;
        let old_tid = h.args[0] as u32;
        let pending = self.pending_exec.remove(&old_tid).or_else(|| self.pending_exec.remove(&h.tid));
        let mut e = self.base(rec, "exec");
        let mut filename = self.resolve(h.pid, AT_FDCWD, rec.data1, &mut e);
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
            None => (procfs::cmdline(h.pid), false),
        };
        if truncated {
            e.truncated = Some(true);
        }
        let p = self.proc_mut(h.pid, h.tid);
        if old_tid != h.tid {
            p.threads.retain(|t| *t != old_tid);
        }
        p.exe = Some(filename.clone());
        p.argv = argv.clone();
        p.comm = decode::comm(h);
        p.fds.close_on_exec();
        e.path = Some(filename);
        e.argv = Some(argv);
        out.push(e);
    }

    fn fork(&mut self, rec: &Record, out: &mut Vec<Event>) {
        let h = &rec.h;
        let (child, clone_flags, start_ns) = (h.args[0] as u32, h.args[1], h.args[2]);
        let thread = clone_flags & CLONE_THREAD != 0;
        let parent = self.proc_mut(h.pid, h.tid).clone();
        let start_ns = if thread { parent.start_ns } else { start_ns };
        if thread {
            self.tids.insert(child, h.pid);
            self.procs.get_mut(&h.pid).expect("parent").threads.push(child);
        } else {
            let p = Process {
                pid: child,
                start_ns,
                ppid: Some(h.pid),
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
        let mut e = self.base(rec, "fork");
        e.child_pid = Some(child);
        e.child_start_ns = Some(start_ns);
        e.flags = Some(clone_flags);
        if thread {
            e.thread = Some(true);
        }
        out.push(e);
    }

    fn exit(&mut self, rec: &Record, out: &mut Vec<Event>) {
        let h = &rec.h;
        let ends = self.ends_process(rec).is_some();
        let (code, eflags, last_sig) = (h.args[0] as i64, h.args[1], h.args[2] as i64);
        let p = self.proc_mut(h.pid, h.tid);
        p.threads.retain(|t| *t != h.tid);
        if eflags & exit_flags::CALLED_EXIT != 0 {
            p.exit_code = Some(code as i32 as i64);
        }
        if !ends {
            return;
        }
        p.alive = false;
        if p.exit_code.is_none() && last_sig != 0 {
            p.exit_signal = Some(last_sig);
        }
        let (exit_code, exit_signal) = (p.exit_code, p.exit_signal);
        self.tids.retain(|_, pid| *pid != h.pid);
        let mut e = self.base(rec, "exit");
        e.exit_code = exit_code;
        if let Some(sig) = exit_signal {
            e.signal = Some(sig);
            e.signal_name = Some(event::signal_name(sig));
        }
        out.push(e);
    }

    fn write(&mut self, h: &EventHeader, out: &mut Vec<Event>) {
        let a = h.args;
        let fd = a[0] as i32 as i64;
        let (pid, tid) = (h.pid, h.tid);
        let start_ns = self.procs.get(&pid).map(|p| p.start_ns).unwrap_or_else(|| self.proc_mut(pid, tid).start_ns);
        let mut e = Event {
            ts_ns: h.ts_ns,
            pid,
            tid,
            start_ns,
            comm: self.procs.get(&pid).map(|p| p.comm.clone()).unwrap_or_default(),
            kind: "write",
            fd: Some(fd),
            bytes: Some(a[2]),
            count: Some(a[1]),
            first_ts_ns: Some(a[4]),
            ret: a[2] as i64,
            ..Default::default()
        };
        if a[3] > 0 {
            e.failed = Some(a[3]);
            e.error = Some(event::errno_name(-(a[5] as i64)));
        }
        let target = self.procs.get(&pid).and_then(|p| p.fds.get(fd)).map(|f| f.target.clone());
        match target {
            Some(Target::Socket { family, peer, .. }) => {
                e.kind = "send";
                e.family = Some(event::family_name(family));
                if let Some(peer) = peer {
                    e.family = Some(peer.family);
                    e.addr = Some(peer.addr);
                    e.port = peer.port;
                }
            }
            Some(Target::File(path) | Target::Dir(path)) => e.path = Some(path),
            Some(Target::Pipe) => e.path = Some("pipe".into()),
            Some(Target::Memfd(name)) => e.path = Some(name),
            Some(Target::PidFd(_)) | Some(Target::Other) => {}
            None => e.path = self.fd_path(pid, fd, &mut e),
        }
        out.push(e);
    }

    fn signal_generated(&mut self, rec: &Record, out: &mut Vec<Event>) {
        let a = rec.h.args;
        let mut e = self.base(rec, "signal_generated");
        e.target_pid = Some(a[0] as i32 as i64);
        e.signal = Some(a[1] as i64);
        e.signal_name = Some(event::signal_name(a[1] as i64));
        e.ret = a[2] as i64;
        out.push(e);
    }
}

/// Event kind for a path syscall (`at_flags`: unlinkat's AT_REMOVEDIR).
fn path_kind(nr: u32, at_flags: u64) -> &'static str {
    match nr {
        sc::UNLINKAT if at_flags & AT_REMOVEDIR != 0 => "rmdir",
        sc::UNLINK | sc::UNLINKAT => "unlink",
        sc::RMDIR => "rmdir",
        sc::MKDIR | sc::MKDIRAT => "mkdir",
        sc::TRUNCATE | sc::FTRUNCATE => "truncate",
        sc::CHMOD | sc::FCHMOD | sc::FCHMODAT | sc::FCHMODAT2 => "chmod",
        sc::CHOWN | sc::LCHOWN | sc::FCHOWN | sc::FCHOWNAT => "chown",
        sc::MKNOD | sc::MKNODAT => "mknod",
        _ => "xattr",
    }
}

/// Mode, owner, length arguments of path syscalls.
fn fill_path_args(nr: u32, a: &[u64; 6], e: &mut Event) {
    match nr {
        sc::MKDIR | sc::CHMOD | sc::FCHMOD | sc::MKNOD => e.mode = Some(a[1] as u32),
        sc::MKDIRAT | sc::FCHMODAT | sc::FCHMODAT2 | sc::MKNODAT => e.mode = Some(a[2] as u32),
        sc::CHOWN | sc::LCHOWN | sc::FCHOWN => {
            e.uid = Some(a[1] as i32 as i64);
            e.gid = Some(a[2] as i32 as i64);
        }
        sc::FCHOWNAT => {
            e.uid = Some(a[2] as i32 as i64);
            e.gid = Some(a[3] as i32 as i64);
        }
        sc::TRUNCATE | sc::FTRUNCATE => e.bytes = Some(a[1]),
        sc::UNLINKAT if a[2] != 0 => e.flags = Some(a[2]),
        _ => {}
    }
}

fn rename_flag_names(flags: u64) -> String {
    let mut names = Vec::new();
    for (bit, name) in [(1, "RENAME_NOREPLACE"), (2, "RENAME_EXCHANGE"), (4, "RENAME_WHITEOUT")] {
        if flags & bit != 0 {
            names.push(name);
        }
    }
    names.join("|")
}
