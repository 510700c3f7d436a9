//! The recovery-failure scenario suite (tests/scenarios/): real recovery bugs, each against a
//! small live "production" this test starts, piloted for real.
//!
//! For every scenario the harness:
//! 1. starts production (`prod.sh`) and checks it is healthy (`check.sh`);
//! 2. pilots the harmful action: `pilot run` must exit 3 (blocked), the violation must name the
//!    expected rule, harmed component and effect, and `check.sh` must still pass;
//! 3. pilots the benign twin: exit 0; `pilot commit` performs it live, fidelity within the
//!    gate, and production is still healthy;
//! 4. runs the harmful action without the pilot (the control): `check.sh` must now fail, or
//!    the scenario proves nothing;
//! 5. ends the services it started, by pid, and unmounts what `prod.sh` mounted.
//!
//! The routine-operations suite (tests/scenarios/routine/) runs the same way, with a routine
//! operation (`benign.sh`: log rotation, backups, housekeeping, inspection) in place of the
//! fixed twin: its pilot must pass or warn exactly as `scenario.toml` says (never block, exit
//! 0; an `xfail` that cannot run in a pilot yet must still not be blocked), and its harmful twin
//! must be blocked with production untouched and really harm it without pilot.
//!
//! When `PILOT_SCENARIO_RESULTS` names a file, one JSON line per piloted action is appended to
//! it; `cargo xtask scenarios` turns them into the table, the detection rate and the
//! false-alarm rate.
mod common;

use std::{
    collections::BTreeSet,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::{Value, json};

const PILOT: &str = env!("CARGO_BIN_EXE_pilot");
const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scenarios");
const ROUTINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scenarios/routine");
const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");

/// One scenario at a time: timing-based rules (rates) and the time column stay meaningful on a
/// 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// `scenario.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    class: String,
    /// `--policy` arguments: `default`, a file in the scenario's folder, or one in policies/.
    policy: Vec<String>,
    /// Seconds the pilot may run (`pilot run --timeout`).
    #[serde(default = "default_timeout")]
    timeout: u64,
    /// Free loopback ports the harness picks and writes to `scenario.env` (NAME=port).
    #[serde(default)]
    ports: Vec<String>,
    expect: Expect,
}

fn default_timeout() -> u64 {
    60
}

/// What the harmful action's violation must say.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    rule: String,
    component: String,
    effect: String,
}

/// A routine operation's `scenario.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutineSpec {
    /// The routine operation (`benign.sh`).
    operation: String,
    /// Its harmful twin (`harmful.sh`).
    twin: String,
    policy: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout: u64,
    #[serde(default)]
    ports: Vec<String>,
    benign: Benign,
    expect: Expect,
}

/// What the routine operation's pilot must say.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Benign {
    /// `pass` or `warn`.
    verdict: String,
    /// The ids of the rules it violates (warnings), exactly.
    #[serde(default)]
    rules: Vec<String>,
    /// `pilot commit` it live afterwards (and check production and fidelity).
    #[serde(default = "yes")]
    commit: bool,
    /// It cannot run to completion in a pilot yet, and why: its pilot must still not be
    /// blocked, and the table shows it as expected to fail.
    #[serde(default)]
    xfail: Option<String>,
    /// Why the live run cannot match the pilot edge for edge (the commit must still succeed
    /// and harm nothing; its fidelity error is recorded, not gated).
    #[serde(default)]
    fidelity_exempt: Option<String>,
    /// Files (relative to production) the operation writes: after its pilot each is in the
    /// run's overlay, not empty, and not in production; after the commit, in production.
    #[serde(default)]
    writes: Vec<String>,
}

fn yes() -> bool {
    true
}

struct Scenario {
    name: String,
    dir: PathBuf,
    spec: Spec,
    prod: PathBuf,
    scratch: common::Scratch,
    suite: &'static str,
}

