//! One run served by the daemon: the pilot binary started as the client would have run it,
//! its output relayed to the client and kept in `state_dir/<id>.log`, stopped on cancel, on
//! `max_run`, or (if so configured) when the client goes away; counted in the metrics.
use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::{
    fs::File,
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    net::unix::{OwnedReadHalf, OwnedWriteHalf},
    process::Child,
    sync::Mutex,
    time::Instant,
};

use super::{State, client::DAEMON_RUN_ENV, config::Disconnect, proto};
use crate::error::{DAEMON_STATE, FileError, OnPath};

/// What the client asked to run.
pub struct Spec {
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

/// A run as `pilot status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub id: u64,
    pub pid: u32,
    pub args: Vec<String>,
    pub cwd: String,
    pub started_unix_ms: u128,
    /// None while it runs.
    pub exit_code: Option<i32>,
    /// cancel, client-disconnect, max_run or daemon-stop, when the daemon stopped it.
    pub stopped_by: Option<String>,
    /// connected or gone.
    pub client: String,
    pub run_dir: Option<String>,
    pub log: String,
}

/// How long a run that was told to stop may take to write its results before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// The client's side of the connection while it is there.
type Client = Arc<Mutex<Option<OwnedWriteHalf>>>;

pub async fn serve(
    state: &Arc<State>,
    id: u64,
    spec: Spec,
    conn: OwnedWriteHalf,
    reader: BufReader<OwnedReadHalf>,
    max_run: Duration,
) -> Result<()> {
    let client: Client = Arc::new(Mutex::new(Some(conn)));
    let Some(command) = spec.args.iter().find(|a| *a == "run" || *a == "trace").cloned() else {
        send(&client, proto::REFUSED, b"the daemon serves run and trace only").await;
        return Ok(());
    };
    let log_path = state.config.state_dir.join(format!("{id}.log"));
    let log = match File::create(&log_path).await.on("creating the run's log", &log_path, DAEMON_STATE) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            send(&client, proto::STDERR, format!("pilot daemon: cannot start the run: {e}\n").as_bytes()).await;
            send(&client, proto::EXIT, &1i32.to_le_bytes()).await;
            return Ok(());
        }
    };
    // The run's part of the resident probe set; without one (every slot taken, or the daemon
    // could not load the set) the run loads its own.
    let lease = match state.resident.as_ref().map(|r| r.lease()) {
        Some(Ok(lease)) => lease,
        Some(Err(e)) => {
            tracing::warn!(run = id, "leasing the resident probe set: {e:#}: the run loads its own");
            None
        }
        None => None,
    };
    let leased = lease.as_ref().map(|l| l.run);
    let started = start(&spec, id, lease.as_ref());
    drop(lease); // the child has its copies of the fds
    let mut child = match started {
        Ok(c) => c,
        Err(e) => {
            if let (Some(r), Some(run)) = (&state.resident, leased) {
                r.release(run);
            }
            send(&client, proto::STDERR, format!("pilot daemon: cannot start the run: {e}\n").as_bytes()).await;
            send(&client, proto::EXIT, &1i32.to_le_bytes()).await;
            return Ok(());
        }
    };
    let pid = child.id().expect("a child not yet waited for has its pid");
    state.runs.lock().expect("runs lock").push(RunInfo {
        id,
        pid,
        args: spec.args.clone(),
        cwd: spec.cwd.display().to_string(),
        started_unix_ms: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
        exit_code: None,
        stopped_by: None,
        client: "connected".into(),
        run_dir: None,
        log: log_path.display().to_string(),
    });
    state.pids.lock().expect("pids lock").push((id, pid, command == "trace"));
    state.metrics.run_started();
    let _serving = Serving::new(state);
    tracing::info!(run = id, pid, args = ?spec.args, "run started");
    let relays = [
        tokio::spawn(relay(child.stdout.take().expect("piped"), proto::STDOUT, client.clone(), (log.clone(), log_path.clone()), None)),
        tokio::spawn(relay(child.stderr.take().expect("piped"), proto::STDERR, client.clone(), (log, log_path), Some((state.clone(), id, spec.cwd.clone())))),
    ];
    tokio::spawn(watch_client(reader, state.clone(), client.clone(), id));

    let started = Instant::now();
    let mut stop_sent: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // Readable the moment the run's process exits (without reaping it), so its client hears at
    // once; the tick checks max_run.
    // SAFETY: an OwnedFd the AsyncFd owns: open, and the same, for as long as it lives.
    let exit_fd = crate::session::pidfd(pid).and_then(|fd| unsafe { tokio::io::unix::AsyncFd::register(fd) }.ok());
    while !exited(pid) {
        match &exit_fd {
            Some(fd) => {
                tokio::select! {
                    ready = fd.readable() => if let Ok(mut guard) = ready { guard.retain_ready() },
                    _ = tick.tick() => {}
                }
            }
            None => {
                tick.tick().await;
            }
        }
        if stop_sent.is_none() && started.elapsed() > max_run {
            tracing::warn!(run = id, "max_run reached: stopping the run");
            mark_stopped(state, id, "max_run");
            stop(state, id);
            stop_sent = Some(Instant::now());
        }
        if stop_sent.is_some_and(|t| t.elapsed() > STOP_GRACE) {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    // Whatever of its job is left (a traced command that outlived an interrupted trace) goes
    // with it; the exited leader still holds the group, so the id is not recycled yet.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    // Forget the pid before reaping it: nothing signals a recycled pid.
    state.pids.lock().expect("pids lock").retain(|(i, ..)| *i != id);
    state.metrics.run_ended();
    let status = child.wait().await.with_context(|| format!("waiting for run {id} (pid {pid})"))?;
    let code = status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0));
    for r in relays {
        let _ = r.await;
    }
    let run_dir = {
        let mut runs = state.runs.lock().expect("runs lock");
        let r = runs.iter_mut().find(|r| r.id == id).expect("registered run");
        r.exit_code = Some(code);
        r.run_dir.clone()
    };
    state.metrics.add_run(&command, code == 0, run_dir.as_deref().map(std::path::Path::new));
    tracing::info!(run = id, exit = code, "run ended");
    send(&client, proto::EXIT, &code.to_le_bytes()).await;
    // After the client has its answer: what the run left in the shared maps (a task it still
    // tracked, writes of a process killed mid-run) is removed and its slot freed.
    if let (Some(r), Some(run)) = (state.resident.clone(), leased) {
        let _ = tokio::task::spawn_blocking(move || r.release(run)).await;
    }
    Ok(())
}

