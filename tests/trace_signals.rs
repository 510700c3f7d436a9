//! Signals under `pilot trace`: each kill-family syscall of a traced process (`signal`, with the
//! target as given and the result) and each signal the kernel generated from it
//! (`signal_generated`, one per target task). The targets are processes this test started.
mod common;

use std::{collections::BTreeSet, fs, os::unix::process::CommandExt as _, process::Command, time::Duration};

use common::*;

fn sleeper() -> Proc {
    Proc::spawn(Command::new("/bin/sleep").arg("60"))
}

/// Pids whose process group is `pgid`.
fn members(pgid: u32) -> BTreeSet<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s[s.rfind(')')? + 1..].split_whitespace().nth(2)?.parse::<u32>().ok())
                == Some(pgid)
        })
        .collect()
}

#[test]
fn kill_of_an_outside_process_is_recorded_with_its_target() {
    let d = Scratch::new();
    let mut victim = sleeper();
    let pid = victim.pid();
    let run = trace_effects(&d, &["kill", &pid.to_string(), "15"]);
    let s = run.one("kill syscall", |e| e.kind == "signal");
    check!(run, s, syscall, Some("kill".into()));
    check!(run, s, target_pid, Some(pid as i64));
    check!(run, s, signal, Some(15));
    check!(run, s, signal_name, Some("SIGTERM".into()));
    check!(run, s, ret, Some(0));
    check!(run, s, error, None);
    let g = run.one("signal generated", |e| e.kind == "signal_generated");
    check!(run, g, target_pid, Some(pid as i64));
    check!(run, g, signal, Some(15));
    check!(run, g, signal_name, Some("SIGTERM".into()));
    check!(run, g, pid, s.pid);
    assert_eq!(victim.wait_timeout(Duration::from_secs(10)), Some(128 + 15), "the victim died of SIGTERM");
    run.none("events of the (untraced) victim itself", |e| e.pid == pid);
}

#[test]
fn kill_of_a_missing_process_fails_with_esrch() {
    let d = Scratch::new();
    let pid_max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let missing = (1..1000).map(|i| pid_max - i).find(|p| !alive(*p)).unwrap();
    let run = trace_effects(&d, &["kill", &missing.to_string(), "15"]);
    let s = run.one("kill syscall", |e| e.kind == "signal");
    check!(run, s, target_pid, Some(missing as i64));
    check!(run, s, ret, Some(-3));
    check!(run, s, error, Some("ESRCH".into()));
    run.none("a generated signal for a failed kill", |e| e.kind == "signal_generated");
}

