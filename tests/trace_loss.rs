//! Loss accounting: when the kernel cannot deliver events (here, a 4 KiB ring buffer and a burst
//! of file creations), the trace must say it is incomplete and why; with the default buffer
//! the same kind of burst is complete. With RUST_LOG asking for them, the kernel programs log
//! the losses themselves (aya-log).
mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_burst_into_a_tiny_ring_buffer_is_reported_incomplete() {
    let d = Scratch::new();
    let dir = d.mkdir("burst");
    let run = Pilot::new()
        .cwd(d.path())
        .args(["--ringbuf-kib", "4"])
        .command(&[effects(), "burst", &dir, "20000"])
        .timeout(Duration::from_secs(300))
        .run();
    run.assert_exit(0);
    assert_eq!(run.fact("burst", "ret"), 20000, "the helper unlinked every file");
    let s = run.summary();
    assert_eq!(s["complete"], false, "{s:#}");
    let lost = run.summary_u64("lost_events");
    assert!(lost > 0, "{s:#}");
    let ringbuf_full = s["lost_by_cause"]["ringbuf_full"].as_u64().unwrap_or(0);
    assert!(ringbuf_full > 0, "{s:#}");
    let by_cause: u64 = s["lost_by_cause"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(by_cause, lost, "lost_events is the sum of its causes\n{s:#}");
    // Far fewer than the 40000 file events made it.
    let file_events = run.all(|e| (e.kind == "open" || e.kind == "unlink") && e.path().starts_with(&dir)).len();
    assert!(file_events < 40000, "{file_events} file events with a 4 KiB buffer");
    let headline = run.stderr.lines().find(|l| l.contains("INCOMPLETE")).unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(headline.contains("ringbuf_full"), "the account says why: {headline}");
}

#[test]
fn the_same_kind_of_burst_with_the_default_buffer_is_complete() {
    let d = Scratch::new();
    let dir = d.mkdir("burst");
    let run = Pilot::new()
        .cwd(d.path())
        .command(&[effects(), "burst", &dir, "2000"])
        .timeout(Duration::from_secs(300))
        .run();
    run.assert_exit(0);
    let s = run.summary();
    assert_eq!(s["complete"], true, "{s:#}");
    assert_eq!(s["lost_events"], 0, "{s:#}");
    let opens = run.all(|e| e.kind == "open" && e.path().starts_with(&dir) && e.ret.unwrap_or(-1) >= 0);
    let unlinks = run.all(|e| e.kind == "unlink" && e.path().starts_with(&dir) && e.ret == Some(0));
    assert_eq!((opens.len(), unlinks.len()), (2000, 2000), "every creation and removal\n{s:#}");
    assert!(unlinks.iter().any(|e| e.path() == format!("{dir}/f1999")));
    assert!(run.stderr.contains("complete (0 events lost)") || !run.stderr.contains("INCOMPLETE"), "{}", run.stderr);
}

/// Kernel diagnostics (agent-ebpf/src/diag.rs) appear as `pilot::kernel` log lines when RUST_LOG
/// asks for them: each cause of loss named, on a few lines however many events are lost (the
/// 1st, 2nd, 4th... per cause and CPU). Control: the same burst under the default level loses
/// events too, and logs none of them.
#[test]
fn kernel_logs_name_the_losses_only_when_rust_log_asks() {
    let burst = |rust_log: &str| {
        let d = Scratch::new();
        let dir = d.mkdir("burst");
        let run = Pilot::new()
            .cwd(d.path())
            .env("RUST_LOG", rust_log)
            .args(["--ringbuf-kib", "4"])
            .command(&[effects(), "burst", &dir, "5000"])
            .timeout(Duration::from_secs(300))
            .run();
        run.assert_exit(0);
        let lost = run.summary()["lost_by_cause"]["ringbuf_full"].as_u64().unwrap_or(0);
        assert!(lost > 100, "a 4 KiB buffer loses events: {}", run.dump());
        (run, lost)
    };

    let (run, lost) = burst("pilot::kernel=debug");
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("pilot::kernel")).collect();
    let named: Vec<&&str> = lines.iter().filter(|l| l.contains("lost an event: ringbuf_full (loss ")).collect();
    assert!(
        named.iter().any(|l| l.contains("(loss 1 of this cause on this CPU)")),
        "the first loss is logged\n{}",
        run.stderr
    );
    assert!(named.iter().any(|l| l.contains("DEBUG")), "{}", run.stderr);
    assert!((named.len() as u64) * 4 < lost, "{} lines for {lost} losses: a few per CPU", named.len());

    let (quiet, _) = burst("warn");
    assert!(!quiet.stderr.contains("pilot::kernel"), "no kernel lines unless asked\n{}", quiet.stderr);
}
