//! The pilot's filesystem view: a new root where every writable filesystem is an overlay whose
//! lower layer is the live filesystem (reads see live data, writes land in the run's upper
//! layer), /proc and /sys are read-only, cgroupfs, bpffs, tracefs and the like are absent, and
//! /dev holds only harmless nodes.
//!
//! Overlay over `/` does not include child mounts, so each mount gets its own overlay
//! (DESIGN: /tmp, /run, /dev/shm... are separate filesystems on most hosts).
use std::{
    ffi::CString,
    fs,
    io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq)]
pub struct MountInfo {
    pub mount_point: String,
    pub fstype: String,
    pub read_only: bool,
}

/// What happens to a live mount in the pilot's view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Plan {
    /// Overlay with the live mount as lower layer; upper and work under the run directory.
    Overlay { mount_point: String, key: String },
    /// Read-only bind of the live mount.
    ReadOnly { mount_point: String },
}

/// Filesystems a pilot must not see at all (kernel control surfaces) or that /proc, /sys and
/// /dev handling covers.
const ABSENT: &[&str] = &[
    "proc", "sysfs", "cgroup", "cgroup2", "bpf", "tracefs", "debugfs", "securityfs", "pstore",
    "configfs", "fusectl", "mqueue", "devpts", "hugetlbfs", "autofs", "binfmt_misc", "nsfs",
    "efivarfs", "devtmpfs", "rpc_pipefs", "nfsd",
];

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    crate::procfs::mounts(text)
        .into_iter()
        .map(|m| MountInfo { mount_point: m.mount_point, fstype: m.fstype, read_only: m.read_only })
        .collect()
}

/// Decide, for every live mount, how the pilot sees it. `/` comes first, parents before
/// children. `/proc`, `/sys` and `/dev` are built separately; `/dev/shm` is overlaid.
pub fn plan(mounts: &[MountInfo]) -> Vec<Plan> {
    let mut seen = std::collections::HashSet::new();
    let mut plans: Vec<Plan> = Vec::new();
    let mut sorted: Vec<&MountInfo> = mounts.iter().collect();
    sorted.sort_by_key(|m| if m.mount_point == "/" { 0 } else { m.mount_point.matches('/').count() });
    for m in sorted {
        let special = ["/proc", "/sys", "/dev"].iter().any(|p| is_at_or_under(&m.mount_point, p))
            && m.mount_point != "/dev/shm";
        if special || ABSENT.contains(&m.fstype.as_str()) {
            continue;
        }
        if !seen.insert(m.mount_point.clone()) {
            continue; // stacked mounts: the path already resolves to the top one
        }
        plans.push(if m.read_only {
            Plan::ReadOnly { mount_point: m.mount_point.clone() }
        } else {
            Plan::Overlay { mount_point: m.mount_point.clone(), key: key_of(&m.mount_point) }
        });
    }
    plans
}

fn is_at_or_under(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{dir}/"))
}

/// A directory name for a mount point's upper layer: `/` -> `root`, `/var/lib` -> `var_lib`.
pub fn key_of(mount_point: &str) -> String {
    if mount_point == "/" {
        return "root".into();
    }
    mount_point.trim_start_matches('/').replace(['/', ' '], "_")
}

/// Build the view under `staging` and switch the calling process's root to it.
/// Runs in the sandbox's own, private mount namespace.
pub fn build_root(plans: &[Plan], run_dir: &Path, staging: &Path) -> io::Result<()> {
    build_root_inner(plans, run_dir, staging)?;
    pivot(staging)
}

