//! `pilot doctor`: it reports every feature, says `pilot run` is contained on this kernel, and
//! what it says about Unix sockets is what a pilot then meets: a connect refused by the cgroup
//! hooks where it found them, the pilot's own network namespace where it did not.
mod common;

use std::{
    os::unix::{fs::PermissionsExt as _, net::UnixListener},
    process::Command,
};

use common::{PYTHON, Scratch, pilot_bin};
use serde_json::Value;

fn doctor_json() -> Value {
    let out = Command::new(pilot_bin()).args(["doctor", "--json"]).output().expect("running pilot doctor");
    assert_eq!(out.status.code(), Some(0), "doctor: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON")
}

#[test]
fn every_feature_is_reported_and_run_is_contained_here() {
    let d = doctor_json();
    assert_eq!(d["schema"], "pilot.doctor/v1");
    assert_eq!(d["run_contained"], true);
    assert_eq!(d["trace_available"], true);
    let features = d["features"].as_array().expect("features");
    for name in [
        "btf", "ringbuf", "tracepoints", "raw_tracepoints", "cgroup2", "cgroup/connect4", "cgroup/connect6",
        "cgroup/sendmsg4", "cgroup/sendmsg6", "cgroup/getpeername4", "cgroup/getpeername6", "cgroup/bind4",
        "cgroup/bind6", "cgroup/post_bind4", "cgroup/post_bind6", "cgroup/connect_unix+sendmsg_unix", "seccomp",
        "overlayfs", "namespaces", "kprobes", "fentry", "bpf_lsm",
    ] {
        let f = features.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no {name} in {d:#}"));
        assert!(f["present"].is_boolean() && !f["detail"].as_str().unwrap_or("").is_empty(), "{f:#}");
    }
    let text = Command::new(pilot_bin()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("pilot run:   contained"), "{text}");
}

/// socket(AF_UNIX) then connect to `path`: prints `socket <errno>` and `connect <errno>`.
const UNIX_CONNECT: &str = r#"
import socket, sys
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
except OSError as e:
    print("socket", e.errno); sys.exit(0)
print("socket", 0)
try:
    s.connect(sys.argv[1]); print("connect", 0)
except OSError as e:
    print("connect", e.errno)
"#;

#[test]
fn unix_socket_containment_is_what_doctor_says() {
    // The cgroup hooks, or before 6.7 the pilot's own network namespace: paths lead to the sink.
    let unix = doctor_json()["unix_sockets"].as_str().unwrap_or_default().to_string();
    let hooks = unix == "cgroup hooks" || unix.starts_with("network namespace");
    let d = Scratch::new();
    let path = d.join("live.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Control: without pilot the connect reaches the listener.
    let live = Command::new(PYTHON).args(["-c", UNIX_CONNECT, &path]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&live.stdout), "socket 0\nconnect 0\n");
    assert!(listener.accept().is_ok(), "the control's connection reached the listener");
    let out = Command::new(pilot_bin())
        .args(["run", "--out"])
        .arg(d.path().join("run"))
        .args(["--", PYTHON, "-c", UNIX_CONNECT, &path])
        .env("PILOT_JOURNAL", d.path().join("journal.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // With the hooks (or the namespace), a live listener's path leads to pilot's sink (the
    // connect succeeds, as live, and reaches nothing live); with the seccomp fallback no
    // AF_UNIX socket can be made (EPERM).
    let expected = if hooks { "socket 0\nconnect 0\n" } else { "socket 1\n" };
    assert!(stdout.starts_with(expected), "doctor says hooks={hooks}; the pilot printed {stdout:?}; stderr {}", String::from_utf8_lossy(&out.stderr));
    assert!(listener.accept().is_err(), "the live listener got a connection from the pilot");
    if hooks {
        let sink = std::fs::read_to_string(d.path().join("run/sink.json")).unwrap();
        assert!(sink.contains(&format!("unix:{path}")), "the sink caught the connect: {sink}");
    }
}

#[test]
fn doctor_needs_root() {
    let out = common::pilot_as_nobody(&["doctor"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
