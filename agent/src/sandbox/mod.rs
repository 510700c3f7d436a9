//! The pilot's sandbox, entered by `pilot __sandbox SPEC` (the agent re-executes itself so this
//! runs as a fresh single-threaded process). Three processes:
//!
//! - **C** (this entry): joins the pilot's cgroup, starts a new session, unshares mount, PID,
//!   IPC and UTS namespaces, and waits for I. Dies with the agent (PDEATHSIG).
//! - **I**: PID 1 of the new PID namespace. Builds the overlay root and pivots into it, starts
//!   W, reaps every orphan (daemons stay in the namespace), and exits when none is left. Dies
//!   with C; when it dies the kernel kills everything in the namespace.
//! - **W**: the workload. Adds itself to the tracked set, enters its own user namespace
//!   (identity-mapped, so files and uids look the same, but its capabilities no longer count
//!   against the host's processes: no way into them through /proc/<pid>/root even after
//!   setuid), drops dangerous capabilities, installs the seccomp filter and execs the command.
//!
//! Containment comes from the kernel: overlays (files), the PID namespace (signals reach only
//! the pilot's own processes; the host's stay visible read-only in /proc), IPC/UTS namespaces,
//! dropped capabilities, and cgroup BPF hooks the agent attached (network).
pub mod caps;
pub mod mounts;
pub mod seccomp;

use std::{io, os::unix::process::CommandExt, path::PathBuf, process::Command};

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
}

/// The spec as a memfd the sandbox inherits (it is not close-on-exec), for `fd:N`.
pub fn spec_memfd(json: &str) -> io::Result<std::os::fd::OwnedFd> {
    use std::io::{Seek, Write};
    let fd = rustix::fs::memfd_create("pilot-sandbox-spec", rustix::fs::MemfdFlags::empty())?;
    let mut file = std::fs::File::from(fd);
    file.write_all(json.as_bytes())?;
    file.rewind()?;
    Ok(file.into())
}

/// `fd:N` (the spec in inherited fd N, read and closed) or the spec's JSON itself.
fn read_spec(arg: &str) -> io::Result<String> {
    use std::{io::Read, os::fd::FromRawFd};
    let Some(fd) = arg.strip_prefix("fd:").and_then(|n| n.parse::<i32>().ok()) else { return Ok(arg.to_string()) };
    let mut text = String::new();
    unsafe { std::fs::File::from_raw_fd(fd) }.read_to_string(&mut text)?;
    Ok(text)
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
    if let Err(e) = enter(&spec) {
        fail_setup(Some(&spec), &e.to_string());
    }
    match unsafe { libc::fork() } {
        -1 => fail_setup(Some(&spec), &format!("fork: {}", io::Error::last_os_error())),
        0 => init(&spec),
        pid => std::process::exit(wait_status(pid)),
    }
}

/// C: cgroup, session, namespaces. The agent stays reachable through PDEATHSIG.
fn enter(spec: &Spec) -> io::Result<()> {
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if unsafe { libc::getppid() } as u32 != spec.agent_pid {
        return Err(io::Error::other("the agent is gone"));
    }
    std::fs::write(spec.cgroup.join("cgroup.procs"), "0\n")
        .map_err(|e| io::Error::new(e.kind(), format!("joining {}: {e}", spec.cgroup.display())))?;
    unsafe { libc::setsid() };
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(io::Error::new(io::Error::last_os_error().kind(), format!("unshare: {}", io::Error::last_os_error())));
    }
    mounts::mount(None, std::path::Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| io::Error::new(e.kind(), format!("making mounts private: {e}")))
}

/// I: PID 1 of the pilot.
fn init(spec: &Spec) -> ! {
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    set_name("pilot-init");
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let plans = mounts::plan(&mounts::parse_mountinfo(&text));
    // Where each upper layer belongs, for `pilot diff`.
    // Without it `pilot diff` would find no changes at all: fail before anything runs instead.
    let mounts_json = spec.run_dir.join("mounts.json");
    if let Err(e) = std::fs::write(&mounts_json, serde_json::to_string_pretty(&plans).unwrap_or_default()) {
        fail_setup(Some(spec), &crate::error::FileError::new("writing", &mounts_json, e, crate::error::RUN_DIR).to_string());
    }
    // Kept across the pivot: the new /proc is read-only, but W must write its uid/gid maps.
    let host_proc = match std::fs::File::open("/proc") {
        Ok(f) => f,
        Err(e) => fail_setup(Some(spec), &format!("opening /proc: {e}")),
    };
    let staging = spec.run_dir.join("root");
    let built = std::fs::create_dir_all(&staging).and_then(|_| mounts::build_root_with(&plans, &spec.run_dir, &staging, &spec.unix_sinks));
    if let Err(e) = built {
        fail_setup(Some(spec), &format!("building the pilot's filesystem: {e}"));
    }
    let handshake = match Handshake::new() {
        Ok(h) => h,
        Err(e) => fail_setup(Some(spec), &format!("pipes: {e}")),
    };
    let workload = match unsafe { libc::fork() } {
        -1 => fail_setup(Some(spec), &format!("fork: {}", io::Error::last_os_error())),
        0 => workload(spec, &handshake),
        pid => pid,
    };
    if let Err(e) = map_worker(&handshake, &host_proc) {
        // W reports it too and exits; the agent sees the setup failure.
        eprintln!("pilot: sandbox: mapping the pilot's user namespace: {e}");
    }
    drop(host_proc);
    let mut status = EXIT_EXEC_FAILED;
    loop {
        let mut raw = 0;
        let pid = unsafe { libc::waitpid(-1, &mut raw, 0) };
        if pid < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            std::process::exit(status); // ECHILD: the whole pilot has exited
        }
        if pid == workload {
            status = decode_status(raw);
        }
    }
}

