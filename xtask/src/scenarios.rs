//! `cargo xtask scenarios`: run the recovery-failure suite (tests/scenarios/, driven by
//! tests/scenarios.rs) and the routine-operations suite (tests/scenarios/routine/), and report
//! them as a table, the detection rate (the figure the README sets beside PILOT's 17 of 20) and
//! the false-alarm rate over benign operations (fixed twins and routine operations).
//!
//! The test binary appends one JSON line per piloted action to $PILOT_SCENARIO_RESULTS;
//! `cargo xtask test` sets it too and prints the same report after the whole suite.
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use serde_json::Value;

use crate::{
    bootstrap::bootstrap,
    cmd::{cargo, status, target_dir, workspace_root},
    exit_code,
};

pub const RESULTS_ENV: &str = "PILOT_SCENARIO_RESULTS";

/// Where the test binary writes its lines (emptied before a run).
pub fn results_file() -> anyhow::Result<PathBuf> {
    let dir = target_dir().join("scenarios");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("results.jsonl");
    let _ = fs::remove_file(&file);
    Ok(file)
}

pub fn scenarios(filter: Option<&str>) -> anyhow::Result<ExitCode> {
    bootstrap("scenarios")?;
    let results = results_file()?;
    let mut cmd = cargo();
    cmd.current_dir(workspace_root())
        .env(RESULTS_ENV, &results)
        .args(["test", "-p", "agent", "--test", "scenarios", "--"])
        .args(filter);
    let tests = status(&mut cmd)?;
    let caught_all = report(&results, filter.is_none())?;
    Ok(if !tests.success() {
        exit_code(tests)
    } else if caught_all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Print the table, the detection rate and the false-alarm rate; writes
/// target/scenarios/report.json. True when every harmful action was blocked and no benign one
/// (fixed twin or routine operation) was blocked or failed its expectation.
pub fn report(results: &Path, whole_suite: bool) -> anyhow::Result<bool> {
    let rows: Vec<Value> = fs::read_to_string(results)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let suite = |r: &Value, s: &str| r["suite"].as_str().unwrap_or("recovery") == s;
    let count = |s: &str, twin: &str, f: &dyn Fn(&Value) -> bool| rows.iter().filter(|r| suite(r, s) && r["twin"] == twin && f(r)).count();
    let ok = |r: &Value| r["ok"] == true;
    let any = |_: &Value| true;
    // A false alarm: a benign action blocked. A fixed twin that fails otherwise counts too.
    let alarm = |r: &Value| r["false_alarm"] == true || (suite(r, "recovery") && r["ok"] != true);
    let xfail = |r: &Value| r["xfail"].is_string();

    let total = if whole_suite { folder_count("tests/scenarios") } else { count("recovery", "harmful", &any) };
    let caught = count("recovery", "harmful", &ok);
    let fixed = count("recovery", "benign", &any);
    let fixed_alarms = count("recovery", "benign", &alarm);
    let routine_total = if whole_suite { folder_count("tests/scenarios/routine") } else { count("routine", "benign", &any) };
    let routine_ran = count("routine", "benign", &any);
    let routine_ok = count("routine", "benign", &|r| ok(r) && !xfail(r));
    let routine_xfail = count("routine", "benign", &|r| ok(r) && xfail(r));
    let routine_alarms = count("routine", "benign", &alarm);
    let routine_unexpected = count("routine", "benign", &|r| !ok(r) && !alarm(r));
    let twins_caught = count("routine", "harmful", &ok);
    let harmful = total + routine_total;
    let detected = caught + twins_caught;
    let benign = fixed + routine_ran;
    let alarms = fixed_alarms + routine_alarms;

    print!("{}", table(&rows));
    let pct = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
    println!("scenarios: {caught} of {total} caught, {fixed_alarms} false alarms (of {fixed} fixed twins); PILOT (NSDI'26) caught 17 of 20");
    println!(
        "routine operations: {} of {routine_total} as expected ({routine_ok} pass or warn, {routine_xfail} expected to fail and never blocked), {routine_alarms} false alarms, {routine_unexpected} otherwise off; their harmful twins: {twins_caught} of {routine_total} blocked",
        routine_ok + routine_xfail
    );
    println!(
        "detection rate {detected}/{harmful} ({:.0}%) over harmful actions; false-alarm rate {alarms}/{benign} ({:.0}%) over benign operations",
        pct(detected, harmful),
        pct(alarms, benign)
    );
    let report = serde_json::json!({
        "schema": "pilot.scenarios/v1",
        "scenarios": total,
        "caught": caught,
        "benign": fixed,
        "false_alarms": fixed_alarms,
        "routine": {
            "operations": routine_total,
            "as_expected": routine_ok,
            "expected_to_fail": routine_xfail,
            "false_alarms": routine_alarms,
            "twins_blocked": twins_caught,
        },
        "detection_rate": pct(detected, harmful) / 100.0,
        "false_alarm_rate": pct(alarms, benign) / 100.0,
        "rows": rows,
    });
    let path = results.with_file_name("report.json");
    fs::write(&path, serde_json::to_string_pretty(&report)? + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(caught == total
        && fixed_alarms == 0
        && fixed == total
        && twins_caught == routine_total
        && routine_ok + routine_xfail == routine_total)
}

fn table(rows: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<28} {:<8} {:<56} {:<8} {:<8} {:>4} {:>6}  {}",
        "suite", "scenario", "twin", "class / operation", "verdict", "expected", "exit", "time", "rules"
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let verdict = if r["ok"] == true { s("verdict") } else { format!("{}!", s("verdict")) };
        // A routine row's harmful twin: what the twin does, not the operation it is the twin of.
        let class = if r["suite"] == "routine" && r["twin"] == "harmful" { s("twin_of") } else { s("class") };
        let class: String = class.chars().take(56).collect();
        let mut rules: Vec<String> = r["violations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["rule"].as_str().map(str::to_string))
            .collect();
        rules.dedup();
        let mut note = rules.join(",");
        if r["xfail"].is_string() {
            note.push_str(" (expected to fail: see its README)");
        }
        let _ = writeln!(
            out,
            "{:<8} {:<28} {:<8} {:<56} {:<8} {:<8} {:>4} {:>5.1}s  {}",
            r["suite"].as_str().unwrap_or("recovery"),
            s("scenario"),
            s("twin"),
            class,
            verdict,
            s("expected"),
            r["exit"].as_i64().map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
            r["secs"].as_f64().unwrap_or(0.0),
            note
        );
    }
    out
}

/// Folders of `dir` (from the workspace root) that hold a scenario.
fn folder_count(dir: &str) -> usize {
    let dir = workspace_root().join(dir);
    fs::read_dir(dir).map(|d| d.flatten().filter(|e| e.path().join("scenario.toml").is_file()).count()).unwrap_or(0)
}
