//! A resolved event: what `events.jsonl` holds, one JSON object per line. Field names are a
//! contract (runbooks read them): `ts_ns`, `pid`, `tid`, `comm`, `kind`, `ret`, and per kind
//! `path`, `path2`, `flags`, `bytes`, `family`, `addr`, `port`, `target_pid`, `signal`, `argv`,
//! `exit_code`. Absent fields are omitted.
use serde::Serialize;

/// What an event is. Serialized as the name events.jsonl has always held.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Exec,
    Fork,
    Exit,
    Open,
    Write,
    Send,
    Unlink,
    Rmdir,
    Mkdir,
    Rename,
    Truncate,
    Chmod,
    Chown,
    Link,
    Symlink,
    Mknod,
    Xattr,
    Chdir,
    Chroot,
    Connect,
    Bind,
    Listen,
    Accept,
    /// A kill-family syscall.
    Signal,
    /// Each task the kernel signalled (signal_generate).
    SignalGenerated,
    // Issue 16: changes to the host (`is_host`) and to live processes (`is_process_change`)
    // that a pilot's sandbox refuses or holds back.
    Sysctl,
    Sysfs,
    Cgroup,
    Netconf,
    Clock,
    Swap,
    Mount,
    Module,
    Setpriority,
    Setaffinity,
    Setrlimit,
    // --- issue 15 (channels): effects the first channel learned to see ---
    /// fallocate, any mode (`flag_names`: FALLOC_FL_PUNCH_HOLE...; `offset`, `bytes`: the range).
    Fallocate,
    /// A shared mapping of a file made writable (mmap with PROT_WRITE|MAP_SHARED, or mprotect
    /// raising one): stores to it reach the file, no write(2) needed. Write intent.
    Mmap,
    /// msync of a shared file mapping: its stores written back.
    Msync,
    /// FICLONE/FICLONERANGE: `path` (the destination) now shares `path2`'s content.
    Reflink,
    /// utimensat, futimesat, utime, utimes: a file's times set.
    Utime,
    /// io_uring_setup: operations submitted through the ring are not syscalls the trace sees.
    IoUring,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Fork => "fork",
            Kind::Exit => "exit",
            Kind::Open => "open",
            Kind::Write => "write",
            Kind::Send => "send",
            Kind::Unlink => "unlink",
            Kind::Rmdir => "rmdir",
            Kind::Mkdir => "mkdir",
            Kind::Rename => "rename",
            Kind::Truncate => "truncate",
            Kind::Chmod => "chmod",
            Kind::Chown => "chown",
            Kind::Link => "link",
            Kind::Symlink => "symlink",
            Kind::Mknod => "mknod",
            Kind::Xattr => "xattr",
            Kind::Chdir => "chdir",
            Kind::Chroot => "chroot",
            Kind::Connect => "connect",
            Kind::Bind => "bind",
            Kind::Listen => "listen",
            Kind::Accept => "accept",
            Kind::Signal => "signal",
            Kind::SignalGenerated => "signal_generated",
            Kind::Sysctl => "sysctl",
            Kind::Sysfs => "sysfs",
            Kind::Cgroup => "cgroup",
            Kind::Netconf => "netconf",
            Kind::Clock => "clock",
            Kind::Swap => "swap",
            Kind::Mount => "mount",
            Kind::Module => "module",
            Kind::Setpriority => "setpriority",
            Kind::Setaffinity => "setaffinity",
            Kind::Setrlimit => "setrlimit",
            Kind::Fallocate => "fallocate",
            Kind::Mmap => "mmap",
            Kind::Msync => "msync",
            Kind::Reflink => "reflink",
            Kind::Utime => "utime",
            Kind::IoUring => "io_uring",
        }
    }

    /// Host-wide: the kernel (sysctl, sysfs), cgroups, network configuration, the clock,
    /// swap, mounts, kernel modules.
    pub fn is_host(self) -> bool {
        matches!(self, Kind::Sysctl | Kind::Sysfs | Kind::Cgroup | Kind::Netconf | Kind::Clock | Kind::Swap | Kind::Mount | Kind::Module)
    }

    /// A live process's scheduling priority (nice, I/O priority, policy), CPU affinity and
    /// resource limits.
    pub fn is_process_change(self) -> bool {
        matches!(self, Kind::Setpriority | Kind::Setaffinity | Kind::Setrlimit)
    }

    /// Either (issue 16): a change the sandbox refuses or holds back.
    pub fn is_change(self) -> bool {
        self.is_host() || self.is_process_change()
    }

    /// The graph's effect of the same name, for the issue-16 kinds.
    pub fn as_edge(self) -> Option<crate::graph::EdgeKind> {
        crate::graph::EdgeKind::parse(self.as_str()).filter(|_| self.is_change())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Event {
    /// Kernel time (boot clock, ns) of the effect.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// Start time (boot clock, ns) of `pid`: with it, the process's identity.
    pub start_ns: u64,
    pub comm: String,
    pub kind: Kind,
    /// The syscall behind the event, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<&'static str>,
    /// Return value: >= 0 success, < 0 minus the errno.
    pub ret: i64,
    /// Errno name when the syscall failed (`ret` < 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Second path: rename/link destination, symlink target (as written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    /// open flags or renameat2/unlinkat flags by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag_names: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i64>,
    /// Bytes written or sent (aggregated: the sum over `count` calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Calls aggregated into this event (writes), and how many of them failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
    /// fallocate, reflink and mapping ranges: where in the file the range starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// First call aggregated into this event (writes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_ts_ns: Option<u64>,
    /// inet, inet6, unix, netlink...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<&'static str>,
    /// IP address, or the Unix socket path (`@name` for the abstract namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// fork: the new task; `thread` when it is a thread of the same process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_start_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<bool>,
    /// A string was cut by the kernel's buffer, or could not be read (page not resident).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<bool>,
    /// Written through the stdio the traced command was given (pilot's stdout.log and
    /// stderr.log, the operator's redirection): its output, not an effect on that file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdio: Option<bool>,
    /// How a relative path was made absolute when the trace alone could not: `proc`
    /// (/proc/<pid>/fd, read when the event was resolved: racy) or `unknown-fd` (a write to an
    /// fd the trace never saw opened: no path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_via: Option<&'static str>,
    // --- issue 16: effects the sandbox refuses or answers (sandbox/supervisor) ---------------
    /// The sandbox's supervisor answered this call instead of the kernel: `held back` (the
    /// live run would make this change; it was not made and the caller was told what the live
    /// host would say), `refused` (the live run would make it; the sandbox refused it and the
    /// caller saw the failure) or `answered` (a query about the live host, answered from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<&'static str>,
    /// What a host-wide or live-process change names, when not a path or pid: a sysctl key,
    /// an interface, a clock, a module, `uid N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What it sets: a sysctl's value, `nice 19`, `RLIMIT_NOFILE soft 10 hard 10`, `mtu 1400`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

pub fn errno_name(errno: i64) -> &'static str {
    match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        29 => "ESPIPE",
        30 => "EROFS",
        31 => "EMLINK",
        32 => "EPIPE",
        34 => "ERANGE",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        61 => "ENODATA",
        75 => "EOVERFLOW",
        88 => "ENOTSOCK",
        90 => "EMSGSIZE",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        105 => "ENOBUFS",
        106 => "EISCONN",
        107 => "ENOTCONN",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        116 => "ESTALE",
        122 => "EDQUOT",
        _ => "E?",
    }
}

