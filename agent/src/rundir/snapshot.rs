//! snapshot.json: the host as the pilot found it. Components, what they hold, listening
//! endpoints and filesystems, taken when the pilot started; and the production state of every
//! target the pilot changed or contacted, read when it ended (a pilot leaves production
//! untouched, so that is the state it ran against). `pilot commit` compares a fresh snapshot
//! with this one (the drift check).
use serde::{Deserialize, Serialize};

use super::decision::Stamp;
use crate::{
    filestate::FileState,
    graph::Hold,
    snapshot::{Component, LogRole, filesystems::Filesystem},
};

pub const SNAPSHOT_SCHEMA: &str = "pilot.snapshot/v1";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct HostSnapshot {
    pub schema: String,
    pub taken: Stamp,
    pub host: String,
    pub components: Vec<Component>,
    #[serde(default)]
    pub filesystems: Vec<Filesystem>,
    #[serde(default)]
    pub local_addrs: Vec<String>,
    /// Every listening port of the host (the operator's own forwards included).
    #[serde(default)]
    pub listening_ports: Vec<u16>,
    pub targets: Vec<Target>,
}

/// A file, endpoint or process the pilot changed or contacted, as production had it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Target {
    /// The graph node's id (`file:/path`, `endpoint:inet:127.0.0.1:80`, `process:PID:START`).
    pub id: String,
    /// The effects the pilot had on it (edge kinds).
    pub effects: Vec<String>,
    /// The component it belonged to, and how it held it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
    /// Files: the production file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<FileState>,
    /// Files: a live log (graph.json's `log`): its growth since the pilot is expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogRole>,
}
