//! `pilot trace`: load the probes, start or adopt the root, pump records from the ring buffer
//! through the tracker until the traced tree is gone, then write the summary and the account.
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use agent_common::{EventHeader, TaskInfo, kind, loss};

use crate::{
    account::Account,
    cli::TraceArgs,
    decode,
    error::UsageError,
    graph,
    output::Output,
    probes::{self, Probes},
    procfs,
    snapshot::Snapshot,
    tracker::Tracker,
};

/// Where the cgroup v2 hierarchy is mounted (hybrid layouts put it under `unified`).
const CGROUP2_ROOTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];

/// How long the reader sleeps when no wakeup comes: bounds event latency, since the kernel
/// only wakes it once enough bytes wait.
const POLL_MS: i32 = 20;

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
            Target::Cgroup { path, .. } => std::fs::read_to_string(path.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect(),
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

#[derive(Serialize)]
struct Summary {
    schema: &'static str,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    started_unix_ms: u128,
    duration_ms: u128,
    processes: usize,
    events: u64,
    events_by_kind: std::collections::BTreeMap<&'static str, u64>,
    records: u64,
    decode_errors: u64,
    /// Events the kernel could not deliver, in total and by cause. Nonzero: incomplete.
    lost_events: u64,
    lost_by_cause: std::collections::BTreeMap<&'static str, u64>,
    complete: bool,
}

static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub fn run(args: TraceArgs) -> Result<i32> {
    let target = Target::from_args(&args)?;
    probes::preflight()?;
    let mut opts = probes::Options { ringbuf_bytes: args.ringbuf_kib.saturating_mul(1024), ..Default::default() };
    if let Target::Cgroup { id, level, .. } = &target {
        opts.cgroup = Some((*id, *level));
    }
    let t0 = Instant::now();
    let mut probes = Probes::load(&opts)?;
    log::debug!("probes loaded and attached in {:?}", t0.elapsed());
    let mut out = Output::create(args.out.as_deref(), args.verbose)?;
    let t0 = Instant::now();
    let snapshot = Snapshot::take(&target.existing_tree());
    log::debug!("host snapshot: {} components in {:?}", snapshot.components.len(), t0.elapsed());
    let mut session =
        Session { tracker: Tracker::new(), account: Account::default(), graph: graph::Builder::new(), events: 0 };
    catch_interrupts();
    // Orphaned descendants (daemons) are re-parented to us, so we reap them and know when the
    // tree is gone.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let started_at = SystemTime::now();
    let started = Instant::now();

    let root = start(&target, &mut probes, &mut session.tracker)?;
    let mut root_status: Option<i32> = None;
    let mut last_gc = Instant::now();
    loop {
        wait_readable(probes.ring_fd(), POLL_MS);
        session.pump(&mut probes, &mut out)?;
        reap(root, &mut root_status);
        let interrupts = SIGNALS.load(Ordering::SeqCst);
        // With a command the terminal's ^C reaches it too: let it exit; a second ^C stops us.
        if interrupts >= 2 || (interrupts >= 1 && !matches!(target, Target::Command(_))) {
            break;
        }
        if last_gc.elapsed() > Duration::from_millis(500) {
            forget_dead_tasks(&mut probes)?;
            last_gc = Instant::now();
        }
        if finished(&target, root, root_status, &mut probes)? {
            break;
        }
    }
    // Collect what is still in flight: the ring, then writes aggregated for live fds.
    session.pump(&mut probes, &mut out)?;
    session.collect_writes(&mut probes, None, &mut out)?;

    let losses = probes.losses()?;
    let lost: u64 = losses.iter().sum();
    let counts = &session.tracker.counts;
    let summary = Summary {
        schema: "pilot.trace-summary/v1",
        target: target.describe(),
        command: match &target {
            Target::Command(argv) => Some(argv.clone()),
            _ => None,
        },
        root_pid: root,
        exit_code: root_status,
        started_unix_ms: started_at.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
        duration_ms: started.elapsed().as_millis(),
        processes: session.tracker.processes().count(),
        events: session.events,
        events_by_kind: counts.by_kind.clone(),
        records: counts.records,
        decode_errors: counts.decode_errors,
        lost_events: lost,
        lost_by_cause: loss::NAMES.iter().zip(losses).map(|(n, v)| (*n, v)).collect(),
        complete: lost == 0 && counts.decode_errors == 0,
    };
    out.finish(&summary)?;
    let mut snapshot = snapshot;
    snapshot.merge(Snapshot::take(&session.tracker.processes().map(|p| p.pid).collect()));
    let lost_or_garbled = lost + counts.decode_errors;
    let graph = session.graph.finish(target.describe(), &snapshot, &session.tracker, lost_or_garbled);
    out.write_file("graph.json", &graph::render::json(&graph))?;
    out.write_file("graph.dot", &graph::render::dot(&graph))?;
    let headline = headline(&summary);
    eprint!("{}", session.account.render(&session.tracker, &headline));
    if let Some(dir) = &args.out {
        eprintln!("pilot: wrote events.jsonl, summary.json, graph.json and graph.dot in {}", dir.display());
    }
    Ok(match &target {
        Target::Command(_) => root_status.unwrap_or(1),
        _ => 0,
    })
}

fn headline(s: &Summary) -> String {
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

struct Session {
    tracker: Tracker,
    account: Account,
    graph: graph::Builder,
    /// Events written so far: the line number of the next one in events.jsonl, minus one.
    events: u64,
}

impl Session {
    /// Drain the ring buffer through the tracker.
    fn pump(&mut self, probes: &mut Probes, out: &mut Output) -> Result<()> {
        let mut ended: Vec<u32> = Vec::new();
        let mut result = Ok(());
        {
            let Session { tracker, account, graph, events } = self;
            let mut sink = |e: crate::event::Event| {
                *events += 1;
                account.add(&e);
                graph.add(&e, *events);
                if let Err(err) = out.event(&e) {
                    result = Err(err);
                }
            };
            while let Some(item) = probes.ring().next() {
                match decode::decode(&item) {
                    Ok(rec) => {
                        if let Some(pid) = tracker.ends_process(&rec) {
                            ended.push(pid);
                        }
                        tracker.handle(&rec, &mut sink);
                    }
                    Err(err) => {
                        log::warn!("dropping a record: {err}");
                        tracker.counts.decode_errors += 1;
                    }
                }
            }
        }
        result?;
        // Writes still aggregated in the kernel for processes that ended.
        for pid in ended {
            self.collect_writes(probes, Some(pid), out)?;
        }
        Ok(())
    }

    fn collect_writes(&mut self, probes: &mut Probes, pid: Option<u32>, out: &mut Output) -> Result<()> {
        let mut writes = probes.take_writes(pid)?;
        writes.sort_by_key(|(_, agg)| agg.first_ns);
        for (key, agg) in writes {
            let mut h: EventHeader = bytemuck::Zeroable::zeroed();
            h.kind = kind::WRITE;
            h.ts_ns = agg.last_ns;
            h.pid = key.pid;
            h.tid = agg.tid;
            h.args = [key.fd as u64, agg.calls, agg.bytes, agg.failed, agg.first_ns, agg.last_errno as u64];
            let Session { tracker, account, graph, events } = self;
            let mut failed = None;
            tracker.handle_writes(&h, &mut |e| {
                *events += 1;
                account.add(&e);
                graph.add(&e, *events);
                if let Err(err) = out.event(&e) {
                    failed = Some(err);
                }
            });
            if let Some(err) = failed {
                return Err(err);
            }
        }
        Ok(())
    }
}

/// Start the command (tracked before its first instruction) or adopt what already runs.
fn start(target: &Target, probes: &mut Probes, tracker: &mut Tracker) -> Result<Option<u32>> {
    match target {
        Target::Command(argv) => {
            let map_fd = probes.tracked_fd();
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            // The child adds itself to the kernel's tracked set between fork and exec, so its
            // exec and everything after are seen with no race and no round trip.
            unsafe { cmd.pre_exec(move || track_self(map_fd)) };
            let child = cmd.spawn().map_err(|e| {
                UsageError::new(format!("cannot start `{}`: {e}", argv[0]))
            })?;
            tracker.adopt(child.id());
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
            for line in std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default().lines() {
                if let Ok(pid) = line.trim().parse::<u32>() {
                    tracker.adopt(pid);
                }
            }
            Ok(None)
        }
    }
}

/// In the forked child, before exec: insert our own pid into the TRACKED map (a raw bpf(2)
/// call: no allocation, async-signal-safe).
fn track_self(map_fd: i32) -> std::io::Result<()> {
    #[repr(C)]
    struct MapUpdate {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    let pid = unsafe { libc::getpid() } as u32;
    let info = TaskInfo { start_ns: 0, exit_code: 0, exit_flags: 0, last_signal: 0 };
    let attr = MapUpdate {
        map_fd: map_fd as u32,
        _pad: 0,
        key: &pid as *const u32 as u64,
        value: &info as *const TaskInfo as u64,
        flags: 0,
    };
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_ELEM, &attr as *const MapUpdate, std::mem::size_of::<MapUpdate>())
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn wait_readable(fd: i32, timeout_ms: i32) {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
}

/// Reap every exited child (we are a subreaper); remember the root's status.
fn reap(root: Option<u32>, root_status: &mut Option<i32>) {
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
fn forget_dead_tasks(probes: &mut Probes) -> Result<()> {
    for tid in probes.tracked()? {
        if !procfs::exists(tid) {
            probes.untrack(tid)?;
        }
    }
    Ok(())
}

fn finished(target: &Target, root: Option<u32>, root_status: Option<i32>, probes: &mut Probes) -> Result<bool> {
    Ok(match target {
        Target::Command(_) => root_status.is_some() && probes.tracked().context("reading tracked tasks")?.is_empty(),
        Target::Pid(pid) => !procfs::exists(*pid) || procfs::is_zombie(*pid),
        Target::Cgroup { path, .. } => {
            let _ = root;
            std::fs::read_to_string(path.join("cgroup.events"))
                .map(|s| s.lines().any(|l| l.trim() == "populated 0"))
                .unwrap_or(true)
        }
    })
}