#[test]
fn a_process_group_kill_names_every_member() {
    let d = Scratch::new();
    let mut group = Proc::spawn(Command::new("/bin/sh").args(["-c", "/bin/sleep 60 & /bin/sleep 60 & wait"]).process_group(0));
    let pgid = group.pid();
    assert!(wait_until(Duration::from_secs(10), || members(pgid).len() == 3), "the group has sh and two sleeps");
    let want = members(pgid);
    let run = trace_effects(&d, &["kill", &format!("-{pgid}"), "15"]);
    // Whatever happened, kill the group's members by pid.
    for pid in &want {
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    group.kill();
    let s = run.one("kill syscall", |e| e.kind == "signal");
    check!(run, s, target_pid, Some(-(pgid as i64)));
    check!(run, s, signal, Some(15));
    check!(run, s, ret, Some(0));
    let got: BTreeSet<u32> =
        run.of_kind("signal_generated").iter().map(|e| e.target_pid.unwrap_or(0) as u32).collect();
    assert_eq!(got, want, "one signal_generated per member of the group\n{}", run.dump());
    assert!(run.of_kind("signal_generated").iter().all(|e| e.signal == Some(15)), "{}", run.dump());
}

#[test]
fn tkill_is_recorded_with_the_thread_id() {
    let d = Scratch::new();
    let mut victim = sleeper();
    let pid = victim.pid();
    let run = trace_effects(&d, &["tkill", &pid.to_string(), "10"]);
    let s = run.one("tkill syscall", |e| e.kind == "signal");
    check!(run, s, syscall, Some("tkill".into()));
    check!(run, s, target_pid, Some(pid as i64));
    check!(run, s, signal, Some(10));
    check!(run, s, signal_name, Some("SIGUSR1".into()));
    check!(run, s, ret, Some(0));
    let g = run.one("signal generated", |e| e.kind == "signal_generated");
    check!(run, g, target_pid, Some(pid as i64));
    assert_eq!(victim.wait_timeout(Duration::from_secs(10)), Some(128 + 10));
}

#[test]
fn tgkill_is_recorded_with_the_thread_id() {
    let d = Scratch::new();
    let mut victim = sleeper();
    let pid = victim.pid();
    let run = trace_effects(&d, &["tgkill", &pid.to_string(), &pid.to_string(), "12"]);
    let s = run.one("tgkill syscall", |e| e.kind == "signal");
    check!(run, s, syscall, Some("tgkill".into()));
    check!(run, s, target_pid, Some(pid as i64));
    check!(run, s, signal, Some(12));
    check!(run, s, signal_name, Some("SIGUSR2".into()));
    check!(run, s, ret, Some(0));
    run.one("signal generated", |e| e.kind == "signal_generated" && e.target_pid == Some(pid as i64));
    assert_eq!(victim.wait_timeout(Duration::from_secs(10)), Some(128 + 12));
}

#[test]
fn pidfd_send_signal_is_recorded_with_the_target_pid() {
    let d = Scratch::new();
    let mut victim = sleeper();
    let pid = victim.pid();
    let run = trace_effects(&d, &["pidfd-kill", &pid.to_string(), "15"]);
    let s = run.one("pidfd_send_signal syscall", |e| e.kind == "signal");
    check!(run, s, syscall, Some("pidfd_send_signal".into()));
    check!(run, s, target_pid, Some(pid as i64));
    check!(run, s, signal, Some(15));
    check!(run, s, signal_name, Some("SIGTERM".into()));
    check!(run, s, ret, Some(0));
    run.one("signal generated", |e| e.kind == "signal_generated" && e.target_pid == Some(pid as i64));
    assert_eq!(victim.wait_timeout(Duration::from_secs(10)), Some(128 + 15));
}

#[test]
fn the_shell_kill_builtin_is_a_signal() {
    let d = Scratch::new();
    let mut victim = sleeper();
    let pid = victim.pid();
    let run = trace_sh(&d, &format!("kill -HUP {pid}"));
    run.assert_exit(0);
    let s = run.one("kill syscall", |e| e.kind == "signal");
    check!(run, s, target_pid, Some(pid as i64));
    check!(run, s, signal_name, Some("SIGHUP".into()));
    check!(run, s, signal, Some(1));
    assert_eq!(victim.wait_timeout(Duration::from_secs(10)), Some(128 + 1));
}

#[test]
fn a_signal_to_a_traced_child_is_generated_and_kills_it() {
    let d = Scratch::new();
    let run = trace_effects(&d, &["fork-kill", "15"]);
    let child = run.fact("fork-kill", "child");
    let s = run.one("kill syscall", |e| e.kind == "signal");
    check!(run, s, target_pid, Some(child));
    let g = run.one("signal generated", |e| e.kind == "signal_generated");
    check!(run, g, target_pid, Some(child));
    check!(run, g, signal, Some(15));
    let x = run.one("child exit", |e| e.kind == "exit" && e.pid as i64 == child);
    check!(run, x, signal_name, Some("SIGTERM".into()));
}

/// SIGCHLD on a child's exit is the kernel's doing, not an effect of the traced program.
#[test]
fn kernel_generated_signals_are_not_effects() {
    let d = Scratch::new();
    let run = trace_effects(&d, &["fork-exit", "0"]);
    run.fact("fork-exit", "child");
    run.none("a signal event", |e| e.kind == "signal" || e.kind == "signal_generated");
}
