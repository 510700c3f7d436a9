//! The filesystems live components write to, with their free space when the pilot started:
//! a recovery that fills one (a dump, a copy, a runaway log) fails every writer on it.
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Component;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Filesystem {
    pub mount: String,
    pub fstype: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
    /// Components that hold files open for writing (or write in directories) on it.
    pub writers: BTreeSet<String>,
}

/// Mount points of the host (this process's mount namespace), longest first.
pub fn mounts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<(String, String)> = crate::procfs::mounts(&text).into_iter().map(|m| (m.mount_point, m.fstype)).collect();
    out.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The mount point `path` lies on (mounts sorted longest first).
pub fn mount_of<'a>(path: &str, mounts: &'a [(String, String)]) -> Option<&'a (String, String)> {
    mounts.iter().find(|(m, _)| m == "/" || path == m || path.starts_with(&format!("{m}/")))
}

/// Filesystems that some component writes to, with their space now.
pub fn written_by(components: &[Component]) -> Vec<Filesystem> {
    let mounts = mounts();
    let mut out: Vec<Filesystem> = Vec::new();
    for c in components {
        for path in c.files_written.iter().chain(&c.data_dirs) {
            let Some((mount, fstype)) = mount_of(path, &mounts) else { continue };
            if matches!(fstype.as_str(), "proc" | "sysfs" | "devtmpfs" | "devpts" | "cgroup2" | "tracefs" | "debugfs") {
                continue;
            }
            match out.iter_mut().find(|f| &f.mount == mount) {
                Some(f) => {
                    f.writers.insert(c.name.clone());
                }
                None => {
                    let Some((size_bytes, free_bytes)) = space(mount) else { continue };
                    let writers = BTreeSet::from([c.name.clone()]);
                    out.push(Filesystem { mount: mount.clone(), fstype: fstype.clone(), size_bytes, free_bytes, writers });
                }
            }
        }
    }
    out
}

/// (size, bytes available to unprivileged writers) of the filesystem at `mount`.
fn space(mount: &str) -> Option<(u64, u64)> {
    let path = std::ffi::CString::new(mount).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_blocks as u64 * st.f_frsize as u64, st.f_bavail as u64 * st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_mount_wins() {
        let mounts = vec![("/srv/disk".to_string(), "tmpfs".to_string()), ("/srv".to_string(), "ext4".to_string()), ("/".to_string(), "ext4".to_string())];
        assert_eq!(mount_of("/srv/disk/a", &mounts).unwrap().0, "/srv/disk");
        assert_eq!(mount_of("/srv/diskette", &mounts).unwrap().0, "/srv");
        assert_eq!(mount_of("/etc/x", &mounts).unwrap().0, "/");
    }
}
