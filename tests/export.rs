//! `--export jsonl:PATH`: the same lines as events.jsonl, streamed to a file a log shipper
//! tails, for `pilot trace` and `pilot run`; appended to, never truncated; bad specs exit 2.
//! And `--log-format json`: structured logs, filtered by RUST_LOG.
mod common;

use std::{fs, process::{Command, Stdio}};

use common::{Scratch, pilot_bin};

fn pilot(args: &[&str], d: &Scratch) -> std::process::Output {
    Command::new(pilot_bin())
        .args(args)
        .env("PILOT_JOURNAL", d.path().join("journal.jsonl"))
        .current_dir(d.path())
        .stdin(Stdio::null())
        .output()
        .expect("running pilot")
}

fn lines(path: &str) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn trace_and_run_export_the_lines_of_events_jsonl_appending() {
    let d = Scratch::new();
    let export = d.file("shipper/events.jsonl", "{\"earlier\":true}\n");
    let spec = format!("jsonl:{export}");
    let touched = d.join("touched");
    let out = pilot(&["trace", "--out", &d.join("t"), "--export", &spec, "--", "touch", &touched], &d);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let traced = lines(&d.join("t/events.jsonl"));
    assert!(traced.iter().any(|l| l.contains(&touched)), "the trace saw the touch");
    let after_trace = lines(&export);
    assert_eq!(after_trace[0], "{\"earlier\":true}", "the export is appended to, not truncated");
    assert_eq!(after_trace[1..], traced[..]);

    let out = pilot(&["run", "--out", &d.join("r"), "--export", &spec, "--", "sh", "-c", &format!("echo x > {touched}.2")], &d);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = lines(&d.join("r/events.jsonl"));
    assert!(!run.is_empty());
    assert_eq!(lines(&export)[after_trace.len()..], run[..], "pilot run exports its events too");
}

#[test]
fn an_unknown_export_format_is_a_usage_error() {
    let d = Scratch::new();
    for bad in ["csv:/tmp/x", "jsonl:", "/tmp/events.jsonl"] {
        let out = pilot(&["trace", "--export", bad, "--", "true"], &d);
        assert_eq!(out.status.code(), Some(2), "--export {bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("jsonl:PATH"), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = pilot(&["trace", "--export", "jsonl:/nonexistent-dir/x.jsonl", "--", "true"], &d);
    assert_eq!(out.status.code(), Some(2), "an export that cannot be opened: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn log_format_json_writes_one_json_object_per_log_line_and_rust_log_filters() {
    let d = Scratch::new();
    let out = Command::new(pilot_bin())
        .args(["--log-format", "json", "trace", "--", "true"])
        .env("RUST_LOG", "pilot=debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<serde_json::Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(
        logs.iter().any(|l| l["level"] == "DEBUG" && l["fields"]["message"].as_str().is_some_and(|m| m.contains("probes loaded"))),
        "a JSON debug line: {stderr}"
    );
    let quiet = Command::new(pilot_bin()).args(["--log-format", "json", "trace", "--", "true"]).env("RUST_LOG", "warn").output().unwrap();
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("probes loaded"), "RUST_LOG=warn hides debug lines");
    drop(d);
}
