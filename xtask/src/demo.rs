//! `cargo xtask demo [SCENARIO]`: one recovery bug end to end, with a release build of pilot
//! and nothing to install: a scenario of tests/scenarios/ (default: a cleanup whose unset
//! variable makes it delete a live database's WAL).
//!
//! 1. start the scenario's tiny production (`prod.sh`);
//! 2. pilot the harmful recovery: blocked (exit 3), production untouched;
//! 3. show the effect graph of that run;
//! 4. pilot the fixed recovery: it passes; `pilot commit` runs it live with fidelity;
//! 5. end the services (by the pids `prod.sh` recorded) and unmount what it mounted.
//!
//! The run directories and the journal are kept under target/demo/.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};

use crate::bootstrap::{apt_packages, bootstrap};
use crate::cmd::{cargo, command, run, status, target_dir, workspace_root};

pub const DEFAULT_SCENARIO: &str = "cleanup-unset-variable";

pub fn demo(scenario: &str) -> anyhow::Result<()> {
    bootstrap("demo")?;
    apt_packages(&["python3", "gcc"])?; // the scenarios' small services
    let dir = workspace_root().join("tests/scenarios").join(scenario);
    if !dir.join("scenario.toml").is_file() {
        bail!("no scenario `{scenario}` in tests/scenarios/ (each folder there with a scenario.toml is one)");
    }
    run(cargo().current_dir(workspace_root()).args(["build", "--release", "--bin", "pilot"]))?;
    let pilot = target_dir().join("release").join("pilot");

    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let out = target_dir().join("demo").join(format!("{scenario}-{secs}"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let prod = Production::start(&dir, &format!("/tmp/pilot-demo-{scenario}-{}", std::process::id()))?;
    let policy = policy_args(&dir)?;
    let pilot_cmd = |args: &[&str]| {
        let mut c = command(&pilot);
        c.current_dir(&prod.dir).env("PILOT_JOURNAL", out.join("journal.jsonl")).args(args);
        c
    };

    println!("\n[demo] 1. production is up ({}); it is healthy: {}", prod.dir.display(), prod.healthy());
    let bad = out.join("harmful");
    println!("[demo] 2. pilot the harmful recovery ({}):", dir.join("harmful.sh").display());
    let st = status(pilot_cmd(&["run", "--out", path(&bad)]).args(&policy).args(["--", "sh"]).arg(dir.join("harmful.sh")).arg(&prod.dir))?;
    println!("[demo]    pilot exit {:?} (3 = blocked); production still healthy: {}", st.code(), prod.healthy());
    println!("[demo] 3. the effect graph of that run:");
    status(&mut pilot_cmd(&["graph", path(&bad), "--format", "text"]))?;

    let good = out.join("fixed");
    println!("[demo] 4. pilot the fixed recovery, then commit it:");
    let st = status(pilot_cmd(&["run", "--out", path(&good)]).args(&policy).args(["--", "sh"]).arg(dir.join("fixed.sh")).arg(&prod.dir))?;
    if st.code() != Some(0) {
        bail!("the fixed recovery did not pass (exit {st}): see {}", good.display());
    }
    let st = status(&mut pilot_cmd(&["commit", path(&good)]))?;
    println!("[demo]    commit exit {:?}; production healthy after the live run: {}", st.code(), prod.healthy());
    println!("[demo] runs and journal kept in {}", out.display());
    Ok(())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A list of strings of scenario.toml (`policy`, `ports`).
fn spec_list(scenario: &Path, key: &str) -> Vec<String> {
    let text = fs::read_to_string(scenario.join("scenario.toml")).unwrap_or_default();
    let table: toml::Table = toml::from_str(&text).unwrap_or_default();
    table.get(key).and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The scenario's `policy = [...]` as `--policy` arguments.
fn policy_args(dir: &Path) -> anyhow::Result<Vec<String>> {
    Ok(spec_list(dir, "policy")
        .iter()
        .flat_map(|p| {
            let file = if dir.join(p).is_file() { dir.join(p) } else { workspace_root().join("policies").join(p) };
            ["--policy".to_string(), if p == "default" { p.clone() } else { file.display().to_string() }]
        })
        .collect())
}

/// The scenario's live services; ended and cleaned up on drop.
struct Production {
    scenario: PathBuf,
    dir: PathBuf,
}

impl Production {
    fn start(scenario: &Path, dir: &str) -> anyhow::Result<Production> {
        let dir = PathBuf::from(dir);
        fs::create_dir_all(&dir)?;
        let mut env = String::new();
        for port in spec_list(scenario, "ports") {
            let p = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            env.push_str(&format!("{port}={p}\n"));
        }
        fs::write(dir.join("scenario.env"), env)?;
        let prod = Production { scenario: scenario.into(), dir };
        run(command("sh").arg(scenario.join("prod.sh")).arg(&prod.dir))?;
        Ok(prod)
    }

    fn healthy(&self) -> bool {
        Command::new("sh").arg(self.scenario.join("check.sh")).arg(&self.dir).output().is_ok_and(|o| o.status.success())
    }
}

impl Drop for Production {
    fn drop(&mut self) {
        let teardown = self.scenario.parent().map(|d| d.join("teardown.sh")).unwrap_or_default();
        let _ = Command::new("sh").arg(teardown).arg(&self.dir).status();
    }
}
