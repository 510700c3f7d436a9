//! `pilot trace`: load the probes, start or adopt the root, pump records from the ring buffer
//! through the tracker until the traced tree is gone, then write the summary and the account.
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::Ordering,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};


use crate::{
    cli::TraceArgs,
    error::UsageError,
    graph,
    output::Output,
    probes::{self, Probes},
    procfs,
    session::{self, SIGNALS, Session},
    snapshot::Snapshot,
    tracker::Tracker,
};

/// Where the cgroup v2 hierarchy is mounted (hybrid layouts put it under `unified`).
const CGROUP2_ROOTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];

/// How long the reader sleeps when no wakeup comes: bounds event latency, since the kernel
/// only wakes it once enough bytes wait.
pub const POLL_MS: i32 = 20;

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
            (None, Some(path), true) => cgroup_target(path),
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
            Target::Cgroup { path, .. } => cgroup_pids(path).into_iter().collect(),
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

fn cgroup_target(path: &Path) -> Result<Target> {
    let meta = std::fs::metadata(path)
        .map_err(|e| UsageError::new(format!("cgroup {}: {e}: give a cgroup v2 directory", path.display())))?;
    let abs = std::fs::canonicalize(path)?;
    let Some(root) = CGROUP2_ROOTS.iter().find(|r| is_cgroup2(Path::new(r)) && abs.starts_with(r)) else {
        bail!(UsageError::new(format!(
            "{} is not in the cgroup v2 hierarchy (mounted at {}): give a directory under it",
            path.display(),
            CGROUP2_ROOTS.iter().find(|r| is_cgroup2(Path::new(r))).unwrap_or(&"<not mounted>")
        )));
    };
    let level = abs.strip_prefix(root)?.components().count() as u32;
    use std::os::unix::fs::MetadataExt;
    Ok(Target::Cgroup { path: abs, id: meta.ino(), level })
}

fn is_cgroup2(path: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC }
}

/// How to start the command beyond its argv (`pilot commit` replays a recorded intent).
#[derive(Default)]
pub struct Launch {
    pub cwd: Option<PathBuf>,
    pub env: Option<Vec<(String, String)>>,
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
    let t0 = Instant::now();
    let mut probes = Probes::load(&opts)?;
    tracing::debug!("probes loaded and attached in {:?}", t0.elapsed());
    let mut out = Output::create(args.out.as_deref(), args.events.export.as_deref(), args.verbose)?;
    let t0 = Instant::now();
    let snapshot = Snapshot::take(&target.existing_tree());
    tracing::debug!("host snapshot: {} components in {:?}", snapshot.components.len(), t0.elapsed());
    let mut session = Session::new();
    session::catch_interrupts();
    // Orphaned descendants (daemons) are re-parented to us, so we reap them and know when the
    // tree is gone.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let started_at = SystemTime::now();
    let started = Instant::now();

    let root = start(&target, &launch, &mut probes, &mut session.tracker)?;
    let mut root_status: Option<i32> = None;
    // Readable the moment the command exits, so the loop does not wait out its poll.
    let exited = match &target {
        Target::Command(_) => root.and_then(session::pidfd),
        _ => None,
    };
    let mut last_gc = Instant::now();
    loop {
        let waiting_for_exit = if root_status.is_none() { exited.as_ref() } else { None };
        session::wait_readable(probes.ring_fd(), waiting_for_exit, POLL_MS);
        session.pump(&mut probes, &mut out)?;
        session::reap(root, &mut root_status);
        let interrupts = SIGNALS.load(Ordering::SeqCst);
        // With a command the terminal's ^C reaches it too: let it exit; a second ^C stops us.
        if interrupts >= 2 || (interrupts >= 1 && !matches!(target, Target::Command(_))) {
            break;
        }
        if last_gc.elapsed() > Duration::from_millis(500) {
            session::forget_dead_tasks(&mut probes)?;
            last_gc = Instant::now();
        }
        if let Target::Cgroup { path, .. } = &target {
            // Adopt newcomers while they run, so their cwd and fds are known.
            for pid in cgroup_pids(path) {
                session.tracker.adopt(pid);
            }
        }
        if finished(&target, root_status, &mut probes)? {
            break;
        }
    }
    // Collect what is still in flight: the ring, then writes aggregated for live fds.
    session.pump(&mut probes, &mut out)?;
    session.collect_writes(&mut probes, None, &mut out)?;
    session.tracker.reconcile_exited();

    let losses = probes.losses()?;
    let lost: u64 = losses.iter().sum();
    let counts = &session.tracker.counts;
    let summary = session.summary(
        session::Traced {
            target: target.describe(),
            command: match &target {
                Target::Command(argv) => Some(argv.clone()),
                _ => None,
            },
            root_pid: root,
            exit_code: root_status,
            started_at,
            started,
        },
        losses,
    );
    out.finish(&summary)?;
    session::write_latency(&session)?;
    let mut snapshot = snapshot;
    snapshot.merge(Snapshot::take(&session.tracker.processes().map(|p| p.pid).collect()));
    let lost_or_garbled = lost + counts.decode_errors;
    let graph = session.graph.finish(target.describe(), &snapshot, &session.tracker, lost_or_garbled);
    out.write_file("graph.json", &graph::render::json(&graph))?;
    out.write_file("graph.dot", &graph::render::dot(&graph))?;
    let headline = session::headline(&summary);
    eprint!("{}", session.account.render(&session.tracker, &headline));
    if let Some(dir) = &args.out {
        eprintln!("pilot: wrote events.jsonl, summary.json, graph.json and graph.dot in {}", dir.display());
    }
    Ok(match &target {
        Target::Command(_) => root_status.unwrap_or(1),
        _ => 0,
    })
}

/// Start the command (tracked before its first instruction) or adopt what already runs.
fn start(target: &Target, launch: &Launch, probes: &mut Probes, tracker: &mut Tracker) -> Result<Option<u32>> {
    match target {
        Target::Command(argv) => {
            let map_fd = probes.tracked_fd();
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
            unsafe { cmd.pre_exec(move || probes::track_pid(map_fd, libc::getpid() as u32)) };
            let fds = crate::tracker::FdTable::inherited_from_self();
            let child = cmd.spawn().map_err(|e| {
                UsageError::new(format!("cannot start `{}`: {e}", argv[0]))
            })?;
            let cwd = match &launch.cwd {
                Some(c) => c.clone(),
                None => std::env::current_dir()?,
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
            for pid in cgroup_pids(path) {
                tracker.adopt(pid);
            }
            Ok(None)
        }
    }
}

fn finished(target: &Target, root_status: Option<i32>, probes: &mut Probes) -> Result<bool> {
    Ok(match target {
        Target::Command(_) => root_status.is_some() && probes.tracked().context("reading tracked tasks")?.is_empty(),
        Target::Pid(pid) => !procfs::exists(*pid) || procfs::is_zombie(*pid),
        Target::Cgroup { path, .. } => {
            std::fs::read_to_string(path.join("cgroup.events"))
                .map(|s| s.lines().any(|l| l.trim() == "populated 0"))
                .unwrap_or(true)
        }
    })
}

/// Processes of a cgroup subtree.
fn cgroup_pids(path: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for line in std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
            if let Ok(pid) = line.trim().parse::<u32>() {
                out.push(pid);
            }
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            dirs.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
    out
}
