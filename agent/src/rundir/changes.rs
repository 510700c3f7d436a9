//! changes.json: what a pilot changed, from its overlay's upper layers (computed by `crate::diff`).
use serde::{Deserialize, Serialize};

pub const CHANGES_SCHEMA: &str = "pilot.changes/v1";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Changes {
    pub schema: String,
    pub changes: Vec<Change>,
    /// Issue 16: what the live run would change outside the files (the host's settings, live
    /// processes) that the sandbox held back or refused, from events.jsonl.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<HeldBack>,
}

/// One change the sandbox held back or refused.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct HeldBack {
    /// signal, sysctl, sysfs, cgroup, netconf, clock, swap, mount, module, setpriority,
    /// setaffinity, setrlimit.
    pub kind: String,
    /// What it changes: a setting (`vm.swappiness`, `lo`), a path, `pid 1234`.
    pub target: String,
    /// To what (a value, `nice 19`, `SIGTERM`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `held back` (the pilot was told it succeeded) or `refused` (the pilot saw it fail).
    pub how: String,
    pub pid: u32,
    pub comm: String,
    /// Its line in events.jsonl.
    pub event: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Change {
    /// Absolute path as the pilot (and production) name it.
    pub path: String,
    /// created, modified, metadata, deleted, renamed, replaced (a directory deleted and
    /// re-created: its old contents are gone).
    pub change: String,
    /// file, dir, symlink, device, fifo, socket.
    pub kind: String,
    /// renamed: the old path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_changed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_owner: Option<String>,
    /// symlink: where it points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Extended attributes added, changed or removed (names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<String>,
}
