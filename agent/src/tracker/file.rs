//! Files: opens with write intent, path syscalls (unlink, rename, chmod...), the fd table
//! (what each fd names, so later writes and fd-relative paths resolve), and the writes the
//! kernel aggregated per fd.
use agent_common::syscalls as sc;

use super::{AT_FDCWD, Fd, Target, Tracker};
use crate::{
    decode::{self, Record, Syscall, Writes},
    event::{self, Event, Kind},
};

const AT_REMOVEDIR: u64 = 0x200;

impl Tracker {
    /// The file syscalls; false when `s` is none of them.
    pub(super) fn file_syscall(&mut self, rec: &Record, s: &Syscall, out: &mut Vec<Event>) -> bool {
        let (pid, a, ret) = (rec.pid, s.args, s.ret);
        match s.nr {
            sc::UNLINK | sc::RMDIR | sc::MKDIR | sc::TRUNCATE | sc::CHMOD | sc::CHOWN | sc::LCHOWN | sc::MKNOD
            | sc::SETXATTR | sc::LSETXATTR | sc::REMOVEXATTR | sc::LREMOVEXATTR => {
                let mut e = self.base(rec, path_kind(s.nr, 0));
                e.path = Some(self.resolve(pid, AT_FDCWD, s.data1, &mut e));
                fill_path_args(s.nr, &a, &mut e);
                out.push(e);
            }
            sc::UNLINKAT | sc::MKDIRAT | sc::MKNODAT | sc::FCHOWNAT | sc::FCHMODAT | sc::FCHMODAT2 => {
                let mut e = self.base(rec, path_kind(s.nr, a[2]));
                e.path = Some(self.resolve(pid, a[0] as i32 as i64, s.data1, &mut e));
                fill_path_args(s.nr, &a, &mut e);
                out.push(e);
            }
            sc::FTRUNCATE | sc::FCHMOD | sc::FCHOWN | sc::FSETXATTR | sc::FREMOVEXATTR => {
                let mut e = self.base(rec, path_kind(s.nr, 0));
                e.fd = Some(a[0] as i32 as i64);
                e.path = self.fd_path(pid, a[0] as i32 as i64, &mut e);
                fill_path_args(s.nr, &a, &mut e);
                out.push(e);
            }
            sc::RENAME | sc::LINK => {
                let mut e = self.base(rec, if s.nr == sc::RENAME { Kind::Rename } else { Kind::Link });
                e.path = Some(self.resolve(pid, AT_FDCWD, s.data1, &mut e));
                e.path2 = Some(self.resolve(pid, AT_FDCWD, s.data2, &mut e));
                out.push(e);
            }
            sc::RENAMEAT | sc::RENAMEAT2 | sc::LINKAT => {
                let mut e = self.base(rec, if s.nr == sc::LINKAT { Kind::Link } else { Kind::Rename });
                e.path = Some(self.resolve(pid, a[0] as i32 as i64, s.data1, &mut e));
                e.path2 = Some(self.resolve(pid, a[2] as i32 as i64, s.data2, &mut e));
                if s.nr != sc::RENAMEAT && a[4] != 0 {
                    e.flags = Some(a[4]);
                    if s.nr == sc::RENAMEAT2 {
                        e.flag_names = Some(rename_flag_names(a[4]));
                    }
                }
                out.push(e);
            }
            sc::SYMLINK | sc::SYMLINKAT => {
                let mut e = self.base(rec, Kind::Symlink);
                let dirfd = if s.nr == sc::SYMLINKAT { a[1] as i32 as i64 } else { AT_FDCWD };
                e.path = Some(self.resolve(pid, dirfd, s.data2, &mut e));
                e.path2 = Some(decode::text(s.data1));
                out.push(e);
            }
            sc::CHDIR | sc::CHROOT => {
                let mut e = self.base(rec, if s.nr == sc::CHDIR { Kind::Chdir } else { Kind::Chroot });
                let path = self.resolve(pid, AT_FDCWD, s.data1, &mut e);
                if ret == 0 {
                    let p = self.proc_mut(pid, rec.tid);
                    if s.nr == sc::CHDIR { p.cwd = path.clone() } else { p.root = path.clone() }
                }
                e.path = Some(path);
                out.push(e);
            }
            sc::FCHDIR => {
                let mut e = self.base(rec, Kind::Chdir);
                e.fd = Some(a[0] as i32 as i64);
                e.path = self.fd_path(pid, a[0] as i32 as i64, &mut e);
                if let (0, Some(path)) = (ret, e.path.clone()) {
                    self.proc_mut(pid, rec.tid).cwd = path;
                }
                out.push(e);
            }
            sc::CLOSE | sc::CLOSE_RANGE | sc::DUP | sc::DUP2 | sc::DUP3 | sc::FCNTL | sc::SOCKET | sc::PIDFD_OPEN
            | sc::PIPE | sc::PIPE2 | sc::SOCKETPAIR => {
                self.proc_mut(pid, rec.tid).fds.apply(s.nr, &a, ret);
            }
            n if sc::creates_anon_fd(n) => self.proc_mut(pid, rec.tid).fds.apply(n, &a, ret),
            sc::MEMFD_CREATE => {
                if ret >= 0 {
                    let name = format!("memfd:{}", decode::text(s.data1));
                    self.proc_mut(pid, rec.tid).fds.set(ret, Fd { target: Target::Memfd(name), cloexec: false, closed: false });
                }
            }
            _ => return false,
        }
        true
    }

