//! What `pilot trace` and `pilot run` share: pumping records from the ring buffer through the
//! tracker into the outputs (events.jsonl, the account, the graph), reaping, and the summary.
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Result;
use serde::Serialize;

use agent_common::{EventHeader, kind};

use crate::{account::Account, decode, graph, output::Output, probes::Probes, procfs, tracker::Tracker};

#[derive(Serialize)]
pub struct Summary {
    pub schema: &'static str,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub started_unix_ms: u128,
    pub duration_ms: u128,
    pub processes: usize,
    pub events: u64,
    pub events_by_kind: std::collections::BTreeMap<&'static str, u64>,
    pub records: u64,
    pub decode_errors: u64,
    /// Events the kernel could not deliver, in total and by cause. Nonzero: incomplete.
    pub lost_events: u64,
    pub lost_by_cause: std::collections::BTreeMap<&'static str, u64>,
    pub complete: bool,
    /// The ring buffer's size and the most it held when the reader looked (its headroom).
    pub ringbuf_bytes: u64,
    pub ringbuf_peak_bytes: u64,
}

pub static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub fn headline(s: &Summary) -> String {
    let completeness = if s.complete {
        "complete (0 events lost)".to_string()
    } else {
        let causes: Vec<String> =
            s.lost_by_cause.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{v} {k}")).collect();
        format!("INCOMPLETE: {} events lost ({})", s.lost_events, causes.join(", "))
    };
    format!(
        "pilot: traced {}: {} process{}, {} events, {}",
        s.target,
        s.processes,
        if s.processes == 1 { "" } else { "es" },
        s.events,
        completeness
    )
}

pub struct Session {
    pub tracker: Tracker,
    pub account: Account,
    pub graph: graph::Builder,
    /// Events written so far: the line number of the next one in events.jsonl, minus one.
    pub events: u64,
    /// Ring buffer: size and highest fill seen.
    pub ring: (u64, u64),
    /// Per-event latency, kept only for `cargo xtask bench` (PILOT_BENCH_LATENCY).
    pub latency: Option<crate::bench::Latency>,
    /// Issue 16: notices of the sandbox's supervisor not yet delivered, merged into the ring
    /// buffer's records by time (a process's fork comes before its supervised call, a
    /// descriptor the supervisor installed before the writes to it).
    pub supervised: std::collections::VecDeque<crate::sandbox::supervisor::Notice>,
}

/// Who was traced, for the summary.
pub struct Traced {
    pub target: String,
    pub command: Option<Vec<String>>,
    pub root_pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub started_at: std::time::SystemTime,
    pub started: std::time::Instant,
}

impl Session {
    /// summary.json of this session; `losses` per cause from the probes.
    pub fn summary(&self, t: Traced, losses: [u64; agent_common::loss::COUNT as usize]) -> Summary {
        let counts = &self.tracker.counts;
        let lost: u64 = losses.iter().sum();
        Summary {
            schema: "pilot.trace-summary/v1",
            target: t.target,
            command: t.command,
            root_pid: t.root_pid,
            exit_code: t.exit_code,
            started_unix_ms: t.started_at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
            duration_ms: t.started.elapsed().as_millis(),
            processes: self.tracker.processes().count(),
            events: self.events,
            events_by_kind: counts.by_kind.clone(),
            records: counts.records,
            decode_errors: counts.decode_errors,
            lost_events: lost,
            lost_by_cause: agent_common::loss::NAMES.iter().zip(losses).map(|(n, v)| (*n, v)).collect(),
            complete: lost == 0 && counts.decode_errors == 0,
            ringbuf_bytes: self.ring.0,
            ringbuf_peak_bytes: self.ring.1,
        }
    }

    pub fn new() -> Session {
        Session {
            tracker: Tracker::new(),
            account: Account::default(),
            graph: graph::Builder::new(),
            events: 0,
            ring: (0, 0),
            latency: crate::bench::Latency::from_env(),
            supervised: Default::default(),
        }
    }

    /// Drain the ring buffer through the tracker. When a record ends a process, the writes the
    /// kernel still aggregates for it are collected first, so they come before its exit.
    pub fn pump(&mut self, probes: &mut Probes, out: &mut Output) -> Result<()> {
        let (fill, size) = probes.ring_fill();
        self.ring = (size, self.ring.1.max(fill));
        loop {
            let (ending, owned) = {
                let Some(item) = probes.ring().next() else { break };
                match decode::decode(&item) {
                    Ok(rec) => {
                        // Issue 16: the supervisor's notices from before this record first.
                        self.deliver_supervised(rec.h.ts_ns, out)?;
                        match self.tracker.ends_process(&rec) {
                            Some(pid) => (Some(pid), item.to_vec()),
                            None => {
                                self.handle(&rec, out)?;
                                continue;
                            }
                        }
                    }
                    Err(err) => {
                        tracing::warn!("dropping a record: {err}");
                        self.tracker.counts.decode_errors += 1;
                        continue;
                    }
                }
            };
            self.collect_writes(probes, ending, out)?;
            if let Ok(rec) = decode::decode(&owned) {
                self.handle(&rec, out)?;
            }
        }
        // Everything the ring buffer held before these notices was read above.
        self.deliver_supervised(u64::MAX, out)?;
        // A log shipper tailing the export sees events within one poll interval.
        out.flush_export()
    }

