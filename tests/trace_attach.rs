//! Attaching to what already runs: `pilot trace --pid PID` (the process and its tree, until it
//! exits or ^C) and `pilot trace --cgroup DIR` (every process in a cgroup v2 directory, until it
//! is empty). The targets wait behind a gate file so the test knows pilot is tracing (with -v
//! pilot prints each event as it happens) before they act.
mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;

/// cgroup v2 as mounted on these machines (hybrid layout).

/// A shell loop, run in the scratch dir, that truncates `tick` until `go` exists (at most
/// 30 s), then runs `then`.
fn gated(then: &str) -> String {
    format!("i=0; while [ ! -e go ] && [ $i -lt 600 ]; do : > tick; sleep 0.05; i=$((i+1)); done; {then}")
}

fn gated_proc(d: &Scratch, then: &str) -> Proc {
    Proc::spawn(std::process::Command::new("/bin/sh").args(["-c", &gated(then)]).current_dir(d.path()))
}

/// Creates `go` when dropped too, so gated loops end even when a test fails early.
struct Gate(String);

impl Gate {
    fn new(d: &Scratch) -> Gate {
        Gate(d.join("go"))
    }
    fn open(&self) {
        fs::write(&self.0, "").unwrap();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = fs::write(&self.0, "");
    }
}

#[test]
fn pid_mode_records_the_effects_of_a_running_process_and_its_new_children() {
    let d = Scratch::new();
    let gate = Gate::new(&d);
    let mut target = gated_proc(&d, "echo attached > pidout; /bin/touch child-made; exit 3");
    let pid = target.pid();
    let mut pilot = Pilot::new().cwd(d.path()).args(["-v", "--pid", &pid.to_string()]).spawn();
    pilot.wait_for_stderr(&d.join("tick"));
    gate.open();
    let run = pilot.wait();
    assert_eq!(target.wait_timeout(Duration::from_secs(30)), Some(3));
    run.assert_exit(0);
    assert_eq!(run.summary()["root_pid"], pid, "{}", run.dump());
    let o = run.at("open", &d.join("pidout"));
    check!(run, o, pid, pid);
    let (_, bytes, _) = run.writes_to(&d.join("pidout"));
    assert_eq!(bytes, 9, "{}", run.dump());
    let x = run.find("exec of touch", |e| e.kind == "exec" && e.path() == "/bin/touch");
    let child = x.pid;
    run.find("fork of touch", |e| e.kind == "fork" && e.pid == pid && e.child_pid == Some(child));
    run.find("touch creating its file", |e| e.pid == child && e.is("open", &d.join("child-made")));
    let exit = run.one("exit of the target", |e| e.kind == "exit" && e.pid == pid);
    check!(run, exit, exit_code, Some(3));
}

#[test]
fn pid_mode_follows_children_that_existed_before_the_trace() {
    let d = Scratch::new();
    let gate = Gate::new(&d);
    // The subshell is a child of the target before pilot starts.
    let mut target = Proc::spawn(
        std::process::Command::new("/bin/sh")
            .args(["-c", &format!("( {} ) & wait", gated("echo kid > kidout"))])
            .current_dir(d.path()),
    );
    let pid = target.pid();
    assert!(wait_until(Duration::from_secs(10), || fs::metadata(d.join("tick")).is_ok()));
    let mut pilot = Pilot::new().cwd(d.path()).args(["-v", "--pid", &pid.to_string()]).spawn();
    pilot.wait_for_stderr(&d.join("tick"));
    gate.open();
    let run = pilot.wait();
    assert_eq!(target.wait_timeout(Duration::from_secs(30)), Some(0));
    run.assert_exit(0);
    let o = run.at("open", &d.join("kidout"));
    assert_ne!(o.pid, pid, "written by the pre-existing child\n{}", run.dump());
    assert_eq!(run.writes_to(&d.join("kidout")).1, 4, "{}", run.dump());
}