    /// An open: remembered in the fd table; an event only with write intent.
    pub(super) fn open(&mut self, rec: &Record, s: &Syscall, out: &mut Vec<Event>) {
        let a = s.args;
        let (dirfd, open_flags) = match s.nr {
            sc::OPEN => (AT_FDCWD, a[1]),
            sc::CREAT => (AT_FDCWD, sc::O_CREAT | sc::O_WRONLY | sc::O_TRUNC),
            _ => (a[0] as i32 as i64, a[2]),
        };
        let mut e = self.base(rec, Kind::Open);
        let path = self.resolve(rec.pid, dirfd, s.data1, &mut e);
        if s.ret >= 0 {
            let target = if open_flags & (sc::O_DIRECTORY | sc::O_PATH) != 0 {
                Target::Dir(path.clone())
            } else {
                Target::File(path.clone())
            };
            let fd = Fd { target, cloexec: open_flags & sc::O_CLOEXEC != 0, closed: false };
            self.proc_mut(rec.pid, rec.tid).fds.set(s.ret, fd);
        }
        if open_flags & sc::WRITE_INTENT != 0 {
            e.path = Some(path);
            e.flags = Some(open_flags);
            e.flag_names = Some(event::open_flag_names(open_flags));
            if open_flags & sc::O_CREAT != 0 {
                e.mode = Some(match s.nr {
                    sc::OPENAT | sc::OPENAT2 => a[3],
                    sc::CREAT => a[1],
                    _ => a[2],
                } as u32);
            }
            if s.ret >= 0 {
                e.fd = Some(s.ret);
            }
            out.push(e);
        }
    }

    /// Writes aggregated for one fd: a `write` to what the fd names, or a `send` to its peer.
    pub(super) fn write(&mut self, pid: u32, tid: u32, ts_ns: u64, w: &Writes, out: &mut Vec<Event>) {
        let fd = w.fd;
        let start_ns = self.procs.get(&pid).map(|p| p.start_ns).unwrap_or_else(|| self.proc_mut(pid, tid).start_ns);
        let mut e = Event {
            ts_ns,
            pid,
            tid,
            start_ns,
            comm: self.procs.get(&pid).map(|p| p.comm.clone()).unwrap_or_default(),
            kind: Kind::Write,
            fd: Some(fd),
            bytes: Some(w.bytes),
            count: Some(w.calls),
            first_ts_ns: Some(w.first_ns),
            ret: w.bytes as i64,
            ..Default::default()
        };
        if w.failed > 0 {
            e.failed = Some(w.failed);
            e.error = Some(event::errno_name(-w.last_errno));
        }
        let target = self.procs.get(&pid).and_then(|p| p.fds.get(fd)).map(|f| f.target.clone());
        match target {
            Some(Target::Socket { family, peer, .. }) => {
                e.kind = Kind::Send;
                e.family = Some(event::family_name(family));
                if let Some(peer) = peer {
                    e.family = Some(peer.family);
                    e.addr = Some(peer.addr);
                    e.port = peer.port;
                }
            }
            Some(Target::File(path) | Target::Dir(path)) => e.path = Some(path),
            Some(Target::Stdio(path)) => {
                e.path = Some(path);
                e.stdio = Some(true);
            }
            Some(Target::Pipe) => e.path = Some("pipe".into()),
            Some(Target::Memfd(name)) => e.path = Some(name),
            Some(Target::PidFd(_)) | Some(Target::Other) => {}
            // An fd the trace never saw opened: /proc now shows whatever the fd number names
            // since (the writes may be a second old), so the path stays unknown.
            None => e.resolved_via = Some("unknown-fd"),
        }
        out.push(e);
    }
}

/// Event kind for a path syscall (`at_flags`: unlinkat's AT_REMOVEDIR).
fn path_kind(nr: u32, at_flags: u64) -> Kind {
    match nr {
        sc::UNLINKAT if at_flags & AT_REMOVEDIR != 0 => Kind::Rmdir,
        sc::UNLINK | sc::UNLINKAT => Kind::Unlink,
        sc::RMDIR => Kind::Rmdir,
        sc::MKDIR | sc::MKDIRAT => Kind::Mkdir,
        sc::TRUNCATE | sc::FTRUNCATE => Kind::Truncate,
        sc::CHMOD | sc::FCHMOD | sc::FCHMODAT | sc::FCHMODAT2 => Kind::Chmod,
        sc::CHOWN | sc::LCHOWN | sc::FCHOWN | sc::FCHOWNAT => Kind::Chown,
        sc::MKNOD | sc::MKNODAT => Kind::Mknod,
        _ => Kind::Xattr,
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
