//! changes.json: what a pilot changed, from its overlay's upper layers (computed by `crate::diff`).
use serde::{Deserialize, Serialize};

pub const CHANGES_SCHEMA: &str = "pilot.changes/v1";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Changes {
    pub schema: String,
    pub changes: Vec<Change>,
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
