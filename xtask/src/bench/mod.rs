//! `cargo xtask bench`: measure pilot's overhead, throughput, start time and footprint in one
//! run (see BENCHMARKS.md), print the table and write target/bench/report.json.
//!
//! `--quick` is the CI smoke test: tiny sizes, one round, the debug build the tests already
//! made; it checks every figure is produced, never that a goal is met.
mod daemon;
mod measure;
mod report;
mod scaling;
mod sections;

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::bootstrap::{BENCH_APT_PACKAGES, apt_packages, bootstrap};
use crate::cmd::{cargo, probe, command, run, target_dir, workspace_root};
use measure::Env;
use report::Report;

const BENCHLOOP_C: &str = include_str!("benchloop.c");

pub fn bench(quick: bool, only: &[String]) -> anyhow::Result<ExitCode> {
    type Section = fn(&Env, &mut Report) -> anyhow::Result<()>;
    let sections: [(&str, Section); 9] = [
        ("untracked overhead", sections::untracked),
        ("tracked overhead", sections::tracked),
        ("real workload", sections::workload),
        ("throughput", sections::throughput),
        ("pilot start", sections::start),
        ("concurrent runs", daemon::concurrent),
        ("warm-daemon start", daemon::start),
        ("8 concurrent pilots", daemon::eight),
        ("scaling", scaling::scaling),
    ];
    if let Some(unknown) = only.iter().find(|o| !sections.iter().any(|(name, _)| name == o)) {
        let names: Vec<&str> = sections.iter().map(|(name, _)| *name).collect();
        bail!("no bench section `{unknown}`: the sections are {}", names.join(", "));
    }
    bootstrap("bench")?;
    apt_packages(BENCH_APT_PACKAGES)?;
    let env = prepare(quick)?;
    let mut report = Report::default();
    for (name, section) in sections.into_iter().filter(|(name, _)| only.is_empty() || only.iter().any(|o| o == name)) {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load.split_whitespace().next().unwrap_or("?").to_string();
        println!("[bench] {name} (load average {load})...");
        report.set(name, "loadavg_1m_at_start", json!(load));
        if let Err(err) = section(&env, &mut report) {
            report.failed(name, "section", &err);
        }
    }
    measure::remove(&env.work);
    report.set("machine", "about", machine(quick));
    report.set("machine", "loop_files_on", json!(env.loops.kind));
    drop(env);
    let table = report.table();
    println!("\n{table}");
    // A partial run leaves the full run's report alone.
    let path = target_dir().join("bench").join(if only.is_empty() { "report.json" } else { "report-partial.json" });
    let mut json = report.json.clone();
    json.insert("table".into(), json!(table));
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("[bench] wrote {}", path.display());
    if report.failures() > 0 {
        bail!("{} figure(s) could not be produced: see FAILED in the table", report.failures());
    }
    Ok(ExitCode::SUCCESS)
}

/// Build pilot and benchloop, and clear the scratch directory.
fn prepare(quick: bool) -> anyhow::Result<Env> {
    let profile = if quick { "debug" } else { "release" };
    let mut build = cargo();
    build.current_dir(workspace_root()).args(["build", "--bin", "pilot"]);
    if !quick {
        build.arg("--release");
    }
    run(&mut build)?;
    let pilot = target_dir().join(profile).join("pilot");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let source = dir.join("benchloop.c");
    std::fs::write(&source, BENCHLOOP_C)?;
    let benchloop = dir.join("benchloop");
    run(command("gcc").args(["-O2", "-Wall", "-o"]).arg(&benchloop).arg(&source))?;
    let work = dir.join("work");
    measure::remove(&work);
    std::fs::create_dir_all(&work)?;
    let loops = measure::LoopFs::mount(dir.join("loop-fs"))?;
    Ok(Env { pilot, benchloop, work, quick, rounds: if quick { 1 } else { 5 }, loops })
}

/// What the numbers were taken on.
fn machine(quick: bool) -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let model = read("/proc/cpuinfo").lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']).to_string());
    json!({
        "kernel": probe(command("uname").arg("-r")).unwrap_or_default().trim(),
        "cpu": model,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg_at_end": read("/proc/loadavg").trim(),
        "date_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "quick": quick,
    })
}
