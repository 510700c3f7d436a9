//! Runs at the same time through one daemon share its resident probe set and nothing else:
//! each run's events, graph and verdict hold only what its own tree did, although every run
//! touches the same files; a run that floods its own ring buffer is incomplete, the runs
//! beside it are not; a task a finished run left behind reaches no later run.
mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Child, Stdio},
    time::Duration,
};

use common::{RUN_TIMEOUT, Scratch, effects, pids_with, wait_until};
use daemon::Daemon;
use serde_json::Value;

fn json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn events(dir: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(dir).join("events.jsonl")).unwrap_or_else(|e| panic!("{dir}/events.jsonl: {e}"));
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A gate the pilots read from the host (a file that exists before they start, rewritten in
/// place: an overlay reads a lower file's current content, where a file created later might
/// meet a cached "absent").
struct Gate(String);

impl Gate {
    fn new(d: &Scratch) -> Gate {
        Gate(d.file("gate", "wait\n"))
    }

    /// Shell that waits until the gate opens (at most 60 s).
    fn wait(&self) -> String {
        format!("n=0; while [ \"$(cat {})\" != go ] && [ $n -lt 3000 ]; do sleep 0.02; n=$((n+1)); done", self.0)
    }

    fn open(&self) {
        std::fs::write(&self.0, "go\n").unwrap();
    }
}

/// `pilot run --out DIR ... -- sh -c SCRIPT` through the daemon, in the background.
fn start_run(daemon: &Daemon, d: &Scratch, out: &str, extra: &[&str], script: &str) -> Child {
    let mut args = vec!["run", "--out", out];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    daemon.client(&args, d).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn finish(child: Child, name: &str) -> i32 {
    let out = child.wait_with_output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    eprintln!("--- {name}: exit {code}\n{}", String::from_utf8_lossy(&out.stderr));
    code
}

#[test]
fn runs_touching_the_same_files_at_once_see_only_their_own_effects() {
    const RUNS: usize = 4;
    let d = Scratch::new();
    let daemon = Daemon::start();
    let shared = d.mkdir("shared");
    for i in 0..5 {
        d.file(&format!("shared/f{i}"), "base\n");
    }
    let gate = Gate::new(&d);
    let tag = std::process::id();
    let mut clients = Vec::new();
    for n in 0..RUNS {
        // Every run appends to the same five files, deletes the same one and creates one of
        // its own; its marker names its processes.
        let marker = format!("pilot-concurrent-{tag}-{n}");
        let script = format!(
            "{wait}; for i in 0 1 2 3 4; do echo {marker} >> {shared}/f$i; done; rm {shared}/f0; touch {shared}/only-{n}; : {marker}",
            wait = gate.wait()
        );
        clients.push((marker, start_run(&daemon, &d, &d.join(&format!("run-{n}")), &[], &script)));
    }
    let all_waiting = wait_until(RUN_TIMEOUT, || clients.iter().all(|(m, _)| !pids_with(m).is_empty()));
    assert!(all_waiting, "every pilot's command runs at once before any makes an effect");
    gate.open();
    let codes: Vec<i32> = clients.into_iter().enumerate().map(|(n, (_, c))| finish(c, &format!("run {n}"))).collect();
    assert_eq!(codes, vec![0; RUNS], "each pilot passes, as it would alone");

    let mut pids_by_run: Vec<BTreeSet<u64>> = Vec::new();
    for n in 0..RUNS {
        let dir = d.join(&format!("run-{n}"));
        let summary = json(&format!("{dir}/summary.json"));
        assert_eq!(summary["complete"], true, "run {n}: {summary:#}");
        let evs = events(&dir);
        let own = format!("pilot-concurrent-{tag}-{n}");
        let execs: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "exec" && e["ret"] == 0).collect();
        let root = execs.iter().find(|e| e["argv"].to_string().contains(&own));
        assert!(root.is_some(), "run {n} traced its own command: {execs:?}");
        for other in (0..RUNS).filter(|m| *m != n) {
            let foreign = format!("pilot-concurrent-{tag}-{other}");
            let leaked: Vec<&Value> = evs.iter().filter(|e| e.to_string().contains(&foreign)).collect();
            assert!(leaked.is_empty(), "run {n} holds effects of run {other}: {leaked:?}");
            let only_other = format!("{shared}/only-{other}");
            assert!(!evs.iter().any(|e| e["path"] == only_other.as_str()), "run {n} saw run {other}'s file");
        }
        // Its own effects, each exactly once: five appends, one unlink, one file of its own.
        let writes: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "write" && e["path"].as_str().is_some_and(|p| p.starts_with(&shared))).collect();
        assert_eq!(writes.len(), 5, "run {n}: one aggregated write per shared file: {writes:?}");
        assert!(writes.iter().all(|w| w["bytes"].as_u64() == Some(own.len() as u64 + 1)), "run {n}: its own bytes only: {writes:?}");
        let unlinks = evs.iter().filter(|e| e["kind"] == "unlink" && e["path"] == format!("{shared}/f0").as_str()).count();
        assert_eq!(unlinks, 1, "run {n}: its own unlink, once");
        let graph = json(&format!("{dir}/graph.json"));
        let files: BTreeSet<String> = graph["nodes"].as_array().unwrap().iter().filter(|n| n["type"] == "file").filter_map(|n| n["path"].as_str().map(String::from)).collect();
        assert!(files.contains(&format!("{shared}/only-{n}")), "run {n}'s graph has its own file: {files:?}");
        pids_by_run.push(evs.iter().filter_map(|e| e["pid"].as_u64()).collect());
    }
    for a in 0..RUNS {
        for b in a + 1..RUNS {
            let both: Vec<&u64> = pids_by_run[a].intersection(&pids_by_run[b]).collect();
            assert!(both.is_empty(), "runs {a} and {b} share processes {both:?}");
        }
    }
    // Production untouched, whatever four pilots did to it.
    assert_eq!(std::fs::read_to_string(format!("{shared}/f0")).unwrap(), "base\n");
    assert!(!Path::new(&format!("{shared}/only-0")).exists());
    let status = daemon.status(&d);
    assert_eq!(status["runs"].as_array().unwrap().len(), RUNS, "all went through the daemon: {status}");
}

