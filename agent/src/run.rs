//! `pilot run`: the real command, on the real host, contained. Files land in overlays in the
//! run directory, sockets in the sink, signals stay in the pilot's PID namespace; the probes
//! trace it all through the same lifecycle as `pilot trace` (session/lifecycle.rs), and the run
//! directory gets the events, the graph, the changes and the verdict.
use std::{
    fs::{self, File},
    net::SocketAddr,
    os::{fd::OwnedFd, unix::{fs::FileTypeExt, process::CommandExt}},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail};

use crate::{
    cgroup::{self, PilotCgroup},
    cli::RunArgs,
    diff,
    error::{EXIT_BLOCKED, EXIT_COMMAND_FAILED, EXIT_PASS, OnPath, RUN_DIR, UsageError},
    journal,
    output::Output,
    policy::{self, eval::Verdict as Decision},
    probes::{self, Probes, contain::UnixContainment},
    rundir::{
        CHANGES, Containment, EVENTS, GRAPH, INTENT, Intent, ROOT, RunDir, SANDBOX_ERROR, SINK, STDERR_LOG, STDOUT_LOG,
        SUMMARY, VERDICT, VERDICT_SCHEMA, Verdict, WORK,
    },
    sandbox,
    session::{self, Lifecycle, Session, StopRule, Traced},
    sink::Sink,
    snapshot::Snapshot,
};

