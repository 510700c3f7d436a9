//! Issue 15: the channels that saw an effect. The trace (the kernel probes) is the first; the
//! overlay's upper layers (what the pilot changed on disk), the sink (what it sent) and the
//! pilot cgroup (which processes it had) are the others, each enforced or kept by the kernel
//! whatever syscalls were used. An effect only a second channel saw is a blind spot of the
//! trace: it is in the graph like any other effect (so every rule applies to it), and named.
use serde::{Deserialize, Serialize};

use super::{EdgeKind, Hold};

/// Who saw an effect. Serialized as its name (`seen_by` on edges, `channel` on blind spots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The kernel probes: syscalls with their results.
    Trace,
    /// The overlay's upper layers after the pilot (changes.json).
    Overlay,
    /// The network sink's record of what it caught (sink.json).
    Sink,
    /// The pilot cgroup's membership, sampled while the pilot ran.
    Cgroup,
}

impl Channel {
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Trace => "trace",
            Channel::Overlay => "overlay",
            Channel::Sink => "sink",
            Channel::Cgroup => "cgroup",
        }
    }

    /// The evidence a violation quotes for an effect only this channel saw.
    pub const fn evidence(self) -> &'static str {
        match self {
            Channel::Trace => "traced",
            Channel::Overlay => "seen in the overlay, no syscall traced",
            Channel::Sink => "caught by the sink, no traced send",
            Channel::Cgroup => "in the pilot cgroup, never traced",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One effect a second channel saw and no traced syscall explains.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlindSpot {
    /// The file's path, the endpoint (`127.0.0.1:6379`), or the process (`4242 sh`).
    pub path: String,
    /// What the channel saw: `modified`, `deleted`, `created`... (the overlay's words),
    /// `1200 bytes` (the sink), `process` (the cgroup).
    pub change: String,
    pub channel: Option<Channel>,
    /// The effect it stands for in the graph (none for processes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<EdgeKind>,
    /// The live component it belongs to, and how that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
}

/// summary.json's `blind_spots`: how many, and each.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlindSpots {
    pub count: usize,
    pub items: Vec<BlindSpot>,
}

/// A process the pilot cgroup had that the trace never saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UnseenProcess {
    pub pid: u32,
    pub start_ns: u64,
    pub comm: String,
}

/// graph.json's `channels`: what the second channels saw, for the policy (and `pilot check`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// The channels that watched this run besides the trace.
    pub watched_by: Vec<Channel>,
    pub blind_spots: Vec<BlindSpot>,
    /// Processes in the pilot cgroup the trace never saw: what they did is not known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unseen_processes: Vec<UnseenProcess>,
    /// Processes that set up io_uring (`pid comm`): its operations are seen only by the
    /// overlay and the sink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_uring: Vec<String>,
}

/// The note a verdict and a summary give when io_uring was used.
pub const IO_URING_NOTE: &str = "io_uring in use: its operations are seen only by the overlay and the sink";

impl Observed {
    pub fn summary(&self) -> BlindSpots {
        BlindSpots { count: self.blind_spots.len(), items: self.blind_spots.clone() }
    }
}
