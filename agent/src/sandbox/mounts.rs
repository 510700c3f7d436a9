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

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
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
    /// `options`: the overlay features it was mounted with (empty: none; set once built).
    Overlay {
        mount_point: String,
        key: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        options: String,
    },
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
            Plan::Overlay { mount_point: m.mount_point.clone(), key: key_of(&m.mount_point), options: String::new() }
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

/// Overlay features asked for, best first. `redirect_dir` makes rename(2) of a live
/// directory a rename (not EXDEV, which makes `mv` copy it whole); `metacopy` makes a chmod or
/// chown of a live file copy up its metadata only. Both keep their bookkeeping in `trusted.`
/// xattrs of the upper layer, which any filesystem with xattrs holds (tmpfs too); a kernel or
/// upper filesystem that refuses one gets the next set.
pub const OVERLAY_FEATURES: &[&str] = &["redirect_dir=on,metacopy=on", "redirect_dir=on", ""];

/// Build the view under `staging` (then `pivot` into it). Returns the plans with the overlay
/// options each mount got. Runs in the sandbox's own, private mount namespace.
pub fn build_root(plans: &[Plan], run_dir: &Path, staging: &Path, unix_sinks: &[(String, PathBuf)]) -> io::Result<Vec<Plan>> {
    let mut built = Vec::new();
    for p in plans {
        match p {
            // Mounted inside the new /dev by build_dev.
            Plan::Overlay { mount_point, .. } if mount_point == "/dev/shm" => continue,
            // A file bind-mounted over a file (containers do this for resolv.conf): overlays
            // need directories, so it is read-only for the pilot.
            Plan::Overlay { mount_point, .. } if !Path::new(mount_point).is_dir() => {
                bind_read_only(Path::new(mount_point), &inside(staging, mount_point))?;
                built.push(Plan::ReadOnly { mount_point: mount_point.clone() });
                continue;
            }
            Plan::Overlay { mount_point, key, .. } => {
                let options = overlay(Path::new(mount_point), run_dir, key, &inside(staging, mount_point))?;
                built.push(Plan::Overlay { mount_point: mount_point.clone(), key: key.clone(), options });
                continue;
            }
            Plan::ReadOnly { mount_point } => {
                let target = inside(staging, mount_point);
                bind_read_only(Path::new(mount_point), &target)?;
            }
        }
        built.push(p.clone());
    }
    // /proc: the live one (the pilot sees the host's processes), read-only, so no
    // /proc/sys, /proc/<pid>/mem or oom_score_adj write reaches production.
    bind_read_only(Path::new("/proc"), &staging.join("proc"))?;
    // /sys without its submounts: no cgroupfs, bpffs, tracefs, debugfs; read-only.
    bind_read_only(Path::new("/sys"), &staging.join("sys"))?;
    if let Some(shm) = build_dev(staging, run_dir, plans)? {
        built.push(shm);
    }
    // The sink's sockets over the live Unix listeners' paths, once the overlays are in place
    // (issue 18): a connect to such a path reaches the sink, a connect to any other live
    // socket in an overlaid filesystem finds no listener (the overlay's inode is not the one
    // the server bound).
    bind_unix_sinks(staging, unix_sinks);
    Ok(built)
}
/// One overlay with `lower` as its lower layer and its upper and work directories in the run
/// directory, with the best features the kernel accepts; returns those features.
fn overlay(lower: &Path, run_dir: &Path, key: &str, target: &Path) -> io::Result<String> {
    let upper = run_dir.join("upper").join(key);
    let work = run_dir.join("work").join(key);
    fs::create_dir_all(&upper).map_err(|e| in_run_dir(e, &upper))?;
    fs::create_dir_all(&work).map_err(|e| in_run_dir(e, &work))?;
    let base = format!(
        "lowerdir={},upperdir={},workdir={}",
        escape_opt(&lower.to_string_lossy()),
        escape_opt(&upper.to_string_lossy()),
        escape_opt(&work.to_string_lossy())
    );
    let mut last = None;
    for features in OVERLAY_FEATURES {
        let opts = if features.is_empty() { base.clone() } else { format!("{base},{features}") };
        // nodev: a device node lying on a live filesystem (a chroot, a container tree) must
        // not open the real device.
        match mount(Some("overlay"), target, Some("overlay"), MountFlags::NODEV, Some(&opts)) {
            Ok(()) => return Ok(features.to_string()),
            // EINVAL: an option this kernel or this upper filesystem does not take.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(with_what(e, &format!("overlay on {}", lower.display()))),
        }
    }
    Err(with_what(last.unwrap_or_else(|| io::Error::other("no options")), &format!("overlay on {}", lower.display())))
}

/// What the overlays of a run used (mounts.json), for verdict.json: e.g. `redirect_dir=on,metacopy=on`.
pub fn features_used(plans: &[Plan]) -> String {
    let mut used: Vec<&str> = plans
        .iter()
        .filter_map(|p| match p {
            Plan::Overlay { options, .. } => Some(if options.is_empty() { "no redirect_dir (directory renames fail with EXDEV)" } else { options.as_str() }),
            Plan::ReadOnly { .. } => None,
        })
        .collect();
    used.sort();
    used.dedup();
    used.join("; ")
}