    /// Deliver the supervisor's notices up to time `until`.
    fn deliver_supervised(&mut self, until: u64, out: &mut Output) -> Result<()> {
        while self.supervised.front().is_some_and(|n| n.ts_ns() <= until) {
            let n = self.supervised.pop_front().expect("checked");
            self.supervised(n, out)?;
        }
        Ok(())
    }

    /// Issue 16: what the sandbox's supervisor answered or held back (not in the ring
    /// buffer), delivered like the kernel's events.
    pub fn supervised(&mut self, n: crate::sandbox::supervisor::Notice, out: &mut Output) -> Result<()> {
        let Session { tracker, account, graph, events, latency, .. } = self;
        deliver(account, graph, events, latency, out, |sink| tracker.supervised(n, sink))
    }

    fn handle(&mut self, rec: &decode::Record, out: &mut Output) -> Result<()> {
        let Session { tracker, account, graph, events, latency, .. } = self;
        deliver(account, graph, events, latency, out, |sink| tracker.handle(rec, sink))
    }

    pub fn collect_writes(&mut self, probes: &mut Probes, pid: Option<u32>, out: &mut Output) -> Result<()> {
        let mut writes = probes.take_writes(pid)?;
        writes.sort_by_key(|(_, agg)| agg.first_ns);
        for (key, agg) in writes {
            let mut h: EventHeader = bytemuck::Zeroable::zeroed();
            h.kind = kind::WRITE;
            h.ts_ns = agg.last_ns;
            h.pid = key.pid;
            h.tid = agg.tid;
            h.args = [key.fd as u64, agg.calls, agg.bytes, agg.failed, agg.first_ns, agg.last_errno as u64];
            let Session { tracker, account, graph, events, latency, .. } = self;
            deliver(account, graph, events, latency, out, |sink| tracker.handle_writes(&h, sink))?;
        }
        Ok(())
    }
}

/// Every resolved event goes the same way: numbered (its line in events.jsonl), into the
/// account and the graph, and out.
fn deliver(
    account: &mut Account,
    graph: &mut graph::Builder,
    events: &mut u64,
    latency: &mut Option<crate::bench::Latency>,
    out: &mut Output,
    produce: impl FnOnce(&mut dyn FnMut(crate::event::Event)),
) -> Result<()> {
    let mut result = Ok(());
    produce(&mut |e| {
        *events += 1;
        account.add(&e);
        graph.add(&e, *events);
        if let Some(l) = latency {
            l.record(e.ts_ns);
        }
        if let Err(err) = out.event(&e) {
            result = Err(err);
        }
    });
    result
}

/// CLOCK_BOOTTIME, the clock of the kernel's event timestamps (bpf_ktime_get_boot_ns).
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Write the latency histogram, if this run keeps one (`cargo xtask bench`).
pub fn write_latency(session: &Session) -> Result<()> {
    match &session.latency {
        Some(l) => l.write(),
        None => Ok(()),
    }
}

/// Sleep until the ring buffer has records, `also` (a pidfd) is readable, or `timeout_ms`.
pub fn wait_readable(ring: i32, also: Option<&std::os::fd::OwnedFd>, timeout_ms: i32) {
    use std::os::fd::AsRawFd;
    let mut fds = [
        libc::pollfd { fd: ring, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: also.map_or(-1, |f| f.as_raw_fd()), events: libc::POLLIN, revents: 0 },
    ];
    unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
}

/// A pidfd for `pid` (readable once it exits); None on kernels before 5.3.
pub fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Reap every exited child (we are a subreaper); remember the root's status.
pub fn reap(root: Option<u32>, root_status: &mut Option<i32>) {
    loop {
        let mut status = 0;
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if Some(pid as u32) == root {
            *root_status = Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            });
        }
    }
}

/// Drop tracked tids whose task no longer exists (an exit the probes could not see, e.g. a
/// thread that ended between our /proc scan and its insertion).
pub fn forget_dead_tasks(probes: &mut Probes) -> Result<()> {
    for tid in probes.tracked()? {
        if !procfs::exists(tid) {
            probes.untrack(tid)?;
        }
    }
    Ok(())
}