/// Counts a run in `State::serving` until its client has been told the outcome.
struct Serving<'a>(&'a State);

impl<'a> Serving<'a> {
    fn new(state: &'a State) -> Self {
        state.serving.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Serving(state)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn start(spec: &Spec, id: u64, lease: Option<&super::resident::Lease>) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(lease) = lease {
        let fds = lease.raw_fds();
        // SAFETY: fcntl only, between fork and exec: the leased fds cross the exec.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &fds {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            })
        };
    }
    // Its own process group, as a terminal's foreground job: a cancel reaches the whole job.
    cmd.process_group(0)
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(DAEMON_RUN_ENV, id.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(lease) = lease {
        cmd.env(crate::probes::handoff::ENV, &lease.env);
    }
    // What only the daemon may say (never the client's environment passing through).
    cmd.env_remove(super::client::EXE_SHA256_ENV).env_remove(super::client::KERNEL_ENV);
    if let Some(sha) = super::EXE_SHA256.get() {
        cmd.env(super::client::EXE_SHA256_ENV, sha);
    }
    if let Some(word) = super::KERNEL.get() {
        cmd.env(super::client::KERNEL_ENV, word);
    }
    // The daemon's configuration, not one a client names, says which policy signers count.
    if let Some(path) = super::CONFIG_PATH.get() {
        cmd.env("PILOT_CONFIG", path);
    }
    tokio::process::Command::from(cmd).spawn()
}

/// Send a frame to the client, if it is still there.
async fn send(client: &Client, tag: u8, payload: &[u8]) {
    let mut guard = client.lock().await;
    if let Some(conn) = guard.as_mut()
        && conn.write_all(&proto::frame(tag, payload)).await.is_err()
    {
        *guard = None;
    }
}

/// Copy a pipe of the run to the client and the log; the stderr relay also learns the run
/// directory from pilot's own lines.
async fn relay(
    mut pipe: impl AsyncRead + Unpin,
    tag: u8,
    client: Client,
    (log, log_path): (Arc<Mutex<File>>, PathBuf),
    learn: Option<(Arc<State>, u64, PathBuf)>,
) {
    let mut buf = vec![0u8; 16384];
    let mut pending = Vec::new();
    let mut logging = true;
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // The client still gets everything; the log says once that it stops here.
        if logging && let Err(e) = log.lock().await.write_all(&buf[..n]).await {
            tracing::warn!("the run's output is no longer logged: {}", FileError::new("writing", &log_path, e, DAEMON_STATE));
            logging = false;
        }
        send(&client, tag, &buf[..n]).await;
        if let Some((state, id, cwd)) = &learn {
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Some(dir) = run_dir_of(&String::from_utf8_lossy(&line)) {
                    let dir = cwd.join(dir.trim()).display().to_string();
                    if let Some(r) = state.runs.lock().expect("runs lock").iter_mut().find(|r| r.id == *id) {
                        r.run_dir = Some(dir);
                    }
                }
            }
        }
    }
    // tokio's File writes on its blocking pool: wait for the last one.
    let _ = log.lock().await.flush().await;
}

