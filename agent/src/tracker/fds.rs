//! A process's fd table as the trace shows it, so bytes written to an fd are attributed to what
//! it pointed at. Closed fds stay as tombstones until reused: the kernel may report writes to
//! an fd after its close record (aggregated writes are flushed at close entry or later).
use foldhash::HashMap;

use agent_common::syscalls as sc;

use crate::{event::SockAddr, procfs};

#[derive(Clone, Debug)]
pub enum Target {
    File(String),
    /// A stdio file the traced command was given (pilot's stdout.log and stderr.log, the
    /// operator's `>` redirection of `pilot trace`/`commit`): what it writes there is its
    /// output, made on its behalf, not an effect on that file.
    Stdio(String),
    Dir(String),
    Socket { family: u64, local: Option<SockAddr>, peer: Option<SockAddr> },
    Pipe,
    PidFd(i64),
    /// memfd_create: anonymous memory, named for debugging only.
    Memfd(String),
    Other,
}

#[derive(Clone, Debug)]
pub struct Fd {
    pub target: Target,
    pub cloexec: bool,
    pub closed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct FdTable {
    fds: HashMap<i64, Fd>,
}

const CLOSE_RANGE_CLOEXEC: u64 = 4;
const O_CLOEXEC: u64 = sc::O_CLOEXEC;

impl FdTable {
    /// The fds a running process holds now (inherited by a root we start or adopt).
    pub fn from_proc(pid: u32) -> FdTable {
        let mut t = FdTable::default();
        for (fd, target) in procfs::fds(pid) {
            let target = if target.starts_with('/') {
                Target::File(target)
            } else if target.starts_with("pipe:") {
                Target::Pipe
            } else if target.starts_with("socket:") {
                Target::Socket { family: 0, local: None, peer: None }
            } else {
                Target::Other
            };
            t.set(fd as i64, Fd { target, cloexec: false, closed: false });
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The stdio a sandbox was given (fd, path).
    pub fn of_stdio(files: &[(i64, String)]) -> FdTable {
        let mut t = FdTable::default();
        for (fd, path) in files {
            t.set(*fd, Fd { target: Target::File(path.clone()), cloexec: false, closed: false });
        }
        t.mark_stdio();
        t
    }

    /// Files on fds 0, 1 and 2 become `Stdio`: the root's output, not its effects.
    pub fn mark_stdio(&mut self) {
        for fd in 0..=2 {
            if let Some(entry) = self.fds.get_mut(&fd)
                && let Target::File(path) = &entry.target
            {
                entry.target = Target::Stdio(path.clone());
            }
        }
    }

    /// The fds a child of this process inherits (those without O_CLOEXEC).
    pub fn inherited_from_self() -> FdTable {
        let me = std::process::id();
        let mut t = FdTable::from_proc(me);
        t.fds.retain(|fd, _| {
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).and_then(|f| u64::from_str_radix(f.trim(), 8).ok());
            flags.is_some_and(|f| f & O_CLOEXEC == 0)
        });
        t
    }

    pub fn get(&self, fd: i64) -> Option<&Fd> {
        self.fds.get(&fd)
    }

    pub fn set(&mut self, fd: i64, entry: Fd) {
        self.fds.insert(fd, entry);
    }

    /// The path an fd refers to, when it is a file or directory, borrowed.
    pub fn path_ref(&self, fd: i64) -> Option<&str> {
        match &self.fds.get(&fd)?.target {
            Target::File(p) | Target::Dir(p) => Some(p),
            _ => None,
        }
    }

    /// The path an fd refers to, when it is a file or directory.
    pub fn path_of(&self, fd: i64) -> Option<String> {
        match &self.fds.get(&fd)?.target {
            Target::File(p) | Target::Dir(p) | Target::Stdio(p) => Some(p.clone()),
            _ => None,
        }
    }

    pub fn pidfd_target(&self, fd: i64) -> Option<i64> {
        match self.fds.get(&fd)?.target {
            Target::PidFd(pid) => Some(pid),
            _ => None,
        }
    }

    pub fn socket_family(&self, fd: i64) -> u64 {
        match self.fds.get(&fd).map(|f| &f.target) {
            Some(Target::Socket { family, .. }) => *family,
            _ => 0,
        }
    }

    pub fn local_of(&self, fd: i64) -> Option<SockAddr> {
        match self.fds.get(&fd).map(|f| &f.target) {
            Some(Target::Socket { local, .. }) => local.clone(),
            _ => None,
        }
    }

    pub fn set_peer(&mut self, fd: i64, addr: Option<SockAddr>) {
        self.socket_mut(fd, |_, peer| *peer = addr);
    }

    pub fn set_local(&mut self, fd: i64, addr: Option<SockAddr>) {
        self.socket_mut(fd, |local, _| *local = addr);
    }

    fn socket_mut(&mut self, fd: i64, f: impl FnOnce(&mut Option<SockAddr>, &mut Option<SockAddr>)) {
        let entry = self.fds.entry(fd).or_insert(Fd {
            target: Target::Socket { family: 0, local: None, peer: None },
            cloexec: false,
            closed: false,
        });
        if !matches!(entry.target, Target::Socket { .. }) {
            entry.target = Target::Socket { family: 0, local: None, peer: None };
        }
        if let Target::Socket { local, peer, .. } = &mut entry.target {
            f(local, peer);
        }
    }

    /// exec closes O_CLOEXEC fds.
    pub fn close_on_exec(&mut self) {
        for fd in self.fds.values_mut() {
            if fd.cloexec {
                fd.closed = true;
            }
        }
    }

    /// Apply an fd-table syscall (close, dup, socket, pipe...) that returned `ret`.
    pub fn apply(&mut self, nr: u32, a: &[u64; 6], ret: i64) {
        let dup = |t: &mut FdTable, from: i64, to: i64, cloexec: bool| {
            if let Some(mut entry) = t.fds.get(&from).cloned() {
                entry.cloexec = cloexec;
                entry.closed = false;
                t.fds.insert(to, entry);
            } else {
                t.fds.remove(&to);
            }
        };
        let fd0 = a[0] as i32 as i64;
        match nr {
            sc::CLOSE if ret == 0 => self.close(fd0),
            sc::CLOSE_RANGE if ret == 0 => {
                let (first, last) = (a[0], a[1].min(1 << 20));
                for fd in first..=last {
                    if let Some(entry) = self.fds.get_mut(&(fd as i64)) {
                        if a[2] & CLOSE_RANGE_CLOEXEC != 0 { entry.cloexec = true } else { entry.closed = true }
                    }
                }
            }
            sc::DUP if ret >= 0 => dup(self, fd0, ret, false),
            sc::DUP2 if ret >= 0 && fd0 != ret => dup(self, fd0, ret, false),
            sc::DUP3 if ret >= 0 => dup(self, fd0, ret, a[2] & O_CLOEXEC != 0),
            sc::FCNTL if ret >= 0 => dup(self, fd0, ret, a[1] == sc::F_DUPFD_CLOEXEC),
            sc::SOCKET if ret >= 0 => self.set(
                ret,
                Fd { target: Target::Socket { family: a[0], local: None, peer: None }, cloexec: a[1] & 0o2000000 != 0, closed: false },
            ),
            n if sc::creates_anon_fd(n) && ret >= 0 => self.set(ret, Fd { target: Target::Other, cloexec: false, closed: false }),
            sc::PIDFD_OPEN if ret >= 0 => {
                self.set(ret, Fd { target: Target::PidFd(a[0] as i32 as i64), cloexec: true, closed: false })
            }
            sc::PIPE | sc::PIPE2 if ret == 0 => {
                let cloexec = nr == sc::PIPE2 && a[1] & O_CLOEXEC != 0;
                for fd in [a[4], a[5]] {
                    self.set(fd as i32 as i64, Fd { target: Target::Pipe, cloexec, closed: false });
                }
            }
            sc::SOCKETPAIR if ret == 0 => {
                for fd in [a[4], a[5]] {
                    let target = Target::Socket { family: a[0], local: None, peer: None };
                    self.set(fd as i32 as i64, Fd { target, cloexec: a[1] & 0o2000000 != 0, closed: false });
                }
            }
            _ => {}
        }
    }

    fn close(&mut self, fd: i64) {
        if let Some(entry) = self.fds.get_mut(&fd) {
            entry.closed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> Fd {
        Fd { target: Target::File(p.into()), cloexec: false, closed: false }
    }

    #[test]
    fn dup2_copies_and_close_keeps_a_tombstone() {
        let mut t = FdTable::default();
        t.set(3, file("/data/log"));
        t.apply(sc::DUP2, &[3, 1, 0, 0, 0, 0], 1);
        assert_eq!(t.path_of(1).as_deref(), Some("/data/log"));
        t.apply(sc::CLOSE, &[3, 0, 0, 0, 0, 0], 0);
        assert_eq!(t.path_of(3).as_deref(), Some("/data/log"), "late writes still resolve");
        assert!(t.get(3).unwrap().closed);
    }

    #[test]
    fn stdio_stays_stdio_through_dup_but_not_a_file_dup2ed_over_it() {
        let mut t = FdTable::of_stdio(&[(1, "/run/out.log".into()), (2, "/run/err.log".into())]);
        assert!(matches!(t.get(1).unwrap().target, Target::Stdio(_)));
        t.apply(sc::DUP2, &[1, 2, 0, 0, 0, 0], 2); // 2>&1
        assert!(matches!(&t.get(2).unwrap().target, Target::Stdio(p) if p == "/run/out.log"));
        t.set(3, file("/data/db"));
        t.apply(sc::DUP2, &[3, 1, 0, 0, 0, 0], 1); // >/data/db
        assert!(matches!(&t.get(1).unwrap().target, Target::File(p) if p == "/data/db"));
    }

    #[test]
    fn exec_closes_cloexec_fds() {
        let mut t = FdTable::default();
        t.set(4, Fd { cloexec: true, ..file("/x") });
        t.set(5, file("/y"));
        t.close_on_exec();
        assert!(t.get(4).unwrap().closed);
        assert!(!t.get(5).unwrap().closed);
    }
}
