//! drift.json: what `pilot commit` found changed since the pilot, and whether that refused it.
use serde::{Deserialize, Serialize};

use super::decision::Stamp;

pub const DRIFT_SCHEMA: &str = "pilot.drift/v1";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Drift {
    pub schema: String,
    pub checked: Stamp,
    /// How old the pilot's snapshot was (None: the host rebooted since; it counts as too old).
    pub age_ms: Option<u64>,
    pub max_age_ms: u64,
    /// Everything that differs, refusing or not.
    pub items: Vec<DriftItem>,
    /// The verdict on the pilot's graph with the fresh snapshot's components and holds.
    pub verdict_then: String,
    pub verdict_now: String,
    pub violations_new: Vec<String>,
    pub violations_gone: Vec<String>,
    pub components_appeared: Vec<String>,
    pub components_gone: Vec<String>,
    /// Why the commit is refused; empty: it may go ahead.
    pub refusals: Vec<String>,
    /// Committed anyway (`--force`, journaled).
    pub forced: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DriftItem {
    pub target: String,
    pub what: String,
    /// This drift alone refuses the commit.
    pub refuses: bool,
}
