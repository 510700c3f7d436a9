//! `pilot trace`: follow a command, a running process or a cgroup through the run lifecycle
//! (session/lifecycle.rs) until the traced tree is gone, then print the account.
use std::{
    os::{fd::OwnedFd, unix::process::CommandExt},
    path::PathBuf,
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{
    cgroup,
    cli::TraceArgs,
    error::UsageError,
    output::Output,
    probes::{self, Probes},
    procfs,
    rundir::{EVENTS, GRAPH, GRAPH_DOT, SUMMARY},
    session::{self, Lifecycle, Session, StopRule, Traced},
    snapshot::Snapshot,
    tracker::Tracker,
};

/// What to trace.
#[derive(Debug)]
pub enum Target {
    Command(Vec<String>),
    Pid(u32),
    Cgroup { path: PathBuf, id: u64, level: u32 },
}

impl Target {
    pub fn from_args(args: &TraceArgs) -> Result<Target> {
        match (args.pid, &args.cgroup, args.command.is_empty()) {
            (Some(pid), None, true) => {
                if pid <= 0 || pid > u32::MAX as i64 || !procfs::exists(pid as u32) {
                    bail!(UsageError::new(format!("no process with pid {pid}: check it with `ps -p {pid}`")));
                }
                Ok(Target::Pid(pid as u32))
            }
            (None, Some(path), true) => {
                let (path, id, level) = cgroup::resolve(path)?;
                Ok(Target::Cgroup { path, id, level })
            }
            (None, None, false) => Ok(Target::Command(args.command.clone())),
            (None, None, true) => bail!(UsageError::new(
                "nothing to trace: give `--pid PID`, `--cgroup PATH` or `-- CMD [ARGS...]`"
            )),
            _ => bail!(UsageError::new("give only one of `--pid`, `--cgroup` and `-- CMD`")),
        }
    }

    /// Processes of the target that already run (left out of the host's components).
    fn existing_tree(&self) -> std::collections::HashSet<u32> {
        match self {
            Target::Command(_) => Default::default(),
            Target::Pid(pid) => procfs::tree(*pid).into_iter().collect(),
            Target::Cgroup { path, .. } => cgroup::pids(path).into_iter().collect(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Command(argv) => format!("`{}`", crate::account::one_line(&argv.join(" "))),
            Target::Pid(pid) => format!("pid {pid}"),
            Target::Cgroup { path, .. } => format!("cgroup {}", path.display()),
        }
    }
}

/// How to start the command beyond its argv (`pilot commit` replays a recorded intent).
#[derive(Default)]
pub struct Launch {
    pub cwd: Option<PathBuf>,
    pub env: Option<Vec<(String, String)>>,
    /// `pilot commit`: the command's connects go through the sink as a recording
    /// pass-through proxy (sink/live.rs), so its rpc effects are in the live graph.
    pub proxy: bool,
}

pub fn run(args: TraceArgs) -> Result<i32> {
    run_with(args, Launch::default())
}

pub fn run_with(args: TraceArgs, launch: Launch) -> Result<i32> {
    let target = Target::from_args(&args)?;
    probes::preflight()?;
    let mut opts = probes::Options { ringbuf_bytes: args.events.ringbuf_kib.saturating_mul(1024), ..Default::default() };
    if let Target::Cgroup { id, level, .. } = &target {
        opts.cgroup = Some((*id, *level));
    }
    let mut probes = Probes::load(&opts)?;
    let out = Output::create(args.out.as_deref(), args.events.export.as_deref(), args.verbose)?;
    let snapshot = {
        let _phase = tracing::debug_span!("phase", name = "host snapshot").entered();
        Snapshot::take(&target.existing_tree())
    };
    tracing::debug!("host snapshot: {} components", snapshot.components.len());
    let proxy = if launch.proxy { Some(crate::sink::live::LiveProxy::start(&mut probes, &snapshot)?) } else { None };
    session::catch_interrupts();
    // Orphaned descendants (daemons) are re-parented to us, so we reap them and know when the
    // tree is gone.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut lc = Lifecycle::new(probes, out);
    lc.session.account.group_by(snapshot.clone().owner_of_event(), args.verbose);
    let root = start(&target, &launch, proxy.as_ref().map(|p| p.procs_fd()), &mut lc.probes, &mut lc.session.tracker)?;
    // Readable the moment the command exits, so the loop does not wait out its poll.
    let exited = match &target {
        Target::Command(_) => root.and_then(session::pidfd),
        _ => None,
    };
    let mut rule = Until { target: &target, root, root_status: None, exited };
    lc.poll_until(&mut rule)?;
    let root_status = rule.root_status;
    lc.drain()?;
    let mut snapshot = snapshot;
    snapshot.merge(Snapshot::take(&lc.session.tracker.processes().map(|p| p.pid).collect()));
    let traced = Traced {
        target: target.describe(),
        command: match &target {
            Target::Command(argv) => Some(argv.clone()),
            _ => None,
        },
        root_pid: root,
        exit_code: root_status,
        started_at: lc.started_at,
        started: lc.started,
    };
    let mut finished = lc.finish(traced, &snapshot)?;
    if let Some(p) = proxy {
        p.finish(&finished.out, &snapshot, &mut finished.graph)?;
    }
    session::write_graph(&finished.out, &finished.graph)?;
    finished.print_account();
    if let Some(dir) = &args.out {
        eprintln!("pilot: wrote {EVENTS}, {SUMMARY}, {GRAPH} and {GRAPH_DOT} in {}", dir.display());
    }
    Ok(match &target {
        Target::Command(_) => root_status.unwrap_or(1),
        _ => 0,
    })
}

/// Trace's stop rule: the command's tree is gone, the pid exited, the cgroup emptied, or ^C.
struct Until<'a> {
    target: &'a Target,
    root: Option<u32>,
    root_status: Option<i32>,
    exited: Option<OwnedFd>,
}

impl StopRule for Until<'_> {
    fn wake(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        if self.root_status.is_none() { session::wake_fd(&self.exited) } else { None }
    }

    fn done(&mut self, probes: &mut Probes, session: &mut Session) -> Result<bool> {
        session::reap(self.root, &mut self.root_status);
        let interrupts = session::interrupts();
        // With a command the terminal's ^C reaches it too: let it exit; a second ^C stops us.
        if interrupts >= 2 || (interrupts >= 1 && !matches!(self.target, Target::Command(_))) {
            return Ok(true);
        }
        Ok(match self.target {
            Target::Command(_) => self.root_status.is_some() && probes.tracked()?.is_empty(),
            Target::Pid(pid) => !procfs::exists(*pid) || procfs::is_zombie(*pid),
            Target::Cgroup { path, .. } => {
                // Adopt newcomers while they run, so their cwd and fds are known.
                for pid in cgroup::pids(path) {
                    session.tracker.adopt(pid);
                }
                cgroup::is_empty(path)
            }
        })
    }
}

