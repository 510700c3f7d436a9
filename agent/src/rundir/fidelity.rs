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
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Divergence {
    pub edge: String,
    pub pilot_count: u64,
    pub live_count: u64,
    pub pilot_bytes: u64,
    pub live_bytes: u64,
}
