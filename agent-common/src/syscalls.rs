//! The syscalls the pilot records, x86_64 numbering, and how each one's arguments are read.
//!
//! One table serves both sides: the kernel uses [`spec`] to know which arguments are strings or
//! socket addresses, userspace uses [`name`] and the same spec to decode them.

pub const WRITE: u32 = 1;
pub const OPEN: u32 = 2;
pub const CLOSE: u32 = 3;
pub const MMAP: u32 = 9;
pub const MPROTECT: u32 = 10;
pub const IOCTL: u32 = 16;
pub const PWRITE64: u32 = 18;
pub const WRITEV: u32 = 20;
pub const PIPE: u32 = 22;
pub const MSYNC: u32 = 26;
pub const DUP: u32 = 32;
pub const DUP2: u32 = 33;
pub const SENDFILE: u32 = 40;
pub const SOCKET: u32 = 41;
pub const CONNECT: u32 = 42;
pub const ACCEPT: u32 = 43;
pub const SENDTO: u32 = 44;
pub const SENDMSG: u32 = 46;
pub const BIND: u32 = 49;
pub const LISTEN: u32 = 50;
pub const SOCKETPAIR: u32 = 53;
pub const EXECVE: u32 = 59;
pub const EXIT: u32 = 60;
pub const KILL: u32 = 62;
pub const FCNTL: u32 = 72;
pub const TRUNCATE: u32 = 76;
pub const FTRUNCATE: u32 = 77;
pub const CHDIR: u32 = 80;
pub const FCHDIR: u32 = 81;
pub const RENAME: u32 = 82;
pub const MKDIR: u32 = 83;
pub const RMDIR: u32 = 84;
pub const CREAT: u32 = 85;
pub const LINK: u32 = 86;
pub const UNLINK: u32 = 87;
pub const SYMLINK: u32 = 88;
pub const CHMOD: u32 = 90;
pub const FCHMOD: u32 = 91;
pub const CHOWN: u32 = 92;
pub const FCHOWN: u32 = 93;
pub const LCHOWN: u32 = 94;
pub const UTIME: u32 = 132;
pub const MKNOD: u32 = 133;
pub const CHROOT: u32 = 161;
pub const SETXATTR: u32 = 188;
pub const LSETXATTR: u32 = 189;
pub const FSETXATTR: u32 = 190;
pub const REMOVEXATTR: u32 = 197;
pub const LREMOVEXATTR: u32 = 198;
pub const FREMOVEXATTR: u32 = 199;
pub const TKILL: u32 = 200;
pub const EXIT_GROUP: u32 = 231;
pub const TGKILL: u32 = 234;
pub const UTIMES: u32 = 235;
pub const OPENAT: u32 = 257;
pub const MKDIRAT: u32 = 258;
pub const MKNODAT: u32 = 259;
pub const FCHOWNAT: u32 = 260;
pub const FUTIMESAT: u32 = 261;
pub const UNLINKAT: u32 = 263;
pub const RENAMEAT: u32 = 264;
pub const LINKAT: u32 = 265;
pub const SYMLINKAT: u32 = 266;
pub const FCHMODAT: u32 = 268;
pub const SPLICE: u32 = 275;
pub const VMSPLICE: u32 = 278;
pub const UTIMENSAT: u32 = 280;
pub const FALLOCATE: u32 = 285;
pub const ACCEPT4: u32 = 288;
pub const DUP3: u32 = 292;
pub const PIPE2: u32 = 293;
pub const PWRITEV: u32 = 296;
pub const SENDMMSG: u32 = 307;
pub const RENAMEAT2: u32 = 316;
pub const EXECVEAT: u32 = 322;
pub const COPY_FILE_RANGE: u32 = 326;
pub const PWRITEV2: u32 = 328;
pub const PIDFD_SEND_SIGNAL: u32 = 424;
pub const PIDFD_OPEN: u32 = 434;
pub const CLOSE_RANGE: u32 = 436;
pub const OPENAT2: u32 = 437;
pub const FCHMODAT2: u32 = 452;
// Issue 16: changes to the host and to other processes (priority, affinity, limits, the
// clock, swap, modules, mounts). Table entries only: the kernel records them like the rest.
pub const SETPRIORITY: u32 = 141;
pub const SCHED_SETPARAM: u32 = 142;
pub const SCHED_SETSCHEDULER: u32 = 144;
pub const SETTIMEOFDAY: u32 = 164;
pub const MOUNT: u32 = 165;
pub const UMOUNT2: u32 = 166;
pub const SWAPON: u32 = 167;
pub const SWAPOFF: u32 = 168;
pub const INIT_MODULE: u32 = 175;
pub const DELETE_MODULE: u32 = 176;
pub const SCHED_SETAFFINITY: u32 = 203;
pub const CLOCK_SETTIME: u32 = 227;
pub const IOPRIO_SET: u32 = 251;
pub const PRLIMIT64: u32 = 302;
pub const FINIT_MODULE: u32 = 313;
pub const SCHED_SETATTR: u32 = 314;
// Syscalls that only create an fd: recorded so a reused fd number is never taken for the file
// it named before.
pub const EPOLL_CREATE: u32 = 213;
pub const INOTIFY_INIT: u32 = 253;
pub const SIGNALFD: u32 = 282;
pub const TIMERFD_CREATE: u32 = 283;
pub const EVENTFD: u32 = 284;
pub const SIGNALFD4: u32 = 289;
pub const EVENTFD2: u32 = 290;
pub const EPOLL_CREATE1: u32 = 291;
pub const INOTIFY_INIT1: u32 = 294;
pub const PERF_EVENT_OPEN: u32 = 298;
pub const FANOTIFY_INIT: u32 = 300;
pub const OPEN_BY_HANDLE_AT: u32 = 304;
pub const MEMFD_CREATE: u32 = 319;
pub const USERFAULTFD: u32 = 323;
pub const IO_URING_SETUP: u32 = 425;
pub const PIDFD_GETFD: u32 = 438;
pub const MEMFD_SECRET: u32 = 447;