/// Start the command (tracked before its first instruction) or adopt what already runs.
fn start(target: &Target, launch: &Launch, join_cgroup: Option<std::os::fd::RawFd>, probes: &mut Probes, tracker: &mut Tracker) -> Result<Option<u32>> {
    match target {
        Target::Command(argv) => {
            let (map_fd, run) = (probes.tracked_fd(), probes.run_id());
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            if let Some(cwd) = &launch.cwd {
                cmd.current_dir(cwd);
            }
            if let Some(env) = &launch.env {
                cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
            }
            // The child adds itself to the kernel's tracked set between fork and exec, so its
            // exec and everything after are seen with no race and no round trip.
            unsafe {
                cmd.pre_exec(move || {
                    if let Some(fd) = join_cgroup {
                        crate::sink::live::join(fd)?;
                    }
                    probes::track_pid(map_fd, libc::getpid() as u32, run)
                })
            };
            let fds = crate::tracker::FdTable::inherited_from_self();
            let child = cmd.spawn().map_err(|e| {
                UsageError::new(format!("cannot start `{}`: {e}", argv[0]))
            })?;
            let cwd = match &launch.cwd {
                Some(c) => c.clone(),
                None => std::env::current_dir().context("reading the working directory (was it removed?)")?,
            };
            tracker.adopt_child(child.id(), fds, cwd.display().to_string());
            Ok(Some(child.id()))
        }
        Target::Pid(pid) => {
            // Twice: a child forked between the scan and the insert is caught by the second.
            for _ in 0..2 {
                for p in procfs::tree(*pid) {
                    let start = procfs::start_ns(p).unwrap_or(0);
                    for t in procfs::threads(p) {
                        probes.track(t, start)?;
                    }
                    tracker.adopt(p);
                }
            }
            Ok(Some(*pid))
        }
        Target::Cgroup { path, .. } => {
            for pid in cgroup::pids(path) {
                tracker.adopt(pid);
            }
            Ok(None)
        }
    }
}

