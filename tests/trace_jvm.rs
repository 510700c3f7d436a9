//! A Java 17 program under `pilot trace`: the JVM's many threads must not hide what it does.
//! tests/helpers/Effects.java writes a file, then connects to a loopback listener from a thread
//! of its own and sends a greeting.
mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use common::*;

/// Directory holding Effects.class, compiled with javac once per test binary.
fn classes() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/helpers/Effects.java");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pilot-tests/java");
        fs::create_dir_all(&dir).unwrap();
        let out = Command::new("javac").arg("-d").arg(&dir).arg(&src).output().expect("running javac (Java 17 JDK)");
        assert!(out.status.success(), "javac failed:\n{}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

/// 127.0.0.1, as an IPv4 address or (the JVM's dual-stack sockets) IPv4-mapped IPv6.
fn assert_loopback_v4(run: &Run, e: &Event) {
    let ok = matches!(
        (e.family.as_deref(), e.addr.as_deref()),
        (Some("inet"), Some("127.0.0.1")) | (Some("inet6"), Some("::ffff:127.0.0.1"))
    );
    assert!(ok, "address of {e:#?}\n{}", run.dump());
}

#[test]
fn a_jvm_writing_a_file_and_connecting_from_a_thread() {
    let d = Scratch::new();
    let (server, port) = Server::tcp("127.0.0.1:0");
    let out = d.join("jvm.txt");
    let cp = classes().to_string_lossy().into_owned();
    let run = Pilot::new()
        .cwd(d.path())
        .command(&["java", "-Xmx64m", "-cp", &cp, "Effects", &out, &port.to_string()])
        .timeout(Duration::from_secs(180))
        .run();
    run.assert_exit(0);
    assert_eq!(run.stdout.trim(), "done", "{}", run.dump());
    assert_eq!(fs::read_to_string(&out).unwrap(), "written by the jvm\n");

    let java = run.find("exec of the JVM", |e| {
        e.kind == "exec" && e.ret == Some(0) && e.argv.as_ref().is_some_and(|a| a.iter().any(|s| s == "Effects"))
    });
    assert!(java.path().starts_with('/') && java.path().ends_with("/java"), "{}", run.dump());
    let pid = java.pid;

    // The file: opened for writing, 19 bytes written, from the JVM process.
    let o = run.at("open", &out);
    check!(run, o, pid, pid);
    assert!(o.flags.unwrap_or(0) & 0o1 != 0, "opened for writing\n{}", run.dump());
    let (w, bytes, _) = run.writes_to(&out);
    assert_eq!(bytes, 19, "{}", run.dump());
    check!(run, w[0], pid, pid);

    // The connect: from a thread that is not the process's leader, to the listener.
    let c = run.find("connect to the listener", |e| e.kind == "connect" && e.port == Some(port));
    check!(run, c, pid, pid);
    assert_loopback_v4(&run, c);
    assert!(c.ret == Some(0) || c.ret == Some(-115), "connected (or in progress)\n{}", run.dump());
    assert_ne!(c.tid, c.pid, "connect from a non-main thread\n{}", run.dump());

    // Thread creation is recorded, including the connecting thread's.
    let threads = run.all(|e| e.kind == "fork" && e.thread == Some(true) && e.pid == pid);
    assert!(threads.len() >= 2, "the JVM's threads are fork events with thread:true\n{}", run.dump());
    assert!(
        threads.iter().any(|t| t.child_pid == Some(c.tid)),
        "the creation of thread {} that connected\n{}",
        c.tid,
        run.dump()
    );
    run.none("a thread counted as a process", |e| e.kind == "exit" && e.pid == c.tid);

    // What it sent, to the listener's address.
    let s = run.find("send to the listener", |e| e.kind == "send" && e.port == Some(port));
    check!(run, s, pid, pid);
    check!(run, s, bytes, Some(19));
    assert_loopback_v4(&run, s);
    assert!(wait_until(Duration::from_secs(10), || server.received() == 19), "the listener got the greeting");
    assert_eq!(run.summary()["complete"], true, "{}", run.dump());
}
