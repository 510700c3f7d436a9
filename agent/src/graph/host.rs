//! Issue 16: edges for changes to the host (kind `sysctl`, `sysfs`, `cgroup`, `netconf`,
//! `clock`, `swap`, `mount`, `module`: to a `host` node per setting) and to live processes
//! (`setpriority`, `setaffinity`, `setrlimit`: to the process, its group, or every process of a
//! uid). They come from the sandbox's supervisor (held back or refused in a pilot) or from the
//! trace (what `pilot trace` and a commit saw, and write-opens of /proc/sys, /sys and cgroup
//! files a pilot's read-only /proc and /sys refused).
use super::{Builder, EdgeKind, Hold, Node, NodeId, NodeKind, build::Effect};
use crate::event::Event;

/// What a host node's kind changes, for its label.
pub fn category(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Sysctl | EdgeKind::Sysfs => "host kernel setting",
        EdgeKind::Cgroup => "host cgroup",
        EdgeKind::Netconf => "host network",
        EdgeKind::Clock => "host clock",
        EdgeKind::Swap => "host swap",
        EdgeKind::Mount => "host mount table",
        EdgeKind::Module => "host kernel modules",
        _ => "host",
    }
}

impl Builder {
    pub(super) fn host_effect(&mut self, effects: &mut Vec<Effect>, e: &Event) {
        // A change the live host would refuse too (the supervisor answered with its error):
        // nothing would change.
        if e.supervisor == Some("answered") && e.ret < 0 {
            return;
        }
        let Some(kind) = e.kind.as_edge() else { return };
        let detail = e.value.clone();
        if e.kind.is_process_change() {
            let (key, label) = match (e.target_pid, &e.target) {
                (Some(pid), _) if pid > 0 => {
                    let to = self.process_node(pid as u32, 0);
                    effects.push((to, kind, detail));
                    return;
                }
                (Some(0), _) => (format!("own:{}", e.pid), format!("own process group of {}", e.pid)),
                (Some(g), _) => ((-g).to_string(), format!("process group {}", -g)),
                (None, Some(t)) => (t.clone(), format!("every process of {t}")),
                (None, None) => return,
            };
            let to = self.other_node(NodeId::new(NodeKind::ProcessGroup, key), |id| Node {
                id,
                node_type: NodeKind::ProcessGroup,
                label,
                ..Default::default()
            });
            effects.push((to, kind, detail));
            return;
        }
        let Some(object) = e.target.clone().or_else(|| e.path.clone()) else { return };
        let path = e.path.clone();
        let to = self.other_node(NodeId::new(NodeKind::Host, format!("{}:{object}", kind.as_str())), |id| Node {
            id,
            node_type: NodeKind::Host,
            label: format!("{object} ({})", category(kind)),
            held: Some(Hold::Host),
            path,
            ..Default::default()
        });
        effects.push((to, kind, detail));
    }

    /// A write-open the trace saw of a /proc/sys, /sys or cgroup file: the change the live
    /// run makes (`pilot trace`, a commit) or would make (a pilot without a supervisor, whose
    /// read-only /proc and /sys refused it). Not when it failed for a reason live shares
    /// (EACCES, EPERM: not root).
    pub(super) fn host_open(&mut self, effects: &mut Vec<Effect>, e: &Event) {
        let Some(path) = e.path.as_deref() else { return };
        let Some(kind) = crate::sandbox::supervisor::host_kind_of_path(path) else { return };
        if matches!(e.error, Some("EACCES" | "EPERM")) {
            return;
        }
        let mut change = e.clone();
        change.kind = kind;
        change.target = crate::sandbox::supervisor::sysctl_key(path).or_else(|| Some(path.to_string()));
        self.host_effect(effects, &change);
    }
}
