//! rollback/manifest.json and rollback/restored.json: the pre-images `pilot commit` saved of
//! everything the pilot showed would change, the state the live run left, and what
//! `pilot rollback` restored.
use serde::{Deserialize, Serialize};

use super::decision::Stamp;
use crate::filestate::FileState;

pub const ROLLBACK_SCHEMA: &str = "pilot.rollback/v1";
pub const RESTORED_SCHEMA: &str = "pilot.rollback-restored/v1";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Manifest {
    pub schema: String,
    pub run_dir: String,
    /// When the pre-images were read (just before the live run).
    pub saved: Stamp,
    /// When the live run ended and the post-commit states were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<Stamp>,
    pub entries: Vec<Entry>,
    /// Bytes of file content saved in `blobs/`, and the budget (`rollback_max_bytes`).
    pub bytes: u64,
    pub max_bytes: u64,
    /// Effects of the pilot no rollback can undo (signals, network, kernel interfaces).
    pub cannot_undo: Vec<String>,
    /// Changes the live run made that the pilot did not show: not in the manifest, not undone.
    #[serde(default)]
    pub uncovered: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    pub path: String,
    /// changes.json's change (created, modified, ...), or `in-tree` for what lies in a
    /// directory the pilot deleted, replaced or renamed.
    pub change: String,
    /// Before the commit (`absent`: rollback removes what the commit created).
    pub pre: FileState,
    /// After the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<FileState>,
    /// Regular files: the content's SHA-256, stored as `blobs/<sha256>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    /// Why there is no pre-image (over the budget, unreadable): rollback refuses this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsaved: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Restored {
    pub schema: String,
    pub at: Stamp,
    pub forced: bool,
    /// path: what was done.
    pub restored: Vec<String>,
    /// Already in their pre-commit state.
    pub unchanged: Vec<String>,
    /// Neither the post-commit state nor the pre-image (restored only with --force).
    pub conflicts: Vec<String>,
    pub failed: Vec<String>,
}