impl Scenario {
    fn load(name: &str) -> Scenario {
        let dir = Path::new(SCENARIOS).join(name);
        let text = fs::read_to_string(dir.join("scenario.toml")).unwrap_or_else(|e| panic!("{name}/scenario.toml: {e}"));
        let spec: Spec = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}/scenario.toml: {e}"));
        Scenario::at(name, dir, spec, "fixed.sh", "recovery")
    }

    /// A routine operation (tests/scenarios/routine/NAME), with what its pilot must say.
    fn load_routine(name: &str) -> (Scenario, RoutineSpec) {
        let dir = Path::new(ROUTINE).join(name);
        let text = fs::read_to_string(dir.join("scenario.toml")).unwrap_or_else(|e| panic!("routine/{name}/scenario.toml: {e}"));
        let r: RoutineSpec = toml::from_str(&text).unwrap_or_else(|e| panic!("routine/{name}/scenario.toml: {e}"));
        let expect = Expect { rule: r.expect.rule.clone(), component: r.expect.component.clone(), effect: r.expect.effect.clone() };
        let spec = Spec { class: r.operation.clone(), policy: r.policy.clone(), timeout: r.timeout, ports: r.ports.clone(), expect };
        (Scenario::at(name, dir, spec, "benign.sh", "routine"), r)
    }

    fn at(name: &str, dir: PathBuf, spec: Spec, benign: &str, suite: &'static str) -> Scenario {
        for f in ["README.md", "prod.sh", "harmful.sh", benign, "check.sh"] {
            assert!(dir.join(f).is_file(), "{name}/ needs {f}");
        }
        // Production lives outside the scratch dir so a scenario's paths read like a host's.
        let prod = PathBuf::from(format!("/tmp/pilot-scn-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&prod);
        fs::create_dir_all(&prod).unwrap();
        let env: String = spec.ports.iter().map(|p| format!("{p}={}\n", free_port())).collect();
        fs::write(prod.join("scenario.env"), env).unwrap();
        Scenario { name: name.into(), dir, spec, prod, scratch: common::Scratch::new(), suite }
    }

    fn script(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn sh(&self, script: &str) -> Output {
        Command::new("sh").arg(self.script(script)).arg(&self.prod).current_dir(&self.prod).stdin(Stdio::null()).output().unwrap()
    }

    fn healthy(&self) -> Result<(), String> {
        let o = self.sh("check.sh");
        if o.status.success() { Ok(()) } else { Err(text(&o)) }
    }

    fn policy_args(&self) -> Vec<String> {
        let path = |p: &str| match p {
            "default" => p.to_string(),
            p if self.dir.join(p).is_file() => self.dir.join(p).display().to_string(),
            p => format!("{POLICIES}/{p}"),
        };
        self.spec.policy.iter().flat_map(|p| ["--policy".to_string(), path(p)]).collect()
    }

    fn pilot(&self, args: &[String]) -> Output {
        Command::new(PILOT)
            .args(args)
            .current_dir(&self.prod)
            .env("PILOT_JOURNAL", self.scratch.path().join("journal.jsonl"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `pilot run` of one of the scenario's actions; the run directory and its outcome.
    fn pilot_run(&self, action: &str) -> Piloted {
        let run = self.scratch.path().join(action.trim_end_matches(".sh"));
        let mut args: Vec<String> = vec!["run".into(), "--out".into(), run.display().to_string()];
        args.extend(["--timeout".into(), format!("{}s", self.spec.timeout)]);
        args.extend(self.policy_args());
        args.extend(["--".into(), "sh".into(), self.script(action), self.prod.display().to_string()]);
        let t = Instant::now();
        let out = self.pilot(&args);
        let secs = t.elapsed().as_secs_f64();
        let verdict = read_json(&run.join("verdict.json"));
        let graph = read_json(&run.join("graph.json"));
        Piloted { run, out, secs, verdict, graph }
    }

    fn record(&self, twin: &str, expected: &str, p: &Piloted, ok: bool) {
        self.record_with(twin, expected, p, ok, json!({}));
    }

    /// One line of the results file; `extra` adds fields (the routine suite's).
    fn record_with(&self, twin: &str, expected: &str, p: &Piloted, ok: bool, extra: Value) {
        let Ok(path) = std::env::var("PILOT_SCENARIO_RESULTS") else { return };
        let v = &p.verdict;
        let mut line = json!({
            "suite": self.suite,
            "scenario": self.name,
            "class": self.spec.class,
            "twin": twin,
            "expected": expected,
            "verdict": v["verdict"],
            "exit": p.out.status.code(),
            "ok": ok,
            "false_alarm": twin == "benign" && (p.out.status.code() == Some(3) || v["verdict"] == "block"),
            "secs": (p.secs * 100.0).round() / 100.0,
            "nodes": p.graph["nodes"].as_array().map_or(0, Vec::len),
            "edges": p.graph["edges"].as_array().map_or(0, Vec::len),
            "violations": v["violations"].as_array().map(|a| a.iter().map(|x| json!({"rule": x["rule"], "component": x["component"]})).collect::<Vec<_>>()),
        });
        if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
            line.extend(extra.clone());
        }
        let mut f = fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        f.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// End the services prod.sh started and clean up after it (teardown.sh).
    fn teardown(&self) {
        let _ = Command::new("sh").arg(Path::new(SCENARIOS).join("teardown.sh")).arg(&self.prod).status();
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.teardown();
    }
}

struct Piloted {
    run: PathBuf,
    out: Output,
    secs: f64,
    verdict: Value,
    graph: Value,
}

fn read_json(path: &Path) -> Value {
    fs::read_to_string(path).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The whole scenario, steps 1 to 5 of the module doc.
fn scenario(name: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scenario::load(name);
    let up = s.sh("prod.sh");
    assert!(up.status.success(), "{name}: prod.sh failed:\n{}", text(&up));
    s.healthy().unwrap_or_else(|e| panic!("{name}: production unhealthy before the pilot: {e}"));

    // The harmful action: blocked, and says who was harmed and how.
    let bad = s.pilot_run("harmful.sh");
    let e = &s.spec.expect;
    let violation = bad.verdict["violations"].as_array().into_iter().flatten().find(|v| {
        v["rule"] == e.rule.as_str()
            && v["component"].as_str().is_some_and(|c| c.contains(&e.component))
            && v["effects"].as_array().is_some_and(|fx| fx.iter().any(|x| x == e.effect.as_str()))
    });
    let caught = bad.out.status.code() == Some(3) && violation.is_some();
    s.record("harmful", "block", &bad, caught);
    assert!(
        caught,
        "{name}: harmful action not caught as {} on {} ({}): exit {:?}\n{}\nverdict: {}",
        e.rule,
        e.component,
        e.effect,
        bad.out.status.code(),
        text(&bad.out),
        serde_json::to_string_pretty(&bad.verdict["violations"]).unwrap()
    );
    s.healthy().unwrap_or_else(|e| panic!("{name}: the pilot changed production: {e}"));
    // The page an operator pastes into the ticket names the harmed component and marks the edge.
    let page = fs::read_to_string(bad.run.join("report.html")).unwrap_or_default();
    assert!(page.contains("violating") && page.contains(&e.component), "{name}: report.html does not show the violation on {}", e.component);

    // The benign twin: passes, commits live, stays faithful, harms nothing.
    let good = s.pilot_run("fixed.sh");
    let passed = good.out.status.code() == Some(0) && good.verdict["verdict"] != "block";
    s.record("benign", "pass", &good, passed);
    assert!(passed, "{name}: false alarm on the fixed action: exit {:?}\n{}", good.out.status.code(), text(&good.out));
    s.healthy().unwrap_or_else(|e| panic!("{name}: the pilot of the fixed action changed production: {e}"));
    let commit = s.pilot(&["commit".into(), good.run.display().to_string()]);
    assert_eq!(commit.status.code(), Some(0), "{name}: commit of the fixed action:\n{}", text(&commit));
    let fidelity = read_json(&good.run.join("fidelity.json"));
    assert!(fidelity["within_gate"] == true, "{name}: fidelity outside the gate: {fidelity}");
    s.healthy().unwrap_or_else(|e| panic!("{name}: the fixed action, run live, harmed production: {e}"));

    // The control: without the pilot the harmful action really does harm production.
    let control = s.sh("harmful.sh");
    let harmed = common::wait_until(Duration::from_secs(10), || s.healthy().is_err());
    assert!(harmed, "{name}: the harmful action run live did not harm production, so the scenario proves nothing:\n{}", text(&control));
}

/// A routine operation and its harmful twin (tests/scenarios/routine/NAME).
fn routine(name: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, r) = Scenario::load_routine(name);
    let up = s.sh("prod.sh");
    assert!(up.status.success(), "{name}: prod.sh failed:\n{}", text(&up));
    s.healthy().unwrap_or_else(|e| panic!("{name}: production unhealthy before the pilot: {e}"));

    // The harmful twin: blocked, naming who was harmed and how; production untouched.
    let bad = s.pilot_run("harmful.sh");
    let e = &s.spec.expect;
    let caught = bad.out.status.code() == Some(3)
        && bad.verdict["violations"].as_array().into_iter().flatten().any(|v| {
            v["rule"] == e.rule.as_str()
                && v["action"] == "block"
                && v["component"].as_str().is_some_and(|c| c.contains(&e.component))
                && v["effects"].as_array().is_some_and(|fx| fx.iter().any(|x| x == e.effect.as_str()))
        });
    s.record_with("harmful", "block", &bad, caught, json!({"operation": r.operation, "twin_of": r.twin}));
    assert!(
        caught,
        "{name}: harmful twin ({}) not blocked as {} on {} ({}): exit {:?}\n{}\nverdict: {}",
        r.twin,
        e.rule,
        e.component,
        e.effect,
        bad.out.status.code(),
        text(&bad.out),
        serde_json::to_string_pretty(&bad.verdict["violations"]).unwrap()
    );
    s.healthy().unwrap_or_else(|e| panic!("{name}: the pilot of the harmful twin changed production: {e}"));

    // The routine operation: passes or warns, with exactly the rules its scenario.toml names.
    let good = s.pilot_run("benign.sh");
    let verdict = good.verdict["verdict"].as_str().unwrap_or("none").to_string();
    let rules: BTreeSet<String> =
        good.verdict["violations"].as_array().into_iter().flatten().filter_map(|v| v["rule"].as_str().map(str::to_string)).collect();
    let expected: BTreeSet<String> = r.benign.rules.iter().cloned().collect();
    let blocked = good.out.status.code() == Some(3) || verdict == "block";
    let as_said = verdict == r.benign.verdict && rules == expected;
    let exit = good.out.status.code();
    let ok = match &r.benign.xfail {
        Some(_) => !blocked && as_said,
        None => exit == Some(0) && as_said,
    };
    let xpass = r.benign.xfail.is_some() && exit == Some(0);
    s.record_with(
        "benign",
        &r.benign.verdict,
        &good,
        ok,
        json!({"operation": r.operation, "twin_of": r.twin, "xfail": r.benign.xfail, "xpass": xpass}),
    );
    assert!(
        ok,
        "{name}: the routine operation ({}) should {} with {:?}{}: exit {exit:?}, {verdict} with {rules:?}\n{}",
        r.operation,
        r.benign.verdict,
        expected,
        if r.benign.xfail.is_some() { " (expected to fail, but never blocked)" } else { ", exit 0" },
        text(&good.out)
    );
    // graph.json holds what the verdict needed (logs, signal dispositions, new files):
    // `pilot check` of the run directory says the same.
    let check = s.pilot(&["check".into(), "--json".into(), good.run.display().to_string()]);
    let rechecked: Value = serde_json::from_slice(&check.stdout).unwrap_or(Value::Null);
    assert_eq!(rechecked["verdict"], good.verdict["verdict"], "{name}: pilot check disagrees with the run:\n{}", text(&check));
    if xpass {
        eprintln!("{name}: expected to fail ({}), but it passes now: drop `xfail` from its scenario.toml", r.benign.xfail.as_deref().unwrap_or(""));
    }
    s.healthy().unwrap_or_else(|e| panic!("{name}: the pilot of the routine operation changed production: {e}"));
    for w in &r.benign.writes {
        let live = s.prod.join(w);
        let copy = common::upper_of(&good.run, &live).unwrap_or_else(|| panic!("{name}: no overlay holds {}", live.display()));
        let size = fs::metadata(&copy).map(|m| if m.is_dir() { fs::read_dir(&copy).map_or(0, |d| d.count() as u64) } else { m.len() }).unwrap_or(0);
        assert!(size > 0, "{name}: the pilot's {w} is not in its overlay ({}), or empty", copy.display());
        assert!(!live.exists(), "{name}: the pilot's {w} reached production");
    }
    if r.benign.commit && r.benign.xfail.is_none() {
        let commit = s.pilot(&["commit".into(), good.run.display().to_string()]);
        assert_eq!(commit.status.code(), Some(0), "{name}: commit of the routine operation:\n{}", text(&commit));
        let fidelity = read_json(&good.run.join("fidelity.json"));
        assert!(
            fidelity["within_gate"] == true || r.benign.fidelity_exempt.is_some(),
            "{name}: fidelity outside the gate: {fidelity}"
        );
        s.healthy().unwrap_or_else(|e| panic!("{name}: the routine operation, run live, harmed production: {e}"));
        for w in &r.benign.writes {
            assert!(s.prod.join(w).exists(), "{name}: the commit did not write {w}");
        }
    }

    // The control: without the pilot the harmful twin really does harm production.
    let control = s.sh("harmful.sh");
    let harmed = common::wait_until(Duration::from_secs(10), || s.healthy().is_err());
    assert!(harmed, "{name}: the harmful twin run live did not harm production, so it proves nothing:\n{}", text(&control));
}

/// Every folder of `root` holding a scenario.toml is in `listed` (has its test).
fn every_folder_listed(root: &str, listed: &[&str]) {
    for entry in fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        if entry.path().join("scenario.toml").exists() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(listed.contains(&name.as_str()), "{root}/{name} has no test in tests/scenarios.rs");
        }
    }
}

macro_rules! routine {
    ($($test:ident => $dir:literal,)*) => {
        $(#[test] fn $test() { routine($dir); })*

        /// Every folder of tests/scenarios/routine/ has its test above.
        #[test]
        fn every_routine_folder_has_a_test() {
            let listed = [$($dir),*];
            every_folder_listed(ROUTINE, &listed);
        }
    };
}

macro_rules! scenarios {
    ($($test:ident => $dir:literal,)*) => {
        $(#[test] fn $test() { scenario($dir); })*

        /// Every folder of tests/scenarios/ has its test above.
        #[test]
        fn every_scenario_folder_has_a_test() {
            let listed = [$($dir),*];
            every_folder_listed(SCENARIOS, &listed);
            assert!(listed.len() >= 12, "the suite covers at least 12 recovery-bug classes");
        }
    };
}

scenarios! {
    cleanup_deletes_the_wrong_data_directory => "cleanup-unset-variable",
    wal_replay_truncates_a_live_log => "wal-replay-truncate",
    config_restore_overwrites_a_live_config => "config-restore-overwrite",
    process_group_kill_hits_a_healthy_sibling => "process-group-kill",
    restart_removes_a_live_lock_and_starts_a_second_writer => "restart-removes-lock",
    repair_deletes_segments_a_live_reader_maps => "fsck-deletes-open-segments",
    rebalance_floods_a_live_peer => "rebalance-floods-peer",
    rejoin_storms_the_coordinator => "rejoin-reconnect-storm",
    index_fetch_renames_a_live_directory => "index-fetch-renames-live-dir",
    jvm_tool_damages_a_native_service => "jvm-tool-damages-native",
    harm_in_a_daemonized_grandchild => "daemonized-grandchild",
    recovery_fills_a_shared_disk => "recovery-fills-shared-disk",
    io_uring_compaction_rewrites_a_live_segment => "uring-compaction-rewrites-live-segment",
    member_remove_loses_etcd_quorum => "etcd-member-remove-quorum",
    empty_prefix_wipes_the_etcd_keyspace => "etcd-keyspace-wipe-prefix",
    config_push_lands_on_the_fleets_znode => "zookeeper-config-wrong-node",
}

routine! {
    routine_logrotate_copytruncate_warns => "logrotate-copytruncate",
    routine_logrotate_create_and_a_handled_sighup_warns => "logrotate-create-postrotate",
    routine_tar_backup_beside_live_data_passes => "tar-backup",
    routine_rsync_backup_beside_live_data_passes => "rsync-backup",
    routine_find_delete_of_old_rotated_logs_passes => "find-delete-old-logs",
    routine_du_df_ls_pass => "disk-usage",
    routine_a_jvm_tool_that_only_reads_passes => "jvm-reader",
    routine_pg_dump_of_a_live_postgresql => "pg-dump",
    routine_pg_basebackup_of_a_live_postgresql => "pg-basebackup",
}