fn build_root_inner(plans: &[Plan], run_dir: &Path, staging: &Path) -> io::Result<()> {
    for p in plans {
        match p {
            // Mounted inside the new /dev by build_dev.
            Plan::Overlay { mount_point, .. } if mount_point == "/dev/shm" => {}
            // A file bind-mounted over a file (containers do this for resolv.conf): overlays
            // need directories, so it is read-only for the pilot.
            Plan::Overlay { mount_point, .. } if !Path::new(mount_point).is_dir() => {
                bind_read_only(Path::new(mount_point), &inside(staging, mount_point))?;
            }
            Plan::Overlay { mount_point, key } => {
                let upper = run_dir.join("upper").join(key);
                let work = run_dir.join("work").join(key);
                fs::create_dir_all(&upper).map_err(|e| in_run_dir(e, &upper))?;
                fs::create_dir_all(&work).map_err(|e| in_run_dir(e, &work))?;
                let target = inside(staging, mount_point);
                let opts = format!(
                    "lowerdir={},upperdir={},workdir={}",
                    escape_opt(mount_point),
                    escape_opt(&upper.to_string_lossy()),
                    escape_opt(&work.to_string_lossy())
                );
                // nodev: a device node lying on a live filesystem (a chroot, a container tree)
                // must not open the real device.
                mount(Some("overlay"), &target, Some("overlay"), libc::MS_NODEV, Some(&opts))
                    .map_err(|e| with_what(e, &format!("overlay on {mount_point}")))?;
            }
            Plan::ReadOnly { mount_point } => {
                let target = inside(staging, mount_point);
                bind_read_only(Path::new(mount_point), &target)?;
            }
        }
    }
    // /proc: the live one (the pilot sees the host's processes), read-only, so no
    // /proc/sys, /proc/<pid>/mem or oom_score_adj write reaches production.
    bind_read_only(Path::new("/proc"), &staging.join("proc"))?;
    // /sys without its submounts: no cgroupfs, bpffs, tracefs, debugfs; read-only.
    bind_read_only(Path::new("/sys"), &staging.join("sys"))?;
    build_dev(staging, run_dir, plans)
}

/// `build_root`, with the sink's sockets bind-mounted over the live Unix listeners' paths
/// once the overlays are in place (issue 18): a connect to such a path reaches the sink, a
/// connect to any other live socket in an overlaid filesystem finds no listener (the
/// overlay's inode is not the one the server bound).
pub fn build_root_with(plans: &[Plan], run_dir: &Path, staging: &Path, unix_sinks: &[(String, PathBuf)]) -> io::Result<()> {
    if unix_sinks.is_empty() {
        return build_root(plans, run_dir, staging);
    }
    // pivot() runs last in build_root: bind before it by building in two steps.
    build_root_inner(plans, run_dir, staging)?;
    bind_unix_sinks(staging, unix_sinks);
    pivot(staging)
}

/// Each sink socket over its live path inside `staging`. A path that cannot take it (gone,
/// under /proc or /dev) stays as the overlay shows it: refused.
fn bind_unix_sinks(staging: &Path, unix_sinks: &[(String, PathBuf)]) {
    for (live, own) in unix_sinks {
        let target = inside(staging, live);
        if !target.exists() {
            continue;
        }
        if let Err(e) = mount(Some(&own.to_string_lossy()), &target, None, libc::MS_BIND, None) {
            eprintln!("pilot: sandbox: the sink's socket for {live}: {e} (connects there are refused)");
        }
    }
}

fn inside(staging: &Path, mount_point: &str) -> PathBuf {
    staging.join(mount_point.trim_start_matches('/'))
}

/// A /dev with only harmless nodes; block devices and the rest of the host's are absent.
fn build_dev(staging: &Path, run_dir: &Path, plans: &[Plan]) -> io::Result<()> {
    let dev = staging.join("dev");
    mount(Some("tmpfs"), &dev, Some("tmpfs"), libc::MS_NOSUID, Some("mode=755,size=1m"))
        .map_err(|e| with_what(e, "tmpfs on /dev"))?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        fs::write(&target, b"").map_err(|e| with_what(e, &format!("creating /dev/{node}")))?;
        mount(Some(&format!("/dev/{node}")), &target, None, libc::MS_BIND, None)
            .map_err(|e| with_what(e, &format!("/dev/{node}")))?;
    }
    fs::create_dir(dev.join("pts")).map_err(|e| with_what(e, "creating /dev/pts"))?;
    // A devpts of its own: the host's would let the pilot write to (and resize, which signals
    // their foreground processes) every other session's terminal.
    mount(Some("devpts"), &dev.join("pts"), Some("devpts"), libc::MS_NOSUID | libc::MS_NOEXEC, Some("newinstance,ptmxmode=0666,mode=620"))
        .map_err(|e| with_what(e, "devpts on /dev/pts"))?;
    let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, dev.join(name)).map_err(|e| with_what(e, &format!("creating /dev/{name}")));
    link("pts/ptmx", "ptmx")?;
    link("/proc/self/fd", "fd")?;
    for (i, name) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        link(&format!("/proc/self/fd/{i}"), name)?;
    }
    fs::create_dir(dev.join("shm")).map_err(|e| with_what(e, "creating /dev/shm"))?;
    let shm_overlaid = plans.iter().any(|p| matches!(p, Plan::Overlay { mount_point, .. } if mount_point == "/dev/shm"));
    if shm_overlaid {
        let key = key_of("/dev/shm");
        let opts = format!(
            "lowerdir=/dev/shm,upperdir={},workdir={}",
            escape_opt(&run_dir.join("upper").join(&key).to_string_lossy()),
            escape_opt(&run_dir.join("work").join(&key).to_string_lossy())
        );
        for layer in ["upper", "work"] {
            let dir = run_dir.join(layer).join(&key);
            fs::create_dir_all(&dir).map_err(|e| in_run_dir(e, &dir))?;
        }
        mount(Some("overlay"), &dev.join("shm"), Some("overlay"), libc::MS_NODEV, Some(&opts))
            .map_err(|e| with_what(e, "overlay on /dev/shm"))?;
    }
    Ok(())
}