pub fn run(args: RunArgs) -> Result<i32> {
    if args.command.is_empty() {
        bail!(UsageError::new("nothing to run: give the command after `--`, e.g. `pilot run -- ./repair.sh`"));
    }
    let checks = tracing::debug_span!("phase", name = "checks and gc").entered();
    let allowed = parse_allowed(&args.allow)?;
    let timeout = args.timeout.as_deref().map(parse_duration).transpose()?;
    let policies = policy::load_all(&args.policy)?;
    let unix = timed("kernel features", crate::doctor::require_run)?;
    probes::preflight()?;
    cgroup::gc(false)?;
    drop(checks);
    let id = run_id();
    let dir = RunDir::create(&args.out.clone().unwrap_or_else(|| Path::new("pilot-runs").join(&id)))?;
    eprintln!("pilot: run directory {}", dir.path().display());
    // Hashing our binary (the intent) and reading the host (the snapshot) run beside the
    // probe load: each takes tens of milliseconds, and none needs the others.
    // issue 18: the sink's options (--rpc, the policies' [rpc], live Unix listeners).
    // Read once: for the sink's Unix stand-ins, the snapshot and the live ports.
    let listeners = timed("listeners", crate::snapshot::sockets::listeners);
    let sink_options = crate::sink::run_options(&args.rpc, &policies, dir.path(), &listeners)?;
    let command = args.command.clone();
    let intent = std::thread::spawn(move || Intent::capture(&command, &policies).map(|i| (i, policies)));
    let host = std::thread::spawn(move || {
        // Every listening port of the host, the operator's own session included (an `ssh -R`
        // forward is production too), not only those of discovered components.
        let live: Vec<u16> = listeners.values().filter_map(|l| l.port).collect();
        (crate::rundir::Stamp::now(), timed("snapshot", || Snapshot::take_with(&Default::default(), &listeners)), live)
    });
    // Before 6.7 (no cgroup Unix hooks): a network namespace of the pilot's own isolates
    // abstract Unix names; the sink listens inside it too (sink/netns.rs).
    let (unix, netns) = crate::sink::netns::for_run(unix);
    let mut sink_options = sink_options;
    if let Some(ns) = &netns {
        sink_options.netns = Some(ns.clone());
        sink_options.allow = allowed.clone();
    }
    let sink = Sink::start_with(sink_options)?;
    let opts = probes::Options { ringbuf_bytes: args.events.ringbuf_kib.saturating_mul(1024), ..Default::default() };
    let mut probes = Probes::load(&opts)?;
    let after_probes = tracing::debug_span!("phase", name = "intent, journal and host snapshot (after the probes)").entered();
    let (intent, policies) = intent.join().map_err(|_| anyhow!("capturing the intent panicked"))??;
    dir.write(&intent)?;
    journal::append(journal::Record {
        kind: "run",
        run_dir: dir.path(),
        intent: intent.for_journal(),
        outputs: &[INTENT],
        verdict: None,
        note: None,
    })
    .context("recording the run in the journal (nothing ran)")?;
    let (taken, snapshot, live_ports) = host.join().map_err(|_| anyhow!("the host snapshot panicked"))?;
    sink.set_hints(crate::sink::hints(&snapshot));
    drop(after_probes);
    let containing = tracing::debug_span!("phase", name = "cgroup and containment").entered();
    let cgroup = PilotCgroup::create(&id)?;
    // With a namespace of its own the pilot reaches --allow'ed destinations through the sink.
    let hook_allowed: &[std::net::SocketAddr] = if netns.is_some() { &[] } else { &allowed };
    let (unix, unix_links) = probes.contain(unix, &cgroup.dir_fd()?, sink.config(), hook_allowed, &live_ports)?;
    sink.ctx().origins.attach(probes.take_origins()?, cgroup.path.clone());
    let out = Output::create(Some(dir.path()), args.events.export.as_deref(), args.verbose)?;
    session::catch_interrupts();
    let cwd = std::env::current_dir().context("reading the working directory (was it removed?)")?;
    // Issue 16: the supervisor that answers what the sandbox would answer differently from
    // the live host (none where the kernel has no seccomp user notification).
    let supervisor = sandbox::supervisor::Prepared::for_this_kernel();
    let spec = sandbox::Spec {
        run_dir: dir.path().to_path_buf(),
        cgroup: cgroup.path.clone(),
        cwd: cwd.clone(),
        argv: args.command.clone(),
        tracked_fd: probes.tracked_fd(),
        run: probes.run_id(),
        agent_pid: std::process::id(),
        deny_unix_sockets: unix == UnixContainment::Unavailable,
        unix_sinks: sink.unix_sockets().to_vec(),
        supervisor_fd: supervisor.as_ref().map(|s| s.sandbox_fd()),
        netns_fd: netns.as_ref().map(|n| n.raw_fd()),
    };
    drop(containing);
    let mut lc = Lifecycle::new(probes, out);
    lc.session.account.group_by(snapshot.clone().owner_of_event(), args.verbose);
    let (child, stdio) = spawn_sandbox(&spec, dir.path())?;
    let supervisor = supervisor.map(|s| s.start(cgroup.path.clone(), spec.tracked_fd, spec.run));
    // Readable the moment the sandbox exits, so the loop does not wait out its poll.
    let exited = session::pidfd(child.id());
    lc.session.tracker.seed(crate::tracker::FdTable::of_stdio(&stdio), cwd.display().to_string());
    let root_pid = child.id();
    // issue 15: the cgroup's own account of the pilot's processes, sampled every round.
    let sampler = crate::channels::process::Sampler::new(cgroup.path.clone());
    let mut rule = Pilot { child, exited, cgroup: &cgroup, timeout, started: Instant::now(), status: None, timed_out: false, supervisor, sampler };
    {
        let _ran = tracing::debug_span!("phase", name = "pilot ran").entered();
        lc.poll_until(&mut rule)?;
    }
    let (status, timed_out) = (rule.status, rule.timed_out);
    // The supervisor's last notices, merged with the ring buffer's by time in the drain.
    let supervised = rule.supervisor.take().map(|s| s.stop());
    let supervised_stats = supervised.as_ref().map(|(_, stats)| stats.clone());
    sandbox::supervisor::deliver(supervised.map(|(rest, _)| rest), &mut lc.session);
    rule.sampler.sample(&lc.session.tracker);
    lc.drain()?;
    // Every event is in: what follows is the post-processing (summary, graph, diff, policy,
    // account, report).
    let post_processing = crate::bench::Since::now("post-processing");
    let pilot_exit = status.unwrap_or(sandbox::EXIT_SETUP_FAILED);
    if pilot_exit == sandbox::EXIT_SETUP_FAILED {
        let why = fs::read_to_string(dir.file(SANDBOX_ERROR)).unwrap_or_else(|_| "see the output above".into());
        cgroup.kill();
        return Err(anyhow!("the sandbox could not be built: {}", why.trim()));
    }
    let dot = crate::report::SpareDot::start();
    let summarizing = tracing::debug_span!("phase", name = "summary and graph").entered();
    let traced = Traced {
        target: format!("`{}`", crate::account::one_line(&args.command.join(" "))),
        command: Some(args.command.clone()),
        root_pid: Some(root_pid),
        exit_code: Some(pilot_exit),
        started_at: lc.started_at,
        started: lc.started,
    };
    let mut finished = lc.finish(traced, &snapshot)?;
    let unseen_processes = rule.sampler.unseen(&finished.session.tracker);
    drop(summarizing);
    let lost = finished.lost;
    // Detaching waits for RCU grace periods (tens of ms): let it overlap the work below.
    let (probes, out) = (finished.probes, finished.out);
    let detach = std::thread::spawn(move || drop((unix_links, probes)));
    let stopping = tracing::debug_span!("phase", name = "sink stop, cgroup and overlay cleanup").entered();
    let mut caught = sink.stop();
    crate::sink::attribute(&mut caught, &snapshot);
    out.write_file(SINK, &crate::rundir::pretty(&caught))?;
    cgroup.remove();
    let _ = fs::remove_dir_all(dir.file(WORK));
    let _ = fs::remove_dir(dir.file(ROOT));
    drop(stopping);

    let judging = tracing::debug_span!("phase", name = "graph, diff, verdict and journal").entered();
    let mut graph = std::mem::take(&mut finished.graph);
    crate::graph::rpc::add(&mut graph, &caught);
    let renames = crate::graph::aggregate::renames(&graph);
    let changes = timed("changes", || diff::compute_with(dir.path(), Some(renames)).context("reading the overlay's changes"))?;
    // issue 15: the overlay, the sink and the cgroup against the trace; summary.json again,
    // now with the blind spots.
    let observers = crate::channels::Observers {
        changes: &changes.changes,
        caught: &caught,
        unseen_processes,
        snapshot: &snapshot,
        root_pid: Some(root_pid),
    };
    let observed = crate::channels::reconcile(&mut graph, observers);
    finished.summary.add_observed(&observed);
    dir.write(&finished.summary)?;
    timed("graph.json and graph.dot", || crate::session::write_graph(&out, &graph))?;
    dir.write(&changes)?;
    let evaluation = timed("policy", || policy::eval::evaluate(&graph, &policies));
    let verdict = Verdict {
        schema: VERDICT_SCHEMA.into(),
        pilot_exit,
        evaluation,
        lost_events: lost,
        timed_out,
        command: args.command.clone(),
        cwd: cwd.display().to_string(),
        contained_by: containment(unix, dir.path(), supervised_stats.as_ref()),
    };
    dir.write(&verdict)?;
    // snapshot.json and the signed decision.json (the run key): what commit is bound to.
    let d = crate::decision::Pilot { snapshot: &snapshot, taken, listening_ports: &live_ports, graph: &graph, intent: &intent, verdict: &verdict };
    {
        let _signing = tracing::debug_span!("phase", name = "snapshot.json and signed decision").entered();
        crate::decision::record(&dir, d)?;
    }
    timed("account printed", || {
        eprint!("{}", finished.session.account.render(&finished.session.tracker, &finished.summary.headline()));
        let trees = if args.verbose { &[][..] } else { &graph.aggregates[..] };
        eprint!("{}", diff::render::text_folded(&changes, trees));
        eprint!("{}", crate::channels::render(&observed));
    });
    if !caught.is_empty() {
        eprintln!("network caught by the sink: {} connection(s)/source(s), {} bytes", caught.len(), caught.iter().map(|c| c.bytes).sum::<u64>());
        eprint!("{}", crate::sink::render(&caught));
    }
    let seq = journal::append(journal::Record {
        kind: "verdict",
        run_dir: dir.path(),
        intent: intent.for_journal(),
        outputs: &[EVENTS, SUMMARY, GRAPH, CHANGES, SINK, VERDICT, crate::rundir::SNAPSHOT, crate::rundir::DECISION],
        verdict: Some(verdict.evaluation.verdict.as_str()),
        note: Some(format!("pilot exit {pilot_exit}")),
    })?;
    drop(judging);
    eprint!("{}", policy::render_with(&verdict.evaluation, args.verbose));
    {
        let _detached = tracing::debug_span!("phase", name = "probes detached").entered();
        let _ = detach.join();
    }
    eprintln!("  journal: entry {seq} in {}", journal::path().display());
    // What the report does not need goes first: a big run's tracker and account.
    drop(finished.session);
    timed("report", || crate::report::write_into_with(dir.path(), Some(graph), dot));
    post_processing.log();
    eprintln!(
        "pilot: {} (pilot exit {pilot_exit}); run directory {}",
        verdict.evaluation.verdict.as_str(),
        dir.path().display()
    );
    Ok(if verdict.evaluation.verdict == Decision::Block {
        EXIT_BLOCKED
    } else if pilot_exit != 0 || timed_out {
        EXIT_COMMAND_FAILED
    } else {
        EXIT_PASS
    })
}

