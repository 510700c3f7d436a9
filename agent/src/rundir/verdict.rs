//! verdict.json: the gate's decision on a pilot and how it was contained.
use serde::{Deserialize, Serialize};

use crate::policy::eval::Evaluation;

pub const VERDICT_SCHEMA: &str = "pilot.verdict/v1";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Verdict {
    pub schema: String,
    /// Exit status of the pilot command (128+N: killed by signal N).
    pub pilot_exit: i32,
    /// pass, warn or block, with risk, containment and every violation explained.
    #[serde(flatten)]
    pub evaluation: Evaluation,
    pub lost_events: u64,
    pub timed_out: bool,
    pub command: Vec<String>,
    pub cwd: String,
    /// How the pilot was contained. Not `containment`: that key is the score (`evaluation`);
    /// a second `containment` key made verdict.json hold the same key twice.
    pub contained_by: Containment,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Containment {
    pub files: String,
    pub network: String,
    pub unix_sockets: String,
    pub signals: String,
    pub capabilities_dropped: Vec<String>,
}
