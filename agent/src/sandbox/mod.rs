//! The pilot's sandbox, entered by `pilot __sandbox SPEC` (the agent re-executes itself so this
//! runs as a fresh single-threaded process). Three processes:
//!
//! - **C** (this entry): starts a new session, unshares mount, PID, IPC and UTS namespaces,
//!   forks I into the pilot's cgroup, and waits for I. Dies with the agent (PDEATHSIG).
//! - **I**: PID 1 of the new PID namespace. Builds the overlay root and pivots into it, starts
//!   W, reaps every orphan (daemons stay in the namespace), and exits when none is left. Dies
//!   with C; when it dies the kernel kills everything in the namespace.
//! - **W**: the workload. Enters its own user namespace (identity-mapped, so files and uids
//!   look the same, but its capabilities no longer count against the host's processes: no way
//!   into them through /proc/<pid>/root even after setuid), drops dangerous capabilities,
//!   installs the seccomp filter, and hands its user-notification listener to the agent's
//!   supervisor, which adds W to the tracked set before it acknowledges; then W execs the
//!   command (without a supervisor W adds itself, right before the filter and the exec). The
//!   trace starts at the command's exec, never at pilot's own set-up.
//!
//! Containment comes from the kernel: overlays (files), the PID namespace (signals reach only
//! the pilot's own processes; the host's stay visible read-only in /proc), IPC/UTS namespaces,
//! dropped capabilities, and cgroup BPF hooks the agent attached (network). The supervisor
//! only changes what the pilot is told (live processes look alive, live locks conflict,
//! refused host changes look done); it never lets a call through that these would refuse.
pub mod caps;
pub mod mounts;
pub mod seccomp;
pub mod supervisor;

use std::{
    fs::File,
    io::{self, Read, Write},
    os::{
        fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::PathBuf,
    process::Command,
};

use rustix::{
    fs::{Mode, OFlags},
    pipe::PipeFlags,
    process::{Signal, WaitOptions, WaitStatus},
    thread::UnshareFlags,
};
use serde::{Deserialize, Serialize};

/// C's exit status when building the sandbox failed (the message is in `sandbox-error.txt`).
pub const EXIT_SETUP_FAILED: i32 = 125;
/// W's exit status when the command could not be executed (as shells use).
pub const EXIT_EXEC_FAILED: i32 = 127;

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Spec {
    pub run_dir: PathBuf,
    pub cgroup: PathBuf,
    pub cwd: PathBuf,
    pub argv: Vec<String>,
    /// Inherited fd of the kernel's TRACKED map, and the run W tracks itself for.
    pub tracked_fd: i32,
    pub run: u32,
    pub agent_pid: u32,
    /// The kernel has no cgroup hooks for Unix sockets: refuse creating them instead.
    pub deny_unix_sockets: bool,
    /// (live Unix listener path, the sink's socket standing in for it): bind-mounted over the
    /// path in the pilot's root (issue 18; `mounts::bind_unix_sinks`).
    #[serde(default)]
    pub unix_sinks: Vec<(String, PathBuf)>,
    /// Inherited end of the socket W hands its seccomp listener to the supervisor through;
    /// None: no supervisor (the kernel has no user notification).
    #[serde(default)]
    pub supervisor_fd: Option<i32>,
    /// Before Linux 6.7: the inherited fd of the pilot's own network namespace (abstract Unix
    /// names isolated: sink/netns.rs), joined before the other namespaces.
    #[serde(default)]
    pub netns_fd: Option<i32>,
}

/// Entry of C. Never returns: exits with the workload's status.
pub fn main(spec_arg: &str) -> ! {
    let spec_json = match read_spec(spec_arg) {
        Ok(json) => json,
        Err(e) => fail_setup(None, &format!("reading the sandbox spec: {e}")),
    };
    let spec: Spec = match serde_json::from_str(&spec_json) {
        Ok(s) => s,
        Err(e) => fail_setup(None, &format!("bad sandbox spec: {e}")),
    };
    let cgroup = match enter(&spec) {
        Ok(cgroup) => cgroup,
        Err(e) => fail_setup(Some(&spec), &e.to_string()),
    };
    match fork_into(&spec, &cgroup) {
        Err(e) => fail_setup(Some(&spec), &format!("fork: {e}")),
        Ok(None) => init(&spec),
        Ok(Some(pid)) => std::process::exit(wait_status(pid)),
    }
}

/// C's child I, born in the pilot's cgroup (clone3 with CLONE_INTO_CGROUP, Linux 5.7): moving
/// a running process there instead (a write to cgroup.procs) waits out an RCU grace period on
/// the cgroup threadgroup lock, 10-30 ms of every run's start on this machine. Without
/// clone3's cgroup support (an older kernel, seccomp'd clone3) C joins the cgroup and forks,
/// as before. Only ever called while C is single-threaded.
fn fork_into(spec: &Spec, cgroup: &OwnedFd) -> io::Result<Option<rustix::process::Pid>> {
    match clone_into_cgroup(cgroup) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG | libc::EPERM | libc::EOPNOTSUPP)) => {
            join_cgroup(spec)?;
            fork()
        }
        other => other,
    }
}

