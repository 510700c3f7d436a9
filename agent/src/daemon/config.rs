//! `/etc/pilot/pilot.toml`: strict TOML (an unknown key is an error with its line), every key
//! optional; without a file the defaults apply.
use std::{net::SocketAddr, path::{Path, PathBuf}, time::Duration};

use anyhow::Result;
use serde::Deserialize;

use crate::error::UsageError;

pub const DEFAULT_PATH: &str = "/etc/pilot/pilot.toml";
pub const DEFAULT_SOCKET: &str = "/run/pilot/pilot.sock";
pub const DEFAULT_METRICS: &str = "127.0.0.1:9464";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The Unix socket clients reach the daemon on (created mode 0600: root only).
    pub socket: PathBuf,
    /// Where Prometheus scrapes `/metrics`; "" turns the endpoint off.
    pub metrics_listen: String,
    /// A run served by the daemon is stopped after this long, whatever its own `--timeout`.
    pub max_run: String,
    /// When a client goes away mid-run: "continue" (the run finishes; `pilot status` and the
    /// run directory have its outcome) or "kill" (the run is stopped as by ^C).
    pub on_client_disconnect: Disconnect,
    /// Where the daemon keeps each run's output (`<id>.log`).
    pub state_dir: PathBuf,
    /// Keys (`ed25519:HEX`, `.pub` files, directories of them) one of which must have signed
    /// every policy a pilot on this host uses (`pilot policy sign`); empty: not required.
    pub policy_signers: Vec<String>,
    /// The kernel's BPF run-time statistics (`pilot_bpf_program_*` metrics). While they are
    /// on, every BPF program on the host, pilot's or not, pays for timing itself on each run:
    /// "sampled" (the default) turns them on for `bpf_stats_window` every `bpf_stats_every`,
    /// "on" keeps them on while the daemon runs, "off" never.
    pub bpf_stats: BpfStats,
    pub bpf_stats_window: String,
    pub bpf_stats_every: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BpfStats {
    Off,
    Sampled,
    On,
}

impl BpfStats {
    pub fn as_str(self) -> &'static str {
        match self {
            BpfStats::Off => "off",
            BpfStats::Sampled => "sampled",
            BpfStats::On => "on",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disconnect {
    Continue,
    Kill,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: DEFAULT_SOCKET.into(),
            metrics_listen: DEFAULT_METRICS.into(),
            max_run: "1h".into(),
            on_client_disconnect: Disconnect::Continue,
            state_dir: "/var/lib/pilot/daemon".into(),
            policy_signers: Vec::new(),
            bpf_stats: BpfStats::Sampled,
            bpf_stats_window: "1s".into(),
            bpf_stats_every: "60s".into(),
        }
    }
}

impl Config {
    /// The file at `path`; the defaults when it is the default path and does not exist.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let (path, required) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Config::default()),
            Err(e) => return Err(crate::error::FileError::new("reading the config", path, e, crate::error::CONFIG).usage().into()),
        };
        let config = Config::parse(&text).map_err(|e| UsageError::new(format!("config {}: {e}", path.display())))?;
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        config.max_run()?;
        config.metrics_addr()?;
        config.bpf_stats_sampling()?;
        for spec in &config.policy_signers {
            crate::keys::load_keys(spec, Path::new("")).map_err(|e| format!("policy_signers: {e}"))?;
        }
        Ok(config)
    }

    pub fn max_run(&self) -> Result<Duration, String> {
        crate::run::parse_duration(&self.max_run).map_err(|_| format!("max_run = {:?}: give seconds or 30s, 5m, 1h", self.max_run))
    }

    /// (window, every) of sampled BPF statistics; the window shorter than the period.
    pub fn bpf_stats_sampling(&self) -> Result<(Duration, Duration), String> {
        let parse = |key: &str, v: &str| crate::run::parse_duration(v).map_err(|_| format!("{key} = {v:?}: give seconds or 500ms, 1s, 5m"));
        let window = parse("bpf_stats_window", &self.bpf_stats_window)?;
        let every = parse("bpf_stats_every", &self.bpf_stats_every)?;
        if window.is_zero() || window >= every {
            return Err(format!("bpf_stats_window = {:?} must be shorter than bpf_stats_every = {:?} (and not 0)", self.bpf_stats_window, self.bpf_stats_every));
        }
        Ok((window, every))
    }

    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.metrics_listen.is_empty() {
            return Ok(None);
        }
        self.metrics_listen
            .parse()
            .map(Some)
            .map_err(|_| format!("metrics_listen = {:?}: give ADDR:PORT, e.g. {DEFAULT_METRICS}", self.metrics_listen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file_and_unknown_keys_are_errors() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.socket, Path::new(DEFAULT_SOCKET));
        assert_eq!(c.max_run().unwrap(), Duration::from_secs(3600));
        let c = Config::parse("max_run = \"5m\"\non_client_disconnect = \"kill\"\nmetrics_listen = \"\"\n").unwrap();
        assert_eq!((c.max_run().unwrap(), c.on_client_disconnect, c.metrics_addr().unwrap()), (Duration::from_secs(300), Disconnect::Kill, None));
        let err = Config::parse("socket = \"/x\"\nmax_runs = \"5m\"\n").unwrap_err();
        assert!(err.contains("max_runs") && err.contains("line 2"), "{err}");
        assert!(Config::parse("max_run = \"soon\"").unwrap_err().contains("max_run"));
        assert!(Config::parse("on_client_disconnect = \"ignore\"").is_err());
        let c = Config::parse("bpf_stats = \"on\"\nbpf_stats_window = \"500ms\"\nbpf_stats_every = \"10s\"\n").unwrap();
        assert_eq!((c.bpf_stats, c.bpf_stats_sampling().unwrap()), (BpfStats::On, (Duration::from_millis(500), Duration::from_secs(10))));
        assert_eq!(Config::parse("").unwrap().bpf_stats, BpfStats::Sampled, "sampled by default");
        assert!(Config::parse("bpf_stats_window = \"2m\"").unwrap_err().contains("shorter"));
        assert!(Config::parse("bpf_stats = \"always\"").is_err());
    }
}