pub fn signal_name(sig: i64) -> &'static str {
    const NAMES: [&str; 32] = [
        "0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
        "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
        "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
        "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    ];
    match sig {
        0..=31 => NAMES[sig as usize],
        _ => "SIGRT",
    }
}

/// open(2) flags by name, as strace prints them.
pub fn open_flag_names(flags: u64) -> String {
    let mut out = vec![match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    }];
    for (bit, name) in [
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
        (0o20200000, "O_TMPFILE"),
    ] {
        if flags & bit == bit {
            out.push(name);
        }
    }
    out.join("|")
}

/// A socket address as the kernel got it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SockAddr {
    pub family: &'static str,
    pub addr: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.family, self.port) {
            ("inet6", Some(p)) => write!(f, "[{}]:{p}", self.addr),
            (_, Some(p)) => write!(f, "{}:{p}", self.addr),
            (fam, None) => write!(f, "{fam}:{}", self.addr),
        }
    }
}

pub fn family_name(family: u64) -> &'static str {
    match family {
        1 => "unix",
        2 => "inet",
        10 => "inet6",
        16 => "netlink",
        17 => "packet",
        40 => "vsock",
        _ => "other",
    }
}

/// Decode a struct sockaddr (AF_INET, AF_INET6, AF_UNIX; others by family name only).
pub fn parse_sockaddr(b: &[u8]) -> Option<SockAddr> {
    if b.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([b[0], b[1]]) as u64;
    match family {
        2 if b.len() >= 8 => Some(SockAddr {
            family: "inet",
            addr: std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]).to_string(),
            port: Some(u16::from_be_bytes([b[2], b[3]])),
        }),
        10 if b.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            Some(SockAddr {
                family: "inet6",
                addr: std::net::Ipv6Addr::from(a).to_string(),
                port: Some(u16::from_be_bytes([b[2], b[3]])),
            })
        }
        1 => {
            let path = &b[2..];
            let addr = if path.first() == Some(&0) && path.len() > 1 {
                format!("@{}", crate::decode::text(&path[1..]))
            } else {
                crate::decode::text(path)
            };
            Some(SockAddr { family: "unix", addr, port: None })
        }
        _ => Some(SockAddr { family: family_name(family), addr: String::new(), port: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inet_inet6_unix() {
        let mut v4 = vec![2u8, 0, 0x1f, 0x90, 127, 0, 0, 1];
        v4.extend([0u8; 8]);
        let a = parse_sockaddr(&v4).unwrap();
        assert_eq!((a.family, a.addr.as_str(), a.port), ("inet", "127.0.0.1", Some(8080)));
        let mut v6 = vec![10u8, 0, 0, 80, 0, 0, 0, 0];
        v6.extend(std::net::Ipv6Addr::LOCALHOST.octets());
        v6.extend([0u8; 4]);
        assert_eq!(parse_sockaddr(&v6).unwrap().to_string(), "[::1]:80");
        let mut un = vec![1u8, 0];
        un.extend(b"/run/x.sock\0");
        assert_eq!(parse_sockaddr(&un).unwrap().addr, "/run/x.sock");
        let mut abs = vec![1u8, 0, 0];
        abs.extend(b"name");
        assert_eq!(parse_sockaddr(&abs).unwrap().addr, "@name");
    }

    #[test]
    fn names_open_flags() {
        assert_eq!(open_flag_names(0o1101), "O_WRONLY|O_CREAT|O_TRUNC");
        assert_eq!(open_flag_names(0o2002), "O_RDWR|O_APPEND");
    }
}