/// The kernel's `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes); the libc
/// crate defines it for few targets.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}
const _: () = assert!(std::mem::size_of::<CloneArgs>() == 88);
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3(CLONE_INTO_CGROUP) as a fork: the child returns Ok(None). glibc's cached thread id
/// stays the parent's in the child (nothing in I reads it: no pthread calls; W is forked by
/// glibc, which resets it), as with every raw clone (youki spawns the same way).
fn clone_into_cgroup(cgroup: &OwnedFd) -> io::Result<Option<rustix::process::Pid>> {
    let args = CloneArgs { flags: CLONE_INTO_CGROUP, exit_signal: libc::SIGCHLD as u64, cgroup: std::os::fd::AsRawFd::as_raw_fd(cgroup) as u64, ..Default::default() };
    // SAFETY: no stack given (the child continues on a copy of ours, as after fork) and C is
    // single-threaded, so nothing else holds a lock the child would inherit.
    match unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(rustix::process::Pid::from_raw(pid as i32)),
    }
}

fn join_cgroup(spec: &Spec) -> io::Result<()> {
    std::fs::write(spec.cgroup.join("cgroup.procs"), "0\n").map_err(|e| io::Error::new(e.kind(), format!("joining {}: {e}", spec.cgroup.display())))
}

/// fork(2). rustix has no fork for programs (only its runtime's); this is the one raw call
/// of the sandbox. Only ever called while the process is single-threaded.
fn fork() -> io::Result<Option<rustix::process::Pid>> {
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(rustix::process::Pid::from_raw(pid)),
    }
}

/// The spec in a memfd for `pilot __sandbox fd:N` (argv has a 128 KiB limit per argument).
pub fn spec_memfd(json: &str) -> io::Result<std::fs::File> {
    use std::io::{Seek, Write};
    use std::os::fd::FromRawFd;
    let fd = unsafe { libc::memfd_create(c"pilot-sandbox-spec".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(json.as_bytes())?;
    f.rewind()?;
    Ok(f)
}

/// `fd:N` (the memfd above, read and closed) or the JSON itself.
fn read_spec(arg: &str) -> io::Result<String> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let Some(n) = arg.strip_prefix("fd:") else { return Ok(arg.to_string()) };
    let fd: i32 = n.parse().map_err(|_| io::Error::other(format!("bad spec fd {n}")))?;
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

/// C: session, namespaces, and the cgroup I is born in (C itself stays out of it: it only
/// waits). The agent stays reachable through PDEATHSIG.
fn enter(spec: &Spec) -> io::Result<OwnedFd> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(spec.agent_pid) {
        return Err(io::Error::other("the agent is gone"));
    }
    let cgroup = rustix::fs::open(&spec.cgroup, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("opening {}: {e}", spec.cgroup.display())))?;
    let _ = rustix::process::setsid();
    if let Some(fd) = spec.netns_fd {
        crate::sink::netns::join(fd)?;
        unsafe { libc::close(fd) };
    }
    let flags = UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    // SAFETY: no CLONE_FILES: the fd table stays shared with nothing (single thread).
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("unshare: {e}")))?;
    mounts::make_private().map_err(|e| io::Error::new(e.kind(), format!("making mounts private: {e}")))?;
    Ok(cgroup)
}

