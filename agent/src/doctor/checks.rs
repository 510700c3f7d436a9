//! One probe per kernel feature. Each asks the kernel for real where it can (loads a program,
//! opens a hook, unshares in a child) instead of reading a version number: distribution kernels
//! backport and disable features independently of their version.
use std::{ffi::CStr, fs, path::Path};

use crate::probes::{
    contain::{BPF_CGROUP_UNIX_CONNECT, BPF_CGROUP_UNIX_SENDMSG},
    raw::{self, Prog},
};

/// A probe's answer: present or not, and what was found (or the kernel's error).
pub type Outcome = Result<String, String>;

pub fn btf() -> Outcome {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    match fs::metadata(path) {
        Ok(m) => Ok(format!("{} ({} KiB)", path.display(), m.len() / 1024)),
        Err(e) => Err(format!("{}: {e} (kernel built without CONFIG_DEBUG_INFO_BTF)", path.display())),
    }
}

pub fn ringbuf() -> Outcome {
    raw::create_map(libbpf_sys::BPF_MAP_TYPE_RINGBUF, 0, 0, 4096).map(|_| "created a ring buffer map".into()).map_err(bpf_err)
}

/// The four tracepoints the probes attach to, with their format files.
pub fn tracepoints() -> Outcome {
    let base = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .find(|b| Path::new(b).join("events").is_dir())
        .ok_or("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")?;
    let needed = ["task/task_newtask", "sched/sched_process_exec", "sched/sched_process_exit", "signal/signal_generate"];
    let missing: Vec<&str> = needed.iter().copied().filter(|t| !Path::new(base).join("events").join(t).join("format").is_file()).collect();
    if missing.is_empty() { Ok(format!("{base}/events: {}", needed.join(", "))) } else { Err(format!("missing in {base}/events: {}", missing.join(", "))) }
}

pub fn raw_tracepoints() -> Outcome {
    let prog = raw::load(Prog { prog_type: raw::PROG_RAW_TRACEPOINT, ..Default::default() }, &raw::RETURN_0, c"pilot_doctor").map_err(bpf_err)?;
    raw::raw_tracepoint_open(&prog, Some(c"sys_enter")).map(|_| "attached to sys_enter".into()).map_err(bpf_err)
}

pub fn cgroup2() -> Outcome {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|d| Path::new(d).join("cgroup.procs").exists() && Path::new(d).join("cgroup.subtree_control").exists())
        .map(|d| format!("mounted at {d}"))
        .ok_or_else(|| "no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified".into())
}

/// A cgroup program of `prog_type` loads with `attach_type`: the kernel knows that hook.
pub fn cgroup_hook(prog_type: u32, attach_type: u32) -> Outcome {
    raw::load(Prog { prog_type, attach_type, attach_btf_id: 0 }, &raw::RETURN_1, c"pilot_doctor")
        .map(|_| "a hook program loads".into())
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => "the kernel does not know this attach type".into(),
            _ => bpf_err(e),
        })
}

pub fn unix_hooks() -> Outcome {
    cgroup_hook(raw::PROG_CGROUP_SOCK_ADDR, BPF_CGROUP_UNIX_CONNECT)?;
    cgroup_hook(raw::PROG_CGROUP_SOCK_ADDR, BPF_CGROUP_UNIX_SENDMSG)?;
    Ok("connect_unix and sendmsg_unix hook programs load".into())
}

pub fn seccomp() -> Outcome {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    match status.lines().find(|l| l.starts_with("Seccomp:")) {
        Some(_) => Ok("seccomp filters (CONFIG_SECCOMP_FILTER)".into()),
        None => Err("no Seccomp: line in /proc/self/status (kernel without CONFIG_SECCOMP)".into()),
    }
}