#[test]
fn a_run_flooding_its_ring_buffer_is_incomplete_and_the_runs_beside_it_are_not() {
    let d = Scratch::new();
    let daemon = Daemon::start();
    let gate = Gate::new(&d);
    let tag = std::process::id();
    let burst = d.mkdir("burst");
    // The flood: 20000 creations into a 4 KiB ring buffer, as tests/trace_loss.rs does in-process.
    let flood_marker = format!("pilot-flood-{tag}");
    let flood = format!("{}; {} burst {burst} 20000; : {flood_marker}", gate.wait(), effects());
    let flood_out = d.join("flood");
    let flooding = start_run(&daemon, &d, &flood_out, &["--ringbuf-kib", "4"], &flood);
    // Beside it, with the default buffer: a small job of its own, made while the flood runs.
    let quiet_marker = format!("pilot-quiet-{tag}");
    let note = d.join("note.txt");
    let quiet = format!("{}; for i in 1 2 3 4 5 6 7 8 9 10; do echo $i >> {note}; sleep 0.05; done; : {quiet_marker}", gate.wait());
    let quiet_out = d.join("quiet");
    let quieting = start_run(&daemon, &d, &quiet_out, &[], &quiet);
    assert!(
        wait_until(RUN_TIMEOUT, || !pids_with(&flood_marker).is_empty() && !pids_with(&quiet_marker).is_empty()),
        "both pilots run before either makes an effect"
    );
    gate.open();
    let flood_code = finish(flooding, "flood");
    let quiet_code = finish(quieting, "quiet");

    let flood_summary = json(&format!("{flood_out}/summary.json"));
    assert_eq!(flood_summary["complete"], false, "the flood lost events: {flood_summary:#}");
    assert!(flood_summary["lost_by_cause"]["ringbuf_full"].as_u64().unwrap_or(0) > 0, "{flood_summary:#}");
    assert_eq!(flood_code, 3, "an incomplete pilot is blocked (require_complete)");
    let verdict = json(&format!("{flood_out}/verdict.json"));
    assert!(verdict["gate_failures"].to_string().contains("lost"), "{verdict:#}");

    let quiet_summary = json(&format!("{quiet_out}/summary.json"));
    assert_eq!(quiet_summary["complete"], true, "the flood beside it cost it nothing: {quiet_summary:#}");
    assert_eq!(quiet_summary["lost_events"], 0);
    assert_eq!(quiet_code, 0, "and it passes");
    let appends = events(&quiet_out).iter().filter(|e| e["kind"] == "write" && e["path"] == note.as_str()).map(|e| e["count"].as_u64().unwrap_or(0)).sum::<u64>();
    assert_eq!(appends, 10, "every one of its appends is there");
}

#[test]
fn a_task_a_finished_run_left_behind_reaches_no_later_run() {
    let d = Scratch::new();
    let daemon = Daemon::start();
    let tag = std::process::id();
    let leftover = format!("pilot-leftover-{tag}");
    let target = d.file("leftover.txt", "");
    // A trace whose command leaves a daemon behind (its own session, out of the job a cancel
    // stops), writing every 50 ms.
    let script = format!("setsid sh -c 'while true; do echo x >> {target}; sleep 0.05; done; : {leftover}' </dev/null >/dev/null 2>&1 & sleep 60");
    let first = daemon.client(&["trace", "--out", &d.join("first"), "--", "sh", "-c", &script], &d).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let writing = || std::fs::metadata(&target).is_ok_and(|m| m.len() > 0);
    assert!(wait_until(RUN_TIMEOUT, writing), "the first run's daemon runs (it writes)");
    let _leftover = Killed(leftover.clone());
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    finish(first, "first");
    assert!(wait_until(Duration::from_secs(30), || daemon.status(&d)["runs"][0]["exit_code"] != Value::Null), "the first run ended");
    let survivors = pids_with(&leftover);
    assert!(!survivors.is_empty(), "its daemon outlived it (the control: it still writes)");
    let size = std::fs::metadata(&target).unwrap().len();

    let second = daemon.client(&["trace", "--out", &d.join("second"), "--", "sleep", "1"], &d).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    assert_eq!(finish(second, "second"), 0);
    assert!(std::fs::metadata(&target).unwrap().len() > size, "the leftover wrote while the second run traced");
    let evs = events(&d.join("second"));
    let leaked: Vec<&Value> = evs.iter().filter(|e| e["path"] == target.as_str() || e.to_string().contains(&leftover)).collect();
    assert!(leaked.is_empty(), "the second run holds the first run's leftover: {leaked:?}");
}

/// Processes whose command line carries this marker (started by the test's pilot), killed by
/// pid when the test ends, passed or not.
struct Killed(String);

impl Drop for Killed {
    fn drop(&mut self) {
        for pid in pids_with(&self.0) {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}
