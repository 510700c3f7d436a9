//! Whose pid is it? A pilot's processes have pids of its own PID namespace; a pid it read from
//! a pidfile or `ps` (the host's /proc) is a host pid. The pilot's processes are its cgroup's
//! (daemons included: nothing in the pilot can leave it); their pids in the pilot's namespace
//! are the last column of `NSpid` and friends in /proc/<tid>/status.
//!
//! To keep the two apart, pilot-init starts its namespace's pids in the widest range of pids
//! no host process uses (`spread_namespace_pids`): a pilot pid then rarely equals a live host
//! pid, and when it does, the pilot's own process wins (as the kernel decides inside the
//! namespace).
use std::{
    collections::{HashMap, HashSet},
    fs,
    path::Path,
};

/// The pilot's processes, as the host and the pilot's namespace number them.
#[derive(Default, Debug)]
pub struct Pilot {
    /// namespace tid -> host tid (every thread).
    pub tids: HashMap<i64, u32>,
    /// namespace tgid -> host tgid.
    pub tgids: HashMap<i64, u32>,
    /// Process groups of the pilot, by their namespace id.
    pub pgids: HashSet<i64>,
    /// Host tgids.
    pub host: HashSet<u32>,
}

impl Pilot {
    /// The cgroup's threads now: `cached` again when its thread list is the same.
    pub fn scan_cached(cgroup: &Path, cached: &mut Option<(String, std::rc::Rc<Pilot>)>) -> std::rc::Rc<Pilot> {
        let text = fs::read_to_string(cgroup.join("cgroup.threads")).unwrap_or_default();
        if let Some((seen, p)) = cached.as_ref().filter(|(seen, _)| *seen == text) {
            let _ = seen;
            return p.clone();
        }
        let p = std::rc::Rc::new(Pilot::from_threads(&text));
        *cached = Some((text, p.clone()));
        p
    }

    /// Read the cgroup's threads now.
    pub fn scan(cgroup: &Path) -> Pilot {
        Pilot::from_threads(&fs::read_to_string(cgroup.join("cgroup.threads")).unwrap_or_default())
    }

    /// From cgroup.threads' text: each thread's ids in the pilot's namespace.
    fn from_threads(text: &str) -> Pilot {
        let mut p = Pilot::default();
        for tid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            let Ok(status) = fs::read_to_string(format!("/proc/{tid}/status")) else { continue };
            let ns = |key: &str| -> Option<(i64, i64)> {
                let line = status.lines().find(|l| l.starts_with(key))?;
                let cols: Vec<i64> = line[key.len()..].split_whitespace().filter_map(|v| v.parse().ok()).collect();
                // One column: not in the pilot's namespace (the sandbox's first process).
                (cols.len() >= 2).then(|| (cols[0], *cols.last().expect("two columns")))
            };
            let (Some((host_tid, ns_tid)), Some((host_tgid, ns_tgid))) = (ns("NSpid:"), ns("NStgid:")) else { continue };
            p.tids.insert(ns_tid, host_tid as u32);
            p.tgids.insert(ns_tgid, host_tgid as u32);
            p.host.insert(host_tgid as u32);
            if let Some((_, ns_pgid)) = ns("NSpgid:") {
                p.pgids.insert(ns_pgid);
            }
        }
        p
    }

    /// Is namespace pid `pid` one of the pilot's processes? Pilot-init (1) is not: a pilot
    /// that signals pid 1 means the host's init, as it would live.
    pub fn has_process(&self, pid: i64) -> bool {
        pid > 1 && self.tgids.contains_key(&pid)
    }

    pub fn has_thread(&self, tid: i64) -> bool {
        tid > 1 && self.tids.contains_key(&tid)
    }
}

/// Identity and credentials of a host process, from /proc.
#[derive(Debug, Clone)]
pub struct HostProcess {
    pub tgid: u32,
    /// real, effective, saved, filesystem.
    pub uids: [u32; 4],
    pub pgid: u32,
    pub comm: String,
}

pub fn host_process(pid: u32) -> Option<HostProcess> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| status.lines().find(|l| l.starts_with(key)).map(|l| l[key.len()..].trim().to_string());
    let uids: Vec<u32> = field("Uid:")?.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let pgid = field("NSpgid:").and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    Some(HostProcess {
        tgid: field("Tgid:")?.parse().ok()?,
        uids: uids.try_into().ok()?,
        pgid,
        comm: field("Name:").unwrap_or_default(),
    })
}

/// Live members (host tgids) of host process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        if rest.split_whitespace().nth(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

/// Would a live signal from `sender` reach `target`? Root (CAP_KILL live) may signal anyone;
/// otherwise the sender's real or effective uid must be the target's real or saved uid.
pub fn may_signal(sender: &HostProcess, target: &HostProcess) -> bool {
    let [sr, se, ..] = sender.uids;
    let [tr, _, ts, _] = target.uids;
    se == 0 || sr == tr || sr == ts || se == tr || se == ts
}

/// May `sender` change `target`'s priority, affinity or limits live? Root may; otherwise the
/// sender's effective uid must be the target's real or effective uid.
pub fn may_tune(sender: &HostProcess, target: &HostProcess) -> bool {
    let se = sender.uids[1];
    se == 0 || se == target.uids[0] || se == target.uids[1]
}

/// pilot-init, before it forks the workload: move its namespace's next pid into the widest
/// range of pids no host process holds (written to its own namespace's ns_last_pid). Best
/// effort: a kernel without CONFIG_CHECKPOINT_RESTORE has no ns_last_pid.
pub fn spread_namespace_pids() {
    let max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(32768);
    let used: Vec<u32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect();
    if let Some(start) = widest_gap(used, max) {
        let _ = fs::write("/proc/sys/kernel/ns_last_pid", format!("{}\n", start - 1));
    }
}

/// The first pid of the widest run of unused pids in [300, max), a quarter into it (room for
/// host pids allocated at its start meanwhile).
fn widest_gap(mut used: Vec<u32>, max: u32) -> Option<u32> {
    const FLOOR: u32 = 300;
    used.retain(|p| *p >= FLOOR && *p < max);
    used.push(FLOOR);
    used.push(max);
    used.sort_unstable();
    used.dedup();
    let (lo, hi) = used.windows(2).map(|w| (w[0], w[1])).max_by_key(|(a, b)| b - a)?;
    (hi - lo > 64).then(|| lo + (hi - lo) / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_gap_is_found() {
        assert_eq!(widest_gap(vec![1, 2, 400, 500, 30000], 32768), Some(500 + (30000 - 500) / 4));
        assert_eq!(widest_gap(vec![], 4_194_304), Some(300 + (4_194_304 - 300) / 4));
    }

    #[test]
    fn this_process_is_a_host_process() {
        let me = host_process(std::process::id()).unwrap();
        assert_eq!(me.tgid, std::process::id());
        assert!(may_signal(&me, &me));
    }
}
