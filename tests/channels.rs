//! Verdicts from two channels (issue 15), on the real kernel. A live process the test starts
//! holds a file open read-write; the pilot changes that file by a path the syscall trace alone
//! used to miss (a shared mapping, fallocate, io_uring). Every case must be blocked (exit 3)
//! with a violation naming the file, the live holder and the channel that saw it, production
//! untouched; and each has its control: the same action without pilot changes the live file.
//! The network channel (bytes the sink caught that no traced send explains) and the process
//! channel (a process in the pilot cgroup the trace never saw) each have a case; benign actions
//! on files nobody holds pass. Last, the first channel's new syscalls, each with its result.
mod common;

use std::{
    fs,
    io::BufRead as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::Duration,
};

use common::{PYTHON, Pilot, Proc, Scratch, wait_until};
use serde_json::Value;

const PILOT: &str = env!("CARGO_BIN_EXE_pilot");

/// tests/helpers/channels.c, compiled once per test binary.
fn helper() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/helpers/channels.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pilot-tests");
        fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!("channels.{}.tmp", std::process::id()));
        let out = Command::new("gcc").args(["-O1", "-Wall", "-Wextra", "-Werror", "-o"]).arg(&tmp).arg(&src).output().expect("running gcc");
        assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
        let bin = dir.join("channels");
        fs::rename(&tmp, &bin).unwrap();
        // The live holder runs as `live_store` (its comm), so the agent names the component.
        let holder = dir.join("live_store");
        if fs::symlink_metadata(&holder).is_err() {
            let _ = std::os::unix::fs::symlink(&bin, &holder);
        }
        bin.display().to_string()
    })
}

fn holder_bin() -> String {
    Path::new(helper()).with_file_name("live_store").display().to_string()
}

/// A live process holding `path` open read-write until dropped.
fn hold(path: &Path) -> Proc {
    let mut p = Proc::spawn(Command::new(holder_bin()).arg("hold").arg(path).stdout(Stdio::piped()));
    let mut line = String::new();
    std::io::BufReader::new(p.child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("up"), "holder: {line}");
    p
}

struct Pilotrun {
    out: Output,
    dir: PathBuf,
}

impl Pilotrun {
    fn text(&self) -> String {
        format!("{}{}", String::from_utf8_lossy(&self.out.stdout), String::from_utf8_lossy(&self.out.stderr))
    }
    fn json(&self, name: &str) -> Value {
        let p = self.dir.join(name);
        serde_json::from_str(&fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}\n{}", p.display(), self.text()))).unwrap()
    }
    fn verdict(&self) -> Value {
        self.json("verdict.json")
    }
    fn violation(&self, rule: &str) -> Value {
        let v = self.verdict();
        v["violations"].as_array().unwrap().iter().find(|x| x["rule"] == rule).cloned().unwrap_or_else(|| panic!("no {rule} violation: {v:#}\n{}", self.text()))
    }
    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
}