/// `f`, timed as a `phase` span (RUST_LOG=pilot=debug shows each one's time).
fn timed<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    let _phase = tracing::debug_span!("phase", name).entered();
    f()
}

/// verdict.json's `contained_by`: what kept this pilot in.
fn containment(unix: UnixContainment, dir: &Path, supervised: Option<&sandbox::supervisor::Stats>) -> Containment {
    Containment {
        files: format!("overlay (every writable filesystem): {}", sandbox::mounts::features_in(dir)),
        network: "cgroup hooks: TCP/UDP to the sink".into(),
        unix_sockets: match unix {
            UnixContainment::Denied => "abstract addresses denied (cgroup hooks); live listeners' paths lead to the sink, other live sockets are hidden by the overlays",
            UnixContainment::Netns => "abstract addresses isolated (the pilot's own network namespace; no cgroup Unix hooks before Linux 6.7); live listeners' paths lead to the sink, other live sockets are hidden by the overlays",
            UnixContainment::Unavailable => "socket(AF_UNIX) denied (seccomp; no cgroup Unix hooks before Linux 6.7)",
        }
        .into(),
        signals: sandbox::supervisor::containment(supervised),
        capabilities_dropped: sandbox::caps::DROPPED.iter().map(|(_, n)| n.to_string()).collect(),
    }
}