/// Issue 16: seccomp user notification (a filter with a listener loads in a child), and
/// whether the listener takes SECCOMP_ADDFD_FLAG_SEND (5.14+: answering pidfd_open and
/// /proc/sys write-opens of a pilot with a descriptor).
pub fn seccomp_notify() -> Outcome {
    if !crate::sandbox::seccomp::notify_supported() {
        return Err("libseccomp reports no user notification (API level < 6: kernel before 5.7, or libseccomp before 2.5)".into());
    }
    let (mine, theirs) = crate::sandbox::supervisor::handover::pair().map_err(|e| format!("socketpair: {e}"))?;
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            // A filter that notifies on nothing the child calls, then the listener handed over.
            let code = (|| -> Option<()> {
                let mut ctx = libseccomp::ScmpFilterContext::new(libseccomp::ScmpAction::Allow).ok()?;
                ctx.add_rule(libseccomp::ScmpAction::Notify, libseccomp::ScmpSyscall::from_name("getpgid").ok()?).ok()?;
                ctx.load().ok()?;
                let fd = ctx.get_notify_fd().ok()?;
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                crate::sandbox::supervisor::handover::send(std::os::fd::AsFd::as_fd(&theirs), fd, std::process::id()).ok()
            })();
            unsafe { libc::_exit(if code.is_some() { 0 } else { 1 }) }
        }
        pid => {
            drop(theirs);
            let got = crate::sandbox::supervisor::handover::receive(std::os::fd::AsFd::as_fd(&mine), std::time::Duration::from_secs(5), |_| Ok(()));
            wait_child(pid);
            match got {
                Ok(Some(listener)) if crate::sandbox::supervisor::notify::add_fd_send_supported(std::os::fd::AsFd::as_fd(&listener)) => {
                    Ok("a filter with a listener loads; SECCOMP_ADDFD_FLAG_SEND works (libseccomp)".into())
                }
                Ok(Some(_)) => Ok("a filter with a listener loads; no SECCOMP_ADDFD_FLAG_SEND (before 5.14): pidfd_open of live processes and /proc/sys writes fail as in the sandbox".into()),
                Ok(None) => Err("no listener came back from a child that loaded a notifying filter".into()),
                Err(e) => Err(format!("taking the child's listener: {e}")),
            }
        }
    }
}

/// Issue 16: which overlay features a pilot gets on the filesystem of the temporary
/// directory (where run directories of tests go; each run picks its own on its filesystem).
pub fn overlay_features() -> Outcome {
    let base = tempfile_dir().map_err(|e| format!("a scratch directory: {e}"))?;
    let result = (|| -> Result<String, String> {
        for d in ["lower", "upper", "work", "merged"] {
            fs::create_dir(base.join(d)).map_err(|e| e.to_string())?;
        }
        match unsafe { libc::fork() } {
            -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
            0 => {
                // In a mount namespace of its own, so nothing reaches the host's mount table.
                let code = if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
                    9
                } else {
                    let _ = crate::sandbox::mounts::make_private();
                    let opts = format!("lowerdir={},upperdir={},workdir={}", base.join("lower").display(), base.join("upper").display(), base.join("work").display());
                    let mut code = 8;
                    for (i, f) in crate::sandbox::mounts::OVERLAY_FEATURES.iter().enumerate() {
                        let o = if f.is_empty() { opts.clone() } else { format!("{opts},{f}") };
                        if crate::sandbox::mounts::mount(Some("overlay"), &base.join("merged"), Some("overlay"), rustix::mount::MountFlags::empty(), Some(&o)).is_ok() {
                            code = i as i32;
                            break;
                        }
                    }
                    code
                };
                unsafe { libc::_exit(code) }
            }
            pid => {
                let code = wait_child(pid);
                let fstype = fs_type(&base);
                match code {
                    0 => Ok(format!("redirect_dir=on,metacopy=on with the upper layer on {fstype} ({}): directory renames and metadata-only copy-up", base.display())),
                    1 => Ok(format!("redirect_dir=on (no metacopy) with the upper layer on {fstype}: a chmod/chown of a live file copies it whole")),
                    2 => Err(format!("neither redirect_dir nor metacopy with the upper layer on {fstype}: rename(2) of a live directory fails with EXDEV in a pilot (mv copies it)")),
                    _ => Err("no overlay could be mounted in a child".into()),
                }
            }
        }
    })();
    let _ = fs::remove_dir_all(&base);
    result
}

/// Wait for child `pid` (rustix); its exit code, as a shell shows it.
fn wait_child(pid: libc::pid_t) -> i32 {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else { return -1 };
    match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
        Ok(Some((_, st))) => crate::sandbox::exit_code(st),
        _ => -1,
    }
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("pilot-doctor-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d)?;
    Ok(d)
}

/// The filesystem type a path is on (from /proc/self/mountinfo: the longest mount point).
fn fs_type(path: &Path) -> String {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best = ("".to_string(), "?".to_string());
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let Some(mp) = left.split(' ').nth(4) else { continue };
        if path.starts_with(mp) && mp.len() >= best.0.len() {
            best = (mp.to_string(), right.split(' ').next().unwrap_or("?").to_string());
        }
    }
    best.1
}

