//! The pilot's seccomp filter, built with libseccomp (the crate and the C library: it writes the
//! BPF program, the architecture checks and the jumps, and supports user notification).
//!
//! - Refused (EPERM): syscalls that reach state no namespace covers (the kernel keyring, other
//!   processes' memory, the kernel itself). Most are also refused by the dropped
//!   capabilities; the filter makes that independent of them. 32-bit (ia32) and x32 syscalls
//!   are refused outright: their numbers differ and the probes do not decode them.
//! - Supervised (SECCOMP_RET_USER_NOTIF): syscalls whose answer inside the sandbox differs from
//!   the live host's (signals and liveness probes of live processes, locks live processes
//!   hold, changes to the host or to live processes the sandbox refuses). The agent's
//!   supervisor (sandbox/supervisor) answers them as the live host would, records what the
//!   live run would change, and lets the kernel run the rest (SECCOMP_USER_NOTIF_FLAG_CONTINUE:
//!   the namespaces and dropped capabilities still hold then). Without user notification
//!   (`Options::supervise` false) the held syscalls below are refused like the first group.
use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

/// x86_64 syscalls a pilot may not make (EPERM).
pub const DENIED: &[&str] = &[
    "ptrace",
    "syslog",
    "acct",
    "reboot",
    "iopl",
    "ioperm",
    "quotactl",
    "kexec_load",
    "add_key",
    "request_key",
    "keyctl",
    "perf_event_open",
    "open_by_handle_at",
    "setns",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_file_load",
    "bpf",
];

/// Host-wide changes: refused (EPERM) without a supervisor; with one, the supervisor records
/// them as the live run's effect and tells the pilot they succeeded (the kernel never runs
/// them).
pub const HELD: &[&str] = &[
    "adjtimex",
    "clock_adjtime",
    "clock_settime",
    "settimeofday",
    "swapon",
    "swapoff",
    "init_module",
    "finit_module",
    "delete_module",
    "mount",
    "umount2",
];