/// I: PID 1 of the pilot.
fn init(spec: &Spec) -> ! {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    set_name(c"pilot-init");
    supervisor::pids::spread_namespace_pids();
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let plans = mounts::plan(&mounts::parse_mountinfo(&text));
    // Kept across the pivot: the new /proc is read-only, but W must write its uid/gid maps.
    let host_proc = match rustix::fs::open("/proc", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(f) => f,
        Err(e) => fail_setup(Some(spec), &format!("opening /proc: {e}")),
    };
    let staging = spec.run_dir.join("root");
    let built = std::fs::create_dir_all(&staging).and_then(|_| mounts::build_root(&plans, &spec.run_dir, &staging, &spec.unix_sinks));
    match built {
        // Where each upper layer belongs and how it was mounted, for `pilot diff` and the
        // verdict (before the pivot: after it the path would land in an overlay). Without it
        // `pilot diff` would find no changes at all: fail before anything runs instead.
        Ok(built) => {
            let mounts_json = spec.run_dir.join("mounts.json");
            if let Err(e) = std::fs::write(&mounts_json, serde_json::to_string_pretty(&built).unwrap_or_default()) {
                fail_setup(Some(spec), &crate::error::FileError::new("writing", &mounts_json, e, crate::error::RUN_DIR).to_string());
            }
        }
        Err(e) => fail_setup(Some(spec), &format!("building the pilot's filesystem: {e}")),
    }
    if let Err(e) = mounts::pivot(&staging) {
        fail_setup(Some(spec), &format!("building the pilot's filesystem: {e}"));
    }
    let handshake = match Handshake::new() {
        Ok(h) => h,
        Err(e) => fail_setup(Some(spec), &format!("pipes: {e}")),
    };
    let workload = match fork() {
        Err(e) => fail_setup(Some(spec), &format!("fork: {e}")),
        Ok(None) => workload(spec, &handshake),
        Ok(Some(pid)) => pid,
    };
    if let Err(e) = map_worker(&handshake, host_proc.as_fd()) {
        // W reports it too and exits; the agent sees the setup failure.
        eprintln!("pilot: sandbox: mapping the pilot's user namespace: {e}");
    }
    drop(host_proc);
    let mut status = EXIT_EXEC_FAILED;
    loop {
        // Any child (wait(2): pid -1). rustix's waitpid(None) waits for the caller's process
        // group only, which the workload leaves with setsid.
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, st))) if pid == workload => status = exit_code(st),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            // ECHILD: the whole pilot has exited
            Err(_) => std::process::exit(status),
        }
    }
}