/// Does `nr` only create an anonymous fd (no path, no effect)?
pub const fn creates_anon_fd(nr: u32) -> bool {
    matches!(
        nr,
        EPOLL_CREATE | INOTIFY_INIT | SIGNALFD | TIMERFD_CREATE | EVENTFD | SIGNALFD4 | EVENTFD2
            | EPOLL_CREATE1 | INOTIFY_INIT1 | PERF_EVENT_OPEN | FANOTIFY_INIT | OPEN_BY_HANDLE_AT
            | USERFAULTFD | IO_URING_SETUP | PIDFD_GETFD | MEMFD_SECRET
    )
}

/// Highest syscall number the bitmap covers.
pub const NR_MAX: u32 = 512;

/// How the kernel handles a syscall of a tracked task.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// Not recorded.
    Ignore,
    /// open/openat/openat2/creat: recorded only with write intent, O_DIRECTORY or O_PATH.
    Open,
    /// Recorded at exit with up to two string arguments (`str1`, `str2`).
    Path,
    /// Recorded at exit, integer arguments only.
    Plain,
    /// Bytes written to the fd in `fd_arg`: aggregated in the kernel per (process, fd).
    Write,
    /// connect/bind: socket address in (`addr_arg`, `addr_len_arg`).
    SockAddr,
    /// sendto: aggregated like a write when it has no address, else recorded with it.
    SendTo,
    /// sendmsg: the address is inside the user's msghdr.
    SendMsg,
    /// sendmmsg: the bytes of each message sent (`msg_len` of the user's mmsghdr array),
    /// aggregated like writes to the fd.
    SendMmsg,
    /// accept/accept4: the peer address is written back to the user's buffer.
    Accept,
    /// pipe/pipe2/socketpair: two new fds written to the user's int[2].
    FdPair,
    /// close/close_range: flush aggregated writes, at entry; not recorded themselves (the
    /// agent's fd table keeps a closed fd's target until the number is reused, which is
    /// recorded: one ring-buffer submission fewer per close).
    Close,
    /// execve/execveat: argv copied at entry.
    Exec,
    /// exit/exit_group: the code is remembered for the exit record.
    Exit,
}

