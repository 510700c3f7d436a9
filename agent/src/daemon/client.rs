//! The client side: `pilot run` and `pilot trace` go through the daemon when its socket
//! answers and it runs the same pilot binary; otherwise they run in-process. `pilot status`
//! asks the daemon what it runs and ran.
use std::{
    io::Write,
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::atomic::Ordering,
    time::Duration,
};

use anyhow::{Context, Result, anyhow};

use super::{
    config::DEFAULT_SOCKET,
    proto::{self, FrameReader, Next, Request},
};
use crate::{error::UsageError, probes::contain::UnixContainment, session};

/// Set in the environment of a run the daemon starts (and removed by it at once), so that it
/// runs in-process.
pub const DAEMON_RUN_ENV: &str = "PILOT_DAEMON_RUN";

/// Set by the daemon: the sha256 of the pilot binary, which it hashed once (the run's binary is
/// the daemon's own, /proc/self/exe at the fork).
pub const EXE_SHA256_ENV: &str = "PILOT_EXE_SHA256";

static EXE_SHA256: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Set by the daemon: what its own check of the kernel found (`denied`, `netns`, or
/// `refused:` and why), so a run it starts does not probe every feature again.
pub const KERNEL_ENV: &str = "PILOT_DAEMON_KERNEL";

static KERNEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The daemon's check of the kernel as `KERNEL_ENV` carries it.
pub fn kernel_word(checked: &anyhow::Result<UnixContainment>) -> String {
    match checked {
        Ok(UnixContainment::Netns) => "netns".into(),
        Ok(_) => "denied".into(),
        Err(e) => format!("refused:{e}"),
    }
}

/// In a run the daemon started: its check of the kernel (the Unix containment it found, or
/// why it refuses runs); None elsewhere.
pub fn kernel_vouched() -> Option<Result<UnixContainment, String>> {
    let word = KERNEL.get()?;
    Some(match word.as_str() {
        "denied" => Ok(UnixContainment::Denied),
        "netns" => Ok(UnixContainment::Netns),
        other => Err(other.strip_prefix("refused:").unwrap_or(other).to_string()),
    })
}

/// Was this process started by the daemon as a run? Takes out of the environment what the
/// daemon put there (the run then has exactly the client's), keeping it for the run: the probe
/// set hand-off and the binary's hash. Call first thing in main, before any thread starts.
pub fn started_by_daemon() -> bool {
    if std::env::var_os(DAEMON_RUN_ENV).is_none() {
        return false;
    }
    // SAFETY: main's first call: no other thread reads or writes the environment yet.
    unsafe { std::env::remove_var(DAEMON_RUN_ENV) };
    if let Ok(sha) = std::env::var(EXE_SHA256_ENV) {
        let _ = EXE_SHA256.set(sha);
        unsafe { std::env::remove_var(EXE_SHA256_ENV) };
    }
    if let Ok(word) = std::env::var(KERNEL_ENV) {
        let _ = KERNEL.set(word);
        unsafe { std::env::remove_var(KERNEL_ENV) };
    }
    crate::probes::handoff::take_env();
    true
}

/// sha256 of the running pilot binary (hashed by the daemon when it started this run).
pub fn exe_sha256() -> String {
    if let Some(sha) = EXE_SHA256.get() {
        return sha.clone();
    }
    std::fs::read("/proc/self/exe").map(|b| crate::policy::sha256_hex(&b)).unwrap_or_default()
}

/// The socket clients use: $PILOT_SOCKET, else the default.
pub fn socket_path() -> PathBuf {
    std::env::var_os("PILOT_SOCKET").map(PathBuf::from).unwrap_or_else(|| DEFAULT_SOCKET.into())
}

/// Run this `pilot run`/`pilot trace` through the daemon: Some(exit status), or None to run
/// in-process (no daemon, PILOT_NO_DAEMON set, or a daemon of another pilot binary).
pub fn forward() -> Result<Option<i32>> {
    if std::env::var_os("PILOT_NO_DAEMON").is_some() {
        return Ok(None);
    }
    let path = socket_path();
    let Ok(mut stream) = UnixStream::connect(&path) else { return Ok(None) };
    let request = Request::Run {
        args: std::env::args().skip(1).collect(),
        cwd: std::env::current_dir().context("reading the working directory (removed?)")?,
        env: std::env::vars().collect(),
        exe: own_exe(),
    };
    let talking = || format!("talking to the pilot daemon at {}: `pilot status` shows what became of the run, PILOT_NO_DAEMON=1 runs without it", path.display());
    send(&mut stream, &request).with_context(talking)?;
    session::catch_interrupts();
    stream.set_read_timeout(Some(Duration::from_millis(200))).with_context(talking)?;
    let mut frames = FrameReader::default();
    let mut cancels_sent = 0;
    loop {
        match frames.next(&mut stream).with_context(talking)? {
            Next::Frame(proto::REFUSED, why) => {
                tracing::info!("the daemon at {} does not serve this pilot ({}): running in-process", path.display(), String::from_utf8_lossy(&why));
                return Ok(None);
            }
            Next::Frame(proto::STDOUT, bytes) => std::io::stdout().write_all(&bytes).context("writing the run's output to stdout (closed?)")?,
            Next::Frame(proto::STDERR, bytes) => std::io::stderr().write_all(&bytes).context("writing the run's output to stderr (closed?)")?,
            Next::Frame(proto::EXIT, code) => {
                let code = i32::from_le_bytes(code.get(..4).and_then(|c| c.try_into().ok()).unwrap_or([1, 0, 0, 0]));
                return Ok(Some(code));
            }
            Next::Frame(..) | Next::Idle => {}
            Next::Closed => {
                return Err(anyhow!("the pilot daemon closed the connection mid-run: `pilot status` shows what became of the run"));
            }
        }
        // ^C: the daemon stops the run, as in-process pilot would.
        let interrupts = session::SIGNALS.load(Ordering::SeqCst);
        if interrupts > cancels_sent {
            send(&mut stream, &Request::Cancel).with_context(talking)?;
            cancels_sent = interrupts;
        }
    }
}

/// `pilot status`: what the daemon runs and ran.
pub fn status(json: bool) -> Result<i32> {
    let path = socket_path();
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        UsageError::new(format!(
            "no pilot daemon answers at {}: {e}: start one with `pilot daemon` (or `systemctl start pilot`), or set PILOT_SOCKET",
            path.display()
        ))
    })?;
    let talking = || format!("talking to the pilot daemon at {}", path.display());
    send(&mut stream, &Request::Status).with_context(talking)?;
    let mut frames = FrameReader::default();
    loop {
        match frames.next(&mut stream).with_context(talking)? {
            Next::Frame(proto::STATUS, body) => {
                let status: super::Status = serde_json::from_slice(&body).with_context(|| {
                    format!("the pilot daemon at {} answered with a status this pilot cannot read: is it another version of pilot?", path.display())
                })?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&status)?);
                } else {
                    print!("{}", status.render());
                }
                return Ok(0);
            }
            Next::Closed => return Err(anyhow!("the pilot daemon closed the connection without an answer")),
            _ => {}
        }
    }
}

fn send(stream: &mut UnixStream, request: &Request) -> Result<()> {
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    Ok(())
}

/// The running binary: the daemon serves only clients of the same one.
pub fn own_exe() -> String {
    std::fs::read_link("/proc/self/exe").map(|p| p.display().to_string()).unwrap_or_default()
}
