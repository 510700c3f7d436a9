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
    // --- issue 15 (channels), written by `pilot run` once the observers are reconciled ---
    /// What the overlay, the sink and the cgroup saw that no traced syscall explains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blind_spots: Option<crate::graph::BlindSpots>,
    /// Set when the pilot used io_uring: its operations are seen only by the overlay and the
    /// sink (the note, with the processes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_uring: Option<String>,
}

impl Summary {
    /// What the observers saw (`pilot run`): blind spots counted, an unseen process makes the
    /// run incomplete.
    pub fn add_observed(&mut self, o: &crate::graph::Observed) {
        self.blind_spots = Some(o.summary());
        if !o.io_uring.is_empty() {
            self.io_uring = Some(format!("{} ({})", crate::graph::channels::IO_URING_NOTE, o.io_uring.join(", ")));
        }
        if !o.unseen_processes.is_empty() {
            self.complete = false;
        }
    }

    /// The account's first line.
    pub fn headline(&self) -> String {
        let unseen = self.blind_spots.as_ref().map_or(0, |b| b.items.iter().filter(|i| i.channel == Some(crate::graph::Channel::Cgroup)).count());
        let completeness = if self.complete {
            "complete (0 events lost)".to_string()
        } else if self.lost_events == 0 && unseen > 0 {
            format!("INCOMPLETE: {unseen} process(es) in the pilot cgroup never traced")
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
