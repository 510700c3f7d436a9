//! decision.json, approvals/*.json: the signed decision a pilot ends with, binding what was
//! asked (intent), the state it ran against (snapshot), what it did (graph, changes, events)
//! and the verdict, with the policies and the pilot binary; and the approvals of others.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::eval::PolicyRef;

pub const DECISION_SCHEMA: &str = "pilot.decision/v1";
pub const APPROVAL_SCHEMA: &str = "pilot.approval/v1";

/// A moment, by the clock that cannot be set (CLOCK_BOOTTIME, meaningful within one boot) and
/// by the wall clock.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub wall_unix_ms: u64,
    pub boottime_ns: u64,
    /// /proc/sys/kernel/random/boot_id: which boot `boottime_ns` counts from.
    pub boot_id: String,
}

impl Stamp {
    pub fn now() -> Stamp {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Stamp {
            wall_unix_ms: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            boottime_ns: t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64,
            boot_id: boot_id(),
        }
    }

    /// How long ago `self` was, by the boot clock when it is the same boot, else None (the
    /// host rebooted in between: only the wall clock, which can be set, would say).
    pub fn age(&self, now: &Stamp) -> Option<std::time::Duration> {
        (self.boot_id == now.boot_id && !self.boot_id.is_empty())
            .then(|| std::time::Duration::from_nanos(now.boottime_ns.saturating_sub(self.boottime_ns)))
    }
}

pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// What the run key signs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DecisionBody {
    pub schema: String,
    pub run_dir: String,
    pub host: String,
    /// pass, warn or block (verdict.json's).
    pub verdict: String,
    /// SHA-256 of each bound file of the run directory, by name.
    pub files: BTreeMap<String, String>,
    pub policies: Vec<PolicyRef>,
    pub pilot_sha256: String,
    /// When the host snapshot was taken (the pilot's start): a commit's max_age counts from it.
    pub snapshot_taken: Stamp,
    pub decided: Stamp,
    /// The run key, `ed25519:HEX`.
    pub signer: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Decision {
    #[serde(flatten)]
    pub body: DecisionBody,
    /// ed25519 over the body's JSON (domain `pilot.decision/v1`), hex.
    pub signature: String,
}

impl DecisionBody {
    /// The bytes signed and hashed: the body's JSON in field order.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("decision serializes")
    }

    /// What approvals sign: the SHA-256 of the canonical body.
    pub fn sha256(&self) -> String {
        crate::policy::sha256_hex(&self.canonical())
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ApprovalBody {
    pub schema: String,
    /// The decision approved (`DecisionBody::sha256`).
    pub decision_sha256: String,
    pub run_dir: String,
    /// `ed25519:HEX`.
    pub approver: String,
    /// The key's name (its file's stem).
    pub approver_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub approved: Stamp,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Approval {
    #[serde(flatten)]
    pub body: ApprovalBody,
    /// ed25519 over the body's JSON (domain `pilot.approval/v1`), hex.
    pub signature: String,
}

impl ApprovalBody {
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("approval serializes")
    }
}