/// When a supervised syscall goes to the supervisor.
#[derive(Clone, Copy, Debug)]
pub enum When {
    Always,
    /// Argument `i` is not 0 (a pid argument naming another process than the caller).
    NonZero(u32),
    /// Argument `i`, as a 32-bit value, is one of these.
    OneOf(u32, &'static [u64]),
    /// Argument `i` has one of these bit patterns: (mask, value).
    Bits(u32, &'static [(u64, u64)]),
}

/// open(2) flags with write intent (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND), except an
/// exclusive create (O_CREAT|O_EXCL): that makes a new file, never a live sysctl, /sys or
/// cgroup file (those exist, and none of these file systems creates a file on open), so the
/// kernel's answer is the live one. tar extracts every file so, and a notification per file
/// cost 37 us on average (0.7 s of a 20,000-file extraction). One comparison per argument per
/// rule (libseccomp), so the patterns say "O_EXCL clear" or "O_EXCL set, O_CREAT clear".
const WRITE_INTENT: &[(u64, u64)] = &[
    // O_EXCL clear.
    (0o203, 0o1),
    (0o203, 0o2),
    (0o203, 0o3),
    (0o300, 0o100),
    (0o1200, 0o1000),
    (0o2200, 0o2000),
    // O_EXCL without O_CREAT (ignored by open(2), so a plain write-intent open).
    (0o303, 0o201),
    (0o303, 0o202),
    (0o303, 0o203),
    (0o1300, 0o1200),
    (0o2300, 0o2200),
];
/// fcntl commands that take or test a lock: F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK,
/// F_OFD_SETLK, F_OFD_SETLKW.
pub const LOCK_CMDS: &[u64] = &[5, 6, 7, 36, 37, 38];
/// Socket ioctls that change an interface, a route or the ARP table (SIOCS*, SIOCADD*,
/// SIOCDEL*, bridges and bonds).
pub const NETCONF_IOCTLS: &[u64] = &[
    0x890B, 0x890C, 0x8911, 0x8914, 0x8916, 0x8918, 0x891a, 0x891c, 0x891e, 0x8920, 0x8922, 0x8923, 0x8924,
    0x8931, 0x8932, 0x8934, 0x8936, 0x8937, 0x8943, 0x8949, 0x8953, 0x8955, 0x8960, 0x8962, 0x8971, 0x8990,
    0x8991, 0x8992, 0x8995, 0x89a0, 0x89a1, 0x89a2, 0x89a3,
];

/// Syscalls the supervisor answers (besides `HELD`), and when.
pub const SUPERVISED: &[(&str, When)] = &[
    // Signals and liveness probes: a live process must look alive, and a signal to it is held
    // back (the PID namespace already keeps it from being delivered).
    ("kill", When::Always),
    ("tkill", When::Always),
    ("tgkill", When::Always),
    ("rt_sigqueueinfo", When::Always),
    ("rt_tgsigqueueinfo", When::Always),
    ("pidfd_send_signal", When::Always),
    ("pidfd_open", When::Always),
    // Priority, affinity and limits of other processes: queries answered from the live
    // process, changes held back.
    ("getpriority", When::Always),
    ("setpriority", When::Always),
    ("ioprio_get", When::Always),
    ("ioprio_set", When::Always),
    ("sched_getaffinity", When::NonZero(0)),
    ("sched_setaffinity", When::NonZero(0)),
    ("sched_getscheduler", When::NonZero(0)),
    ("sched_getparam", When::NonZero(0)),
    ("sched_getattr", When::NonZero(0)),
    ("sched_setscheduler", When::NonZero(0)),
    ("sched_setparam", When::NonZero(0)),
    ("sched_setattr", When::NonZero(0)),
    ("prlimit64", When::NonZero(0)),
    // Locks: conflict with the live processes' locks on the live file.
    ("flock", When::Always),
    ("fcntl", When::OneOf(1, LOCK_CMDS)),
    // Writes to /proc/sys, /sys and cgroup files: the pilot's /proc and /sys are read-only.
    ("open", When::Bits(1, WRITE_INTENT)),
    ("openat", When::Bits(2, WRITE_INTENT)),
    ("creat", When::Always),
    ("openat2", When::Always),
    // Network configuration: interface ioctls, and netlink messages (sendmsg, sendto with an
    // address: a netlink socket's messages go through these).
    ("ioctl", When::OneOf(1, NETCONF_IOCTLS)),
    ("sendmsg", When::Always),
    ("sendmmsg", When::Always),
    ("sendto", When::NonZero(4)),
];

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Also refuse socket(AF_UNIX, ...), where the kernel has no cgroup hooks for Unix
    /// sockets (before 6.7): no path to a live Unix server then.
    pub deny_unix: bool,
    /// Send `SUPERVISED` and `HELD` syscalls to a supervisor (user notification).
    pub supervise: bool,
}

/// The filter (not loaded).
pub fn filter(opts: Options) -> Result<ScmpFilterContext, libseccomp::error::SeccompError> {
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow)?;
    // Only x86_64 is in the filter: ia32 and x32 syscalls get this action.
    ctx.set_act_badarch(ScmpAction::Errno(libc::EPERM))?;
    ctx.add_arch(ScmpArch::X8664)?;
    let eperm = ScmpAction::Errno(libc::EPERM);
    for name in DENIED {
        ctx.add_rule(eperm, ScmpSyscall::from_name(name)?)?;
    }
    if opts.deny_unix {
        ctx.add_rule_conditional(eperm, ScmpSyscall::from_name("socket")?, &[ScmpArgCompare::new(0, ScmpCompareOp::Equal, libc::AF_UNIX as u64)])?;
    }
    if !opts.supervise {
        for name in HELD.iter().filter(|n| !matches!(**n, "mount" | "umount2")) {
            ctx.add_rule(eperm, ScmpSyscall::from_name(name)?)?;
        }
        return Ok(ctx);
    }
    for name in HELD {
        ctx.add_rule(ScmpAction::Notify, ScmpSyscall::from_name(name)?)?;
    }
    for (name, when) in SUPERVISED {
        let nr = ScmpSyscall::from_name(name)?;
        match *when {
            When::Always => {
                ctx.add_rule(ScmpAction::Notify, nr)?;
            }
            When::NonZero(i) => {
                ctx.add_rule_conditional(ScmpAction::Notify, nr, &[ScmpArgCompare::new(i, ScmpCompareOp::NotEqual, 0)])?;
            }
            When::OneOf(i, values) => {
                for v in values {
                    let cmp = ScmpArgCompare::new(i, ScmpCompareOp::MaskedEqual(0xffff_ffff), *v);
                    ctx.add_rule_conditional(ScmpAction::Notify, nr, &[cmp])?;
                }
            }
            When::Bits(i, patterns) => {
                for (mask, value) in patterns {
                    ctx.add_rule_conditional(ScmpAction::Notify, nr, &[ScmpArgCompare::new(i, ScmpCompareOp::MaskedEqual(*mask), *value)])?;
                }
            }
        }
    }
    Ok(ctx)
}

