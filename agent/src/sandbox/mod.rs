//! The pilot's sandbox, entered by `pilot __sandbox SPEC` (the agent re-executes itself so this
//! runs as a fresh single-threaded process). Three processes:
//!
//! - **C** (this entry): joins the pilot's cgroup, starts a new session, unshares mount, PID,
//!   IPC and UTS namespaces, and waits for I. Dies with the agent (PDEATHSIG).
//! - **I**: PID 1 of the new PID namespace. Builds the overlay root and pivots into it, starts
//!   W, reaps every orphan (daemons stay in the namespace), and exits when none is left. Dies
//!   with C; when it dies the kernel kills everything in the namespace.
//! - **W**: the workload. Adds itself to the tracked set, drops dangerous capabilities and
//!   execs the command.
//!
//! Containment comes from the kernel: overlays (files), the PID namespace (signals reach only
//! the pilot's own processes; the host's stay visible read-only in /proc), IPC/UTS namespaces,
//! dropped capabilities, and cgroup BPF hooks the agent attached (network).
pub mod caps;
pub mod mounts;

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
    /// Inherited fd of the kernel's TRACKED map.
    pub tracked_fd: i32,
    pub agent_pid: u32,
}

/// Entry of C. Never returns: exits with the workload's status.
pub fn main(spec_json: &str) -> ! {
    let spec: Spec = match serde_json::from_str(spec_json) {
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
    let _ = std::fs::write(spec.run_dir.join("mounts.json"), serde_json::to_string_pretty(&plans).unwrap_or_default());
    let staging = spec.run_dir.join("root");
    let built = std::fs::create_dir_all(&staging).and_then(|_| mounts::build_root(&plans, &spec.run_dir, &staging));
    if let Err(e) = built {
        fail_setup(Some(spec), &format!("building the pilot's filesystem: {e}"));
    }
    let workload = match unsafe { libc::fork() } {
        -1 => fail_setup(Some(spec), &format!("fork: {}", io::Error::last_os_error())),
        0 => workload(spec),
        pid => pid,
    };
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
fn workload(spec: &Spec) -> ! {
    if std::env::set_current_dir(&spec.cwd).is_err() {
        let _ = std::env::set_current_dir("/");
    }
    // Our pid as the host (and the probes) see it: /proc is the host's procfs.
    let global_pid: Option<u32> = std::fs::read_link("/proc/self").ok().and_then(|p| p.to_str()?.parse().ok());
    match global_pid {
        Some(pid) => {
            if let Err(e) = crate::probes::track_pid(spec.tracked_fd, pid) {
                fail_setup(Some(spec), &format!("tracking the pilot: {e}"));
            }
        }
        None => fail_setup(Some(spec), "cannot tell the pilot's pid from /proc/self"),
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
    let err = Command::new(&spec.argv[0]).args(&spec.argv[1..]).exec();
    eprintln!("pilot: cannot run `{}`: {err}", spec.argv[0]);
    std::process::exit(EXIT_EXEC_FAILED);
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