/// `pilot run --out D/run -- CMD` in D/work.
fn pilot_run(d: &Scratch, name: &str, cmd: &[&str]) -> Pilotrun {
    let dir = d.path().join(name);
    let work = d.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let out = Command::new(PILOT)
        .args(["run", "--out", dir.to_str().unwrap(), "--"])
        .args(cmd)
        .current_dir(&work)
        .env("PILOT_JOURNAL", d.path().join("journal.jsonl"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Pilotrun { out, dir }
}

/// A live file with 16 KiB of known bytes, in a directory of its own (the holder's data dir).
fn live_file(d: &Scratch) -> (PathBuf, Vec<u8>) {
    let dir = d.path().join("live");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("segment.db");
    let content: Vec<u8> = (0..16384u32).map(|i| (i % 251) as u8 + 1).collect();
    fs::write(&path, &content).unwrap();
    (path, content)
}

fn channels_of(v: &Value) -> Vec<String> {
    v["channels"].as_array().map(|a| a.iter().map(|c| c.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

/// The pilot of `op` on a held file is blocked naming file, holder and `channels`; production
/// is untouched; the same op without pilot changes the file (or removes it).
fn blocked_on_a_held_file(op: &[&str], channels: &[&str]) -> (Scratch, Pilotrun) {
    let d = Scratch::new();
    let (live, before) = live_file(&d);
    let live_s = live.to_str().unwrap();
    let args: Vec<&str> = op.iter().map(|a| if *a == "LIVE" { live_s } else { a }).collect();
    let mut holder = hold(&live);
    let mut cmd = vec![helper()];
    cmd.extend(&args);
    let run = pilot_run(&d, "run", &cmd);
    assert_eq!(run.code(), Some(3), "{}", run.text());
    let v = run.violation("live-file-destroyed");
    assert_eq!(v["target"], live_s, "{v:#}");
    assert!(v["component"].as_str().unwrap().contains("live_store"), "names the live holder: {v:#}");
    assert!(v["why"].as_str().unwrap().contains("holds open"), "{v:#}");
    assert_eq!(channels_of(&v), channels, "the channels that saw it: {v:#}");
    assert!(run.text().contains(&format!("seen by: {}", channels.join(", "))), "{}", run.text());
    assert_eq!(fs::read(&live).unwrap(), before, "production untouched");
    // Control: without pilot the same action changes the live file.
    let o = Command::new(helper()).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(fs::read(&live).map_or(true, |now| now != before), "the action is harmful for real");
    holder.kill();
    (d, run)
}

fn blind_spot_of(run: &Pilotrun, path: &str, channel: &str) -> Value {
    let s = run.json("summary.json");
    let items = s["blind_spots"]["items"].as_array().unwrap_or_else(|| panic!("summary.json has blind_spots: {s:#}"));
    assert_eq!(s["blind_spots"]["count"].as_u64(), Some(items.len() as u64));
    items.iter().find(|b| b["path"] == path && b["channel"] == channel).cloned().unwrap_or_else(|| panic!("no {channel} blind spot at {path}: {s:#}"))
}

#[test]
fn shared_mmap_write_to_a_held_file_is_blocked() {
    let (_d, run) = blocked_on_a_held_file(&["mmap_write", "LIVE", "OVERWRITTEN"], &["trace", "overlay"]);
    let g = run.json("graph.json");
    let e = g["edges"].as_array().unwrap().iter().find(|e| e["detail"] == "shared writable mapping").expect("the mapping is an effect");
    assert_eq!(e["kind"], "write");
    assert_eq!(e["seen_by"], serde_json::json!(["trace", "overlay"]), "confirmed by both: {e}");
}

#[test]
fn mprotect_raising_a_shared_mapping_of_a_held_file_is_blocked() {
    let _ = blocked_on_a_held_file(&["mprotect_write", "LIVE", "OVERWRITTEN"], &["trace", "overlay"]);
}

#[test]
fn fallocate_punch_hole_zero_range_collapse_range_on_a_held_file_are_blocked() {
    for mode in ["punch", "zero", "collapse"] {
        let (_d, run) = blocked_on_a_held_file(&["fallocate", "LIVE", mode, "0", "4096"], &["trace", "overlay"]);
        assert_eq!(run.violation("live-file-destroyed")["effects"], serde_json::json!(["truncate"]), "{mode}: destroys a range");
    }
}

#[test]
fn io_uring_write_to_a_held_file_is_blocked_as_a_blind_spot() {
    let (_d, run) = blocked_on_a_held_file(&["uring_write", "LIVE", "URING"], &["overlay"]);
    let live = run.violation("live-file-destroyed")["target"].as_str().unwrap().to_string();
    let v = run.violation("blind-spot");
    assert_eq!(v["action"], "block");
    assert!(v["why"].as_str().unwrap().contains("seen in the overlay, no syscall traced"), "{v:#}");
    let b = blind_spot_of(&run, &live, "overlay");
    assert_eq!(b["effect"], "write");
    assert!(b["change"].as_str().unwrap().starts_with("modified"), "{b}");
    assert!(run.json("summary.json")["io_uring"].as_str().unwrap().contains("io_uring in use"));
    assert!(run.verdict()["notes"][0].as_str().unwrap().contains("seen only by the overlay and the sink"));
    assert!(run.text().contains("blind spots: 1"), "the account names it: {}", run.text());
    let html = fs::read_to_string(run.dir.join("report.html")).unwrap();
    assert!(html.contains("id=\"blind-spot-table\"") && html.contains(&live), "report.html lists it");
    // pilot diff names it too.
    let o = Command::new(PILOT).arg("diff").arg(&run.dir).output().unwrap();
    let diff = String::from_utf8_lossy(&o.stdout);
    assert!(diff.contains("blind spots: 1") && diff.contains("overlay"), "{diff}");
}

#[test]
fn io_uring_unlinkat_of_a_held_file_is_blocked_as_a_blind_spot() {
    let (_d, run) = blocked_on_a_held_file(&["uring_unlink", "LIVE"], &["overlay"]);
    assert_eq!(run.violation("live-file-destroyed")["effects"], serde_json::json!(["unlink"]));
    assert_eq!(run.violation("blind-spot")["action"], "block");
}

#[test]
fn changes_to_files_nobody_holds_pass_and_an_io_uring_one_warns() {
    let d = Scratch::new();
    let own = d.path().join("work/own.db");
    fs::create_dir_all(own.parent().unwrap()).unwrap();
    fs::write(&own, vec![7u8; 16384]).unwrap();
    let own_s = own.to_str().unwrap();
    for (i, op) in [vec!["mmap_write", own_s, "X"], vec!["fallocate", own_s, "punch", "0", "4096"], vec!["fallocate", own_s, "alloc", "0", "65536"]].into_iter().enumerate() {
        let mut cmd = vec![helper()];
        cmd.extend(op);
        let run = pilot_run(&d, &format!("run{i}"), &cmd);
        assert_eq!(run.code(), Some(0), "{}", run.text());
        assert_eq!(run.verdict()["verdict"], "pass", "{}", run.text());
        assert_eq!(run.json("summary.json")["blind_spots"]["count"], 0, "{}", run.text());
    }
    // io_uring: still contained and judged, but only the overlay saw it: a warning.
    let run = pilot_run(&d, "uring", &[helper(), "uring_write", own_s, "U"]);
    assert_eq!(run.code(), Some(0), "{}", run.text());
    assert_eq!(run.verdict()["verdict"], "warn", "{}", run.text());
    assert_eq!(run.violation("blind-spot")["action"], "warn");
    assert_eq!(fs::read(&own).unwrap(), vec![7u8; 16384], "contained");
}

/// A live loopback peer (Python, `peer_svc.py`) counting the bytes it receives.
fn peer(d: &Scratch) -> (Proc, u16, PathBuf) {
    let dir = d.path().join("peer");
    fs::create_dir_all(&dir).unwrap();
    let count = dir.join("received");
    let script = format!(
        "import socket, time\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)\nprint(s.getsockname()[1], flush=True)\ns.settimeout(120)\ntot = 0\nwhile True:\n    c, _ = s.accept()\n    while True:\n        b = c.recv(65536)\n        if not b: break\n        tot += len(b)\n    c.close()\n    open({:?}, 'w').write(str(tot))\n",
        count.display().to_string()
    );
    fs::write(dir.join("peer_svc.py"), script).unwrap();
    let mut p = Proc::spawn(Command::new(PYTHON).arg(dir.join("peer_svc.py")).current_dir(&dir).stdout(Stdio::piped()));
    let mut line = String::new();
    std::io::BufReader::new(p.child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    (p, line.trim().parse().unwrap(), count)
}

#[test]
fn io_uring_send_to_a_live_peer_is_a_network_blind_spot() {
    let d = Scratch::new();
    let (mut peer, port, count) = peer(&d);
    let port_s = port.to_string();
    let op = ["uring_send", "127.0.0.1", port_s.as_str(), "HELLO-FROM-URING"];
    let mut cmd = vec![helper()];
    cmd.extend(op);
    let run = pilot_run(&d, "run", &cmd);
    assert_eq!(run.code(), Some(3), "{}", run.text());
    let v = run.violation("blind-spot");
    assert_eq!(v["action"], "block");
    assert_eq!(channels_of(&v), ["sink"]);
    assert!(v["component"].as_str().unwrap().contains("peer_svc"), "{v:#}");
    assert!(v["why"].as_str().unwrap().contains("caught by the sink, no traced send"), "{v:#}");
    let b = blind_spot_of(&run, &format!("127.0.0.1:{port}"), "sink");
    assert_eq!(b["change"], "16 bytes (16 caught, 0 traced)");
    assert!(!count.exists(), "the peer received nothing");
    // Control: without pilot the bytes reach the peer.
    let o = Command::new(helper()).args(op).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(wait_until(Duration::from_secs(10), || fs::read_to_string(&count).is_ok_and(|c| c == "16")), "the peer got the bytes");
    peer.kill();
}

#[test]
fn sendmmsg_to_a_live_peer_is_traced_and_confirmed_by_the_sink() {
    let d = Scratch::new();
    let (mut peer, port, _) = peer(&d);
    let port_s = port.to_string();
    let run = pilot_run(&d, "run", &[helper(), "sendmmsg", "127.0.0.1", &port_s, "TWO-MESSAGES"]);
    assert_eq!(run.code(), Some(0), "{}", run.text());
    assert_eq!(run.json("summary.json")["blind_spots"]["count"], 0, "{}", run.text());
    let g = run.json("graph.json");
    let send = g["edges"].as_array().unwrap().iter().find(|e| e["kind"] == "send").unwrap_or_else(|| panic!("{g:#}"));
    assert_eq!(send["bytes"], 12);
    assert_eq!(send["seen_by"], serde_json::json!(["trace", "sink"]));
    peer.kill();
}

#[test]
fn a_process_in_the_pilot_cgroup_the_trace_never_saw_blocks_as_incomplete() {
    let d = Scratch::new();
    // Ends on SIGTERM from the test (a gate file would not do: the overlay caches the lookup
    // that found it missing).
    let marker = format!("pilot-channels-proc-{}", std::process::id());
    let script = format!("trap 'exit 0' TERM; while :; do sleep 0.05; done # {marker}");
    let dir = d.path().join("run");
    let work = d.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let mut pilot = Proc::spawn(
        Command::new(PILOT)
            .args(["run", "--out", dir.to_str().unwrap(), "--", "sh", "-c", &script])
            .current_dir(&work)
            .env("PILOT_JOURNAL", d.path().join("journal.jsonl"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // The pilot's cgroup: <cgroup2>/pilot/<secs>-<agent pid>, once the workload runs in it.
    let parent = Path::new(common::cgroup2_root()).join("pilot");
    let suffix = format!("-{}", pilot.pid());
    let mut cg = None;
    let mut workload = Vec::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            cg = fs::read_dir(&parent).ok().and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.to_string_lossy().ends_with(&suffix)));
            workload = common::pids_with(&marker);
            cg.is_some() && !workload.is_empty()
        }),
        "the pilot's cgroup and workload appear"
    );
    let cg = cg.unwrap();
    // A process of ours, moved in from outside: the cgroup has it, the trace never followed it.
    let mut stranger = Proc::sh("sleep 60");
    let stranger_pid = stranger.pid();
    fs::write(cg.join("cgroup.procs"), stranger_pid.to_string()).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // a few poll rounds sample it
    for pid in &workload {
        unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
    }
    let code = pilot.wait_timeout(Duration::from_secs(90));
    stranger.kill();
    assert_eq!(code, Some(3));
    let v: Value = serde_json::from_str(&fs::read_to_string(dir.join("verdict.json")).unwrap()).unwrap();
    let gate_failures = v["gate_failures"].to_string();
    assert!(gate_failures.contains("process(es) the trace never saw") && gate_failures.contains(&stranger_pid.to_string()), "{v:#}");
    let s: Value = serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["complete"], false);
    assert!(s["blind_spots"]["items"].as_array().unwrap().iter().any(|b| b["channel"] == "cgroup"), "{s:#}");

    // Control: the same kind of pilot, nobody moved in: complete, and it passes.
    let run = pilot_run(&d, "control", &["sh", "-c", "sleep 0.3"]);
    assert_eq!(run.code(), Some(0), "{}", run.text());
    assert_eq!(run.json("summary.json")["complete"], true);
}

// ---------------------------------------------------------------------------------------------
// The first channel: syscalls traced since issue 15, each with its result.

fn traced(d: &Scratch, op: &[&str]) -> common::Run {
    let mut cmd = vec![helper()];
    cmd.extend(op);
    let run = Pilot::new().cwd(d.path()).command(&cmd).run();
    run.assert_exit(0);
    run
}

fn events(run: &common::Run, kind: &str) -> Vec<Value> {
    run.lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|e| e["kind"] == kind).collect()
}

#[test]
fn fallocate_modes_mappings_msync_times_and_io_uring_setup_are_traced() {
    let d = Scratch::new();
    let f = d.file("f.db", &"x".repeat(16384));
    let run = traced(&d, &["fallocate", &f, "punch", "4096", "8192"]);
    let e = &events(&run, "fallocate")[0];
    assert_eq!((e["path"].as_str(), e["ret"].as_i64(), e["offset"].as_u64(), e["bytes"].as_u64()), (Some(f.as_str()), Some(0), Some(4096), Some(8192)));
    assert_eq!(e["flag_names"], "FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE");
    let run = Pilot::new().cwd(d.path()).command(&[helper(), "fallocate", &f, "collapse", "1", "10"]).run();
    run.assert_exit(1);
    let e = &events(&run, "fallocate")[0];
    assert_eq!((e["ret"].as_i64(), e["error"].as_str()), (Some(-22), Some("EINVAL")), "an unaligned collapse fails: {e}");

    let run = traced(&d, &["mmap_write", &f, "M"]);
    let m = &events(&run, "mmap")[0];
    assert_eq!((m["path"].as_str(), m["syscall"].as_str()), (Some(f.as_str()), Some("mmap")));
    assert_eq!(m["flag_names"], "PROT_READ|PROT_WRITE, MAP_SHARED");
    assert_eq!(events(&run, "msync")[0]["path"], f.as_str());
    let run = traced(&d, &["mprotect_write", &f, "M"]);
    let m = events(&run, "mmap");
    assert_eq!(m.len(), 1, "the read-only mapping is no effect, its mprotect is: {m:?}");
    assert_eq!(m[0]["syscall"], "mprotect");

    let run = traced(&d, &["utimens", &f]);
    let u = &events(&run, "utime")[0];
    assert_eq!((u["path"].as_str(), u["syscall"].as_str(), u["ret"].as_i64()), (Some(f.as_str()), Some("utimensat"), Some(0)));

    let src = d.file("src.db", "source");
    let run = traced(&d, &["copy_range", &src, &f]);
    let (w, bytes, _) = run.writes_to(&f);
    assert!(!w.is_empty() && bytes == 6, "copy_file_range writes to its destination: {}", run.dump());

    // FICLONE on a filesystem without reflinks fails: recorded with its error.
    let out = Command::new(helper()).args(["ficlone", &f, &src]).output().unwrap();
    let expect_ok = out.status.success();
    let run = Pilot::new().cwd(d.path()).command(&[helper(), "ficlone", &f, &src]).run();
    let r = &events(&run, "reflink")[0];
    assert_eq!((r["path"].as_str(), r["path2"].as_str(), r["flag_names"].as_str()), (Some(f.as_str()), Some(src.as_str()), Some("FICLONE")));
    assert_eq!(r["ret"].as_i64() == Some(0), expect_ok, "{r}");

    let run = Pilot::new().cwd(d.path()).command(&[helper(), "uring_write", &f, "U"]).run();
    if run.code == Some(77) {
        return; // no io_uring on this kernel
    }
    let u = &events(&run, "io_uring")[0];
    assert_eq!(u["syscall"], "io_uring_setup");
    assert!(u["fd"].as_i64().unwrap() >= 0);
    assert!(events(&run, "write").iter().all(|w| w["path"] != f.as_str()), "the ring's write is no syscall: {}", run.dump());
}

// ---------------------------------------------------------------------------------------------
// Commit's second channel: the files, before and after the live run.

/// The pilot touches a live-held file (its times) and writes its own file through io_uring,
/// by a symlink; before the commit, the symlink is turned to the held file (production moved
/// on in a way the drift check does not watch), so live the io_uring write lands there. No
/// trace shows the difference (the same edges both times); the file channel does.
fn commit_with_flag(flag: bool) -> (Scratch, Value) {
    let d = Scratch::new();
    let (live, before) = live_file(&d);
    let mut holder = hold(&live);
    let own = d.path().join("work/own.db");
    fs::create_dir_all(own.parent().unwrap()).unwrap();
    fs::write(&own, "own").unwrap();
    let link = d.path().join("work/target.db");
    std::os::unix::fs::symlink(&own, &link).unwrap();
    let script = format!("{h} utimens {live}; {h} uring_write {link} URING", h = helper(), live = live.display(), link = link.display());
    let run = pilot_run(&d, "run", &["sh", "-c", &script]);
    assert_eq!(run.code(), Some(0), "{}", run.text());
    assert_eq!(run.verdict()["verdict"], "warn", "the io_uring write to its own file: {}", run.text());
    if flag {
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&live, &link).unwrap();
    }
    let o = Command::new(PILOT).arg("commit").arg(&run.dir).env("PILOT_JOURNAL", d.path().join("journal.jsonl")).stdin(Stdio::null()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert_eq!(fs::read(&live).unwrap() != before, flag, "the live run changed the held file only when the link was turned");
    holder.kill();
    let f = run.json("fidelity.json");
    (d, f)
}

#[test]
fn a_live_change_the_pilot_did_not_show_puts_the_commit_outside_the_gate() {
    let (d, f) = commit_with_flag(true);
    let files = &f["files"];
    assert_eq!(f["error"], 0.0, "the traces agree: {f:#}");
    assert_eq!(f["within_gate"], false, "{f:#}");
    let miss = &files["live_not_shown"][0];
    assert!(miss["path"].as_str().unwrap().ends_with("live/segment.db") && miss["live"].as_str().unwrap().contains("content changed"), "{f:#}");
    assert_eq!(files["hash_limit"], 64 << 20);
    let html = fs::read_to_string(d.path().join("run/report.html")).unwrap();
    assert!(html.contains("id=\"files-channel\" class=\"bad\"") && html.contains("files-mismatch"), "report.html's pilot-vs-live section");
    // Control: without the flag the live run does what the pilot showed.
    let (_d, f) = commit_with_flag(false);
    assert_eq!(f["within_gate"], true, "{f:#}");
    assert_eq!(f["files"]["live_not_shown"], serde_json::json!([]), "{f:#}");
}
