//! cgroup v2: the pilot's own group (network hooks attach there; it tells when the whole tree,
//! daemons included, is gone, and kills it on timeout or ^C), the groups `pilot trace --cgroup`
//! follows, and `pilot gc` for what dead agents left behind.
use std::{
    fs::{self, File},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};

use crate::error::UsageError;

/// Where the cgroup v2 hierarchy may be mounted; hybrid layouts (this project's machines) put it
/// under `unified`.
pub const ROOTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];

/// The mounted cgroup v2 root.
fn root() -> &'static str {
    ROOTS.iter().copied().find(|r| Path::new(r).join("cgroup.procs").exists()).unwrap_or(ROOTS[1])
}

/// The pilot's cgroup v2 group: `<root>/pilot/<run id>` (the id ends with the agent's pid,
/// which `gc` reads back).
pub struct PilotCgroup {
    pub path: PathBuf,
}

/// Is `path` (a process's cgroup, as /proc/PID/cgroup names it) a pilot's sandbox cgroup
/// (`/pilot/<id>` and below)? `pilot commit`'s live runs (`/pilot/commit-<pid>`) are not: their
/// effects are real.
pub fn is_pilot_sandbox(path: &str) -> bool {
    path.strip_prefix("/pilot/").is_some_and(|id| !id.is_empty() && !id.starts_with("commit-"))
}

impl PilotCgroup {
    pub fn create(id: &str) -> Result<PilotCgroup> {
        let path = Path::new(root()).join("pilot").join(id);
        fs::create_dir_all(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(PilotCgroup { path })
    }

    pub fn dir_fd(&self) -> Result<File> {
        File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))
    }

    /// SIGKILL every process of the pilot (cgroup.kill, Linux 5.14+).
    pub fn kill(&self) {
        if fs::write(self.path.join("cgroup.kill"), "1").is_err() {
            for pid in fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }

    pub fn remove(&self) {
        for _ in 0..100 {
            if fs::remove_dir(&self.path).is_ok() {
                // The parent `pilot` group too, once no other pilot uses it.
                if let Some(parent) = self.path.parent() {
                    let _ = fs::remove_dir(parent);
                }
                return;
            }
            self.kill();
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!("could not remove {}: `pilot gc` will", self.path.display());
    }
}

impl Drop for PilotCgroup {
    fn drop(&mut self) {
        if self.path.exists() {
            self.remove();
        }
    }
}

/// A cgroup named on the command line: its absolute path, id (inode) and level under the root.
pub fn resolve(path: &Path) -> Result<(PathBuf, u64, u32)> {
    let meta = fs::metadata(path)
        .map_err(|e| UsageError::new(format!("cgroup {}: {e}: give a cgroup v2 directory", path.display())))?;
    let abs = fs::canonicalize(path).map_err(|e| UsageError::new(format!("cgroup {}: {e}: give a cgroup v2 directory", path.display())))?;
    let Some(root) = ROOTS.iter().find(|r| is_cgroup2(Path::new(r)) && abs.starts_with(r)) else {
        return Err(UsageError::new(format!(
            "{} is not in the cgroup v2 hierarchy (mounted at {}): give a directory under it",
            path.display(),
            ROOTS.iter().find(|r| is_cgroup2(Path::new(r))).unwrap_or(&"<not mounted>")
        ))
        .into());
    };
    let level = abs.strip_prefix(root)?.components().count() as u32;
    Ok((abs, meta.ino(), level))
}

fn is_cgroup2(path: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    rustix::fs::statfs(path).is_ok_and(|st| st.f_type as i64 == CGROUP2_SUPER_MAGIC)
}

/// Processes of a cgroup subtree.
pub fn pids(path: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for line in fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
            if let Ok(pid) = line.trim().parse::<u32>() {
                out.push(pid);
            }
        }
        if let Ok(entries) = fs::read_dir(&dir) {
            dirs.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
    out
}

/// Has every process left this cgroup subtree?
pub fn is_empty(path: &Path) -> bool {
    fs::read_to_string(path.join("cgroup.events")).map(|s| s.lines().any(|l| l.trim() == "populated 0")).unwrap_or(true)
}

/// `pilot gc`: remove what pilots whose agent died left behind. Mounts live in the pilots'
/// own mount namespaces and BPF links in the agent's fds, so both vanish with them; the
/// cgroup (and anything still running in it) is what can stay.
pub fn gc(verbose: bool) -> Result<usize> {
    let mut cleaned = 0;
    for root in ROOTS {
        let Ok(entries) = fs::read_dir(Path::new(root).join("pilot")) else { continue };
        for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let agent: Option<u32> = name.rsplit('-').next().and_then(|p| p.parse().ok());
            let alive = agent.is_some_and(|pid| pid == std::process::id() || crate::procfs::runs_pilot(pid));
            if alive {
                continue;
            }
            let cg = PilotCgroup { path: entry.path() };
            cg.remove();
            if !cg.path.exists() {
                cleaned += 1;
                if verbose {
                    eprintln!("pilot gc: removed {} (its agent, pid {}, is gone)", cg.path.display(), agent.unwrap_or(0));
                }
            }
        }
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::is_pilot_sandbox;

    #[test]
    fn pilot_sandboxes_are_told_from_commits_and_services() {
        assert!(is_pilot_sandbox("/pilot/1764633600-4242"));
        assert!(is_pilot_sandbox("/pilot/1764633600-4242/init"));
        assert!(!is_pilot_sandbox("/pilot/commit-4242"), "a commit's live run is production");
        assert!(!is_pilot_sandbox("/pilot/"));
        assert!(!is_pilot_sandbox("/system.slice/redis.service"));
        assert!(!is_pilot_sandbox("/pilotage/x"));
    }
}
