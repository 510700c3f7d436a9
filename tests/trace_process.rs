//! Process effects under `pilot trace`: exec (path, argv, failures), fork, threads, exit codes
//! and signals, a daemonizing double fork that outlives its parent, and an unrelated busy
//! process that must not show up.
mod common;

use std::{fs, os::unix::fs::PermissionsExt as _, time::Duration};

use common::*;

#[test]
fn exec_records_the_absolute_path_and_all_twenty_arguments() {
    let d = Scratch::new();
    let args: Vec<String> = (1..=20).map(|i| format!("arg-{i:02}")).collect();
    let mut cmd = vec!["/bin/echo"];
    cmd.extend(args.iter().map(String::as_str));
    let run = trace_cmd(&d, &cmd);
    run.assert_exit(0);
    let e = run.find("exec of echo", |e| e.kind == "exec" && e.ret == Some(0));
    let mut want = vec!["/bin/echo".to_string()];
    want.extend(args);
    check!(run, e, argv, Some(want));
    check!(run, e, truncated, None);
    let real = fs::canonicalize(e.path()).unwrap();
    assert_eq!(real, fs::canonicalize("/bin/echo").unwrap(), "{}", run.dump());
    assert!(e.path().starts_with('/'), "{}", run.dump());
    check!(run, e, comm, Some("echo".into()));
}

#[test]
fn a_very_long_argv_is_marked_truncated() {
    let d = Scratch::new();
    let args: Vec<String> = (1..=100).map(|i| format!("a{i}")).collect();
    let mut cmd = vec!["/bin/true"];
    cmd.extend(args.iter().map(String::as_str));
    let run = trace_cmd(&d, &cmd);
    run.assert_exit(0);
    let e = run.find("exec of true", |e| e.kind == "exec" && e.ret == Some(0));
    check!(run, e, truncated, Some(true));
    let argv = e.argv.clone().unwrap_or_default();
    assert!(argv.len() >= 20 && argv.len() <= 101, "{argv:?}");
    assert_eq!(argv[0], "/bin/true");
    assert_eq!(&argv[1..], &args[..argv.len() - 1], "recorded arguments are a prefix\n{}", run.dump());
}

#[test]
fn exec_of_a_relative_path_is_made_absolute() {
    let d = Scratch::new();
    d.mkdir("bin");
    fs::copy("/bin/true", d.join("bin/mytrue")).unwrap();
    // `cd` to an absolute path (pilot reads the root shell's cwd from /proc after starting it),
    // then a relative exec.
    let run = trace_sh(&d, &format!("cd {} && ./mytrue first", d.join("bin")));
    run.assert_exit(0);
    let e = run.find("exec of mytrue", |e| {
        e.kind == "exec" && e.ret == Some(0) && e.argv.as_ref().is_some_and(|a| a[0] == "./mytrue")
    });
    check!(run, e, path, Some(d.join("bin/mytrue")));
    check!(run, e, argv, Some(vec!["./mytrue".to_string(), "first".to_string()]));
}

/// execveat relative to a directory fd, and fexecve (execveat of an fd with AT_EMPTY_PATH):
/// the exec's path is still the program's absolute path.
#[test]
fn execveat_and_fexecve_record_the_program_path() {
    let d = Scratch::new();
    let bin = d.mkdir("bin");
    fs::copy("/bin/true", d.join("bin/t1")).unwrap();
    fs::copy("/bin/true", d.join("bin/t2")).unwrap();
    let t2 = d.join("bin/t2");
    let script = format!("{0} execveat {bin} t1 first; {0} fexecve {t2} second; exit 0", effects());
    let run = trace_sh(&d, &script);
    run.assert_exit(0);
    let e1 = run.find("exec of t1", |e| e.kind == "exec" && e.ret == Some(0) && e.argv.as_ref().is_some_and(|a| a[0] == "t1"));
    check!(run, e1, path, Some(d.join("bin/t1")));
    let e2 = run.find("exec of t2", |e| e.kind == "exec" && e.ret == Some(0) && e.argv.as_ref().is_some_and(|a| a[0] == t2));
    check!(run, e2, path, Some(t2.clone()));
}

#[test]
fn a_failed_exec_is_recorded_with_its_errno() {
    let d = Scratch::new();
    let missing = d.join("no-such-program");
    let run = trace_effects(&d, &["exec", &missing, "x", "+", "exit", "0"]);
    let e = run.find("failed exec", |e| e.kind == "exec" && e.ret.unwrap_or(0) < 0 && e.mentions("no-such-program"));
    check!(run, e, ret, Some(-2));
    check!(run, e, error, Some("ENOENT".into()));
    check!(run, e, syscall, Some("execve".into()));
    check!(run, e, path, Some(missing.clone()));
    check!(run, e, argv, Some(vec![missing.clone(), "x".to_string()]));
}