/// How to read one syscall's arguments. Argument indices are 0-based; `NONE` = not present.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub class: Class,
    pub str1: u8,
    pub str2: u8,
    /// The fd argument (writes) or the address argument (sockets).
    pub fd_arg: u8,
    pub addr_arg: u8,
    pub addr_len_arg: u8,
    /// The returned value is a new fd (flush aggregated writes for it).
    pub returns_fd: bool,
}

pub const NONE: u8 = u8::MAX;

const fn s(class: Class) -> Spec {
    Spec { class, str1: NONE, str2: NONE, fd_arg: NONE, addr_arg: NONE, addr_len_arg: NONE, returns_fd: false }
}
const fn path1(a: u8) -> Spec {
    Spec { str1: a, ..s(Class::Path) }
}
const fn path2(a: u8, b: u8) -> Spec {
    Spec { str1: a, str2: b, ..s(Class::Path) }
}
const fn write(fd: u8) -> Spec {
    Spec { fd_arg: fd, ..s(Class::Write) }
}
const fn new_fd(class: Class) -> Spec {
    Spec { returns_fd: true, ..s(class) }
}

/// The handling of syscall `nr` (x86_64).
pub const fn spec(nr: u32) -> Spec {
    match nr {
        OPEN | CREAT => Spec { str1: 0, returns_fd: true, ..s(Class::Open) },
        OPENAT | OPENAT2 => Spec { str1: 1, returns_fd: true, ..s(Class::Open) },
        // sendfile(out_fd, in_fd, ...), vmsplice(pipe_fd, ...): the written fd is the first;
        // copy_file_range(in, off_in, out, ...), splice(in, off_in, out, ...): the third.
        WRITE | PWRITE64 | WRITEV | PWRITEV | PWRITEV2 | SENDFILE | VMSPLICE => write(0),
        COPY_FILE_RANGE | SPLICE => write(2),
        // Filtered at entry (`plain_recorded`): shared file mappings, writable protections,
        // reflink ioctls.
        MMAP | MPROTECT | IOCTL | MSYNC | FALLOCATE => s(Class::Plain),
        // utimensat(dirfd, NULL, ...) is futimens(dirfd): the path may be absent.
        UTIMENSAT | FUTIMESAT => path1(1),
        UTIME | UTIMES => path1(0),
        CLOSE | CLOSE_RANGE => s(Class::Close),
        UNLINK | RMDIR | MKDIR | TRUNCATE | CHMOD | CHOWN | LCHOWN | MKNOD | CHDIR | CHROOT
        | SETXATTR | LSETXATTR | REMOVEXATTR | LREMOVEXATTR => path1(0),
        UNLINKAT | MKDIRAT | MKNODAT | FCHOWNAT | FCHMODAT | FCHMODAT2 => path1(1),
        FSETXATTR | FREMOVEXATTR => path1(1),
        RENAME | LINK | SYMLINK => path2(0, 1),
        RENAMEAT | RENAMEAT2 | LINKAT => path2(1, 3),
        SYMLINKAT => path2(0, 2),
        FTRUNCATE | FCHMOD | FCHOWN | FCHDIR | LISTEN | KILL | TKILL | TGKILL
        | PIDFD_SEND_SIGNAL => s(Class::Plain),
        DUP | DUP2 | DUP3 | FCNTL | SOCKET | PIDFD_OPEN => new_fd(Class::Plain),
        MEMFD_CREATE => Spec { str1: 0, returns_fd: true, ..s(Class::Path) },
        n if creates_anon_fd(n) => new_fd(Class::Plain),
        CONNECT | BIND => Spec { addr_arg: 1, addr_len_arg: 2, ..s(Class::SockAddr) },
        SENDTO => Spec { fd_arg: 0, addr_arg: 4, addr_len_arg: 5, ..s(Class::SendTo) },
        SENDMSG => Spec { fd_arg: 0, addr_arg: 1, ..s(Class::SendMsg) },
        SENDMMSG => Spec { fd_arg: 0, addr_arg: 1, ..s(Class::SendMmsg) },
        ACCEPT | ACCEPT4 => Spec { addr_arg: 1, addr_len_arg: 2, returns_fd: true, ..s(Class::Accept) },
        PIPE | PIPE2 => Spec { addr_arg: 0, ..s(Class::FdPair) },
        SOCKETPAIR => Spec { addr_arg: 3, ..s(Class::FdPair) },
        EXECVE => Spec { str1: 0, addr_arg: 1, ..s(Class::Exec) },
        EXECVEAT => Spec { str1: 1, addr_arg: 2, ..s(Class::Exec) },
        EXIT | EXIT_GROUP => s(Class::Exit),
        // Issue 16.
        SETPRIORITY | SCHED_SETPARAM | SCHED_SETSCHEDULER | SETTIMEOFDAY | INIT_MODULE | SCHED_SETAFFINITY
        | CLOCK_SETTIME | IOPRIO_SET | PRLIMIT64 | FINIT_MODULE | SCHED_SETATTR => s(Class::Plain),
        SWAPON | SWAPOFF | DELETE_MODULE | UMOUNT2 => path1(0),
        MOUNT => path2(0, 1),
        _ => s(Class::Ignore),
    }
}

