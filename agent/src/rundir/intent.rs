//! intent.json: what a pilot was asked to do, recorded by `pilot run` so `commit` replays
//! exactly that.
use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::policy::{self, eval::PolicyRef};

pub const INTENT_SCHEMA: &str = "pilot.intent/v1";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Intent {
    pub schema: String,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub uid: u32,
    pub host: String,
    pub policies: Vec<PolicyRef>,
    pub pilot_sha256: String,
}

impl Intent {
    pub fn capture(argv: &[String], policies: &[policy::Loaded]) -> Result<Intent> {
        Ok(Intent {
            schema: INTENT_SCHEMA.into(),
            argv: argv.to_vec(),
            cwd: std::env::current_dir()?,
            env: std::env::vars().collect(),
            uid: rustix::process::getuid().as_raw(),
            host: crate::procfs::hostname(),
            policies: policies.iter().map(policy::Loaded::reference).collect(),
            pilot_sha256: crate::daemon::client::exe_sha256(),
        })
    }

    /// The journal's view: no environment values (they may hold secrets), only their hash.
    pub fn for_journal(&self) -> serde_json::Value {
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        serde_json::json!({
            "argv": self.argv,
            "cwd": self.cwd,
            "uid": self.uid,
            "host": self.host,
            "policies": self.policies,
            "pilot_sha256": self.pilot_sha256,
            "env_sha256": policy::sha256_hex(env.join("\n").as_bytes()),
        })
    }
}