#[test]
fn exec_of_a_file_that_is_not_a_program_is_enoexec() {
    let d = Scratch::new();
    let junk = d.file("junk", "\x01\x02 not a program\n");
    fs::set_permissions(&junk, fs::Permissions::from_mode(0o755)).unwrap();
    let text = d.file("text", "plain text\n");
    fs::set_permissions(&text, fs::Permissions::from_mode(0o644)).unwrap();
    let run = trace_effects(&d, &["exec", &junk, "+", "exec", &text, "+", "exit", "0"]);
    let e = run.find("exec of junk", |e| e.kind == "exec" && e.path() == junk);
    check!(run, e, ret, Some(-8));
    check!(run, e, error, Some("ENOEXEC".into()));
    let t = run.find("exec of a non-executable file", |e| e.kind == "exec" && e.path() == text);
    check!(run, t, ret, Some(-13));
    check!(run, t, error, Some("EACCES".into()));
}

#[test]
fn fork_and_exit_code_of_a_child() {
    let d = Scratch::new();
    let run = trace_effects(&d, &["fork-exit", "3"]);
    let parent = run.pid_of_exec(effects());
    let child = run.fact("fork-exit", "child") as u32;
    let f = run.find("fork", |e| e.kind == "fork" && e.child_pid == Some(child));
    check!(run, f, pid, parent);
    assert_ne!(f.thread, Some(true), "{}", run.dump());
    assert!(f.child_start_ns.unwrap_or(0) > 0, "{}", run.dump());
    assert_eq!(f.flags.map(|fl| fl & 0x10000), Some(0), "no CLONE_THREAD\n{}", run.dump());
    let x = run.one("child exit", |e| e.kind == "exit" && e.pid == child);
    check!(run, x, exit_code, Some(3));
    check!(run, x, signal, None);
    // The child's identity is its start time, as announced at fork.
    check!(run, x, start_ns, f.child_start_ns);
    let root = run.one("root exit", |e| e.kind == "exit" && e.pid == parent);
    check!(run, root, exit_code, Some(0));
    assert_eq!(run.summary_u64("processes"), 2, "{}", run.dump());
}

#[test]
fn a_child_killed_by_a_signal_exits_with_that_signal() {
    let d = Scratch::new();
    let run = trace_effects(&d, &["fork-kill", "9"]);
    let child = run.fact("fork-kill", "child") as u32;
    let x = run.one("child exit", |e| e.kind == "exit" && e.pid == child);
    check!(run, x, signal, Some(9));
    check!(run, x, signal_name, Some("SIGKILL".into()));
    check!(run, x, exit_code, None);
}

#[test]
fn threads_are_forks_with_thread_true_and_their_effects_carry_their_tid() {
    let d = Scratch::new();
    let f = d.join("from-thread");
    let run = trace_effects(&d, &["thread-write", &f]);
    let pid = run.pid_of_exec(effects());
    let tid = run.fact("thread", "tid") as u32;
    assert_ne!(tid, pid);
    let t = run.find("thread creation", |e| e.kind == "fork" && e.child_pid == Some(tid));
    check!(run, t, thread, Some(true));
    check!(run, t, pid, pid);
    assert!(t.flags.unwrap_or(0) & 0x10000 != 0, "CLONE_THREAD in flags\n{}", run.dump());
    let o = run.at("open", &f);
    check!(run, o, pid, pid);
    check!(run, o, tid, tid);
    let (w, bytes, _) = run.writes_to(&f);
    assert_eq!(bytes, 12, "{}", run.dump());
    check!(run, w[0], pid, pid);
    check!(run, w[0], tid, tid);
    run.none("an exit event for the thread (exit is per process)", |e| e.kind == "exit" && e.pid == tid);
    assert_eq!(run.summary_u64("processes"), 1, "a thread is not a process\n{}", run.dump());
}

#[test]
fn exit_called_from_a_thread_is_the_process_exit_code() {
    let d = Scratch::new();
    let run = trace_cmd(&d, &[effects(), "thread-exit", "4"]);
    run.assert_exit(4);
    let pid = run.pid_of_exec(effects());
    let x = run.one("process exit", |e| e.kind == "exit" && e.pid == pid);
    check!(run, x, exit_code, Some(4));
    check!(run, x, signal, None);
}

/// A thread belongs to its process: the fork event of a thread names the process's identity
/// (its start time), the same start_ns the process's own events carry, not 0.
#[test]
fn a_thread_fork_carries_its_process_start_time() {
    let d = Scratch::new();
    let f = d.join("from-thread");
    let run = trace_effects(&d, &["thread-write", &f]);
    let tid = run.fact("thread", "tid") as u32;
    let t = run.find("thread creation", |e| e.kind == "fork" && e.child_pid == Some(tid));
    let o = run.at("open", &f);
    assert!(o.start_ns.unwrap_or(0) > 0, "{}", run.dump());
    check!(run, t, child_start_ns, o.start_ns);
}

