//! A `pilot daemon` of a test's own (socket, metrics port, state directory), for the tests that
//! run pilots through one (tests/daemon.rs, tests/concurrent.rs): stopped by pid on drop.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::common::{RUN_TIMEOUT, Scratch, pilot_bin, wait_until};

/// A daemon on a socket and metrics port of its own; stopped (SIGTERM, by pid) on drop.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub metrics: String,
    /// Its socket, config, log and state, apart from the runs' directories: a live process
    /// writing in a directory makes it that process's data directory.
    pub _dir: Scratch,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// With `extra` lines of config.
    pub fn start_with(extra: &str) -> Daemon {
        let dir = Scratch::new();
        let metrics = free_port();
        let socket = dir.path().join("pilot.sock");
        let config = dir.file(
            "pilot.toml",
            &format!("socket = {:?}\nmetrics_listen = {metrics:?}\nstate_dir = {:?}\n{extra}", socket, dir.join("state")),
        );
        let child = Command::new(pilot_bin())
            .args(["daemon", "--config", &config])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("daemon.log")).unwrap()))
            .spawn()
            .expect("starting pilot daemon");
        let d = Daemon { child, socket, metrics, _dir: dir };
        assert!(wait_until(RUN_TIMEOUT, || d.socket.exists()), "the daemon listens");
        d
    }

    /// pilot with this daemon's socket (the client goes through it).
    pub fn client(&self, args: &[&str], cwd: &Scratch) -> Command {
        let mut c = Command::new(pilot_bin());
        c.args(args).env("PILOT_SOCKET", &self.socket).env("PILOT_JOURNAL", cwd.join("journal.jsonl")).current_dir(cwd.path());
        c
    }

    pub fn status(&self, cwd: &Scratch) -> Value {
        let out = self.client(&["status", "--json"], cwd).output().unwrap();
        let log = std::fs::read_to_string(self._dir.path().join("daemon.log")).unwrap_or_default();
        assert!(out.status.success(), "pilot status: {}\ndaemon log:\n{log}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn scrape(&self) -> String {
        let mut conn = TcpStream::connect(&self.metrics).expect("the metrics endpoint answers");
        // HTTP/1.1, as Prometheus scrapes (hyper answers an HTTP/1.0 request in HTTP/1.0).
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        text
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Only while it is ours: once reaped, its pid may be another test's process.
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if !wait_until(Duration::from_secs(40), || matches!(self.child.try_wait(), Ok(Some(_)))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub fn free_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