/// Load the filter into the calling process (no_new_privs is set first); returns the user
/// notification listener when `opts.supervise`.
pub fn install(opts: Options) -> io::Result<Option<OwnedFd>> {
    let ctx = filter(opts).map_err(io::Error::other)?;
    ctx.load().map_err(io::Error::other)?;
    if !opts.supervise {
        return Ok(None);
    }
    let fd = ctx.get_notify_fd().map_err(io::Error::other)?;
    // SAFETY: libseccomp hands over the listener it created at load; nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Can this kernel and libseccomp deliver user notifications? (API level 6: kernel 5.7+.)
pub fn notify_supported() -> bool {
    libseccomp::check_api(6, libseccomp::ScmpVersion::from((2, 5, 0))).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pfc(opts: Options) -> String {
        let ctx = filter(opts).expect("the filter builds");
        let mut file = tempfile::tempfile().unwrap();
        ctx.export_pfc(&file).unwrap();
        use std::io::{Read, Seek};
        file.rewind().unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text
    }

    /// The kernel's reading of `When::Bits`: any pattern matches.
    fn sent(flags: u64) -> bool {
        WRITE_INTENT.iter().any(|(mask, value)| flags & mask == *value)
    }

    #[test]
    fn opens_with_write_intent_go_to_the_supervisor_but_exclusive_creates_do_not() {
        let (wronly, rdwr, creat, excl, trunc, append) = (0o1, 0o2, 0o100, 0o200, 0o1000, 0o2000);
        for bits in 0..64u64 {
            let flags = [wronly, rdwr, creat, excl, trunc, append].iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, f)| f).sum::<u64>();
            let intent = flags & (wronly | rdwr | creat | trunc | append) != 0;
            let exclusive_create = flags & (creat | excl) == creat | excl;
            assert_eq!(sent(flags | 0o2000000), intent && !exclusive_create, "flags {flags:o}");
        }
        // `echo 1 > /proc/sys/...` (O_WRONLY|O_CREAT|O_TRUNC) is sent; tar's creates are not.
        assert!(sent(wronly | creat | trunc));
        assert!(!sent(wronly | creat | excl | 0o400 | 0o4000));
    }

    #[test]
    fn denies_and_supervises_by_name() {
        let text = pfc(Options { deny_unix: true, supervise: true });
        for name in DENIED {
            assert!(text.contains(&format!("if ($syscall == {})", ScmpSyscall::from_name(name).unwrap().as_raw_syscall())), "{name} missing:\n{text}");
        }
        assert!(text.contains("action ERRNO(1)"), "{text}");
        // SCMP_ACT_NOTIFY (libseccomp 2.5 prints it as a number).
        assert!(text.contains("action NOTIFY") || text.contains("action 0x7fc00000"), "{text}");
        assert!(text.contains("# invalid architecture action\naction ERRNO(1)"), "{text}");
    }

    /// x32 syscalls (nr | 0x40000000) on the x86_64 ABI fail like other architectures':
    /// libseccomp's program compares the number against the x32 bit before any rule.
    #[test]
    fn x32_syscalls_are_refused() {
        let ctx = filter(Options { deny_unix: false, supervise: true }).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        ctx.export_bpf(&file).unwrap();
        use std::io::{Read, Seek};
        file.rewind().unwrap();
        let mut prog = Vec::new();
        file.read_to_end(&mut prog).unwrap();
        let insns: Vec<(u16, u32)> = prog.chunks(8).map(|i| (u16::from_ne_bytes([i[0], i[1]]), u32::from_ne_bytes([i[4], i[5], i[6], i[7]]))).collect();
        const JGT: u16 = 0x25;
        const JGE: u16 = 0x35;
        assert!(
            insns.iter().any(|(code, k)| (*code == JGT && *k == 0x3fff_ffff) || (*code == JGE && *k == 0x4000_0000)),
            "no x32 check in {insns:x?}"
        );
    }

    #[test]
    fn without_a_supervisor_held_syscalls_are_refused() {
        let text = pfc(Options { deny_unix: false, supervise: false });
        assert!(!text.contains("NOTIFY"), "{text}");
        let settime = ScmpSyscall::from_name("clock_settime").unwrap().as_raw_syscall();
        assert!(text.contains(&format!("if ($syscall == {settime})")), "{text}");
    }
}
