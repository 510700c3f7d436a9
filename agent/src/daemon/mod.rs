//! `pilot daemon`: the per-host agent. It serves `pilot run`, `pilot trace` and `pilot status`
//! of the same pilot binary over a root-only Unix socket, and Prometheus metrics on a localhost
//! port. Each run is the same binary run in-process for the client (its argv, cwd and
//! environment), as a child of the daemon: its output is relayed to the client and kept in
//! `state_dir/<id>.log`. A client that goes away does not take its run along (or, with
//! `on_client_disconnect = "kill"`, stops it as ^C would); `max_run` bounds every run; stopping
//! the daemon stops its runs first. No run is left behind.
//!
//! One tokio runtime (a single thread: the daemon relays bytes and waits) serves the socket,
//! the runs and the metrics endpoint; the /proc scans behind the BPF metrics run on its
//! blocking pool.
mod bpf_stats;
pub mod client;
pub mod config;
mod metrics;
mod proto;
mod resident;
mod runs;

use std::{
    os::unix::{fs::PermissionsExt, net::UnixStream as StdUnixStream},
    path::Path,
    sync::{Arc, Mutex, atomic::{AtomicU64, AtomicUsize, Ordering}},
    time::Duration,
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    signal::unix::{SignalKind, signal},
    time::Instant,
};

use crate::{
    cli::DaemonArgs,
    error::{DAEMON_SOCKET, DAEMON_STATE, FileError, OnPath, UsageError},
};
use config::Config;

/// sha256 of the daemon's binary, hashed once: its runs run it, and record it in their intent.
static EXE_SHA256: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// The daemon's check of the kernel, once at its start (client::KERNEL_ENV).
static KERNEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `--config FILE`, passed on to the runs the daemon starts (they read its policy signers).
static CONFIG_PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
use proto::Request;
pub use runs::RunInfo;

/// What every connection's task shares.
pub struct State {
    config: Config,
    exe: String,
    runs: Mutex<Vec<RunInfo>>,
    /// Live runs: (run id, pid, a trace: ^C goes to its whole job), for cancel and shutdown.
    pids: Mutex<Vec<(u64, u32, bool)>>,
    /// Runs whose client has not been told the outcome yet (shutdown waits for them).
    serving: AtomicUsize,
    metrics: metrics::Metrics,
    /// The host's probe set, shared by every run (None: it could not be loaded; runs load
    /// their own).
    resident: Option<Arc<resident::Resident>>,
    next_id: AtomicU64,
    started_unix_ms: u128,
}

impl State {
    fn active_runs(&self) -> usize {
        self.pids.lock().expect("pids lock").len()
    }
}

/// `pilot status --json`.
#[derive(Serialize, Deserialize)]
pub struct Status {
    pub daemon_pid: u32,
    pub socket: String,
    pub metrics: String,
    pub started_unix_ms: u128,
    pub runs: Vec<RunInfo>,
}

impl Status {
    pub fn render(&self) -> String {
        let mut out = format!(
            "pilot daemon pid {} on {} (metrics {}): {} run(s)\n",
            self.daemon_pid,
            self.socket,
            if self.metrics.is_empty() { "off" } else { &self.metrics },
            self.runs.len()
        );
        for r in &self.runs {
            let outcome = match (&r.exit_code, &r.stopped_by) {
                (None, _) => "running".to_string(),
                (Some(c), Some(why)) => format!("exit {c} (stopped: {why})"),
                (Some(c), None) => format!("exit {c}"),
            };
            out.push_str(&format!(
                "  {:<4} pid {:<8} {:<28} client {:<12} {}\n      {}\n",
                r.id,
                r.pid,
                outcome,
                r.client,
                r.run_dir.as_deref().unwrap_or("-"),
                r.args.join(" ")
            ));
        }
        out
    }
}

pub fn run(args: DaemonArgs) -> Result<i32> {
    let config = Config::load(args.config.as_deref())?;
    if let Some(path) = &args.config {
        let _ = CONFIG_PATH.set(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()));
    }
    let max_run = config.max_run().map_err(UsageError::new)?;
    let metrics_addr = config.metrics_addr().map_err(UsageError::new)?;
    if args.check_config {
        eprintln!("pilot daemon: configuration ok");
        return Ok(0);
    }
    crate::probes::preflight()?;
    std::fs::create_dir_all(&config.state_dir).on("creating", &config.state_dir, DAEMON_STATE).map_err(FileError::usage)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the daemon's runtime")?;
    runtime.block_on(serve(config, max_run, metrics_addr))?;
    Ok(0)
}