#[test]
fn pid_mode_stops_on_sigint_and_leaves_the_process_running() {
    let d = Scratch::new();
    let _gate = Gate::new(&d);
    let mut target = gated_proc(&d, "exit 0");
    let pid = target.pid();
    let mut pilot = Pilot::new().cwd(d.path()).args(["-v", "--pid", &pid.to_string()]).spawn();
    pilot.wait_for_stderr(&d.join("tick"));
    pilot.signal(libc::SIGINT);
    let run = pilot.wait();
    run.assert_exit(0);
    assert!(alive(pid) && target.wait_timeout(Duration::from_millis(10)).is_none(), "pilot must not stop the target");
    assert!(run.find("an open of tick", |e| e.is("open", &d.join("tick"))).pid == pid);
    assert_eq!(run.summary()["root_pid"], pid);
    assert!(run.stderr.contains("pilot: traced"), "the account is printed on ^C\n{}", run.stderr);
    target.kill();
}

/// A cgroup made for one test, emptied (processes killed by pid) and removed when dropped.
struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    fn new() -> Cgroup {
        let root = common::cgroup2_root();
        assert!(Path::new(root).join("cgroup.procs").exists(), "cgroup v2 is mounted at {root}");
        let path = Path::new(root).join(unique("pilot-test"));
        fs::create_dir(&path).expect("creating a test cgroup");
        Cgroup { path }
    }

    fn s(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn add(&self, pid: u32) {
        write_file(&self.path.join("cgroup.procs"), &pid.to_string()).expect("moving a process into the cgroup");
    }

    fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let ok = wait_until(Duration::from_secs(10), || {
            for pid in self.pids() {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            fs::remove_dir(&self.path).is_ok()
        });
        if !ok {
            eprintln!("warning: could not remove {}", self.path.display());
        }
    }
}

#[test]
fn cgroup_mode_records_every_process_in_the_cgroup_and_nothing_else() {
    let d = Scratch::new();
    let cg = Cgroup::new();
    let gate = Gate::new(&d);
    let mut inside = gated_proc(&d, "echo in > cgout; /bin/mkdir made-in-cgroup");
    cg.add(inside.pid());
    // The same loop outside the cgroup: none of it may show up.
    let outside_dir = Scratch::new();
    let outside_gate = Gate::new(&outside_dir);
    let mut outside = gated_proc(&outside_dir, "echo out > cgout");
    let mut pilot = Pilot::new().cwd(d.path()).args(["-v", "--cgroup", &cg.s()]).spawn();
    pilot.wait_for_stderr(&d.join("tick"));
    gate.open();
    let run = pilot.wait();
    outside_gate.open();
    assert_eq!(inside.wait_timeout(Duration::from_secs(30)), Some(0));
    assert_eq!(outside.wait_timeout(Duration::from_secs(30)), Some(0));
    run.assert_exit(0);
    let o = run.at("open", &d.join("cgout"));
    check!(run, o, pid, inside.pid());
    assert_eq!(run.writes_to(&d.join("cgout")).1, 3, "{}", run.dump());
    let m = run.at("mkdir", &d.join("made-in-cgroup"));
    check!(run, m, ret, Some(0));
    run.find("exec of mkdir", |e| e.kind == "exec" && e.pid == m.pid);
    run.none("events of the process outside the cgroup", |e| e.pid == outside.pid() || e.mentions(&outside_dir.s()));
    assert!(run.summary()["target"].as_str().unwrap_or("").contains(&cg.s()), "{}", run.dump());
}