/// W: track, drop capabilities, exec.
fn workload(spec: &Spec, handshake: &Handshake) -> ! {
    if std::env::set_current_dir(&spec.cwd).is_err() {
        let _ = std::env::set_current_dir("/");
    }
    // Our pid as the host (and the probes) see it: /proc is the host's procfs.
    let global_pid: Option<u32> = std::fs::read_link("/proc/self").ok().and_then(|p| p.to_str()?.parse().ok());
    let global_pid = match global_pid {
        Some(pid) => {
            if let Err(e) = crate::probes::track_pid(spec.tracked_fd, pid, spec.run) {
                fail_setup(Some(spec), &format!("tracking the pilot: {e}"));
            }
            pid
        }
        None => fail_setup(Some(spec), "cannot tell the pilot's pid from /proc/self"),
    };
    if let Err(e) = own_user_namespace(handshake, global_pid) {
        fail_setup(Some(spec), &format!("entering the pilot's user namespace: {e}"));
    }
    // Only stdin, stdout and stderr (vetted by the agent) cross into the pilot: an inherited
    // fd on a production file would be a write path around the overlay.
    const CLOSE_RANGE: libc::c_long = 436;
    if unsafe { libc::syscall(CLOSE_RANGE, 3u32, u32::MAX, 0u32) } != 0 {
        for fd in 3..1024 {
            unsafe { libc::close(fd) };
        }
    }
    if let Err(e) = caps::drop_dangerous() {
        fail_setup(Some(spec), &format!("dropping capabilities: {e}"));
    }
    if let Err(e) = seccomp::install(spec.deny_unix_sockets) {
        fail_setup(Some(spec), &format!("installing the seccomp filter: {e}"));
    }
    let err = Command::new(&spec.argv[0]).args(&spec.argv[1..]).exec();
    eprintln!("pilot: cannot run `{}`: {err}", spec.argv[0]);
    std::process::exit(EXIT_EXEC_FAILED);
}

/// The two ends of W's user-namespace handshake with I.
struct Handshake {
    to_init: [i32; 2],
    to_worker: [i32; 2],
}

impl Handshake {
    fn new() -> io::Result<Handshake> {
        let (mut a, mut b) = ([0; 2], [0; 2]);
        if unsafe { libc::pipe2(a.as_mut_ptr(), libc::O_CLOEXEC) } != 0 || unsafe { libc::pipe2(b.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Handshake { to_init: a, to_worker: b })
    }
}

fn read_exact(fd: i32, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = unsafe { libc::read(fd, buf[done..].as_mut_ptr() as *mut libc::c_void, buf.len() - done) };
        if n <= 0 {
            return Err(io::Error::other("the other side of the handshake is gone"));
        }
        done += n as usize;
    }
    Ok(())
}

fn write_all(fd: i32, buf: &[u8]) -> io::Result<()> {
    if unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) } != buf.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// W: enter a new user namespace and wait for I to map every uid and gid to itself. The map
/// must be written by a process that holds CAP_SETUID in the parent namespace: I.
fn own_user_namespace(h: &Handshake, global_pid: u32) -> io::Result<()> {
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("unshare: {e}")));
    }
    write_all(h.to_init[1], &global_pid.to_ne_bytes())?;
    let mut ok = [0u8; 1];
    read_exact(h.to_worker[0], &mut ok)?;
    if ok[0] != 1 {
        return Err(io::Error::other("pilot-init could not write the uid/gid maps"));
    }
    Ok(())
}

/// I: write W's identity uid/gid maps through the host /proc opened before the pivot.
fn map_worker(h: &Handshake, host_proc: &std::fs::File) -> io::Result<()> {
    use std::{io::Write, os::fd::{AsRawFd, FromRawFd}};
    let mut pid = [0u8; 4];
    read_exact(h.to_init[0], &mut pid)?;
    let pid = u32::from_ne_bytes(pid);
    let mut result = Ok(());
    for name in ["uid_map", "gid_map"] {
        let path = std::ffi::CString::new(format!("{pid}/{name}")).expect("no NUL");
        let fd = unsafe { libc::openat(host_proc.as_raw_fd(), path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            result = Err(io::Error::last_os_error());
            break;
        }
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        if let Err(e) = f.write_all(b"0 0 4294967295\n") {
            result = Err(io::Error::new(e.kind(), format!("{name}: {e}")));
            break;
        }
    }
    write_all(h.to_worker[1], &[result.is_ok() as u8])?;
    result
}

fn wait_status(pid: libc::pid_t) -> i32 {
    let mut raw = 0;
    loop {
        if unsafe { libc::waitpid(pid, &mut raw, 0) } == pid {
            return decode_status(raw);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return EXIT_SETUP_FAILED;
        }
    }
}

fn decode_status(raw: i32) -> i32 {
    if libc::WIFEXITED(raw) { libc::WEXITSTATUS(raw) } else { 128 + libc::WTERMSIG(raw) }
}

fn set_name(name: &str) {
    if let Ok(c) = std::ffi::CString::new(name) {
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
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