/// W: user namespace, capabilities, filter, then tracking and exec. The tracking comes last:
/// whatever W does to build the pilot (the handshake over pipes, closing fds, handing the
/// filter's listener over) is pilot's machinery, not the command's, and must not be traced as
/// it. What stays between the insert into TRACKED and the command's first instruction is at
/// most the filter's install (prctl, seccomp: not recorded) and the execve itself, which is
/// traced: nothing the command does is missed.
fn workload(spec: &Spec, handshake: &Handshake) -> ! {
    if std::env::set_current_dir(&spec.cwd).is_err() {
        let _ = std::env::set_current_dir("/");
    }
    // Our pid and start time as the host (and the probes) see them: /proc is the host's
    // procfs. The start time goes into TRACKED, so the exec record carries it even when the
    // command is gone before the agent could read /proc.
    let global_pid: Option<u32> = std::fs::read_link("/proc/self").ok().and_then(|p| p.to_str()?.parse().ok());
    let Some(global_pid) = global_pid else { fail_setup(Some(spec), "cannot tell the pilot's pid from /proc/self") };
    let start_ns = crate::procfs::start_ns(global_pid).unwrap_or(0);
    if let Err(e) = own_user_namespace(handshake, global_pid) {
        fail_setup(Some(spec), &format!("entering the pilot's user namespace: {e}"));
    }
    // Only stdin, stdout and stderr (vetted by the agent) cross into the pilot: an inherited
    // fd on a production file would be a write path around the overlay. The TRACKED map's fd
    // and the supervisor's socket stay until the exec closes them (O_CLOEXEC).
    close_all_but(&[spec.tracked_fd, spec.supervisor_fd.unwrap_or(-1)]);
    if let Err(e) = caps::drop_dangerous() {
        fail_setup(Some(spec), &format!("dropping capabilities: {e}"));
    }
    // One exec, of the program execvp would run: a PATH search's failed attempts are the
    // lookup, not the command, and each would be traced before the exec record that carries
    // the start time.
    let argv0 = &spec.argv[0];
    let program = if argv0.contains('/') { PathBuf::from(argv0) } else { which::which(argv0).unwrap_or_else(|_| PathBuf::from(argv0)) };
    let mut cmd = Command::new(&program);
    cmd.arg0(&spec.argv[0]).args(&spec.argv[1..]);
    let deny_unix = spec.deny_unix_sockets;
    match spec.supervisor_fd {
        // The supervisor tracks W (seccomp refuses bpf(2) from here) before it acknowledges
        // the listener: W's next recorded syscall is the execve.
        Some(fd) => {
            let opts = seccomp::Options { deny_unix, supervise: true };
            match seccomp::install(opts) {
                Err(e) => fail_setup(Some(spec), &format!("installing the seccomp filter: {e}")),
                Ok(Some(listener)) => {
                    // SAFETY: the agent handed this fd down for this; W owns it from here.
                    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
                    let _ = rustix::io::fcntl_setfd(&listener, rustix::io::FdFlags::CLOEXEC);
                    if let Err(e) = supervisor::handover::send(socket.as_fd(), listener.as_fd(), global_pid) {
                        fail_setup(Some(spec), &format!("handing the seccomp listener to the supervisor: {e}"));
                    }
                    // Closed by the exec, not by a traced close.
                    std::mem::forget((socket, listener));
                }
                Ok(None) => fail_setup(Some(spec), "the seccomp filter gave no listener for the supervisor"),
            }
        }
        // No supervisor: W tracks itself in the last step before the exec. std runs pre_exec
        // closures right before execvp (W is single-threaded: allocating here is safe).
        None => {
            let (tracked, run) = (spec.tracked_fd, spec.run);
            unsafe {
                cmd.pre_exec(move || {
                    crate::probes::track_pid_since(tracked, global_pid, run, start_ns)
                        .map_err(|e| io::Error::new(e.kind(), format!("tracking the pilot: {e}")))?;
                    seccomp::install(seccomp::Options { deny_unix, supervise: false })
                        .map(|_| ())
                        .map_err(|e| io::Error::new(e.kind(), format!("installing the seccomp filter: {e}")))
                })
            };
        }
    }
    let err = cmd.exec();
    eprintln!("pilot: cannot run `{}`: {err}", spec.argv[0]);
    std::process::exit(EXIT_EXEC_FAILED);
}

/// Close every fd above stderr but those in `keep` (negative: none), which are marked
/// close-on-exec. (close_range: rustix has no wrapper for it.)
fn close_all_but(keep: &[i32]) {
    const CLOSE_RANGE: libc::c_long = 436;
    let mut keep: Vec<u32> = keep.iter().filter(|fd| **fd > 2).map(|fd| *fd as u32).collect();
    keep.sort();
    let mut first = 3u32;
    for k in keep.iter().copied().chain(std::iter::once(u32::MAX)) {
        if k > first {
            let last = if k == u32::MAX { u32::MAX } else { k - 1 };
            if unsafe { libc::syscall(CLOSE_RANGE, first, last, 0u32) } != 0 {
                for fd in first..last.min(1024) {
                    unsafe { libc::close(fd as i32) };
                }
            }
        }
        if k != u32::MAX {
            unsafe { libc::fcntl(k as i32, libc::F_SETFD, libc::FD_CLOEXEC) };
            first = k + 1;
        }
    }
}