/// The run directory named by pilot run's or pilot trace's closing lines.
fn run_dir_of(line: &str) -> Option<&str> {
    line.strip_prefix("pilot: run directory ")
        .or_else(|| line.strip_prefix("pilot: wrote events.jsonl, summary.json, graph.json and graph.dot in "))
}

/// The client's lines: `cancel` stops the run; the client going away stops it only when the
/// configuration says so.
async fn watch_client(mut reader: BufReader<OwnedReadHalf>, state: Arc<State>, client: Client, id: u64) {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(n) if n > 0 => {
                if matches!(serde_json::from_str(&line), Ok(proto::Request::Cancel)) {
                    mark_stopped(&state, id, "cancel");
                    stop(&state, id);
                }
            }
            _ => break,
        }
    }
    *client.lock().await = None;
    let running = state.pids.lock().expect("pids lock").iter().any(|(i, ..)| *i == id);
    if let Some(r) = state.runs.lock().expect("runs lock").iter_mut().find(|r| r.id == id) {
        r.client = "gone".into();
    }
    if running && state.config.on_client_disconnect == Disconnect::Kill {
        tracing::info!(run = id, "client gone: stopping the run (on_client_disconnect = kill)");
        mark_stopped(&state, id, "client-disconnect");
        stop(&state, id);
    }
}

pub fn mark_stopped(state: &State, id: u64, why: &str) {
    if let Some(r) = state.runs.lock().expect("runs lock").iter_mut().find(|r| r.id == id) {
        r.stopped_by.get_or_insert(why.to_string());
    }
}

/// Stop run `id` as ^C would, if it still runs. `pilot run` stops its whole pilot at one
/// SIGTERM. `pilot trace` gets what a terminal's ^C does, SIGINT to its whole job (the traced
/// command sees it and usually exits, ending the trace), then, if it is still there after
/// `TRACE_GRACE`, a SIGTERM (its second interrupt: it stops).
pub fn stop(state: &Arc<State>, id: u64) {
    let trace = {
        let pids = state.pids.lock().expect("pids lock");
        let Some((_, pid, trace)) = pids.iter().find(|(i, ..)| *i == id) else { return };
        if *trace {
            unsafe { libc::kill(-(*pid as i32), libc::SIGINT) };
        }
        *trace
    };
    if !trace {
        return terminate(state, id);
    }
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(TRACE_GRACE).await;
        terminate(&state, id);
    });
}

const TRACE_GRACE: Duration = Duration::from_secs(5);

/// SIGTERM to the run's pilot; under the pid lock, so a recycled pid is never signalled.
fn terminate(state: &State, id: u64) {
    let pids = state.pids.lock().expect("pids lock");
    if let Some((_, pid, _)) = pids.iter().find(|(i, ..)| *i == id) {
        unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
    }
}

/// Has the child exited? Checked without reaping it, so its pid stays ours until forgotten.
fn exited(pid: u32) -> bool {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    rc != 0 || unsafe { info.si_pid() } != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_run_directory_from_pilots_lines() {
        assert_eq!(run_dir_of("pilot: run directory /tmp/r1\n"), Some("/tmp/r1\n"));
        assert_eq!(run_dir_of("pilot: wrote events.jsonl, summary.json, graph.json and graph.dot in t1"), Some("t1"));
        assert_eq!(run_dir_of("pilot: traced `true`"), None);
    }
}