async fn serve(config: Config, max_run: Duration, metrics_addr: Option<std::net::SocketAddr>) -> Result<()> {
    let _ = EXE_SHA256.set(client::exe_sha256());
    let _ = KERNEL.set(client::kernel_word(&crate::doctor::probe_run()));
    // Loaded before the socket answers: the first run is already served by it.
    let resident = match resident::Resident::load() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("loading the resident probe set: {e:#}: each run loads its own");
            None
        }
    };
    let listener = bind(&config.socket)?;
    // Before the first run: the daemon stops as soon as it is told to.
    let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    let (stats_mode, sampling) = (config.bpf_stats, config.bpf_stats_sampling().map_err(UsageError::new)?);
    let state = Arc::new(State {
        exe: client::own_exe(),
        runs: Mutex::new(Vec::new()),
        pids: Mutex::new(Vec::new()),
        serving: AtomicUsize::new(0),
        metrics: metrics::Metrics::new(stats_mode, resident.clone()),
        resident,
        next_id: AtomicU64::new(1),
        started_unix_ms: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
        config,
    });
    if let Some(addr) = metrics_addr {
        metrics::serve(addr, state.clone())?;
    }
    tokio::spawn(bpf_stats::run(state.clone(), stats_mode, sampling));
    tracing::info!(socket = %state.config.socket.display(), metrics = %state.config.metrics_listen, "pilot daemon ready");
    eprintln!("pilot daemon: serving {} (metrics {})", state.config.socket.display(), if metrics_addr.is_some() { state.config.metrics_listen.as_str() } else { "off" });
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((conn, _)) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_client(conn, &state, max_run).await {
                            tracing::warn!("client: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    // E.g. EMFILE: do not spin on it.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    shutdown(&state).await;
    let _ = std::fs::remove_file(&state.config.socket);
    Ok(())
}

/// Stop every run (as ^C would) and wait for them, so none outlives the daemon.
async fn shutdown(state: &Arc<State>) {
    let ids: Vec<u64> = state.pids.lock().expect("pids lock").iter().map(|(id, ..)| *id).collect();
    if ids.is_empty() {
        return;
    }
    eprintln!("pilot daemon: stopping {} run(s)", ids.len());
    for id in ids {
        runs::mark_stopped(state, id, "daemon-stop");
        runs::stop(state, id);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while state.serving.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The socket, root-only; a stale one (no daemon answering) is replaced.
fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).on("creating", dir, DAEMON_SOCKET)?;
    }
    if StdUnixStream::connect(path).is_ok() {
        return Err(UsageError::new(format!("a pilot daemon already serves {}: stop it first", path.display())).into());
    }
    let _ = std::fs::remove_file(path);
    // Created 0600 (not chmod-ed after: no moment where another user could connect).
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = listener.on("listening on", path, DAEMON_SOCKET).map_err(FileError::usage)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).on("setting mode 0600 on", path, DAEMON_SOCKET)?;
    Ok(listener)
}

async fn serve_client(conn: UnixStream, state: &Arc<State>, max_run: Duration) -> Result<()> {
    let (read, mut write) = conn.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    reader.read_line(&mut line).await.context("reading a client's request")?;
    let request: Request = serde_json::from_str(&line).context("a request that is not pilot's")?;
    match request {
        Request::Status => {
            let status = Status {
                daemon_pid: std::process::id(),
                socket: state.config.socket.display().to_string(),
                metrics: state.config.metrics_listen.clone(),
                started_unix_ms: state.started_unix_ms,
                runs: state.runs.lock().expect("runs lock").clone(),
            };
            write.write_all(&proto::frame(proto::STATUS, &serde_json::to_vec(&status)?)).await?;
            Ok(())
        }
        Request::Run { args, cwd, env, exe } => {
            if exe != state.exe {
                let why = format!("it runs {}, the client {exe}", state.exe);
                return Ok(write.write_all(&proto::frame(proto::REFUSED, why.as_bytes())).await?);
            }
            let id = state.next_id.fetch_add(1, Ordering::SeqCst);
            runs::serve(state, id, runs::Spec { args, cwd, env }, write, reader, max_run).await
        }
        Request::Cancel => Ok(()),
    }
}