/// Bitmap of recorded syscalls (bit `nr`), so the kernel's hot path rejects the rest with one
/// load instead of a comparison chain.
pub const INTEREST: [u64; (NR_MAX / 64) as usize] = {
    let mut bits = [0u64; (NR_MAX / 64) as usize];
    let mut nr = 0;
    while nr < NR_MAX {
        if !matches!(spec(nr).class, Class::Ignore) {
            bits[(nr / 64) as usize] |= 1 << (nr % 64);
        }
        nr += 1;
    }
    bits
};

/// Is `nr` recorded? Used by the kernel before any map lookup.
#[inline(always)]
pub fn interesting(nr: u64) -> bool {
    if nr >= NR_MAX as u64 {
        return false;
    }
    let word = INTEREST[((nr >> 6) & 7) as usize];
    (word >> (nr & 63)) & 1 == 1
}

/// The syscall's name as strace prints it.
pub const fn name(nr: u32) -> &'static str {
    match nr {
        WRITE => "write",
        OPEN => "open",
        CLOSE => "close",
        MMAP => "mmap",
        MPROTECT => "mprotect",
        IOCTL => "ioctl",
        MSYNC => "msync",
        UTIME => "utime",
        UTIMES => "utimes",
        FUTIMESAT => "futimesat",
        VMSPLICE => "vmsplice",
        UTIMENSAT => "utimensat",
        FALLOCATE => "fallocate",
        SENDMMSG => "sendmmsg",
        PWRITE64 => "pwrite64",
        WRITEV => "writev",
        PIPE => "pipe",
        DUP => "dup",
        DUP2 => "dup2",
        SENDFILE => "sendfile",
        SOCKET => "socket",
        CONNECT => "connect",
        ACCEPT => "accept",
        SENDTO => "sendto",
        SENDMSG => "sendmsg",
        BIND => "bind",
        LISTEN => "listen",
        SOCKETPAIR => "socketpair",
        EXECVE => "execve",
        EXIT => "exit",
        KILL => "kill",
        FCNTL => "fcntl",
        TRUNCATE => "truncate",
        FTRUNCATE => "ftruncate",
        CHDIR => "chdir",
        FCHDIR => "fchdir",
        RENAME => "rename",
        MKDIR => "mkdir",
        RMDIR => "rmdir",
        CREAT => "creat",
        LINK => "link",
        UNLINK => "unlink",
        SYMLINK => "symlink",
        CHMOD => "chmod",
        FCHMOD => "fchmod",
        CHOWN => "chown",
        FCHOWN => "fchown",
        LCHOWN => "lchown",
        MKNOD => "mknod",
        CHROOT => "chroot",
        SETXATTR => "setxattr",
        LSETXATTR => "lsetxattr",
        FSETXATTR => "fsetxattr",
        REMOVEXATTR => "removexattr",
        LREMOVEXATTR => "lremovexattr",
        FREMOVEXATTR => "fremovexattr",
        TKILL => "tkill",
        EXIT_GROUP => "exit_group",
        TGKILL => "tgkill",
        OPENAT => "openat",
        MKDIRAT => "mkdirat",
        MKNODAT => "mknodat",
        FCHOWNAT => "fchownat",
        UNLINKAT => "unlinkat",
        RENAMEAT => "renameat",
        LINKAT => "linkat",
        SYMLINKAT => "symlinkat",
        FCHMODAT => "fchmodat",
        SPLICE => "splice",
        ACCEPT4 => "accept4",
        DUP3 => "dup3",
        PIPE2 => "pipe2",
        PWRITEV => "pwritev",
        RENAMEAT2 => "renameat2",
        EXECVEAT => "execveat",
        COPY_FILE_RANGE => "copy_file_range",
        PWRITEV2 => "pwritev2",
        PIDFD_SEND_SIGNAL => "pidfd_send_signal",
        PIDFD_OPEN => "pidfd_open",
        CLOSE_RANGE => "close_range",
        OPENAT2 => "openat2",
        FCHMODAT2 => "fchmodat2",
        EPOLL_CREATE => "epoll_create",
        INOTIFY_INIT => "inotify_init",
        SIGNALFD => "signalfd",
        TIMERFD_CREATE => "timerfd_create",
        EVENTFD => "eventfd",
        SIGNALFD4 => "signalfd4",
        EVENTFD2 => "eventfd2",
        EPOLL_CREATE1 => "epoll_create1",
        INOTIFY_INIT1 => "inotify_init1",
        PERF_EVENT_OPEN => "perf_event_open",
        FANOTIFY_INIT => "fanotify_init",
        OPEN_BY_HANDLE_AT => "open_by_handle_at",
        MEMFD_CREATE => "memfd_create",
        USERFAULTFD => "userfaultfd",
        IO_URING_SETUP => "io_uring_setup",
        PIDFD_GETFD => "pidfd_getfd",
        MEMFD_SECRET => "memfd_secret",
        SETPRIORITY => "setpriority",
        SCHED_SETPARAM => "sched_setparam",
        SCHED_SETSCHEDULER => "sched_setscheduler",
        SETTIMEOFDAY => "settimeofday",
        MOUNT => "mount",
        UMOUNT2 => "umount2",
        SWAPON => "swapon",
        SWAPOFF => "swapoff",
        INIT_MODULE => "init_module",
        DELETE_MODULE => "delete_module",
        SCHED_SETAFFINITY => "sched_setaffinity",
        CLOCK_SETTIME => "clock_settime",
        IOPRIO_SET => "ioprio_set",
        PRLIMIT64 => "prlimit64",
        FINIT_MODULE => "finit_module",
        SCHED_SETATTR => "sched_setattr",
        _ => "unknown",
    }
}

