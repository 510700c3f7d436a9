//! The command-line contract of `pilot trace`: bad input exits 2 with one `pilot: ` line, the
//! traced command's exit status is passed through, and what --out, -v and the final account
//! contain.
mod common;

use std::fs;

use common::*;

/// Bad input: exit status 2, exactly one line on stderr, starting with "pilot: ".
fn assert_usage_error(run: &Run, mentions: &str) {
    assert_eq!(run.code, Some(2), "exit status for bad input\n{}", run.dump());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got {lines:#?}");
    assert!(lines[0].starts_with("pilot: "), "{:?}", lines[0]);
    assert!(lines[0].contains(mentions), "{:?} should mention {mentions:?}", lines[0]);
}

#[test]
fn a_nonexistent_pid_is_bad_input() {
    let pid_max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let missing = (1..1000).map(|i| pid_max - i).find(|p| !alive(*p)).unwrap();
    let run = Pilot::new().no_out().args(["--pid", &missing.to_string()]).run();
    assert_usage_error(&run, &missing.to_string());
}

#[test]
fn a_nonexistent_cgroup_is_bad_input() {
    let path = format!("{}/{}", common::cgroup2_root(), unique("pilot-test-missing"));
    let run = Pilot::new().no_out().args(["--cgroup", &path]).run();
    assert_usage_error(&run, &path);
}

#[test]
fn a_directory_outside_the_cgroup_v2_hierarchy_is_bad_input() {
    let d = Scratch::new();
    let run = Pilot::new().no_out().args(["--cgroup", &d.s()]).run();
    assert_usage_error(&run, &d.s());
}

#[test]
fn nothing_to_trace_is_bad_input() {
    let run = Pilot::new().no_out().run();
    assert_usage_error(&run, "");
}

#[test]
fn a_command_that_cannot_be_started_is_bad_input() {
    let d = Scratch::new();
    let missing = d.join("no-such-command");
    let run = Pilot::new().no_out().command(&[&missing, "arg"]).run();
    assert_usage_error(&run, &missing);
}

#[test]
fn a_ring_buffer_size_that_is_not_a_power_of_two_is_bad_input() {
    let run = Pilot::new().no_out().args(["--ringbuf-kib", "3"]).command(&["/bin/true"]).run();
    assert_usage_error(&run, "");
}

#[test]
fn not_being_root_is_bad_input() {
    let out = common::pilot_as_nobody(&["trace", "--", "/bin/true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("pilot: ") && lines[0].contains("root"), "{stderr}");
}

#[test]
fn the_exit_status_of_the_command_is_passed_through() {
    let d = Scratch::new();
    let run = trace_sh(&d, "exit 7");
    run.assert_exit(7);
    assert_eq!(run.summary()["exit_code"], 7, "{}", run.dump());
}

#[test]
fn a_command_killed_by_sigterm_exits_143() {
    let d = Scratch::new();
    let run = trace_sh(&d, "kill -TERM $$; sleep 5");
    run.assert_exit(143);
    let root = run.summary()["root_pid"].as_u64().unwrap() as u32;
    let x = run.one("root exit", |e| e.kind == "exit" && e.pid == root);
    check!(run, x, signal, Some(15));
    check!(run, x, signal_name, Some("SIGTERM".into()));
    check!(run, x, exit_code, None);
}

#[test]
fn a_command_that_crashes_exits_128_plus_the_signal() {
    let d = Scratch::new();
    let run = trace_cmd(&d, &[effects(), "segv"]);
    run.assert_exit(139);
    let root = run.summary()["root_pid"].as_u64().unwrap() as u32;
    let x = run.one("root exit", |e| e.kind == "exit" && e.pid == root);
    check!(run, x, signal, Some(11));
    check!(run, x, signal_name, Some("SIGSEGV".into()));
    // A fault is the kernel's signal, not an effect of the program.
    run.none("a signal effect", |e| e.kind == "signal_generated" || e.kind == "signal");
}

#[test]
fn the_summary_accounts_for_every_event() {
    let d = Scratch::new();
    let f = d.join("f");
    let run = trace_sh(&d, &format!("echo hi > {f}; rm {f}; rm -f {f}"));
    run.assert_exit(0);
    let s = run.summary();
    assert_eq!(s["schema"], "pilot.trace-summary/v1");
    assert_eq!(s["command"], serde_json::json!(["/bin/sh", "-c", format!("echo hi > {f}; rm {f}; rm -f {f}")]));
    assert!(s["target"].as_str().is_some_and(|t| !t.is_empty()), "{s:#}");
    assert_eq!(s["exit_code"], 0);
    let root = s["root_pid"].as_u64().unwrap() as u32;
    assert_eq!(run.pid_of_exec("/bin/sh"), root);
    assert_eq!(s["processes"], 3, "sh and two rm\n{}", run.dump());
    assert_eq!(run.summary_u64("events"), run.events.len() as u64, "events = lines of events.jsonl\n{}", run.dump());
    let by_kind = s["events_by_kind"].as_object().expect("events_by_kind");
    for (kind, n) in by_kind {
        assert_eq!(n.as_u64().unwrap(), run.of_kind(kind).len() as u64, "events_by_kind.{kind}\n{}", run.dump());
    }
    assert_eq!(by_kind.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), run.events.len() as u64);
    assert_eq!(by_kind["unlink"], 2);
    assert!(run.summary_u64("records") > 0);
    assert_eq!(s["decode_errors"], 0);
    assert_eq!(s["lost_events"], 0);
    for cause in ["ringbuf_full", "inflight_full", "tracked_full", "write_agg_full"] {
        assert_eq!(s["lost_by_cause"][cause], 0, "lost_by_cause.{cause}\n{s:#}");
    }
    assert_eq!(s["complete"], true);
    assert!(!run.stderr.contains("INCOMPLETE"), "{}", run.stderr);
}

#[test]
fn every_event_has_the_identity_fields_and_absolute_paths() {
    let d = Scratch::new();
    d.mkdir("sub");
    let script = format!("cd {} && mkdir x && echo a > x/f && mv x/f x/g && ln -s g x/l && chmod 600 x/g && rm -r x; rm -f nothing", d.join("sub"));
    let run = trace_sh(&d, &script);
    run.assert_exit(0);
    const KINDS: &[&str] = &[
        "exec", "fork", "exit", "open", "write", "send", "unlink", "rmdir", "mkdir", "rename", "truncate", "chmod",
        "chown", "link", "symlink", "mknod", "xattr", "chdir", "chroot", "connect", "bind", "accept", "listen",
        "signal", "signal_generated",
    ];
    for (e, line) in run.events.iter().zip(&run.lines) {
        assert!(KINDS.contains(&e.kind.as_str()), "unknown kind: {line}");
        assert!(e.pid > 0 && e.tid > 0 && e.ts_ns > 0, "{line}");
        assert!(e.start_ns.is_some() && e.comm.as_deref().is_some_and(|c| !c.is_empty()), "{line}");
        let ret = e.ret.unwrap_or(0);
        if e.syscall.is_some() {
            assert!(e.ret.is_some(), "a syscall event has its result: {line}");
            assert_eq!(ret < 0, e.error.is_some(), "error is set exactly when ret < 0: {line}");
        }
        if let Some(err) = &e.error {
            assert!(err.starts_with('E') && err.len() > 2 && err != "E?", "an errno name: {line}");
        }
        for p in [&e.path, if e.kind == "symlink" { &None } else { &e.path2 }].into_iter().flatten() {
            assert!(p.starts_with('/') || p == "pipe", "absolute path: {line}");
            assert!(!p.contains("/./") && !p.contains("/../") && !p.contains("//"), "normalized path: {line}");
        }
    }
    run.none("pilot's own output files", |e| e.mentions("events.jsonl") || e.mentions("summary.json"));
    for kind in ["mkdir", "open", "write", "rename", "symlink", "chmod", "unlink", "rmdir", "chdir", "exec", "fork", "exit"] {
        assert!(!run.of_kind(kind).is_empty(), "a {kind} event\n{}", run.dump());
    }
}

#[test]
fn the_account_on_stderr_lists_the_effects_and_completeness() {
    let d = Scratch::new();
    let f = d.join("gone");
    let run = trace_sh(&d, &format!("rm -f {f}"));
    run.assert_exit(0);
    assert!(run.stderr.contains("complete"), "{}", run.stderr);
    let line = run.stderr.lines().find(|l| l.contains("unlink") && l.contains(&f)).unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(line.contains("ENOENT"), "a failed unlink says so: {line}");
}

#[test]
fn verbose_prints_every_event_as_it_happens() {
    let d = Scratch::new();
    let f = d.join("verbose-target");
    let run = Pilot::new().cwd(d.path()).args(["-v"]).command(&["/bin/rm", "-f", &f]).run();
    run.assert_exit(0);
    let unlink = run.stderr.lines().filter(|l| l.contains("unlink") && l.contains(&f)).count();
    // One line as it happened, one in the final account.
    assert!(unlink >= 2, "{}", run.stderr);
    assert!(run.stderr.lines().any(|l| l.contains("exec") && l.contains("/bin/rm")), "{}", run.stderr);
}

#[test]
fn without_out_nothing_is_written_but_the_account() {
    let d = Scratch::new();
    let script = format!("echo x > {}", d.join("written"));
    let run = Pilot::new().no_out().cwd(d.path()).command(&["/bin/sh", "-c", &script]).run();
    run.assert_exit(0);
    assert!(!run.has_events_file && run.summary.is_none());
    assert!(run.stderr.contains(&d.join("written")), "{}", run.stderr);
    let names: Vec<_> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("written")], "pilot wrote nothing in the cwd");
}

#[test]
fn out_creates_missing_directories() {
    let d = Scratch::new();
    let out = d.join("a/b/c");
    let run = Pilot::new().no_out().cwd(d.path()).args(["--out", &out]).command(&["/bin/true"]).run();
    run.assert_exit(0);
    let events = fs::read_to_string(format!("{out}/events.jsonl")).expect("events.jsonl");
    assert!(events.lines().count() >= 2, "{events}");
    let summary: serde_json::Value = serde_json::from_str(&fs::read_to_string(format!("{out}/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["exit_code"], 0);
}