/// Run's stop rule: the sandbox exited and every task of the pilot is gone; ^C and --timeout
/// kill the pilot's cgroup (daemons included).
struct Pilot<'a> {
    child: Child,
    exited: Option<OwnedFd>,
    cgroup: &'a PilotCgroup,
    timeout: Option<Duration>,
    started: Instant,
    status: Option<i32>,
    timed_out: bool,
    /// Issue 16: the sandbox's supervisor, while the pilot runs.
    supervisor: Option<sandbox::supervisor::Supervisor>,
    /// Issue 15: the cgroup's own account of the pilot's processes.
    sampler: crate::channels::process::Sampler,
}

impl StopRule for Pilot<'_> {
    /// The supervisor's notices so far, merged into the ring buffer's records by time.
    fn before_pump(&mut self, session: &mut Session) {
        sandbox::supervisor::deliver(self.supervisor.as_ref().map(|s| s.drain()), session);
    }

    fn wake(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        if self.status.is_none() { session::wake_fd(&self.exited) } else { None }
    }

    fn done(&mut self, probes: &mut Probes, session: &mut Session) -> Result<bool> {
        self.sampler.sample(&session.tracker);
        if self.status.is_none() {
            if let Some(s) = self.child.try_wait()? {
                self.status = Some(s.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)));
            }
        }
        if session::interrupts() > 0 {
            eprintln!("pilot: interrupted: killing the pilot");
            self.cgroup.kill();
        }
        if let Some(t) = self.timeout {
            if !self.timed_out && self.started.elapsed() > t {
                eprintln!("pilot: --timeout {:?} reached: killing the pilot", t);
                self.timed_out = true;
                self.cgroup.kill();
            }
        }
        if self.status.is_some() {
            session::forget_dead_tasks(probes)?;
            return Ok(probes.tracked()?.is_empty());
        }
        Ok(false)
    }
}