/// open(2) flags that mean the caller may change the file.
pub const O_WRONLY: u64 = 0o1;
pub const O_RDWR: u64 = 0o2;
pub const O_CREAT: u64 = 0o100;
pub const O_TRUNC: u64 = 0o1000;
pub const O_APPEND: u64 = 0o2000;
pub const O_DIRECTORY: u64 = 0o200000;
pub const O_CLOEXEC: u64 = 0o2000000;
pub const O_PATH: u64 = 0o10000000;
pub const WRITE_INTENT: u64 = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;

/// Is an open with these flags an effect? (Write intent.) Read-only opens are still recorded
/// when they succeed, so the fd table knows what each fd names (fchmod, fchdir, dirfds), but a
/// failed read-only open is dropped in the kernel.
pub const fn open_recorded(flags: u64) -> bool {
    flags & WRITE_INTENT != 0
}

/// fcntl commands that create a new fd.
pub const F_DUPFD: u64 = 0;
pub const F_DUPFD_CLOEXEC: u64 = 1030;

/// mmap/mprotect protections and flags.
pub const PROT_WRITE: u64 = 0x2;
pub const MAP_SHARED: u64 = 0x1;
/// MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE: the mapping's type.
pub const MAP_TYPE: u64 = 0xf;
pub const MAP_SHARED_VALIDATE: u64 = 0x3;
pub const MAP_ANONYMOUS: u64 = 0x20;
/// Reflink ioctls (linux/fs.h): the destination fd's content becomes the source's.
pub const FICLONE: u64 = 0x4004_9409;
pub const FICLONERANGE: u64 = 0x4020_940d;

