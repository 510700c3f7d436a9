//! The one run lifecycle `pilot run` and `pilot trace` share: the caller sets up its target
//! (a sandboxed pilot, a command, a pid or a cgroup), then the driver polls the ring buffer
//! until the caller's stop rule says the tree is done, drains what is still in flight, and
//! finishes: summary.json, graph.json and graph.dot.
use std::{
    os::fd::{AsFd, BorrowedFd},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Result;

use super::{Session, forget_dead_tasks, wait::wait_readable};
use crate::{
    graph::{self, Graph},
    output::Output,
    probes::Probes,
    rundir::{GRAPH, GRAPH_DOT, Summary},
    snapshot::Snapshot,
};

/// How long the reader sleeps when no wakeup comes: bounds event latency, since the kernel
/// only wakes it once enough bytes wait.
pub const POLL: Duration = Duration::from_millis(20);
/// How often tracked tids whose task vanished unseen are forgotten.
const FORGET_EVERY: Duration = Duration::from_millis(500);

/// When the traced tree is done: the part of the loop that differs between run and trace.
pub trait StopRule {
    /// A fd readable when the loop should look again at once (the root's pidfd).
    fn wake(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Called before every pump (a pilot's supervisor hands over its notices here).
    fn before_pump(&mut self, _session: &mut Session) {}
    /// Called after every pump: true once everything traced is gone (or must stop).
    fn done(&mut self, probes: &mut Probes, session: &mut Session) -> Result<bool>;
}

/// Who was traced, for the summary.
pub struct Traced {
    pub target: String,
    pub command: Option<Vec<String>>,
    pub root_pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub started_at: SystemTime,
    pub started: Instant,
}

/// The probes, the session and the outputs of one run, from setup to finish.
pub struct Lifecycle {
    pub probes: Probes,
    pub session: Session,
    pub out: Output,
    pub started_at: SystemTime,
    pub started: Instant,
}

/// What a finished lifecycle leaves: the probes (to detach, possibly on another thread), the
/// session (tracker and account), the outputs and what was written.
pub struct Finished {
    pub probes: Probes,
    pub session: Session,
    pub out: Output,
    pub summary: Summary,
    pub graph: Graph,
    /// Events lost or garbled: the run is incomplete when nonzero.
    pub lost: u64,
}

impl Lifecycle {
    /// Probes loaded and outputs open: the target starts now.
    pub fn new(probes: Probes, out: Output) -> Lifecycle {
        Lifecycle { probes, session: Session::new(), out, started_at: SystemTime::now(), started: Instant::now() }
    }

    /// Pump records until `rule` says the tree is done.
    pub fn poll_until(&mut self, rule: &mut dyn StopRule) -> Result<()> {
        let mut last_forget = Instant::now();
        loop {
            wait_readable(self.probes.ring_fd(), rule.wake(), POLL);
            rule.before_pump(&mut self.session);
            self.session.pump(&mut self.probes, &mut self.out)?;
            if last_forget.elapsed() > FORGET_EVERY {
                forget_dead_tasks(&mut self.probes)?;
                last_forget = Instant::now();
            }
            if rule.done(&mut self.probes, &mut self.session)? {
                return Ok(());
            }
        }
    }

    /// Collect what is still in flight: the ring, then writes aggregated for live fds; then
    /// settle processes whose exit fell outside the trace.
    pub fn drain(&mut self) -> Result<()> {
        self.session.pump(&mut self.probes, &mut self.out)?;
        self.session.collect_writes(&mut self.probes, None, &mut self.out)?;
        self.session.tracker.reconcile_exited();
        Ok(())
    }

    /// Write summary.json and build the graph against `snapshot` (the caller adds what only
    /// it knows, then writes it with `write_graph`).
    pub fn finish(mut self, traced: Traced, snapshot: &Snapshot) -> Result<Finished> {
        crate::alloc::for_post_processing();
        let losses = self.probes.losses()?;
        let mut lost = losses.iter().sum::<u64>() + self.session.tracker.counts.decode_errors;
        let mut summary = self.session.summary(&traced, losses);
        super::account_run(&mut summary, &mut lost, &self.probes, &self.session);
        self.out.finish(&summary)?;
        self.session.observer_finished()?;
        let builder = std::mem::take(&mut self.session.graph);
        let graph = builder.finish(summary.target.clone(), snapshot, &self.session.tracker, lost);
        Ok(Finished { probes: self.probes, session: self.session, out: self.out, summary, graph, lost })
    }
}

impl Finished {
    /// The text account on stderr, headed by the summary's line.
    pub fn print_account(&self) {
        eprint!("{}", self.session.account.render(&self.session.tracker, &self.summary.headline()));
    }
}

/// graph.json and graph.dot.
pub fn write_graph(out: &Output, graph: &Graph) -> Result<()> {
    out.write_file_with(GRAPH, |w| graph::render::write_json(graph, w))?;
    out.write_file(GRAPH_DOT, &graph::render::dot(graph))
}

/// A borrowed fd of an owned one, for `StopRule::wake`.
pub fn wake_fd(fd: &Option<std::os::fd::OwnedFd>) -> Option<BorrowedFd<'_>> {
    fd.as_ref().map(|f| f.as_fd())
}
