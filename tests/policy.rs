//! Policies, the recovery gate, commit with fidelity and the journal, on the real kernel:
//! real pilots of real scripts against a live service the test starts.
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use common::{Scratch, Service};
use serde_json::Value;

const PILOT: &str = env!("CARGO_BIN_EXE_pilot");
const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");


fn pilot(journal: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(PILOT).args(args).current_dir(cwd).env("PILOT_JOURNAL", journal).stdin(Stdio::null()).output().unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The store service with its data file, in a directory the shipped example policy names.
fn store(d: &Scratch) -> (PathBuf, PathBuf) {
    let svc_dir = PathBuf::from(format!("/tmp/pilot-policy-store-{}", d.path().file_name().unwrap().to_string_lossy()));
    std::fs::create_dir_all(&svc_dir).unwrap();
    let data = svc_dir.join("data.db");
    (svc_dir, data)
}

fn deleting_a_live_file_is_blocked(policy: Option<&str>, expect_rule: &str) {
    let d = Scratch::new();
    let (svc_dir, data) = store(&d);
    let svc = Service::start(&svc_dir, &data);
    let journal = d.path().join("journal.jsonl");
    let run = d.path().join("run");
    let script = format!("rm {}", data.display());
    let mut args = vec!["run", "--out", run.to_str().unwrap()];
    if let Some(p) = policy {
        args.extend(["--policy", p]);
    }
    args.extend(["--", "sh", "-c", &script]);
    let o = pilot(&journal, d.path(), &args);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(data.exists(), "production file untouched");
    let v = json(&run.join("verdict.json"));
    assert_eq!(v["verdict"], "block");
    let viol = v["violations"].as_array().unwrap().iter().find(|x| x["rule"] == expect_rule).unwrap_or_else(|| panic!("{v}"));
    assert!(viol["target"].as_str().unwrap().ends_with("data.db"), "{viol}");
    let component = viol["component"].as_str().unwrap();
    assert!(component.contains("store"), "names the service: {viol}");
    assert!(viol["effects"].as_array().unwrap().iter().any(|e| e == "unlink"));
    assert!(!viol["events"].as_array().unwrap().is_empty(), "evidence events");
    assert!(text(&o).contains(expect_rule));
    // Control: the same script without pilot does delete it.
    Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(!data.exists(), "the action is harmful for real");
    drop(svc);
    let _ = std::fs::remove_dir_all(&svc_dir);
}

#[test]
fn default_policy_blocks_deleting_a_live_services_open_file() {
    deleting_a_live_file_is_blocked(None, "live-file-destroyed");
}

#[test]
fn shipped_policy_blocks_deleting_another_components_data() {
    let policy = format!("{POLICIES}/stateful-service.toml");
    deleting_a_live_file_is_blocked(Some(&policy), "protect-other-services-data");
}

#[test]
fn benign_pilot_passes_and_commits_with_fidelity() {
    let d = Scratch::new();
    let journal = d.path().join("journal.jsonl");
    let run = d.path().join("run");
    let work = d.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let o = pilot(&journal, &work, &["run", "--out", run.to_str().unwrap(), "--", "sh", "-c", "mkdir -p out && echo done > out/report.txt"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!work.join("out").exists(), "the pilot changed nothing for real");
    assert_eq!(json(&run.join("verdict.json"))["verdict"], "pass");

    let o = pilot(&journal, &work, &["commit", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(work.join("out/report.txt")).unwrap(), "done\n", "commit ran it live");
    let f = json(&run.join("fidelity.json"));
    assert_eq!(f["error"], 0.0, "a deterministic action is predicted exactly: {f}");
    assert_eq!(f["within_gate"], true);
    assert!(run.join("live/graph.json").exists());
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(report.contains("<p id=\"fidelity\" class=\"ok\">fidelity error <b>0.000</b>"), "commit rewrote report.html with pilot vs live");

    let o = pilot(&journal, &work, &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let kinds: Vec<String> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["run", "verdict", "commit"]);
}

#[test]
fn nondeterministic_action_shows_a_fidelity_error() {
    let d = Scratch::new();
    let journal = d.path().join("journal.jsonl");
    let run = d.path().join("run");
    let work = d.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let script = "f=out.$(date +%N); echo x > $f";
    let o = pilot(&journal, &work, &["run", "--out", run.to_str().unwrap(), "--", "sh", "-c", script]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = pilot(&journal, &work, &["commit", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let f = json(&run.join("fidelity.json"));
    assert!(f["error"].as_f64().unwrap() > 0.0, "different file names live: {f}");
    assert!(!f["only_pilot"].as_array().unwrap().is_empty());
    assert!(!f["only_live"].as_array().unwrap().is_empty());
}

#[test]
fn commit_refuses_a_blocked_pilot_unless_forced_and_journaled() {
    let d = Scratch::new();
    let (svc_dir, data) = store(&d);
    let svc = Service::start(&svc_dir, &data);
    let journal = d.path().join("journal.jsonl");
    let run = d.path().join("run");
    let script = format!("truncate -s 0 {}", data.display());
    let o = pilot(&journal, d.path(), &["run", "--out", run.to_str().unwrap(), "--", "sh", "-c", &script]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let size_before = std::fs::metadata(&data).unwrap().len();
    assert!(size_before > 0);

    let o = pilot(&journal, d.path(), &["commit", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("refusing"), "{}", text(&o));
    assert!(!run.join("live").exists());
    assert!(std::fs::metadata(&data).unwrap().len() >= size_before, "nothing ran");

    let o = pilot(&journal, d.path(), &["commit", "--force", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let journal_text = std::fs::read_to_string(&journal).unwrap();
    assert!(journal_text.contains("\"kind\":\"force\""), "{journal_text}");
    drop(svc);
    let _ = std::fs::remove_dir_all(&svc_dir);
}

#[test]
fn journal_verify_fails_once_edited() {
    let d = Scratch::new();
    let journal = d.path().join("journal.jsonl");
    let run = d.path().join("run");
    let o = pilot(&journal, d.path(), &["run", "--out", run.to_str().unwrap(), "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ok = pilot(&journal, d.path(), &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0));
    let edited = std::fs::read_to_string(&journal).unwrap().replace("\"pass\"", "\"warn\"");
    std::fs::write(&journal, edited).unwrap();
    let bad = pilot(&journal, d.path(), &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("entry 2 was edited"), "{}", text(&bad));
}

#[test]
fn check_reevaluates_and_bad_policies_exit_2_naming_file_line_key() {
    let d = Scratch::new();
    let journal = d.path().join("journal.jsonl");
    let run = d.path().join("run");
    let o = pilot(&journal, d.path(), &["run", "--out", run.to_str().unwrap(), "--", "sh", "-c", "echo hi > mine.txt"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for p in ["default.toml", "stateful-service.toml", "network-budget.toml"] {
        let o = pilot(&journal, d.path(), &["check", "--policy", &format!("{POLICIES}/{p}"), run.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{p}: {}", text(&o));
    }
    let bad = d.path().join("bad.toml");
    std::fs::write(&bad, "[gate]\nmax_risk = 0.5\nmax_riks = 0.2\n").unwrap();
    let o = pilot(&journal, d.path(), &["check", "--policy", bad.to_str().unwrap(), run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml:3:") && err.contains("max_riks"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_liveness_probe_is_not_a_signal_but_a_kill_is() {
    let d = Scratch::new();
    let (svc_dir, data) = store(&d);
    let svc = Service::start(&svc_dir, &data);
    let pid = svc.pid().to_string();
    let journal = d.path().join("journal.jsonl");
    // `kill -0 PID`: "is it alive?", which runbooks ask before acting. Nothing is delivered.
    let probe = d.path().join("probe");
    let o = pilot(&journal, d.path(), &["run", "--out", probe.to_str().unwrap(), "--", "sh", "-c", &format!("test -d /proc/{pid} && kill -0 {pid}; true")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&probe.join("verdict.json"))["verdict"], "pass");
    // The same script with a real signal is blocked, naming the service.
    let kill = d.path().join("kill");
    let o = pilot(&journal, d.path(), &["run", "--out", kill.to_str().unwrap(), "--", "sh", "-c", &format!("kill -TERM {pid}; true")]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let v = json(&kill.join("verdict.json"));
    assert!(v["violations"].as_array().unwrap().iter().any(|x| x["rule"] == "live-process-signalled" && x["component"].as_str().unwrap().contains("store")), "{v}");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the pilot's SIGTERM did not reach the service");
    drop(svc);
    let _ = std::fs::remove_dir_all(&svc_dir);
}

/// The run directory under a live data directory, pilot's stdout.log there, and a command that
/// holds that directory as fd 5 (the fd the sandbox's own handshake wrote on before the trace
/// started at the exec): none of pilot's machinery is the command's effect.
#[test]
fn pilots_own_machinery_is_not_the_commands_effect() {
    let d = Scratch::new();
    let (svc_dir, data) = store(&d);
    let svc = Service::start(&svc_dir, &data);
    let journal = d.path().join("journal.jsonl");
    let run = svc_dir.join("pilot-run");
    let script = format!("exec 5<{}; echo hello from the pilot", svc_dir.display());
    // A file as pilot's stdout: the sandbox gets run/stdout.log instead.
    let out = std::fs::File::create(d.path().join("pilot.stdout")).unwrap();
    let o = Command::new(PILOT)
        .args(["run", "--out", run.to_str().unwrap(), "--", "sh", "-c", &script])
        .current_dir(d.path())
        .env("PILOT_JOURNAL", &journal)
        .stdin(Stdio::null())
        .stdout(out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&run.join("verdict.json"))["verdict"], "pass");
    assert_eq!(std::fs::read_to_string(run.join("stdout.log")).unwrap(), "hello from the pilot\n");
    let events: Vec<Value> = std::fs::read_to_string(run.join("events.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let first = &events[0];
    assert_eq!((first["kind"].as_str(), first["comm"].as_str()), (Some("exec"), Some("sh")), "the trace starts at the exec: {first}");
    assert!(first["start_ns"].as_u64().unwrap() > 0, "the root's identity is known from its first event: {first}");
    assert!(events.iter().all(|e| e["start_ns"] == first["start_ns"] || e["pid"] != first["pid"]), "one identity for the root");
    let stdout_log = run.join("stdout.log").display().to_string();
    let writes: Vec<&Value> = events.iter().filter(|e| e["kind"] == "write").collect();
    assert!(writes.iter().all(|w| w["fd"] != 5), "no write on fd 5: {writes:?}");
    assert!(writes.iter().any(|w| w["path"] == stdout_log.as_str() && w["stdio"] == true), "{writes:?}");
    let graph = json(&run.join("graph.json"));
    assert!(graph["edges"].as_array().unwrap().iter().all(|e| e["kind"] != "write"), "output is not an effect: {graph}");
    // Control: the directory is a live data directory: changing a file there is blocked.
    std::fs::write(svc_dir.join("notes.txt"), "keep\n").unwrap();
    let run2 = d.path().join("run2");
    let o = pilot(&journal, &svc_dir, &["run", "--out", run2.to_str().unwrap(), "--", "sh", "-c", "echo more >> notes.txt"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(json(&run2.join("verdict.json"))["violations"].as_array().unwrap().iter().any(|v| v["rule"] == "live-data-dir-changed"));
    drop(svc);
    let _ = std::fs::remove_dir_all(&svc_dir);
}

/// `pilot check` of run directories written before pilot knew logs, signals and its own
/// machinery: the new policy, with what the old graph.json has.
#[test]
fn check_of_a_run_from_before_routine_operations_shows_the_new_verdict() {
    let d = Scratch::new();
    let journal = d.path().join("journal.jsonl");
    let check = |name: &str| pilot(&journal, d.path(), &["check", "--json", &format!("{FIXTURES}/pre-routine/{name}")]);
    // Blocked then as `write DATA_DIR` by tar: the sandbox's handshake write, resolved to the
    // directory the command held as fd 5. A write to a directory did not happen: it passes.
    let o = check("tar-backup");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ev: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ev["verdict"], "pass", "{ev}");
    // copytruncate: the old graph does not say which files are logs, so the truncate of a file
    // a live process holds open for writing is still blocked.
    let o = check("logrotate-copytruncate");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let ev: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(ev["violations"].as_array().unwrap().iter().any(|v| v["rule"] == "live-file-destroyed" && v["effects"] == serde_json::json!(["truncate"])), "{ev}");
}