/// Is a shared mapping of a file (its stores reach the file)? Recorded whatever its
/// protection: an mprotect may make it writable later.
pub const fn shared_file_mapping(flags: u64, fd: u64) -> bool {
    let ty = flags & MAP_TYPE;
    (ty == MAP_SHARED || ty == MAP_SHARED_VALIDATE) && flags & MAP_ANONYMOUS == 0 && fd as i32 >= 0
}

/// For the Plain syscalls that are frequent and mostly no effect: is this call recorded?
/// (Decided at entry from the arguments alone: fcntl only when it makes an fd, mmap only of a
/// shared file mapping, mprotect only when it grants write, ioctl only for reflinks.)
pub const fn plain_recorded(nr: u32, args: &[u64; 6]) -> bool {
    match nr {
        FCNTL => args[1] == F_DUPFD || args[1] == F_DUPFD_CLOEXEC,
        MMAP => shared_file_mapping(args[3], args[4]),
        MPROTECT => args[2] & PROT_WRITE != 0,
        IOCTL => args[1] & 0xffff_ffff == FICLONE || args[1] & 0xffff_ffff == FICLONERANGE,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_matches_spec() {
        for nr in 0..NR_MAX {
            assert_eq!(interesting(nr as u64), spec(nr).class != Class::Ignore, "nr {nr}");
        }
        assert!(!interesting(0)); // read
        assert!(interesting(OPENAT as u64));
        assert!(!interesting(10_000));
    }

    #[test]
    fn frequent_plain_syscalls_are_filtered_at_entry() {
        // ld.so's mappings: private, or anonymous.
        assert!(!plain_recorded(MMAP, &[0, 4096, 5, 2, 3, 0]));
        assert!(!plain_recorded(MMAP, &[0, 4096, 3, 0x21, u32::MAX as u64, 0]));
        assert!(plain_recorded(MMAP, &[0, 4096, 3, 1, 3, 0]));
        assert!(plain_recorded(MMAP, &[0, 4096, 1, 3, 3, 0]), "read-only shared: mprotect may raise it");
        assert!(!plain_recorded(MPROTECT, &[0, 4096, 1, 0, 0, 0]));
        assert!(plain_recorded(MPROTECT, &[0, 4096, 3, 0, 0, 0]));
        assert!(!plain_recorded(IOCTL, &[1, 0x5401, 0, 0, 0, 0]), "TCGETS");
        assert!(plain_recorded(IOCTL, &[4, FICLONE, 3, 0, 0, 0]));
        assert!(!plain_recorded(FCNTL, &[4, 3, 0, 0, 0, 0]), "F_GETFL");
    }

    #[test]
    fn every_recorded_syscall_has_a_name() {
        for nr in 0..NR_MAX {
            if spec(nr).class != Class::Ignore {
                assert_ne!(name(nr), "unknown", "nr {nr}");
            }
        }
    }
}
