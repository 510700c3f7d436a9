//! `pilot run`: the real command, on the real host, contained. Files land in overlays in the
//! run directory, sockets in the sink, signals stay in the pilot's PID namespace; the probes
//! trace it all as `pilot trace` does, and the run directory gets the events, the graph, the
//! changes and the verdict.
use std::{
    fs::{self, File},
    net::SocketAddr,
    os::unix::{fs::FileTypeExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::Ordering,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::{
    cli::RunArgs,
    diff,
    error::UsageError,
    graph, journal,
    output::Output,
    policy,
    probes::{self, Probes, contain::UnixContainment},
    sandbox,
    session::{self, SIGNALS, Session},
    sink::Sink,
    snapshot::Snapshot,
};

/// Exit statuses of `pilot run` (a contract: runbooks branch on them).
pub const EXIT_PASS: i32 = 0;
pub const EXIT_BLOCKED: i32 = 3;
pub const EXIT_COMMAND_FAILED: i32 = 4;

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
const POLL_MS: i32 = 20;

/// verdict.json (`pilot.verdict/v1`), also read back by `pilot report`.
#[derive(Serialize, Deserialize)]
pub struct Verdict {
    pub schema: String,
    /// Exit status of the pilot command (128+N: killed by signal N).
    pub pilot_exit: i32,
    /// pass, warn or block, with risk, containment and every violation explained.
    #[serde(flatten)]
    pub evaluation: policy::eval::Evaluation,
    pub lost_events: u64,
    pub timed_out: bool,
    pub command: Vec<String>,
    pub cwd: String,
    /// How the pilot was contained. Not `containment`: that key is the score (`evaluation`);
    /// a second `containment` key made verdict.json hold the same key twice.
    pub contained_by: Containment,
}

#[derive(Serialize, Deserialize)]
pub struct Containment {
    pub files: String,
    pub network: String,
    pub unix_sockets: String,
    pub signals: String,
    pub capabilities_dropped: Vec<String>,
}

pub fn run(args: RunArgs) -> Result<i32> {
    if args.command.is_empty() {
        bail!(UsageError::new("nothing to run: give the command after `--`, e.g. `pilot run -- ./repair.sh`"));
    }
    let mut phases = crate::bench::Phases::start();
    let allowed = parse_allowed(&args.allow)?;
    let timeout = args.timeout.as_deref().map(parse_duration).transpose()?;
    let policies = policy::load_all(&args.policy)?;
    let unix = crate::doctor::require_run()?;
    probes::preflight()?;
    gc(false)?;
    phases.mark("checks and gc");
    let id = run_id();
    let run_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => PathBuf::from("pilot-runs").join(&id),
    };
    fs::create_dir_all(&run_dir)
        .map_err(|e| UsageError::new(format!("cannot create run directory {}: {e}", run_dir.display())))?;
    let run_dir = fs::canonicalize(&run_dir)?;
    eprintln!("pilot: run directory {}", run_dir.display());
    // Hashing our binary (the intent) and reading the host (the snapshot) run beside the
    // probe load: each takes tens of milliseconds, and none needs the others.
    let command = args.command.clone();
    let intent = std::thread::spawn(move || crate::commit::Intent::capture(&command, &policies).map(|i| (i, policies)));
    let host = std::thread::spawn(|| {
        // Every listening port of the host, the operator's own session included (an `ssh -R`
        // forward is production too), not only those of discovered components.
        let live: Vec<u16> = crate::snapshot::sockets::listeners().values().filter_map(|l| l.port).collect();
        (Snapshot::take(&Default::default()), live)
    });
    let sink = Sink::start()?;
    let opts = probes::Options { ringbuf_bytes: args.events.ringbuf_kib.saturating_mul(1024), ..Default::default() };
    let mut probes = Probes::load(&opts)?;
    phases.mark("probes load");
    let (intent, policies) = intent.join().map_err(|_| anyhow!("capturing the intent panicked"))??;
    fs::write(run_dir.join("intent.json"), serde_json::to_string_pretty(&intent)? + "\n")?;
    journal::append(journal::Record {
        kind: "run",
        run_dir: &run_dir,
        intent: intent.for_journal(),
        outputs: &["intent.json"],
        verdict: None,
        note: None,
    })?;
    let (snapshot, live_ports) = host.join().map_err(|_| anyhow!("the host snapshot panicked"))?;
    phases.mark("intent, journal and host snapshot (after the probes)");
    let cgroup = PilotCgroup::create(&id)?;
    let (unix, unix_links) = probes.contain(unix, &cgroup.dir_fd()?, sink.config(), &allowed, &live_ports)?;

    let mut out = Output::create(Some(&run_dir), args.events.export.as_deref(), args.verbose)?;
    let mut session = Session::new();
    session::catch_interrupts();
    let cwd = std::env::current_dir()?;
    // Issue 16: the supervisor that answers what the sandbox would answer differently from
    // the live host (none where the kernel has no seccomp user notification).
    let supervisor = sandbox::supervisor::Prepared::for_this_kernel();
    let spec = sandbox::Spec {
        run_dir: run_dir.clone(),
        cgroup: cgroup.path.clone(),
        cwd: cwd.clone(),
        argv: args.command.clone(),
        tracked_fd: probes.tracked_fd(),
        agent_pid: std::process::id(),
        deny_unix_sockets: unix == UnixContainment::Unavailable,
        supervisor_fd: supervisor.as_ref().map(|s| s.sandbox_fd()),
    };
    phases.mark("cgroup and containment");
    let (mut child, stdio) = spawn_sandbox(&spec, &run_dir)?;
    let supervisor = supervisor.map(|s| s.start(cgroup.path.clone()));
    // Readable the moment the sandbox exits, so the loop below does not wait out its poll.
    let exited = session::pidfd(child.id());
    session.tracker.seed(crate::tracker::FdTable::of_files(&stdio), cwd.display().to_string());
    let started = Instant::now();
    let started_at = SystemTime::now();
    let mut status: Option<i32> = None;
    let mut timed_out = false;
    let mut last_gc = Instant::now();
    loop {
        let waiting_for_exit = if status.is_none() { exited.as_ref() } else { None };
        session::wait_readable(probes.ring_fd(), waiting_for_exit, POLL_MS);
        sandbox::supervisor::deliver(supervisor.as_ref().map(|s| s.drain()), &mut session);
        session.pump(&mut probes, &mut out)?;
        if status.is_none() {
            if let Some(s) = child.try_wait()? {
                status = Some(s.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)));
            }
        }
        if SIGNALS.load(Ordering::SeqCst) > 0 {
            eprintln!("pilot: interrupted: killing the pilot");
            cgroup.kill();
        }
        if let Some(t) = timeout {
            if !timed_out && started.elapsed() > t {
                eprintln!("pilot: --timeout {:?} reached: killing the pilot", t);
                timed_out = true;
                cgroup.kill();
            }
        }
        if last_gc.elapsed() > Duration::from_millis(500) {
            session::forget_dead_tasks(&mut probes)?;
            last_gc = Instant::now();
        }
        if status.is_some() {
            session::forget_dead_tasks(&mut probes)?;
            if probes.tracked()?.is_empty() {
                break;
            }
        }
    }
    phases.mark("pilot ran");
    let supervised = supervisor.map(|s| s.stop());
    let supervised_stats = supervised.as_ref().map(|(_, stats)| stats.clone());
    sandbox::supervisor::deliver(supervised.map(|(rest, _)| rest), &mut session);
    session.pump(&mut probes, &mut out)?;
    session.collect_writes(&mut probes, None, &mut out)?;
    session.tracker.reconcile_exited();
    let pilot_exit = status.unwrap_or(sandbox::EXIT_SETUP_FAILED);
    if pilot_exit == sandbox::EXIT_SETUP_FAILED {
        let why = fs::read_to_string(run_dir.join("sandbox-error.txt")).unwrap_or_else(|_| "see the output above".into());
        cgroup.kill();
        return Err(anyhow!("the sandbox could not be built: {}", why.trim()));
    }

    let losses = probes.losses()?;
    let lost_or_garbled = losses.iter().sum::<u64>() + session.tracker.counts.decode_errors;
    let summary = session.summary(
        session::Traced {
            target: format!("`{}`", crate::account::one_line(&args.command.join(" "))),
            command: Some(args.command.clone()),
            root_pid: Some(child.id()),
            exit_code: Some(pilot_exit),
            started_at,
            started,
        },
        losses,
    );
    out.finish(&summary)?;
    session::write_latency(&session)?;
    phases.mark("summary");
    // Detaching waits for RCU grace periods (tens of ms): let it overlap the work below.
    let detach = std::thread::spawn(move || drop((unix_links, probes)));
    let caught = sink.stop();
    phases.mark("sink stop");
    out.write_file("sink.json", &(serde_json::to_string_pretty(&caught)? + "\n"))?;
    cgroup.remove();
    let _ = fs::remove_dir_all(run_dir.join("work"));
    let _ = fs::remove_dir(run_dir.join("root"));
    phases.mark("cgroup and overlay cleanup");

    let graph = session.graph.finish(summary.target.clone(), &snapshot, &session.tracker, lost_or_garbled);
    out.write_file("graph.json", &graph::render::json(&graph))?;
    out.write_file("graph.dot", &graph::render::dot(&graph))?;
    let changes = diff::compute(&run_dir).context("reading the overlay's changes")?;
    out.write_file("changes.json", &diff::render::json(&changes))?;
    phases.mark("graph and diff");

    let evaluation = policy::eval::evaluate(&graph, &policies);
    let verdict = Verdict {
        schema: "pilot.verdict/v1".into(),
        pilot_exit,
        evaluation,
        lost_events: lost_or_garbled,
        timed_out,
        command: args.command.clone(),
        cwd: cwd.display().to_string(),
        contained_by: Containment {
            files: format!("overlay (every writable filesystem): {}", sandbox::mounts::features_in(&run_dir)),
            network: "cgroup hooks: TCP/UDP to the sink".into(),
            unix_sockets: if unix == UnixContainment::Denied {
                "connect/sendmsg denied (cgroup hooks)"
            } else {
                "socket(AF_UNIX) denied (seccomp; no cgroup Unix hooks before Linux 6.7)"
            }
            .into(),
            signals: sandbox::supervisor::containment(supervised_stats.as_ref()),
            capabilities_dropped: sandbox::caps::DROPPED.iter().map(|(_, n)| n.to_string()).collect(),
        },
    };
    out.write_file("verdict.json", &(serde_json::to_string_pretty(&verdict)? + "\n"))?;
    eprint!("{}", session.account.render(&session.tracker, &session::headline(&summary)));
    eprint!("{}", diff::render::text(&changes));
    if !caught.is_empty() {
        eprintln!("network caught by the sink: {} connection(s)/source(s), {} bytes", caught.len(), caught.iter().map(|c| c.bytes).sum::<u64>());
    }
    let seq = journal::append(journal::Record {
        kind: "verdict",
        run_dir: &run_dir,
        intent: intent.for_journal(),
        outputs: &["events.jsonl", "summary.json", "graph.json", "changes.json", "sink.json", "verdict.json"],
        verdict: Some(verdict.evaluation.verdict.as_str()),
        note: Some(format!("pilot exit {pilot_exit}")),
    })?;
    phases.mark("verdict and journal");
    eprint!("{}", policy::render(&verdict.evaluation));
    let _ = detach.join();
    phases.mark("probes detached");
    eprintln!("  journal: entry {seq} in {}", journal::path().display());
    crate::report::write_into(&run_dir);
    let blocked = verdict.evaluation.verdict == policy::eval::Verdict::Block;
    eprintln!(
        "pilot: {} (pilot exit {pilot_exit}); run directory {}",
        verdict.evaluation.verdict.as_str(),
        run_dir.display()
    );
    Ok(if blocked {
        EXIT_BLOCKED
    } else if pilot_exit != 0 || timed_out {
        EXIT_COMMAND_FAILED
    } else {
        EXIT_PASS
    })
}

