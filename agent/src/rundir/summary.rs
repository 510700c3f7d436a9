//! summary.json: what was traced and how completely.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const SUMMARY_SCHEMA: &str = "pilot.trace-summary/v1";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Summary {
    pub schema: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub started_unix_ms: u128,
    pub duration_ms: u128,
    pub processes: usize,
    pub events: u64,
    pub events_by_kind: BTreeMap<String, u64>,
    pub records: u64,
    pub decode_errors: u64,
    /// Events the kernel could not deliver, in total and by cause. Nonzero: incomplete.
    pub lost_events: u64,
    pub lost_by_cause: BTreeMap<String, u64>,
    pub complete: bool,
    /// The ring buffer's size and the most it held when the reader looked (its headroom).
    pub ringbuf_bytes: u64,
    pub ringbuf_peak_bytes: u64,
}

impl Summary {
    /// The account's first line.
    pub fn headline(&self) -> String {
        let completeness = if self.complete {
            "complete (0 events lost)".to_string()
        } else {
            let causes: Vec<String> =
                self.lost_by_cause.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{v} {k}")).collect();
            format!("INCOMPLETE: {} events lost ({})", self.lost_events, causes.join(", "))
        };
        format!(
            "pilot: traced {}: {} process{}, {} events, {}",
            self.target,
            self.processes,
            if self.processes == 1 { "" } else { "es" },
            self.events,
            completeness
        )
    }
}
