//! Helpers for `cargo xtask bench` (hidden: `pilot __bench ...`), and the latency histogram a
//! run keeps when `PILOT_BENCH_LATENCY` names a file to write it to.
//!
//! `pilot __bench load floor` attaches empty programs to the agent's hooks (the floor: what
//! attaching anything there costs); `pilot __bench load agent` loads the real probes and reads
//! the ring buffer, tracking nothing. Both print `ready` once attached and stay until stdin
//! closes.
use std::io::{Read, Write};

use anyhow::{Result, bail};

use crate::{
    error::UsageError,
    output::Output,
    probes::{self, Probes},
    session::{self, Session},
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
        let mut fds = [
            libc::pollfd { fd: probes.ring_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 },
        ];
        unsafe { libc::poll(fds.as_mut_ptr(), 2, crate::trace::POLL_MS) };
        session.pump(&mut probes, &mut out)?;
        if fds[1].revents != 0 && std::io::stdin().read(&mut [0u8; 64]).unwrap_or(0) == 0 {
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
    pub fn from_env() -> Option<Latency> {
        let path = std::env::var_os(LATENCY_ENV)?;
        let hist = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 3).ok()?;
        Some(Latency { path: path.into(), hist })
    }

    /// Record one event whose kernel timestamp (CLOCK_BOOTTIME) is `ts_ns`.
    pub fn record(&mut self, ts_ns: u64) {
        let now = session::boottime_ns();
        let _ = self.hist.record(now.saturating_sub(ts_ns).max(1));
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
        std::fs::write(&self.path, json.to_string() + "\n")?;
        Ok(())
    }
}

fn cpu_ms(t: &libc::timeval) -> i64 {
    t.tv_sec * 1000 + t.tv_usec / 1000
}

/// Where start-up and tear-down time goes: `RUST_LOG=pilot=debug pilot run -- true` logs each
/// phase's wall time.
pub struct Phases(std::time::Instant);

impl Phases {
    pub fn start() -> Phases {
        Phases(std::time::Instant::now())
    }

    pub fn mark(&mut self, phase: &str) {
        tracing::debug!("phase {phase}: {:.1} ms", self.0.elapsed().as_secs_f64() * 1e3);
        self.0 = std::time::Instant::now();
    }
}
