//! Reading a `pilot run`'s run directory from a [`Run`] ([`super::Pilot::pilot_run`]): its
//! files as JSON (verdict.json, sink.json, mounts.json, events.jsonl with every field),
//! `pilot diff --json`, where a production path lands in the overlay, and the checks every
//! run must pass (pilot ran; no mount and no cgroup of it left behind).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use super::{Run, pilot_bin};

impl Run {
    /// The run (or trace) directory: `--out`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the run directory as text ("" when it is missing).
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// A JSON file of the run directory; fails the test when it is missing or not JSON.
    pub fn json(&self, name: &str) -> Value {
        serde_json::from_str(&self.read(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{}", self.dump()))
    }

    /// events.jsonl as JSON values, with every field (the typed [`super::Event`] has the
    /// documented ones only).
    pub fn events_json(&self) -> Vec<Value> {
        self.read("events.jsonl").lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The first line of events.jsonl matching `pred`.
    pub fn event_json(&self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.events_json().into_iter().find(|e| pred(e))
    }

    pub fn verdict(&self) -> Value {
        self.json("verdict.json")
    }

    /// What the sink caught (sink.json).
    pub fn sink(&self) -> Vec<Value> {
        self.json("sink.json").as_array().cloned().unwrap_or_default()
    }

    /// The pilot command's own exit status (verdict.json `pilot_exit`; -1 when absent).
    pub fn command_exit(&self) -> i64 {
        self.verdict()["pilot_exit"].as_i64().unwrap_or(-1)
    }

    /// The changes as `pilot diff DIR --json` prints them (and changes.json must exist).
    pub fn changes(&self) -> Vec<Value> {
        assert!(self.dir.join("changes.json").exists(), "no changes.json\n{}", self.dump());
        let out = Command::new(pilot_bin()).arg("diff").arg(&self.dir).arg("--json").output().expect("pilot diff");
        assert!(out.status.success(), "pilot diff failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("pilot diff --json output");
        v["changes"].as_array().cloned().unwrap_or_default()
    }

    /// The change `pilot diff --json` shows for `path`.
    pub fn change(&self, path: &Path) -> Option<Value> {
        let p = path.display().to_string();
        self.changes().into_iter().find(|c| c["path"] == p.as_str())
    }

    /// Where a production path's copy lands in the run's overlay: upper/<key>/<rel>, from
    /// mounts.json (the longest overlaid mount point containing it).
    pub fn upper_of(&self, path: &Path) -> PathBuf {
        super::upper_of(&self.dir, path).unwrap_or_else(|| panic!("no overlay holds {}\n{}", path.display(), self.dump()))
    }

    /// pilot ran (exit 0 pass, 3 blocked by policy, 4 command failed), never 1 or 2, and
    /// wrote its verdict.
    pub fn assert_ran(&self) {
        assert!(
            matches!(self.code, Some(0) | Some(3) | Some(4)),
            "pilot itself failed (exit code {:?} signal {:?})\n{}",
            self.code,
            self.signal,
            self.dump()
        );
        assert!(self.dir.join("verdict.json").exists(), "no verdict.json\n{}", self.dump());
    }

    /// The command itself exited 0 (verdict.json `pilot_exit`).
    pub fn assert_command_ok(&self) {
        assert_eq!(self.command_exit(), 0, "the pilot command failed\n{}", self.dump());
    }

    /// No overlay (or any mount) of this run is left in the host's mount table, and the
    /// pilot's cgroup (pilot/<secs>-<agent pid>) is gone.
    pub fn assert_nothing_left_behind(&self) {
        let run_dir = self.dir.display().to_string();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let left: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&run_dir)).collect();
        assert!(left.is_empty(), "mounts of the run left behind:\n{}", left.join("\n"));
        for root in ["/sys/fs/cgroup/unified/pilot", "/sys/fs/cgroup/pilot"] {
            let suffix = format!("-{}", self.pid);
            for e in fs::read_dir(root).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !(e.path().is_dir() && name.ends_with(&suffix)),
                    "pilot cgroup {} left behind\n{}",
                    e.path().display(),
                    self.dump()
                );
            }
        }
    }

    /// For [`Run::dump`]: the run directory, the time it took, and its changes.json and
    /// sink.json when the run wrote them (`pilot run`; nothing for `pilot trace`).
    pub(super) fn dump_run_dir(&self) -> String {
        let mut s = String::new();
        for name in ["changes.json", "sink.json"] {
            if self.dir.join(name).exists() {
                s += &format!("--- {name} ---\n{}\n", self.read(name));
            }
        }
        if !s.is_empty() {
            s = format!("--- run dir {}, after {:?} ---\n{s}", self.dir.display(), self.elapsed);
        }
        s
    }
}
