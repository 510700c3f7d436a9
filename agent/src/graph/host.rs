//! Issue 16: edges for changes to the host (kind `sysctl`, `sysfs`, `cgroup`, `netconf`,
//! `clock`, `swap`, `mount`, `module`: to a `host` node per setting) and to live processes
//! (`setpriority`, `setaffinity`, `setrlimit`: to the process, its group, or every process of a
//! uid). They come from the sandbox's supervisor (held back or refused in a pilot) or from the
//! trace (what `pilot trace` and a commit saw, and write-opens of /proc/sys, /sys and cgroup
//! files a pilot's read-only /proc and /sys refused).
use super::{Builder, Node};
use crate::event::{Event, host_kinds};

/// Node type of a host-wide setting.
pub const HOST: &str = "host";

/// What a host node's kind changes, for its label.
pub fn category(kind: &str) -> &'static str {
    match kind {
        "sysctl" | "sysfs" => "host kernel setting",
        "cgroup" => "host cgroup",
        "netconf" => "host network",
        "clock" => "host clock",
        "swap" => "host swap",
        "mount" => "host mount table",
        "module" => "host kernel modules",
        _ => "host",
    }
}

impl Builder {
    pub(super) fn host_change(&mut self, e: &Event, seq: u64, from: &str) {
        // A change the live host would refuse too (the supervisor answered with its error):
        // nothing would change.
        if e.supervisor == Some("answered") && e.ret < 0 {
            return;
        }
        let detail = e.value.clone();
        if host_kinds::is_process(e.kind) {
            let (id, label) = match (e.target_pid, &e.target) {
                (Some(pid), _) if pid > 0 => {
                    let id = format!("process:{pid}:0");
                    self.process_node(&id, pid as u32, 0);
                    self.edge(e, seq, from, &id, e.kind, detail);
                    return;
                }
                (Some(0), _) => (format!("process_group:own:{}", e.pid), format!("own process group of {}", e.pid)),
                (Some(g), _) => (format!("process_group:{}", -g), format!("process group {}", -g)),
                (None, Some(t)) => (format!("process_group:{t}"), format!("every process of {t}")),
                (None, None) => return,
            };
            self.node(Node { id: id.clone(), node_type: "process_group".into(), label, ..Default::default() });
            self.edge(e, seq, from, &id, e.kind, detail);
            return;
        }
        let Some(object) = e.target.clone().or_else(|| e.path.clone()) else { return };
        let id = format!("host:{}:{object}", e.kind);
        self.node(Node {
            id: id.clone(),
            node_type: HOST.into(),
            label: format!("{object} ({})", category(e.kind)),
            held: Some("host".into()),
            path: e.path.clone(),
            ..Default::default()
        });
        self.edge(e, seq, from, &id, e.kind, detail);
    }

    /// A write-open the trace saw of a /proc/sys, /sys or cgroup file: the change the live
    /// run makes (`pilot trace`, a commit) or would make (a pilot without a supervisor, whose
    /// read-only /proc and /sys refused it). Not when it failed for a reason live shares
    /// (EACCES, EPERM: not root).
    pub(super) fn host_open(&mut self, e: &Event, seq: u64, from: &str) {
        let Some(path) = e.path.as_deref() else { return };
        let Some(kind) = crate::sandbox::supervisor::host_kind_of_path(path) else { return };
        if matches!(e.error, Some("EACCES" | "EPERM")) {
            return;
        }
        let mut change = e.clone();
        change.kind = kind;
        change.target = crate::sandbox::supervisor::sysctl_key(path).or_else(|| Some(path.to_string()));
        self.host_change(&change, seq, from);
    }
}
