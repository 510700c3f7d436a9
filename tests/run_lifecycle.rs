//! A pilot's lifetime: --timeout kills the whole tree (daemons included), and when the agent
//! itself dies the pilot dies with it, leaving nothing `pilot gc` does not clean.
mod common;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use common::{Scratch, pids_with, wait_until};

const PILOT: &str = env!("CARGO_BIN_EXE_pilot");


/// A parent and a daemonized grandchild that both wait an hour, each a shell whose command
/// line carries the marker.
fn long_tree(marker: &str) -> String {
    format!("(setsid sh -c 'sleep 3600; : {marker}-daemon' &) ; sh -c 'sleep 3600; : {marker}-main'")
}


/// Kills the agent if the test ends early (a failed assertion must not leave a pilot running).
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pilot_cgroup_of(agent: u32) -> Vec<PathBuf> {
    std::fs::read_dir(std::path::Path::new(common::cgroup2_root()).join("pilot"))
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(&format!("-{agent}"))).collect())
        .unwrap_or_default()
}

#[test]
fn timeout_kills_the_whole_tree_daemons_included() {
    let d = Scratch::new();
    let marker = format!("pilot-life-timeout-{}", std::process::id());
    let script = long_tree(&marker);
    let out = Command::new(PILOT)
        .args(["run", "--timeout", "2s", "--out"])
        .arg(d.path().join("run"))
        .args(["--", "sh", "-c", &script])
        .env("PILOT_JOURNAL", d.path().join("journal.jsonl"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "timed out is a failed pilot: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));
    assert!(wait_until(Duration::from_secs(30), || pids_with(&marker).is_empty()), "left running: {:?}", pids_with(&marker));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.path().join("run/verdict.json")).unwrap()).unwrap();
    assert_eq!(v["timed_out"], true);
}

#[test]
fn when_the_agent_is_killed_the_pilot_dies_and_gc_cleans_up() {
    let d = Scratch::new();
    let marker = format!("pilot-life-death-{}", std::process::id());
    let script = long_tree(&marker);
    let mut agent = Agent(Command::new(PILOT)
        .args(["run", "--out"])
        .arg(d.path().join("run"))
        .args(["--", "sh", "-c", &script])
        .env("PILOT_JOURNAL", d.path().join("journal.jsonl"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let agent_pid = agent.0.id();
    // Generous: under emulation (cargo xtask vm-test, TCG) a pilot takes tens of seconds to start.
    assert!(wait_until(common::RUN_TIMEOUT, || pids_with(&marker).len() >= 2), "the pilot started its tree");
    assert_eq!(pilot_cgroup_of(agent_pid).len(), 1, "the pilot has its cgroup");
    agent.0.kill().unwrap(); // SIGKILL: no cleanup code runs in the agent
    agent.0.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || pids_with(&marker).is_empty()),
        "the pilot outlived its agent: {:?}",
        pids_with(&marker)
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&d.path().display().to_string()), "no mount left on the host");
    let gc = Command::new(PILOT).arg("gc").output().unwrap();
    assert!(gc.status.success());
    assert!(pilot_cgroup_of(agent_pid).is_empty(), "gc removed the dead pilot's cgroup");
}