/// Start the sandbox; also says what its stdio is (fd, path) for the tracker.
fn spawn_sandbox(spec: &sandbox::Spec, run_dir: &Path) -> Result<(std::process::Child, Vec<(i64, String)>)> {
    // /proc/self/exe, not its path: a pilot binary replaced on disk (an upgrade, a rebuild)
    // still starts the sandbox with the code that is running.
    let mut cmd = Command::new("/proc/self/exe");
    // The spec through a memfd, not argv: with a sink socket per live Unix listener it outgrows
    // one argument's limit (MAX_ARG_STRLEN, 128 KiB) on hosts with many of them.
    let spec_fd = sandbox::spec_memfd(&serde_json::to_string(spec)?).context("passing the sandbox its spec")?;
    cmd.arg("__sandbox").arg(format!("fd:{}", std::os::fd::AsRawFd::as_raw_fd(&spec_fd)));
    let mut stdio_paths = Vec::new();
    for (fd, name) in [(0, "stdin"), (1, STDOUT_LOG), (2, STDERR_LOG)] {
        if passes(fd) {
            if let Ok(target) = fs::read_link(format!("/proc/self/fd/{fd}")) {
                stdio_paths.push((fd as i64, target.display().to_string()));
            }
            continue;
        }
        let path = if fd == 0 { "/dev/null".to_string() } else { run_dir.join(name).display().to_string() };
        stdio_paths.push((fd as i64, path));
        // A production file (or socket) as stdio would be a write path out of the overlay.
        let stdio = if fd == 0 { Stdio::null() } else { Stdio::from(File::create(run_dir.join(name)).on("creating", &run_dir.join(name), RUN_DIR)?) };
        match fd {
            0 => cmd.stdin(stdio),
            1 => cmd.stdout(stdio),
            _ => cmd.stderr(stdio),
        };
    }
    let inherited = [Some(spec.tracked_fd), Some(std::os::fd::AsRawFd::as_raw_fd(&spec_fd)), spec.supervisor_fd, spec.netns_fd];
    unsafe {
        cmd.pre_exec(move || {
            // Keep open across exec: the TRACKED map (W inserts itself through it), the spec's
            // memfd, the supervisor's socket (W hands its seccomp listener over it) and the
            // pilot's network namespace (C joins it).
            for fd in inherited.into_iter().flatten() {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    let child = cmd.spawn().context("starting the sandbox")?;
    drop(spec_fd);
    Ok((child, stdio_paths))
}

/// Only a terminal, a pipe or /dev/null may be the pilot's stdio.
fn passes(fd: i32) -> bool {
    let Ok(meta) = fs::metadata(format!("/proc/self/fd/{fd}")) else { return true };
    let ft = meta.file_type();
    if ft.is_fifo() {
        return true;
    }
    if ft.is_char_device() {
        use std::os::unix::fs::MetadataExt;
        return unsafe { libc::isatty(fd) } == 1 || meta.rdev() == libc::makedev(1, 3);
    }
    false
}

fn parse_allowed(list: &[String]) -> Result<Vec<SocketAddr>> {
    list.iter()
        .map(|s| {
            s.parse::<SocketAddr>().map_err(|_| {
                UsageError::new(format!("--allow {s}: give ADDR:PORT, e.g. 10.0.0.5:5432 or [::1]:8080")).into()
            })
        })
        .collect()
}

/// `90` (seconds), `90s`, `5m`, `1h30m` (humantime's syntax).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || UsageError::new(format!("--timeout {s}: give seconds or 30s, 5m, 1h"));
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|_| bad().into())
}

fn run_id() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}-{}", now.as_secs(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_addresses() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_allowed(&["127.0.0.1:80".into(), "[::1]:8080".into()]).unwrap().len(), 2);
        assert!(parse_allowed(&["localhost".into()]).is_err());
    }
}

