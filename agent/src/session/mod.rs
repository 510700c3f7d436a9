//! What `pilot trace` and `pilot run` share: pumping records from the ring buffer through the
//! tracker into the outputs (events.jsonl, the account, the graph), and the one run lifecycle
//! both drive (`lifecycle.rs`): setup -> poll loop -> drain -> finished.
mod lifecycle;
mod wait;

use anyhow::Result;

use agent_common::loss;

use crate::{
    account::Account,
    decode,
    event::Event,
    graph,
    output::Output,
    probes::Probes,
    rundir::{SUMMARY_SCHEMA, Summary},
    tracker::Tracker,
};
pub use lifecycle::{Finished, Lifecycle, POLL, StopRule, Traced, wake_fd, write_graph};
pub use wait::{SIGNALS, boottime_ns, catch_interrupts, interrupts, pidfd, reap, wait_readable};

/// Something that watches every resolved event of a session (`cargo xtask bench` measures
/// event latency with one). The binary installs the factory; the production path only calls it.
pub trait Observer {
    fn event(&mut self, e: &Event);
    /// The session is over: write what was measured.
    fn finished(&mut self) -> Result<()>;
}

static OBSERVER: std::sync::OnceLock<fn() -> Option<Box<dyn Observer>>> = std::sync::OnceLock::new();

/// Give every new session an observer made by `factory` (when it returns one).
pub fn observe_with(factory: fn() -> Option<Box<dyn Observer>>) {
    let _ = OBSERVER.set(factory);
}

pub struct Session {
    pub tracker: Tracker,
    pub account: Account,
    pub graph: graph::Builder,
    /// Events written so far: the line number of the next one in events.jsonl, minus one.
    pub events: u64,
    /// Ring buffer: size and highest fill seen.
    pub ring: (u64, u64),
    /// Records of another run found in this run's ring (never expected: dropped, and said).
    pub foreign: u64,
    observer: Option<Box<dyn Observer>>,
    /// Issue 16: notices of the sandbox's supervisor not yet delivered, merged into the ring
    /// buffer's records by time (a process's fork comes before its supervised call, a
    /// descriptor the supervisor installed before the writes to it).
    pub supervised: std::collections::VecDeque<crate::sandbox::supervisor::Notice>,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            tracker: Tracker::new(),
            account: Account::default(),
            graph: graph::Builder::new(),
            events: 0,
            ring: (0, 0),
            foreign: 0,
            observer: OBSERVER.get().and_then(|f| f()),
            supervised: Default::default(),
        }
    }

    /// summary.json of this session; `losses` per cause from the probes.
    pub fn summary(&self, t: &Traced, losses: [u64; loss::COUNT as usize]) -> Summary {
        let counts = &self.tracker.counts;
        let lost: u64 = losses.iter().sum();
        Summary {
            schema: SUMMARY_SCHEMA.into(),
            target: t.target.clone(),
            command: t.command.clone(),
            root_pid: t.root_pid,
            exit_code: t.exit_code,
            started_unix_ms: t.started_at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
            duration_ms: t.started.elapsed().as_millis(),
            processes: self.tracker.processes().count(),
            events: self.events,
            events_by_kind: counts.by_kind.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            records: counts.records,
            decode_errors: counts.decode_errors,
            lost_events: lost,
            lost_by_cause: loss::NAMES.iter().zip(losses).map(|(n, v)| (n.to_string(), v)).collect(),
            complete: lost == 0 && counts.decode_errors == 0,
            ringbuf_bytes: self.ring.0,
            ringbuf_peak_bytes: self.ring.1,
            blind_spots: None,
            io_uring: None,
        }
    }

    /// Drain the ring buffer through the tracker. When a record ends a process, the writes the
    /// kernel still aggregates for it are collected first, so they come before its exit.
    pub fn pump(&mut self, probes: &mut Probes, out: &mut Output) -> Result<()> {
        let (fill, size) = probes.ring_fill();
        self.ring = (size, self.ring.1.max(fill));
        let run = probes.run_id();
        loop {
            let (ending, owned) = {
                let Some(item) = probes.ring().next() else { break };
                match decode::decode(&item) {
                    // The ring is this run's alone; the kernel stamps every record with its run.
                    Ok(rec) if rec.run != run => {
                        self.foreign += 1;
                        continue;
                    }
                    Ok(rec) => {
                        // Issue 16: the supervisor's notices from before this record first.
                        self.deliver_supervised(rec.ts_ns, out)?;
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
        let Session { tracker, account, graph, events, observer, .. } = self;
        deliver(account, graph, events, observer, out, |sink| tracker.supervised(n, sink))
    }

    fn handle(&mut self, rec: &decode::Record, out: &mut Output) -> Result<()> {
        let Session { tracker, account, graph, events, observer, .. } = self;
        deliver(account, graph, events, observer, out, |sink| tracker.handle(rec, sink))
    }

    /// The writes the kernel still aggregates for `pid` (every process: None), as events.
    pub fn collect_writes(&mut self, probes: &mut Probes, pid: Option<u32>, out: &mut Output) -> Result<()> {
        let mut writes = probes.take_writes(pid)?;
        writes.sort_by_key(|(_, agg)| agg.first_ns);
        for (key, agg) in writes {
            let w = decode::Writes::of(key.fd, &agg);
            let Session { tracker, account, graph, events, observer, .. } = self;
            deliver(account, graph, events, observer, out, |sink| tracker.handle_writes(key.pid, agg.tid, agg.last_ns, &w, sink))?;
        }
        Ok(())
    }

    /// The observer has seen everything.
    fn observer_finished(&mut self) -> Result<()> {
        match self.observer.as_mut() {
            Some(o) => o.finished(),
            None => Ok(()),
        }
    }
}

/// Every resolved event goes the same way: numbered (its line in events.jsonl), into the
/// account and the graph, and out.
fn deliver(
    account: &mut Account,
    graph: &mut graph::Builder,
    events: &mut u64,
    observer: &mut Option<Box<dyn Observer>>,
    out: &mut Output,
    produce: impl FnOnce(&mut dyn FnMut(Event)),
) -> Result<()> {
    let mut result = Ok(());
    produce(&mut |e| {
        *events += 1;
        account.add(&e);
        graph.add(&e, *events);
        if let Some(o) = observer {
            o.event(&e);
        }
        if let Err(err) = out.event(&e) {
            result = Err(err);
        }
    });
    result
}

/// What only the run's use of a shared probe set can lose: the daemon holding the programs
/// exited mid-run (effects after that were not traced: counted as `probes_detached`), and records
/// of another run found in this run's ring (none expected: dropped, and logged).
pub fn account_run(summary: &mut Summary, lost: &mut u64, probes: &Probes, session: &Session) {
    if probes.detached() {
        tracing::warn!("the pilot daemon holding the probes exited during the run: later effects were not traced");
        summary.lost_by_cause.insert("probes_detached".into(), 1);
        summary.lost_events += 1;
        summary.complete = false;
        *lost += 1;
    }
    if session.foreign > 0 {
        tracing::warn!("{} records of another run reached this run's ring buffer and were dropped", session.foreign);
    }
}

/// Drop tracked tids whose task no longer exists (an exit the probes could not see, e.g. a
/// thread that ended between our /proc scan and its insertion).
pub fn forget_dead_tasks(probes: &mut Probes) -> Result<()> {
    for tid in probes.tracked()? {
        if !crate::procfs::exists(tid) {
            probes.untrack(tid)?;
        }
    }
    Ok(())
}