/// Start the sandbox; also says what its stdio is (fd, path) for the tracker.
fn spawn_sandbox(spec: &sandbox::Spec, run_dir: &Path) -> Result<(std::process::Child, Vec<(i64, String)>)> {
    // /proc/self/exe, not its path: a pilot binary replaced on disk (an upgrade, a rebuild)
    // still starts the sandbox with the code that is running.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("__sandbox").arg(serde_json::to_string(spec)?);
    let mut stdio_paths = Vec::new();
    for (fd, name) in [(0, "stdin"), (1, "stdout.log"), (2, "stderr.log")] {
        if passes(fd) {
            if let Ok(target) = fs::read_link(format!("/proc/self/fd/{fd}")) {
                stdio_paths.push((fd as i64, target.display().to_string()));
            }
            continue;
        }
        let path = if fd == 0 { "/dev/null".to_string() } else { run_dir.join(name).display().to_string() };
        stdio_paths.push((fd as i64, path));
        // A production file (or socket) as stdio would be a write path out of the overlay.
        let stdio = if fd == 0 { Stdio::null() } else { Stdio::from(File::create(run_dir.join(name))?) };
        match fd {
            0 => cmd.stdin(stdio),
            1 => cmd.stdout(stdio),
            _ => cmd.stderr(stdio),
        };
    }
    let inherited = [Some(spec.tracked_fd), spec.supervisor_fd];
    unsafe {
        cmd.pre_exec(move || {
            // Keep the TRACKED map (W inserts itself through it) and the supervisor's socket
            // (W hands its seccomp listener over it) open across exec.
            for fd in inherited.into_iter().flatten() {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    Ok((cmd.spawn().context("starting the sandbox")?, stdio_paths))
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

/// `90`, `90s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| UsageError::new(format!("--timeout {s}: give seconds or 30s, 5m, 1h")))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!(UsageError::new(format!("--timeout {s}: give seconds or 30s, 5m, 1h"))),
    };
    Ok(Duration::from_secs(secs))
}

fn run_id() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}-{}", now.as_secs(), std::process::id())
}

/// The pilot's cgroup v2 group: network hooks attach here, and it tells when the whole tree
/// (daemons included) is gone and kills it on timeout.
pub struct PilotCgroup {
    pub path: PathBuf,
}

impl PilotCgroup {
    fn create(id: &str) -> Result<PilotCgroup> {
        let root = if Path::new(CGROUP_ROOT).join("cgroup.procs").exists() { CGROUP_ROOT } else { "/sys/fs/cgroup" };
        let path = Path::new(root).join("pilot").join(id);
        fs::create_dir_all(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(PilotCgroup { path })
    }

    fn dir_fd(&self) -> Result<File> {
        File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))
    }

    /// SIGKILL every process of the pilot (cgroup.kill, Linux 5.14+).
    fn kill(&self) {
        if fs::write(self.path.join("cgroup.kill"), "1").is_err() {
            for pid in fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }

    fn remove(&self) {
        for _ in 0..100 {
            if fs::remove_dir(&self.path).is_ok() {
                // The parent `pilot` group too, once no other pilot uses it.
                if let Some(parent) = self.path.parent() {
                    let _ = fs::remove_dir(parent);
                }
                return;
            }
            self.kill();
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!("could not remove {}: `pilot gc` will", self.path.display());
    }
}

impl Drop for PilotCgroup {
    fn drop(&mut self) {
        if self.path.exists() {
            self.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_addresses() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5 minutes").is_err());
        assert_eq!(parse_allowed(&["127.0.0.1:80".into(), "[::1]:8080".into()]).unwrap().len(), 2);
        assert!(parse_allowed(&["localhost".into()]).is_err());
    }
}

/// `pilot gc`: remove what pilots whose agent died left behind. Mounts live in the pilots'
/// own mount namespaces and BPF links in the agent's fds, so both vanish with them; the
/// cgroup (and anything still running in it) is what can stay.
pub fn gc(verbose: bool) -> Result<usize> {
    let mut cleaned = 0;
    for root in [CGROUP_ROOT, "/sys/fs/cgroup"] {
        let Ok(entries) = fs::read_dir(Path::new(root).join("pilot")) else { continue };
        for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let agent: Option<u32> = name.rsplit('-').next().and_then(|p| p.parse().ok());
            let alive = agent.is_some_and(|pid| pid == std::process::id() || agent_alive(pid));
            if alive {
                continue;
            }
            let cg = PilotCgroup { path: entry.path() };
            cg.remove();
            if !cg.path.exists() {
                cleaned += 1;
                if verbose {
                    eprintln!("pilot gc: removed {} (its agent, pid {}, is gone)", cg.path.display(), agent.unwrap_or(0));
                }
            }
        }
    }
    Ok(cleaned)
}

/// Is `pid` a running pilot agent (not a recycled pid)?
fn agent_alive(pid: u32) -> bool {
    fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pilot")))
}