fn bind_read_only(src: &Path, target: &Path) -> io::Result<()> {
    mount(Some(&src.to_string_lossy()), target, None, libc::MS_BIND, None)
        .map_err(|e| with_what(e, &format!("bind {}", src.display())))?;
    mount(None, target, None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NODEV, None)
        .map_err(|e| with_what(e, &format!("read-only {}", src.display())))
}

/// Make `staging` the root: pivot_root(".", ".") then detach the old root stacked beneath.
fn pivot(staging: &Path) -> io::Result<()> {
    std::env::set_current_dir(staging).map_err(|e| with_what(e, &format!("entering {}", staging.display())))?;
    let dot = CString::new(".").expect("no NUL");
    if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } != 0 {
        return Err(with_what(io::Error::last_os_error(), "pivot_root"));
    }
    if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(with_what(io::Error::last_os_error(), "detaching the old root"));
    }
    std::env::set_current_dir("/")
}

/// Overlay options separate with `,` and `:`; escape them in paths.
fn escape_opt(s: &str) -> String {
    s.replace('\\', "\\\\").replace(',', "\\,").replace(':', "\\:")
}

pub fn mount(src: Option<&str>, target: &Path, fstype: Option<&str>, flags: libc::c_ulong, data: Option<&str>) -> io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"));
    let src = src.map(c).transpose()?;
    let target = c(&target.to_string_lossy())?;
    let fstype = fstype.map(c).transpose()?;
    let data = data.map(c).transpose()?;
    let rc = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref().map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn with_what(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A directory of the run directory that could not be made, with the advice (a full disk...).
fn in_run_dir(e: io::Error, dir: &Path) -> io::Error {
    let kind = e.kind();
    io::Error::new(kind, crate::error::FileError::new("creating", dir, e, crate::error::RUN_DIR).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw
24 23 0:20 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw
25 22 0:21 / /proc rw,nosuid - proc proc rw
26 22 0:22 / /sys rw - sysfs sysfs rw
27 26 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
28 22 0:24 / /tmp rw - tmpfs tmpfs rw
29 22 0:25 / /mnt/my\\040data rw - xfs /dev/vdb rw
30 22 0:26 / /opt/ro ro - ext4 /dev/vdc ro
31 22 0:27 / /sys/fs/bpf rw - bpf bpf rw
";

    #[test]
    fn overlays_every_writable_filesystem_and_hides_control_surfaces() {
        let plans = plan(&parse_mountinfo(MOUNTINFO));
        assert_eq!(
            plans,
            vec![
                Plan::Overlay { mount_point: "/".into(), key: "root".into() },
                Plan::Overlay { mount_point: "/tmp".into(), key: "tmp".into() },
                Plan::Overlay { mount_point: "/dev/shm".into(), key: "dev_shm".into() },
                Plan::Overlay { mount_point: "/mnt/my data".into(), key: "mnt_my_data".into() },
                Plan::ReadOnly { mount_point: "/opt/ro".into() },
            ]
        );
    }

    #[test]
    fn escapes_overlay_options() {
        assert_eq!(escape_opt("/a,b:c"), "/a\\,b\\:c");
    }
}