/// overlayfs registered, or loadable with modprobe.
pub fn overlayfs() -> Outcome {
    let registered = || fs::read_to_string("/proc/filesystems").unwrap_or_default().lines().any(|l| l.trim_end().ends_with("\toverlay"));
    if registered() {
        return Ok("in /proc/filesystems".into());
    }
    let loaded = std::process::Command::new("modprobe")
        .args(["-q", "overlay"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status().is_ok_and(|s| s.success());
    if loaded && registered() { Ok("loaded with `modprobe overlay`".into()) } else { Err("not in /proc/filesystems and `modprobe overlay` failed".into()) }
}

/// The namespaces the sandbox unshares (mount, PID, IPC, UTS, then user), for real in a child.
pub fn namespaces() -> Outcome {
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        return Err("user.max_user_namespaces is 0 (sysctl -w user.max_user_namespaces=10000)".into());
    }
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            let flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
            let code = if unsafe { libc::unshare(flags) } != 0 {
                1
            } else if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
                2
            } else {
                0
            };
            unsafe { libc::_exit(code) }
        }
        pid => {
            let mut status = 0;
            unsafe { libc::waitpid(pid, &mut status, 0) };
            match libc::WEXITSTATUS(status) {
                0 => Ok(format!("unshared mount, PID, IPC, UTS and user namespaces (max_user_namespaces {})", max.trim())),
                1 => Err("unshare(mount, PID, IPC, UTS) failed in a child".into()),
                _ => Err("unshare(CLONE_NEWUSER) failed in a child (user namespaces disabled?)".into()),
            }
        }
    }
}

/// A kprobe on a stable function, opened for real through the kprobe PMU.
pub fn kprobes() -> Outcome {
    let pmu = fs::read_to_string("/sys/bus/event_source/devices/kprobe/type").map_err(|_| "no kprobe PMU (/sys/bus/event_source/devices/kprobe)".to_string())?;
    let pmu: u32 = pmu.trim().parse().map_err(|_| "unreadable kprobe PMU type".to_string())?;
    let prog = raw::load(Prog { prog_type: raw::PROG_KPROBE, ..Default::default() }, &raw::RETURN_0, c"pilot_doctor").map_err(bpf_err)?;
    let func = c"do_sys_openat2";
    // perf_event_open by hand: libbpf opens a kprobe PMU event only inside
    // bpf_program__attach_kprobe (a program of a bpf_object), not for a bare program fd.
    // perf_event_attr (PERF_ATTR_SIZE_VER5): type, size, ..., config1 (the function) at 56.
    let mut attr = [0u8; 112];
    attr[0..4].copy_from_slice(&pmu.to_ne_bytes());
    attr[4..8].copy_from_slice(&112u32.to_ne_bytes());
    attr[56..64].copy_from_slice(&(func.as_ptr() as u64).to_ne_bytes());
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), -1, 0, -1, 8u64 /* PERF_FLAG_FD_CLOEXEC */) };
    if fd < 0 {
        return Err(format!("perf_event_open(kprobe do_sys_openat2): {}", std::io::Error::last_os_error()));
    }
    let event = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
    use std::os::fd::AsRawFd as _;
    if unsafe { libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd()) } != 0 {
        return Err(format!("attaching a program to a kprobe: {}", std::io::Error::last_os_error()));
    }
    Ok("attached a program to a kprobe on do_sys_openat2".into())
}

/// An fentry program on a kernel function, attached for real.
pub fn fentry() -> Outcome {
    attach_by_btf(raw::PROG_TRACING, libbpf_sys::BPF_TRACE_FENTRY, "do_sys_openat2", None)
}

/// BPF LSM: enabled at boot (`lsm=` list includes bpf) and a hook program attaches.
pub fn bpf_lsm() -> Outcome {
    let lsms = fs::read_to_string("/sys/kernel/security/lsm")
        .map_err(|e| format!("/sys/kernel/security/lsm: {e} (securityfs not mounted, or no LSM support)"))?;
    if !lsms.trim().split(',').any(|l| l == "bpf") {
        return Err(format!("active LSMs are {}: bpf is not among them (boot with lsm=...,bpf)", lsms.trim()));
    }
    attach_by_btf(raw::PROG_LSM, libbpf_sys::BPF_LSM_MAC, "bpf_lsm_file_open", Some(&lsms))
}

fn attach_by_btf(prog_type: u32, attach_type: u32, func: &str, lsms: Option<&str>) -> Outcome {
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading BTF: {e}"))?;
    let id = btf
        .id_by_type_name_kind(func, aya_obj::btf::BtfKind::Func)
        .map_err(|_| format!("no function {func} in the kernel's BTF"))?;
    let prog = raw::load(Prog { prog_type, attach_type, attach_btf_id: id }, &raw::RETURN_0, c"pilot_doctor")
        .map_err(|e| format!("loading on {func}: {}", bpf_err(e)))?;
    raw::raw_tracepoint_open(&prog, None::<&CStr>).map_err(|e| format!("attaching to {func}: {}", bpf_err(e)))?;
    Ok(match lsms {
        Some(l) => format!("attached to {func} (LSMs {})", l.trim()),
        None => format!("attached to {func}"),
    })
}

fn bpf_err(e: std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => format!("{e} (not root, lockdown, or this kernel cannot do it)"),
        _ => e.to_string(),
    }
}