/// A thread other than the leader calls execve: the process keeps its pid, and pilot must keep
/// following it (and finish when it exits).
#[test]
fn exec_from_a_non_leader_thread_keeps_the_process_tracked() {
    let d = Scratch::new();
    let after = d.join("after-exec");
    let script = format!("echo done > {after}");
    let run = trace_effects(&d, &["thread-exec", "/bin/sh", "-c", &script]);
    let pid = run.pid_of_exec(effects());
    let e = run.find("exec of sh", |e| e.kind == "exec" && e.ret == Some(0) && e.mentions("/sh"));
    check!(run, e, pid, pid);
    check!(run, e, tid, pid);
    let o = run.at("open", &after);
    check!(run, o, pid, pid);
    let x = run.one("exit of the process", |e| e.kind == "exit" && e.pid == pid);
    check!(run, x, exit_code, Some(0));
    assert_eq!(fs::read_to_string(&after).unwrap(), "done\n");
}

/// shell -> subshell -> background child -> setsid -> exec sh: the daemon outlives the traced
/// command, and pilot follows it to the end.
#[test]
fn a_daemonized_grandchild_stays_tracked_and_pilot_waits_for_it() {
    let d = Scratch::new();
    let out = d.join("daemon.txt");
    // The daemon waits until the root is gone (reaped by pilot), then writes.
    let script = format!(
        "( setsid sh -c \"while kill -0 $$ 2>/dev/null; do sleep 0.05; done; sleep 0.2; echo late > {out}\" & ) ; exit 0"
    );
    let run = trace_sh(&d, &script);
    run.assert_exit(0);
    // pilot returned only after the daemon finished.
    assert_eq!(fs::read_to_string(&out).ok().as_deref(), Some("late\n"), "{}", run.dump());
    let root = run.summary()["root_pid"].as_u64().unwrap() as u32;
    let (w, bytes, _) = run.writes_to(&out);
    assert_eq!(bytes, 5, "{}", run.dump());
    let daemon = w[0].pid;
    assert_ne!(daemon, root);
    run.find("fork of the daemon", |e| e.kind == "fork" && e.child_pid == Some(daemon));
    run.find("exec of setsid", |e| e.kind == "exec" && e.pid == daemon && e.path().ends_with("/setsid"));
    let sh = run.find("exec of the daemon's shell", |e| {
        e.kind == "exec" && e.pid == daemon && e.ret == Some(0) && e.path().ends_with("/sh")
    });
    assert!(sh.argv.as_ref().is_some_and(|a| a.iter().any(|s| s.contains("echo late"))), "{}", run.dump());
    run.find("exec of sleep by the daemon's child", |e| e.kind == "exec" && e.path().ends_with("/sleep"));
    let root_exit = run.one("root exit", |e| e.kind == "exit" && e.pid == root);
    check!(run, root_exit, exit_code, Some(0));
    assert!(root_exit.ts_ns < w[0].first_ts_ns.unwrap_or(w[0].ts_ns), "the daemon wrote after the root exited\n{}", run.dump());
    run.one("daemon exit", |e| e.kind == "exit" && e.pid == daemon);
    assert_eq!(run.summary()["exit_code"], 0);
}

#[test]
fn an_unrelated_busy_process_produces_no_events() {
    let d = Scratch::new();
    let busy_file = d.join("busy");
    let mut busy = Proc::sh(&format!("while :; do echo x > {busy_file}; done"));
    let busy_pid = busy.pid();
    assert!(wait_until(Duration::from_secs(10), || fs::metadata(&busy_file).is_ok()), "the busy loop never wrote");
    let mine = d.join("mine");
    let run = trace_effects(&d, &["write", &mine, "3", "10", "+", "sleep", "300", "+", "unlink", &mine]);
    assert!(alive(busy_pid), "the busy process ran during the trace");
    busy.kill();
    run.at("unlink", &mine);
    run.none("an event of the busy process", |e| e.pid == busy_pid || e.target_pid == Some(busy_pid as i64));
    run.none("an event mentioning the busy file", |e| e.mentions(&busy_file));
    assert_eq!(run.summary_u64("processes"), 1, "{}", run.dump());
}

#[test]
fn the_process_count_and_exit_code_are_in_the_summary() {
    let d = Scratch::new();
    let run = trace_sh(&d, "/bin/true; /bin/true; exit 5");
    run.assert_exit(5);
    let s = run.summary();
    assert_eq!(s["processes"], 3, "{}", run.dump());
    assert_eq!(s["exit_code"], 5, "{}", run.dump());
    let root = s["root_pid"].as_u64().unwrap() as u32;
    let x = run.one("root exit", |e| e.kind == "exit" && e.pid == root);
    check!(run, x, exit_code, Some(5));
    assert_eq!(run.of_kind("fork").len(), 2, "{}", run.dump());
}