/// The two pipes of W's user-namespace handshake with I.
struct Handshake {
    to_init: (OwnedFd, OwnedFd),
    to_worker: (OwnedFd, OwnedFd),
}

impl Handshake {
    fn new() -> io::Result<Handshake> {
        Ok(Handshake { to_init: rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?, to_worker: rustix::pipe::pipe_with(PipeFlags::CLOEXEC)? })
    }
}

fn read_exact(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<()> {
    File::from(fd.try_clone_to_owned()?).read_exact(buf).map_err(|_| io::Error::other("the other side of the handshake is gone"))
}

fn write_all(fd: BorrowedFd, buf: &[u8]) -> io::Result<()> {
    File::from(fd.try_clone_to_owned()?).write_all(buf)
}

/// W: enter a new user namespace and wait for I to map every uid and gid to itself. The map
/// must be written by a process that holds CAP_SETUID in the parent namespace: I.
fn own_user_namespace(h: &Handshake, global_pid: u32) -> io::Result<()> {
    // SAFETY: no CLONE_FILES (single thread).
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) }.map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("unshare: {e}")))?;
    write_all(h.to_init.1.as_fd(), &global_pid.to_ne_bytes())?;
    let mut ok = [0u8; 1];
    read_exact(h.to_worker.0.as_fd(), &mut ok)?;
    if ok[0] != 1 {
        return Err(io::Error::other("pilot-init could not write the uid/gid maps"));
    }
    Ok(())
}

/// I: write W's identity uid/gid maps through the host /proc opened before the pivot.
fn map_worker(h: &Handshake, host_proc: BorrowedFd) -> io::Result<()> {
    let mut pid = [0u8; 4];
    read_exact(h.to_init.0.as_fd(), &mut pid)?;
    let pid = u32::from_ne_bytes(pid);
    let mut result = Ok(());
    for name in ["uid_map", "gid_map"] {
        let written = rustix::fs::openat(host_proc, format!("{pid}/{name}").as_str(), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(io::Error::from)
            .and_then(|fd| File::from(fd).write_all(b"0 0 4294967295\n"));
        if let Err(e) = written {
            result = Err(io::Error::new(e.kind(), format!("{name}: {e}")));
            break;
        }
    }
    write_all(h.to_worker.1.as_fd(), &[result.is_ok() as u8])?;
    result
}

fn wait_status(pid: rustix::process::Pid) -> i32 {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, st))) => return exit_code(st),
            Err(rustix::io::Errno::INTR) => continue,
            _ => return EXIT_SETUP_FAILED,
        }
    }
}

/// A shell's view of a wait status: the exit code, or 128 + the signal that killed it.
pub fn exit_code(st: WaitStatus) -> i32 {
    match (st.exit_status(), st.terminating_signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => EXIT_SETUP_FAILED,
    }
}

fn set_name(name: &std::ffi::CStr) {
    let _ = rustix::thread::set_name(name);
}

/// Report a setup failure to the agent (a file in the run directory) and exit 125.
fn fail_setup(spec: Option<&Spec>, msg: &str) -> ! {
    if let Some(spec) = spec {
        // Written before the pivot it lands in the run directory; after it, in the overlay
        // (the agent then only sees the exit status).
        let _ = std::fs::write(spec.run_dir.join("sandbox-error.txt"), format!("{msg}\n"));
    }
    eprintln!("pilot: sandbox: {msg}");
    std::process::exit(EXIT_SETUP_FAILED);
}