/// `features_used` of the run in `run_dir` (its mounts.json).
pub fn features_in(run_dir: &Path) -> String {
    let plans: Vec<Plan> = fs::read_to_string(run_dir.join("mounts.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    features_used(&plans)
}

/// Each sink socket over its live path inside `staging`. A path that cannot take it (gone,
/// under /proc or /dev) stays as the overlay shows it: refused.
fn bind_unix_sinks(staging: &Path, unix_sinks: &[(String, PathBuf)]) {
    for (live, own) in unix_sinks {
        let target = inside(staging, live);
        if !target.exists() {
            continue;
        }
        if let Err(e) = mount(Some(&own.to_string_lossy()), &target, None, MountFlags::BIND, None) {
            eprintln!("pilot: sandbox: the sink's socket for {live}: {e} (connects there are refused)");
        }
    }
}

fn inside(staging: &Path, mount_point: &str) -> PathBuf {
    staging.join(mount_point.trim_start_matches('/'))
}

/// A /dev with only harmless nodes; block devices and the rest of the host's are absent.
/// Returns the /dev/shm overlay's plan when there is one.
fn build_dev(staging: &Path, run_dir: &Path, plans: &[Plan]) -> io::Result<Option<Plan>> {
    let dev = staging.join("dev");
    mount(Some("tmpfs"), &dev, Some("tmpfs"), MountFlags::NOSUID, Some("mode=755,size=1m"))
        .map_err(|e| with_what(e, "tmpfs on /dev"))?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        fs::write(&target, b"").map_err(|e| with_what(e, &format!("creating /dev/{node}")))?;
        rustix::mount::mount_bind(format!("/dev/{node}").as_str(), &target).map_err(|e| with_what(e.into(), &format!("/dev/{node}")))?;
    }
    fs::create_dir(dev.join("pts")).map_err(|e| with_what(e, "creating /dev/pts"))?;
    // A devpts of its own: the host's would let the pilot write to (and resize, which signals
    // their foreground processes) every other session's terminal.
    mount(Some("devpts"), &dev.join("pts"), Some("devpts"), MountFlags::NOSUID | MountFlags::NOEXEC, Some("newinstance,ptmxmode=0666,mode=620"))
        .map_err(|e| with_what(e, "devpts on /dev/pts"))?;
    let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, dev.join(name)).map_err(|e| with_what(e, &format!("creating /dev/{name}")));
    link("pts/ptmx", "ptmx")?;
    link("/proc/self/fd", "fd")?;
    for (i, name) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        link(&format!("/proc/self/fd/{i}"), name)?;
    }
    fs::create_dir(dev.join("shm")).map_err(|e| with_what(e, "creating /dev/shm"))?;
    let shm = plans.iter().find(|p| matches!(p, Plan::Overlay { mount_point, .. } if mount_point == "/dev/shm"));
    let Some(Plan::Overlay { key, .. }) = shm else { return Ok(None) };
    let options = overlay(Path::new("/dev/shm"), run_dir, key, &dev.join("shm"))?;
    Ok(Some(Plan::Overlay { mount_point: "/dev/shm".into(), key: key.clone(), options }))
}

fn bind_read_only(src: &Path, target: &Path) -> io::Result<()> {
    rustix::mount::mount_bind(src, target).map_err(|e| with_what(e.into(), &format!("bind {}", src.display())))?;
    rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY | MountFlags::NODEV, "")
        .map_err(|e| with_what(e.into(), &format!("read-only {}", src.display())))
}

/// Make `staging` the root: pivot_root(".", ".") then detach the old root stacked beneath.
pub fn pivot(staging: &Path) -> io::Result<()> {
    std::env::set_current_dir(staging).map_err(|e| with_what(e, &format!("entering {}", staging.display())))?;
    rustix::process::pivot_root(".", ".").map_err(|e| with_what(e.into(), "pivot_root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(|e| with_what(e.into(), "detaching the old root"))?;
    std::env::set_current_dir("/")
}

/// Overlay options separate with `,` and `:`; escape them in paths.
fn escape_opt(s: &str) -> String {
    s.replace('\\', "\\\\").replace(',', "\\,").replace(':', "\\:")
}

/// mount(2) of a filesystem.
pub fn mount(src: Option<&str>, target: &Path, fstype: Option<&str>, flags: MountFlags, data: Option<&str>) -> io::Result<()> {
    let data = data.map(CString::new).transpose().map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount options"))?;
    rustix::mount::mount(src.unwrap_or(""), target, fstype.unwrap_or(""), flags, data.as_deref()).map_err(io::Error::from)
}

/// The mount namespace's mounts stop propagating to and from the host's.
pub fn make_private() -> io::Result<()> {
    rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC).map_err(io::Error::from)
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
                Plan::Overlay { mount_point: "/".into(), key: "root".into(), options: String::new() },
                Plan::Overlay { mount_point: "/tmp".into(), key: "tmp".into(), options: String::new() },
                Plan::Overlay { mount_point: "/dev/shm".into(), key: "dev_shm".into(), options: String::new() },
                Plan::Overlay { mount_point: "/mnt/my data".into(), key: "mnt_my_data".into(), options: String::new() },
                Plan::ReadOnly { mount_point: "/opt/ro".into() },
            ]
        );
    }

    #[test]
    fn escapes_overlay_options() {
        assert_eq!(escape_opt("/a,b:c"), "/a\\,b\\:c");
    }
}
