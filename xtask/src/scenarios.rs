//! `cargo xtask scenarios`: run the recovery-failure suite (tests/scenarios/, driven by
//! tests/scenarios.rs) and report it as a table and a detection rate, the figure the README
//! sets beside PILOT's 17 of 20.
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

/// Print the table and the detection rate; writes target/scenarios/report.json. True when
/// every scenario was caught and no benign twin was blocked.
pub fn report(results: &Path, whole_suite: bool) -> anyhow::Result<bool> {
    let rows: Vec<Value> = fs::read_to_string(results)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let total = if whole_suite { scenario_count() } else { rows.iter().filter(|r| r["twin"] == "harmful").count() };
    let caught = rows.iter().filter(|r| r["twin"] == "harmful" && r["ok"] == true).count();
    let benign = rows.iter().filter(|r| r["twin"] == "benign").count();
    let false_alarms = rows.iter().filter(|r| r["twin"] == "benign" && r["ok"] != true).count();
    print!("{}", table(&rows));
    let line = format!(
        "scenarios: {caught} of {total} caught, {false_alarms} false alarms (of {benign} benign twins); PILOT (NSDI'26) caught 17 of 20"
    );
    println!("{line}");
    let report = serde_json::json!({
        "schema": "pilot.scenarios/v1",
        "scenarios": total,
        "caught": caught,
        "benign": benign,
        "false_alarms": false_alarms,
        "rows": rows,
    });
    let path = results.with_file_name("report.json");
    fs::write(&path, serde_json::to_string_pretty(&report)? + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(caught == total && false_alarms == 0 && benign == total)
}

fn table(rows: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<30} {:<8} {:<58} {:<8} {:<8} {:>6}  {}", "scenario", "twin", "class", "verdict", "expected", "time", "graph");
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let verdict = if r["ok"] == true { s("verdict") } else { format!("{}!", s("verdict")) };
        let class: String = s("class").chars().take(58).collect();
        let _ = writeln!(
            out,
            "{:<30} {:<8} {:<58} {:<8} {:<8} {:>5.1}s  {} nodes, {} edges",
            s("scenario"),
            s("twin"),
            class,
            verdict,
            s("expected"),
            r["secs"].as_f64().unwrap_or(0.0),
            r["nodes"],
            r["edges"]
        );
    }
    out
}

/// Folders of tests/scenarios/ that hold a scenario.
fn scenario_count() -> usize {
    let dir = workspace_root().join("tests/scenarios");
    fs::read_dir(dir).map(|d| d.flatten().filter(|e| e.path().join("scenario.toml").is_file()).count()).unwrap_or(0)
}
