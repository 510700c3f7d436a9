//! Helpers for `cargo xtask bench` (hidden: `pilot __bench ...`), and the latency histogram a
//! run keeps when `PILOT_BENCH_LATENCY` names a file to write it to: a session observer the
//! binary installs (`main.rs`), so nothing on the production path depends on this file.
//! Where start-up time goes is logged by `phase` spans (`RUST_LOG=pilot=debug`).
//!
//! `pilot __bench load floor` attaches empty programs to the agent's hooks (the floor: what
//! attaching anything there costs); `pilot __bench load agent` loads the real probes and reads
//! the ring buffer, tracking nothing. Both print `ready` once attached and stay until stdin
//! closes.
use std::io::{Read, Write};

use anyhow::{Result, bail};

use crate::{
    error::UsageError,
    event::Event,
    output::Output,
    probes::{self, Probes},
    session::{self, Observer, Session},
};

/// Environment variable naming where a run writes its event latency histogram (JSON).
pub const LATENCY_ENV: &str = "PILOT_BENCH_LATENCY";

pub fn main(args: &[String]) -> Result<i32> {
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["load", "floor"] => load_floor(),
        ["load", "agent"] => load_agent(),
        _ => bail!(UsageError::new("usage: pilot __bench load floor|agent (used by `cargo xtask bench`)")),
    }
}

fn load_floor() -> Result<i32> {
    probes::preflight()?;
    let _floor = probes::load_floor()?; // attached while this lives
    ready()?;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(0)
}

fn load_agent() -> Result<i32> {
    probes::preflight()?;
    let mut probes = Probes::load(&probes::Options::default())?;
    let mut out = Output::create(None, None, false)?;
    let mut session = Session::new();
    ready()?;
    loop {
        // The reader's own cost counts: it wakes as `pilot trace` does.
        use rustix::event::{PollFd, PollFlags, poll};
        let stdin = std::io::stdin();
        let timeout = rustix::time::Timespec::try_from(session::POLL).expect("a short poll");
        let stdin_ready = {
            let ring = probes.ring_fd();
            let mut fds = [PollFd::new(&ring, PollFlags::IN), PollFd::new(&stdin, PollFlags::IN)];
            let _ = poll(&mut fds, Some(&timeout));
            !fds[1].revents().is_empty()
        };
        session.pump(&mut probes, &mut out)?;
        if stdin_ready && stdin.lock().read(&mut [0u8; 64]).unwrap_or(0) == 0 {
            return Ok(0);
        }
    }
}

fn ready() -> Result<()> {
    let mut stdout = std::io::stdout();
    stdout.write_all(b"ready\n")?;
    stdout.flush()?;
    Ok(())
}

/// Kernel timestamp to "in the graph", per event, when `PILOT_BENCH_LATENCY` is set.
pub struct Latency {
    path: std::path::PathBuf,
    hist: hdrhistogram::Histogram<u64>,
}

impl Latency {
    /// The session observer `main` installs: one when `PILOT_BENCH_LATENCY` names a file.
    pub fn observer() -> Option<Box<dyn Observer>> {
        Latency::from_env().map(|l| Box::new(l) as Box<dyn Observer>)
    }

    pub fn from_env() -> Option<Latency> {
        let path = std::env::var_os(LATENCY_ENV)?;
        let hist = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 3).ok()?;
        Some(Latency { path: path.into(), hist })
    }

    pub fn write(&self) -> Result<()> {
        let h = &self.hist;
        // The agent's own footprint (not its children's), for the same report.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        let json = serde_json::json!({
            "events": h.len(),
            "p50_ns": h.value_at_quantile(0.50),
            "p99_ns": h.value_at_quantile(0.99),
            "p999_ns": h.value_at_quantile(0.999),
            "max_ns": h.max(),
            "agent_maxrss_kib": usage.ru_maxrss,
            "agent_cpu_ms": cpu_ms(&usage.ru_utime) + cpu_ms(&usage.ru_stime),
        });
        crate::error::OnPath::on(std::fs::write(&self.path, json.to_string() + "\n"), "writing", &self.path, crate::error::RUN_DIR)?;
        Ok(())
    }
}

/// The agent's CPU and wall time since a point of a run, logged at its end (RUST_LOG=pilot=debug):
/// `cargo xtask bench` judges post-processing on CPU time, which other load on a shared
/// machine does not inflate, and shows the wall time beside it.
pub struct Since {
    what: &'static str,
    wall: std::time::Instant,
    /// (user, system) CPU ms.
    cpu: (i64, i64),
}

impl Since {
    pub fn now(what: &'static str) -> Since {
        Since { what, wall: std::time::Instant::now(), cpu: process_cpu_ms() }
    }

    /// `cpu_ms` is user + system; `user_ms` the agent's own code (system time also holds the
    /// filesystem's work for the run directory's files).
    pub fn log(self) {
        let (user, system) = process_cpu_ms();
        let (user_ms, cpu_ms) = (user - self.cpu.0, user + system - self.cpu.0 - self.cpu.1);
        let wall_ms = self.wall.elapsed().as_millis();
        tracing::debug!(target: "pilot::bench", cpu_ms, user_ms, wall_ms, "since: {}", self.what);
    }
}

/// (user, system) CPU time of the agent process (every thread, not its children).
fn process_cpu_ms() -> (i64, i64) {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    (cpu_ms(&usage.ru_utime), cpu_ms(&usage.ru_stime))
}

fn cpu_ms(t: &libc::timeval) -> i64 {
    t.tv_sec * 1000 + t.tv_usec / 1000
}

impl Observer for Latency {
    /// From the event's kernel timestamp (CLOCK_BOOTTIME) to now, when it reaches the graph.
    fn event(&mut self, e: &Event) {
        let now = session::boottime_ns();
        let _ = self.hist.record(now.saturating_sub(e.ts_ns).max(1));
    }

    fn finished(&mut self) -> Result<()> {
        self.write()
    }
}
