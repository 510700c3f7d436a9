//! `pilot daemon`: a run served through the daemon matches the same run in-process (exit
//! status, verdict, graph edges modulo pids and timestamps); a client killed mid-run leaves
//! its run to finish, collected by `pilot status` and the run directory, with nothing left
//! running; the metrics endpoint counts it all, BPF run time included.
mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::{
    collections::BTreeSet,
    io::Read,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use common::{PYTHON, Proc, RUN_TIMEOUT, Scratch, pids_with, pilot_bin, wait_until};
use daemon::Daemon;
use serde_json::Value;

/// A live process holding `path` open for writing; killed by pid on drop.
fn hold(path: &str) -> Proc {
    let script = format!("import time\nf = open({path:?}, 'a')\nprint('ok', flush=True)\ntime.sleep(120)");
    let mut h = Proc::spawn(Command::new(PYTHON).args(["-c", &script]).stdout(Stdio::piped()));
    let mut b = [0u8; 2];
    h.child.stdout.as_mut().unwrap().read_exact(&mut b).unwrap();
    h
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Edges as (kind, target, component), process ids reduced to "process".
fn edges(g: &Value) -> BTreeSet<(String, String, String)> {
    g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let to = e["to"].as_str().unwrap();
            let to = if to.starts_with("process:") { "process".to_string() } else { to.to_string() };
            (e["kind"].as_str().unwrap().to_string(), to, e["component"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_run_through_the_daemon_matches_one_in_process_and_is_counted() {
    let d = Scratch::new();
    // Statistics on all the time (the default samples them in windows: see below).
    let daemon = Daemon::start_with("bpf_stats = \"on\"\n");
    let held = d.file("held.db", "live data\n");
    // More than logs in held.db's directory from the start (the journal the first run writes
    // there would make it so for the second only): both runs see the same data directory.
    d.file("notes.md", "not a log\n");
    let _holder = hold(&held);
    let script = format!("echo note > {dir}/note.txt; rm {held}", dir = d.s());
    let mut results = Vec::new();
    for (name, via_daemon) in [("inproc", false), ("daemon", true)] {
        let out_dir = d.join(name);
        let mut cmd = daemon.client(&["run", "--out", &out_dir, "--", "sh", "-c", &script], &d);
        if !via_daemon {
            cmd.env("PILOT_NO_DAEMON", "1");
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{name}: the default policy blocks deleting a held file:\n{}", text(&out));
        results.push((json(&Path::new(&out_dir).join("verdict.json")), json(&Path::new(&out_dir).join("graph.json"))));
    }
    assert!(std::path::Path::new(&held).exists(), "production untouched either way");
    let ((v1, g1), (v2, g2)) = (&results[0], &results[1]);
    assert_eq!(v1["verdict"], v2["verdict"]);
    let rules = |v: &Value| v["violations"].as_array().unwrap().iter().map(|x| x["rule"].clone()).collect::<Vec<_>>();
    assert_eq!(rules(v1), rules(v2));
    assert_eq!(edges(g1), edges(g2), "same effects through the daemon");
    assert!(edges(g1).iter().any(|(k, to, _)| k == "unlink" && to.ends_with("held.db")));

    let status = daemon.status(&d);
    let runs = status["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "only the second run went through the daemon: {status}");
    assert_eq!(runs[0]["exit_code"], 3);
    assert_eq!(runs[0]["run_dir"], d.join("daemon"));

    let m = daemon.scrape();
    for line in [
        "pilot_runs_total{command=\"run\",outcome=\"failed\"} 1",
        "pilot_verdicts_total{verdict=\"block\"} 1",
        "pilot_policy_violations_total{rule=\"live-file-destroyed\"} 1",
        "pilot_runs_active 0",
        "pilot_bpf_stats_enabled 1",
    ] {
        assert!(m.lines().any(|l| l == line), "metrics lack {line}:\n{m}");
    }
    assert!(m.contains("pilot_events_total{kind=\"unlink\"}"), "{m}");
    assert!(m.contains("\npilot_ringbuf_peak_fill_ratio 0."), "the ring buffer's fill is reported: {m}");
    let sys_enter_runs = m
        .lines()
        .find_map(|l| l.strip_prefix("pilot_bpf_program_runs_total{program=\"sys_enter\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(sys_enter_runs.is_some_and(|n| n > 0), "the kernel counted sys_enter runs of pilots:\n{m}");
}

#[test]
fn a_client_killed_mid_run_leaves_the_run_to_finish_and_nothing_behind() {
    let d = Scratch::new();
    let daemon = Daemon::start();
    let marker = format!("pilot-daemon-orphan-{}", std::process::id());
    let out_dir = d.join("run");
    let script = format!("sleep 3; echo {marker} > {dir}/done.txt", dir = d.s());
    let mut client = background_run(&daemon, &d, &out_dir, &script);
    client.kill().unwrap();
    client.wait().unwrap();
    let status = daemon.status(&d);
    assert_eq!(status["runs"][0]["exit_code"], Value::Null, "the run goes on without its client: {status}");
    let finished = wait_until(Duration::from_secs(60), || daemon.status(&d)["runs"][0]["exit_code"] == 0);
    let status = daemon.status(&d);
    assert!(finished, "the run finished: {status}");
    assert_eq!(status["runs"][0]["client"], "gone");
    let verdict = json(&Path::new(&out_dir).join("verdict.json"));
    assert_eq!(verdict["verdict"], "pass");
    let upper_has_it = std::fs::read_dir(Path::new(&out_dir).join("upper")).is_ok();
    assert!(upper_has_it && !Path::new(&d.join("done.txt")).exists(), "its write stayed in the overlay");
    let pid = status["runs"][0]["pid"].as_u64().unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the run's agent is gone");
    // Other tests' pilots may hold cgroups: look for this run's own (named `<time>-<agent pid>`).
    let own = format!("-{pid}");
    let left: Vec<_> = ["/sys/fs/cgroup/unified/pilot", "/sys/fs/cgroup/pilot"]
        .iter()
        .flat_map(|r| std::fs::read_dir(r).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().ends_with(&own))
        .collect();
    assert!(left.is_empty(), "the run's cgroup is removed: {left:?}");
    assert!(daemon.scrape().lines().any(|l| l == "pilot_runs_active 0"));
}

/// Start `sh -c script` as a pilot run through `daemon`, in the background; wait until the
/// daemon has it.
fn background_run(daemon: &Daemon, d: &Scratch, out_dir: &str, script: &str) -> Child {
    // The script carries a marker, so we can wait until the pilot's command runs.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let marker = format!("pilot-daemon-bg-{}-{n}", std::process::id());
    let script = &format!("{script}; : {marker}");
    let client = daemon
        .client(&["run", "--out", out_dir, "--", "sh", "-c", script], d)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Generous: setting up a pilot on a loaded 2-core CI machine can take long.
    assert!(
        wait_until(RUN_TIMEOUT, || daemon.status(d)["runs"].as_array().is_some_and(|r| r.len() == 1)),
        "the daemon took the run"
    );
    assert!(
        wait_until(RUN_TIMEOUT, || !pids_with(&marker).is_empty() || daemon.status(d)["runs"][0]["exit_code"] != Value::Null),
        "the pilot's command runs"
    );
    assert_eq!(daemon.status(d)["runs"][0]["exit_code"], Value::Null, "the run ended before its command ran: {}", daemon.status(d));
    client
}

#[test]
fn with_on_client_disconnect_kill_a_lost_client_stops_its_run() {
    let d = Scratch::new();
    let daemon = Daemon::start_with("on_client_disconnect = \"kill\"\n");
    let out_dir = d.join("run");
    let mut client = background_run(&daemon, &d, &out_dir, "sleep 60");
    client.kill().unwrap();
    client.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || daemon.status(&d)["runs"][0]["exit_code"] != Value::Null),
        "the run was stopped: {}",
        daemon.status(&d)
    );
    let run = &daemon.status(&d)["runs"][0];
    assert_eq!(run["stopped_by"], "client-disconnect");
    let log = std::fs::read_to_string(run["log"].as_str().unwrap()).unwrap_or_default();
    assert_eq!(run["exit_code"], 4, "a killed pilot command is a failed pilot; its output:\n{log}");
    assert!(Path::new(&out_dir).join("verdict.json").exists(), "the stopped run still wrote its verdict");
}

#[test]
fn stopping_the_daemon_stops_its_runs_first() {
    let d = Scratch::new();
    let mut daemon = Daemon::start();
    let out_dir = d.join("run");
    let client = background_run(&daemon, &d, &out_dir, "sleep 60");
    let agent = daemon.status(&d)["runs"][0]["pid"].as_u64().unwrap();
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    assert!(wait_until(Duration::from_secs(40), || matches!(daemon.child.try_wait(), Ok(Some(_)))), "the daemon exits");
    let out = client.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "the client hears the stopped run's status: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!Path::new(&format!("/proc/{agent}")).exists(), "the run's agent is gone");
    assert!(Path::new(&out_dir).join("verdict.json").exists(), "the stopped run still wrote its verdict");
    assert!(!daemon.socket.exists(), "the daemon removed its socket");
}

#[test]
fn ctrl_c_on_a_client_stops_its_trace_and_the_traced_command() {
    let d = Scratch::new();
    let daemon = Daemon::start();
    let marker = format!("pilot-daemon-cancel-{}", std::process::id());
    let client = daemon
        .client(&["trace", "--", "sh", "-c", &format!("sleep 60; : {marker}")], &d)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(RUN_TIMEOUT, || !pids_with(&marker).is_empty()), "the traced command runs");
    unsafe { libc::kill(client.id() as i32, libc::SIGINT) };
    let out = client.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "the command died of the ^C, as in-process: {}", String::from_utf8_lossy(&out.stderr));
    assert!(wait_until(Duration::from_secs(10), || pids_with(&marker).is_empty()), "left running: {:?}", pids_with(&marker));
    assert_eq!(daemon.status(&d)["runs"][0]["stopped_by"], "cancel");
}

/// The daemon checks the kernel once and tells the runs it starts (they skip the 4 ms of
/// probes); what it tells them never comes from a client's environment, and a process the
/// daemon did not start ignores it.
#[test]
fn only_the_daemon_vouches_for_the_kernel_and_the_binary() {
    let d = Scratch::new();
    let daemon = Daemon::start();
    let spoofed = [("PILOT_DAEMON_KERNEL", "refused:spoofed by the client"), ("PILOT_EXE_SHA256", "spoofed")];
    let real = {
        use sha2::Digest as _;
        let bytes = std::fs::read(pilot_bin()).unwrap();
        sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    for (name, via_daemon) in [("daemon", true), ("inproc", false)] {
        let out_dir = d.join(name);
        let mut cmd = daemon.client(&["run", "--out", &out_dir, "--", "true"], &d);
        cmd.envs(spoofed);
        if !via_daemon {
            cmd.env("PILOT_NO_DAEMON", "1");
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: the client's word is not the daemon's:\n{}", text(&out));
        let intent = json(&Path::new(&out_dir).join("intent.json"));
        assert_eq!(intent["pilot_sha256"], real.as_str(), "{name}: the binary's own hash");
    }
}

#[test]
fn without_a_daemon_clients_run_in_process_and_status_says_how_to_start_one() {
    let d = Scratch::new();
    let missing = d.join("no.sock");
    let out = Command::new(pilot_bin()).args(["status"]).env("PILOT_SOCKET", &missing).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pilot daemon"), "{}", text(&out));
    let out = Command::new(pilot_bin()).args(["trace", "--", "true"]).env("PILOT_SOCKET", &missing).output().unwrap();
    assert!(out.status.success(), "in-process: {}", text(&out));
}

#[test]
fn the_socket_is_root_only_and_a_bad_config_is_a_usage_error() {
    use std::os::unix::fs::PermissionsExt;
    let d = Scratch::new();
    let daemon = Daemon::start();
    let mode = std::fs::metadata(&daemon.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let bad = d.file("bad.toml", "socket = \"/tmp/x.sock\"\nmax_runs = \"1h\"\n");
    let out = Command::new(pilot_bin()).args(["daemon", "--config", &bad]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_runs"), "{}", text(&out));
    let check = Command::new(pilot_bin()).args(["daemon", "--check-config", "--config", &bad]).output().unwrap();
    assert_eq!(check.status.code(), Some(2), "--check-config finds it too");
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/pilot.toml");
    let check = Command::new(pilot_bin()).args(["daemon", "--check-config", "--config"]).arg(&packaged).output().unwrap();
    assert!(check.status.success(), "the shipped config is valid: {}", text(&check));
}

/// By default the kernel's BPF statistics (which tax every BPF program on the host) are on only
/// in short windows: the metrics say how long, and count what the programs did then.
#[test]
fn bpf_statistics_are_sampled_in_windows_by_default_and_can_be_off() {
    let d = Scratch::new();
    let daemon = Daemon::start_with("bpf_stats_window = \"300ms\"\nbpf_stats_every = \"600ms\"\n");
    let out = daemon.client(&["trace", "--", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.1; done"], &d).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let sampled = |m: &str| m.lines().find_map(|l| l.strip_prefix("pilot_bpf_stats_sampled_seconds_total ")).and_then(|v| v.parse::<f64>().ok());
    assert!(wait_until(Duration::from_secs(10), || sampled(&daemon.scrape()).is_some_and(|s| s > 0.0)), "windows were sampled:\n{}", daemon.scrape());
    let m = daemon.scrape();
    assert!(m.lines().any(|l| l == "pilot_bpf_stats_mode{mode=\"sampled\"} 1"), "{m}");
    let runs = m.lines().find_map(|l| l.strip_prefix("pilot_bpf_program_runs_total{program=\"sys_enter\"} ")).and_then(|n| n.parse::<u64>().ok());
    assert!(runs.is_some_and(|n| n > 0), "the resident sys_enter was counted in a window:\n{m}");
    drop(daemon);
    let off = Daemon::start_with("bpf_stats = \"off\"\n");
    let m = off.scrape();
    assert!(m.lines().any(|l| l == "pilot_bpf_stats_enabled 0") && m.lines().any(|l| l == "pilot_bpf_stats_mode{mode=\"off\"} 1"), "{m}");
    assert_eq!(sampled(&m), Some(0.0), "never sampled: {m}");
}