/// A process moved into the cgroup while the trace runs is in the cgroup too: its effects are
/// recorded, with paths resolved against its cwd.
#[test]
fn cgroup_mode_follows_a_process_moved_in_after_the_start() {
    let d = Scratch::new();
    let cg = Cgroup::new();
    let gate = Gate::new(&d);
    let mut first = gated_proc(&d, "exit 0");
    cg.add(first.pid());
    let mut pilot = Pilot::new().cwd(d.path()).args(["-v", "--cgroup", &cg.s()]).spawn();
    pilot.wait_for_stderr(&d.join("tick"));
    let mut late = gated_proc(&d, "echo late > lateout");
    cg.add(late.pid());
    gate.open();
    let run = pilot.wait();
    assert_eq!(first.wait_timeout(Duration::from_secs(30)), Some(0));
    assert_eq!(late.wait_timeout(Duration::from_secs(30)), Some(0));
    run.assert_exit(0);
    let l = run.find("the late process's open of lateout", |e| e.kind == "open" && e.pid == late.pid() && e.mentions("lateout"));
    // A process that joins the cgroup and exits within pilot's 20 ms scan leaves no cwd to
    // read: then the path stays relative and says so. It must never be a wrong absolute path.
    if l.path.as_deref() != Some(d.join("lateout").as_str()) {
        assert_eq!(l.path.as_deref(), Some("lateout"), "{}", run.dump());
        assert_eq!(l.resolved_via.as_deref(), Some("unknown-cwd"), "{}", run.dump());
    }
}

/// A gated loop that forks (`/bin/true`) every round besides the tick.
fn fork_loop(d: &Scratch) -> Proc {
    Proc::spawn(
        std::process::Command::new("/bin/sh")
            .args(["-c", "i=0; while [ ! -e go ] && [ $i -lt 5000 ]; do : > tick; /bin/true; i=$((i+1)); done"])
            .current_dir(d.path()),
    )
}

/// Each process once in summary.processes and in the account's process tree, and none left
/// "still running" (every process of these targets has exited when pilot ends).
fn assert_each_process_once(run: &Run, root: Option<u32>) {
    let mut problems = Vec::new();
    let mut pids: std::collections::BTreeSet<u32> = run.events.iter().map(|e| e.pid).collect();
    pids.extend(run.events.iter().filter(|e| e.kind == "fork" && e.thread != Some(true)).filter_map(|e| e.child_pid));
    pids.extend(root);
    // A process adopted from the target's tree that ends before its first recorded effect
    // counts without naming itself in an event: at least every named one, each once.
    let counted = run.summary_u64("processes");
    if counted < pids.len() as u64 {
        problems.push(format!("summary.processes is {counted}, the events name {} processes", pids.len()));
    }
    let tree: Vec<&str> =
        run.stderr.lines().skip_while(|l| *l != "processes").take_while(|l| !l.starts_with("effects")).skip(1).collect();
    let mut seen = std::collections::BTreeSet::new();
    for line in &tree {
        let p = line.split_whitespace().next().unwrap_or("");
        if !seen.insert(p.to_string()) {
            problems.push(format!("process {p} is listed twice in the account"));
        }
        if line.ends_with("still running") {
            problems.push(format!("process {p} is still running in the account, but every process has exited"));
        }
    }
    assert!(problems.is_empty(), "{}\naccount:\n{}\n{}", problems.join("\n"), tree.join("\n"), run.dump());
}

/// Processes forking while pilot attaches must each be counted once (none both adopted from
/// /proc and announced by a fork record).
#[test]
fn pid_mode_counts_each_process_once_while_the_target_forks() {
    let d = Scratch::new();
    let gate = Gate::new(&d);
    let mut target = fork_loop(&d);
    let pid = target.pid();
    let mut pilot = Pilot::new().cwd(d.path()).args(["-v", "--pid", &pid.to_string()]).spawn();
    pilot.wait_for_stderr(&d.join("tick"));
    gate.open();
    let run = pilot.wait();
    assert_eq!(target.wait_timeout(Duration::from_secs(30)), Some(0));
    run.assert_exit(0);
    assert_each_process_once(&run, Some(pid));
}

#[test]
fn cgroup_mode_counts_each_process_once_while_they_fork() {
    let d = Scratch::new();
    let cg = Cgroup::new();
    let gate = Gate::new(&d);
    let mut target = fork_loop(&d);
    cg.add(target.pid());
    let mut pilot = Pilot::new().cwd(d.path()).args(["-v", "--cgroup", &cg.s()]).spawn();
    pilot.wait_for_stderr(&d.join("tick"));
    gate.open();
    let run = pilot.wait();
    assert_eq!(target.wait_timeout(Duration::from_secs(30)), Some(0));
    run.assert_exit(0);
    assert_each_process_once(&run, None);
}
