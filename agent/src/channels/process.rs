//! The pilot cgroup as a channel: the kernel keeps every process of the pilot in it (the
//! sandbox joins it before anything runs, and children are born in their parent's cgroup), so
//! its membership is an account of processes the trace does not keep. Sampled every poll round
//! of the run (`cgroup.procs`, the whole subtree); a pid that was there and that the trace never
//! saw is a blind spot, and the run is incomplete: what that process did is not known.
//!
//! What it cannot see: a process that starts and ends between two samples (20 ms apart), or
//! that is reaped between the listing and the read of its /proc entry, leaves no trace here. On this machine's hybrid layout the v2 hierarchy has no `pids` controller
//! (pids.peak is not there); cgroup.stat counts cgroups, not processes.
use std::{collections::BTreeMap, path::PathBuf};

use crate::{graph::channels::UnseenProcess, procfs, tracker::Tracker};

pub struct Sampler {
    cgroup: PathBuf,
    /// The pilot binary: the sandbox and pilot-init run it, outside the trace by design
    /// (tracking starts with the command). By path: in the sandbox's mount namespace the same
    /// file is reached through the overlay (another st_dev).
    own_exe: Option<PathBuf>,
    /// Processes seen in the cgroup while the trace did not know them yet: (start, comm).
    pending: BTreeMap<u32, (u64, String)>,
    pub samples: u64,
}

impl Sampler {
    pub fn new(cgroup: PathBuf) -> Sampler {
        Sampler { cgroup, own_exe: std::fs::read_link("/proc/self/exe").ok(), pending: BTreeMap::new(), samples: 0 }
    }

    /// One look at the cgroup: remember who is there that the trace does not know (yet: its
    /// fork record may still be in the ring buffer; `unseen` asks again at the end).
    pub fn sample(&mut self, tracker: &Tracker) {
        self.samples += 1;
        for pid in crate::cgroup::pids(&self.cgroup) {
            if tracker.process(pid).is_some() || self.pending.contains_key(&pid) {
                continue;
            }
            // Reaped between the listing and this read (pilot-init, as the pilot ends): like a
            // process that starts and ends between two samples, nothing is left to account.
            let Some(comm) = procfs::comm(pid) else { continue };
            if self.own(pid, &comm) {
                continue;
            }
            let start = procfs::start_ns(pid).unwrap_or(0);
            self.pending.insert(pid, (start, comm));
        }
    }

    /// The sandbox's own processes: they run the pilot binary (a dying one's exe link is gone:
    /// then its comm says, `exe` for /proc/self/exe, or `pilot-init`).
    fn own(&self, pid: u32, comm: &str) -> bool {
        match std::fs::read_link(format!("/proc/{pid}/exe")) {
            Ok(exe) => Some(exe) == self.own_exe,
            Err(_) => comm == "exe" || comm == "pilot-init",
        }
    }

    /// The processes the cgroup had and the trace never saw, once the trace is drained.
    pub fn unseen(&self, tracker: &Tracker) -> Vec<UnseenProcess> {
        self.pending
            .iter()
            .filter(|(pid, _)| tracker.process(**pid).is_none())
            .map(|(pid, (start_ns, comm))| UnseenProcess { pid: *pid, start_ns: *start_ns, comm: comm.clone() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid the cgroup listed but /proc no longer has (reaped in between) is not a blind spot;
    /// a live process the trace does not know is.
    #[test]
    fn a_process_gone_before_it_is_read_is_not_unseen() {
        let cgroup = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        // 4194305: above the largest pid_max (2^22), a pid that never exists.
        std::fs::write(cgroup.path().join("cgroup.procs"), format!("4194305\n{}\n", child.id())).unwrap();
        let tracker = Tracker::new();
        let mut sampler = Sampler::new(cgroup.path().to_path_buf());
        sampler.sample(&tracker);
        let unseen: Vec<u32> = sampler.unseen(&tracker).iter().map(|u| u.pid).collect();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(unseen, vec![child.id()]);
    }
}
