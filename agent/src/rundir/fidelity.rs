//! fidelity.json: how far the live run `pilot commit` made strayed from the pilot (computed by
//! `crate::fidelity`).
use serde::{Deserialize, Serialize};

pub const FIDELITY_SCHEMA: &str = "pilot.fidelity/v1";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Fidelity {
    pub schema: String,
    /// 0: the live run did exactly what the pilot did; 1: nothing in common.
    pub error: f64,
    pub max_fidelity_error: f64,
    pub within_gate: bool,
    pub edges_pilot: usize,
    pub edges_live: usize,
    pub only_pilot: Vec<String>,
    pub only_live: Vec<String>,
    pub diverging: Vec<Divergence>,
    /// issue 15: commit's second channel, the files themselves (see `crate::channels::live`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileChannel>,
}

/// The paths the pilot changed and the live-held files it touched, before and after the live
/// run: a live change the pilot did not show puts the commit outside the gate.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct FileChannel {
    pub watched: usize,
    /// Content hashed up to this size; bigger files compared by size, mtime and inode.
    pub hash_limit: u64,
    /// Changed in both runs, or in neither.
    pub agree: usize,
    pub live_not_shown: Vec<FileMismatch>,
    pub pilot_not_made: Vec<FileMismatch>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct FileMismatch {
    pub path: String,
    /// What the pilot's overlay showed (`modified`, `deleted`..., or `unchanged`).
    pub pilot: String,
    /// What happened to it live (`content changed, size 10 then, 0 now`..., or `unchanged`).
    pub live: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Divergence {
    pub edge: String,
    pub pilot_count: u64,
    pub live_count: u64,
    pub pilot_bytes: u64,
    pub live_bytes: u64,
}
