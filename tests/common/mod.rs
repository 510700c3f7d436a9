//! Shared helpers for the integration tests: running pilot (`trace`, and `run` with its run
//! directory: rundir.rs) with a timeout, reading what it wrote (events.jsonl, summary.json, the
//! stderr account), the C helpers, scratch directories, controls run without pilot, and guards
//! that kill the processes a test started (by PID).
#![allow(dead_code)]

mod rundir;

use std::{
    any::Any,
    fs,
    io::{Read as _, Write as _},
    net::TcpListener,
    os::{fd::RawFd, unix::net::UnixListener, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Deserialize;
use tempfile::TempDir;

/// The pilot binary cargo built for these tests.
pub fn pilot_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pilot")
}

/// `pilot ARGS` run as user nobody, from a copy of pilot in a fresh directory nobody can
/// reach (the build tree may not be readable), with its output.
pub fn pilot_as_nobody(args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let d = Scratch::new();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = d.path().join("pilot");
    fs::copy(pilot_bin(), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let run = || {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .current_dir("/")
            .output()
            .expect("running setpriv (util-linux)")
    };
    // ETXTBSY: a test thread that forked during the copy holds its write fd until its child
    // execs (O_CLOEXEC closes it only then); the exec succeeds once that child has.
    let mut out = run();
    for _ in 0..50 {
        if !String::from_utf8_lossy(&out.stderr).contains("Text file busy") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        out = run();
    }
    out
}

/// A real Python (the `python3` on PATH may be a pyenv shim script, which adds processes).
pub const PYTHON: &str = "/usr/bin/python3";

/// How long any one traced run may take before the test gives up (generous: CI has 2 cores and
/// tests of one binary run in parallel).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// The effects helper

/// Path of the `effects` helper (tests/helpers/effects.c), compiled with gcc once per test
/// binary into cargo's scratch directory for integration tests.
pub fn effects() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| c_helper("tests/helpers/effects.c", "effects", &["-O1", "-Wall", "-Wextra", "-Werror", "-pthread"], "PILOT_TEST_EFFECTS"))
}

/// Build the C program `src` (relative to the repository) with gcc `flags` into cargo's
/// scratch directory for integration tests as `name`; its path. `prebuilt`: the environment
/// variable naming a prebuilt one instead (`cargo xtask vm-test` links them statically: its
/// guests have no gcc). Callers keep the path in a `OnceLock` (once per test binary).
pub fn c_helper(src: &str, name: &str, flags: &[&str], prebuilt: &str) -> String {
    if let Ok(prebuilt) = std::env::var(prebuilt) {
        return prebuilt;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(src);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pilot-tests");
    fs::create_dir_all(&dir).expect("creating the helper build directory");
    let bin = dir.join(name);
    // Build under a unique name, then rename: test binaries run in parallel must never
    // exec a half-written file.
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    let out = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .output()
        .expect("running gcc (apt-get install gcc)");
    assert!(
        out.status.success(),
        "gcc failed to build {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &bin).unwrap_or_else(|e| panic!("installing the {name} helper: {e}"));
    bin.to_string_lossy().into_owned()
}

/// The cgroup v2 hierarchy: /sys/fs/cgroup/unified on hybrid hosts (the project's machines),
/// /sys/fs/cgroup where systemd mounts only v2 (Ubuntu, Debian 12, RHEL 9 defaults).
pub fn cgroup2_root() -> &'static str {
    if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() { "/sys/fs/cgroup/unified" } else { "/sys/fs/cgroup" }
}

// ---------------------------------------------------------------------------------------------
// Scratch directories

/// A temporary directory (removed on drop) with its canonical path, since pilot reports
/// canonical absolute paths.
pub struct Scratch {
    dir: TempDir,
    path: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new().prefix("pilot-test-").tempdir().expect("creating a temp dir");
        let path = dir.path().canonicalize().expect("canonicalizing the temp dir");
        Scratch { dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside the directory, as a string (for command lines and comparisons).
    pub fn join(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }

    /// The directory itself, as a string.
    pub fn s(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Create `name` with `content`; returns its path.
    pub fn file(&self, name: &str, content: &str) -> String {
        let p = self.join(name);
        if let Some(parent) = Path::new(&p).parent() {
            fs::create_dir_all(parent).expect("creating a fixture's directory");
        }
        fs::write(&p, content).expect("writing a fixture file");
        p
    }

    pub fn mkdir(&self, name: &str) -> String {
        let p = self.join(name);
        fs::create_dir_all(&p).expect("creating a fixture directory");
        p
    }
}

/// Where a production path's copy lands in a run directory's overlay: upper/<key>/<rel>, from
/// mounts.json (the longest overlaid mount point holding it). None: no overlay holds it.
pub fn upper_of(run: &Path, path: &Path) -> Option<PathBuf> {
    let plans: Vec<serde_json::Value> = serde_json::from_str(&fs::read_to_string(run.join("mounts.json")).ok()?).ok()?;
    let mut best: Option<(String, String)> = None;
    for p in plans {
        let Some(o) = p.get("Overlay") else { continue };
        let (Some(mp), Some(key)) = (o["mount_point"].as_str(), o["key"].as_str()) else { continue };
        if path.starts_with(mp) && best.as_ref().is_none_or(|(b, _)| mp.len() > b.len()) {
            best = Some((mp.to_string(), key.to_string()));
        }
    }
    let (mp, key) = best?;
    Some(run.join("upper").join(key).join(path.strip_prefix(&mp).ok()?))
}

// ---------------------------------------------------------------------------------------------
// Events

/// One line of events.jsonl. Fields follow the documented contract; everything but the
/// identity fields may be absent.
#[derive(Deserialize, Debug, Clone, Default)]
pub struct Event {
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub start_ns: Option<u64>,
    pub comm: Option<String>,
    pub kind: String,
    pub syscall: Option<String>,
    pub ret: Option<i64>,
    pub error: Option<String>,
    pub path: Option<String>,
    pub path2: Option<String>,
    pub flags: Option<u64>,
    pub flag_names: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub fd: Option<i64>,
    pub bytes: Option<u64>,
    pub count: Option<u64>,
    pub failed: Option<u64>,
    pub first_ts_ns: Option<u64>,
    pub family: Option<String>,
    pub addr: Option<String>,
    pub port: Option<u16>,
    pub target_pid: Option<i64>,
    pub signal: Option<i64>,
    pub signal_name: Option<String>,
    pub argv: Option<Vec<String>>,
    pub exit_code: Option<i64>,
    pub child_pid: Option<u32>,
    pub child_start_ns: Option<u64>,
    pub thread: Option<bool>,
    pub truncated: Option<bool>,
    pub unreadable: Option<bool>,
    pub resolved_via: Option<String>,
}

impl Event {
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("")
    }

    pub fn is(&self, kind: &str, path: &str) -> bool {
        self.kind == kind && self.path.as_deref() == Some(path)
    }

    /// Does any string field mention `needle`?
    pub fn mentions(&self, needle: &str) -> bool {
        [&self.path, &self.path2, &self.addr, &self.comm]
            .iter()
            .any(|f| f.as_deref().is_some_and(|s| s.contains(needle)))
            || self.argv.as_ref().is_some_and(|a| a.iter().any(|s| s.contains(needle)))
    }
}

// ---------------------------------------------------------------------------------------------
// Running pilot

/// How to run `pilot trace` (or, from [`Pilot::pilot_run`], `pilot run`).
pub struct Pilot {
    args: Vec<String>,
    cwd: Option<PathBuf>,
    timeout: Duration,
    out: bool,
    env: Vec<(String, String)>,
    pipes: bool,
    stdin_pipe: bool,
    journal: bool,
    inherit: Vec<(RawFd, RawFd)>,
    held: Vec<Box<dyn Any>>,
}

/// `pilot trace --out <tmp> -- CMD...`, run in `cwd`.
pub fn trace_cmd(cwd: &Scratch, cmd: &[&str]) -> Run {
    Pilot::new().cwd(cwd.path()).command(cmd).run()
}

/// `effects OP ARGS [+ OP ARGS]...` traced, in `cwd`; asserts pilot exits 0 and saw no loss.
pub fn trace_effects(cwd: &Scratch, ops: &[&str]) -> Run {
    let mut cmd = vec![effects()];
    cmd.extend_from_slice(ops);
    let run = trace_cmd(cwd, &cmd);
    run.assert_exit(0);
    run
}

/// Like [`trace_effects`], but `effects` first does `chdir <cwd>` (absolute), so relative
/// paths in `ops` resolve against a cwd the trace itself recorded. For tests about relative
/// paths that are not about the root's initial cwd: pilot reads that from /proc after starting
/// the root, which races with a root that exits at once (see
/// `relative_paths_of_a_short_lived_root_resolve_against_its_cwd`).
pub fn trace_effects_rel(cwd: &Scratch, ops: &[&str]) -> Run {
    let dir = cwd.s();
    let mut all = vec!["chdir", dir.as_str(), "+"];
    all.extend_from_slice(ops);
    trace_effects(cwd, &all)
}

/// `sh -c SCRIPT` traced, in `cwd`.
pub fn trace_sh(cwd: &Scratch, script: &str) -> Run {
    trace_cmd(cwd, &["/bin/sh", "-c", script])
}

impl Pilot {
    pub fn new() -> Pilot {
        Pilot::of("trace")
    }

    /// `pilot SUBCOMMAND --out <tmp>/SUBCOMMAND ...`
    fn of(sub: &str) -> Pilot {
        Pilot {
            args: vec![sub.into()],
            cwd: None,
            timeout: RUN_TIMEOUT,
            out: true,
            env: Vec::new(),
            pipes: false,
            stdin_pipe: false,
            journal: false,
            inherit: Vec::new(),
            held: Vec::new(),
        }
    }

    /// `pilot run --out <tmp>/run ...` (the run directory: [`Run::dir`]), as an operator runs
    /// it: its stdout and stderr are pipes ([`Pilot::pipes`]) and its journal entries go to a
    /// journal of the run's own ([`Pilot::own_journal`]), not the host's. The binary is cargo's
    /// (`pilot_bin`): pilot starts its sandbox from /proc/self/exe, so a rebuild of
    /// target/debug/pilot while tests run does not break a run in flight.
    pub fn pilot_run() -> Pilot {
        Pilot::of("run").pipes().own_journal()
    }

    /// Add arguments after `pilot trace` (before `--out`).
    pub fn args<I, S>(mut self, args: I) -> Pilot
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args.extend(args.into_iter().map(|s| s.as_ref().to_string()));
        self
    }

    /// `-- CMD ARGS...`
    pub fn command(self, cmd: &[&str]) -> Pilot {
        self.args(["--"]).args(cmd)
    }

    pub fn cwd(mut self, dir: &Path) -> Pilot {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Pilot {
        self.timeout = t;
        self
    }

    /// Set an environment variable for pilot (e.g. RUST_LOG).
    pub fn env(mut self, key: &str, value: &str) -> Pilot {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Do not pass `--out` (for argument errors that must be reported before anything).
    pub fn no_out(mut self) -> Pilot {
        self.out = false;
        self
    }

    /// pilot's stdout and stderr are pipes the harness drains (into the same files), not files:
    /// `pilot run` hands a pipe or a terminal to its command, but sends output meant for a file
    /// to its run directory (stdout.log), so only with pipes does [`Run::stdout`] hold what the
    /// command printed, line by line as it printed it ([`Running::wait_for_line`]).
    pub fn pipes(mut self) -> Pilot {
        self.pipes = true;
        self
    }

    /// pilot's stdin (its command's) is a pipe from the test ([`Running::write_stdin`]): a
    /// gate the test opens when it is ready; closed when the test waits for pilot.
    pub fn stdin_pipe(mut self) -> Pilot {
        self.stdin_pipe = true;
        self
    }

    /// `PILOT_JOURNAL` is a journal of this run's own (in the run's temp dir, next to the run
    /// directory), so a test never appends to the host's.
    pub fn own_journal(mut self) -> Pilot {
        self.journal = true;
        self
    }

    /// pilot (and so its command) inherits our descriptor `from` as its fd `to` (dup2 in the
    /// child, which clears FD_CLOEXEC). The caller keeps `from` open until [`Pilot::spawn`].
    pub fn inherit(mut self, from: RawFd, to: RawFd) -> Pilot {
        self.inherit.push((from, to));
        self
    }

    /// Keep `guard` (e.g. a lock the test's other cases respect) until pilot has exited.
    pub fn hold(mut self, guard: impl Any) -> Pilot {
        self.held.push(Box::new(guard));
        self
    }

    /// Start pilot; the caller waits with [`Running::wait`].
    pub fn spawn(self) -> Running {
        let results = tempfile::Builder::new().prefix("pilot-run-").tempdir().expect("temp dir for the run");
        // `trace` for `pilot trace`, `run` for `pilot run`.
        let out_dir = results.path().join(&self.args[0]);
        let stdout = fs::File::create(results.path().join("stdout")).unwrap();
        let stderr = fs::File::create(results.path().join("stderr")).unwrap();
        let mut args = self.args.clone();
        if self.out {
            // `--out DIR` goes right after `trace`, before a `--` command.
            args.insert(1, "--out".into());
            args.insert(2, out_dir.to_string_lossy().into_owned());
        }
        let mut cmd = Command::new(pilot_bin());
        cmd.args(&args)
            .stdin(if self.stdin_pipe { Stdio::piped() } else { Stdio::null() })
            .env("RUST_BACKTRACE", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let copied = if self.pipes {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            Some((stdout, stderr))
        } else {
            cmd.stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
            None
        };
        if self.journal {
            cmd.env("PILOT_JOURNAL", results.path().join("journal.jsonl"));
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        inherit_fds(&mut cmd, &self.inherit);
        let mut child = cmd.spawn().expect("starting pilot");
        let mut copiers = Vec::new();
        if let Some((stdout, stderr)) = copied {
            copiers.push(copy_to(child.stdout.take().unwrap(), stdout));
            copiers.push(copy_to(child.stderr.take().unwrap(), stderr));
        }
        let stdin = child.stdin.take();
        Running {
            child: Some(child),
            results: Some(results),
            out_dir,
            args,
            timeout: self.timeout,
            started: Instant::now(),
            stdin,
            copiers,
            _held: self.held,
        }
    }

    pub fn run(self) -> Run {
        self.spawn().wait()
    }
}

/// Copy what pilot writes on a pipe into `file`, as it comes (a thread, until EOF).
fn copy_to(mut pipe: impl std::io::Read + Send + 'static, mut file: fs::File) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut pipe, &mut file);
    })
}

/// In the child of `cmd`, dup2 each (ours, theirs) pair: the descriptor is inherited across
/// exec as `theirs` (dup2 clears FD_CLOEXEC).
pub fn inherit_fds(cmd: &mut Command, fds: &[(RawFd, RawFd)]) {
    if fds.is_empty() {
        return;
    }
    let fds = fds.to_vec();
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &fds {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A pilot that runs.
pub struct Running {
    child: Option<Child>,
    results: Option<TempDir>,
    out_dir: PathBuf,
    args: Vec<String>,
    timeout: Duration,
    started: Instant,
    stdin: Option<ChildStdin>,
    copiers: Vec<JoinHandle<()>>,
    _held: Vec<Box<dyn Any>>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Write to pilot's stdin (with [`Pilot::stdin_pipe`]; an error without it).
    pub fn write_stdin(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.stdin.as_mut() {
            Some(s) => s.write_all(bytes),
            None => Err(std::io::Error::other("pilot's stdin is not a pipe (Pilot::stdin_pipe)")),
        }
    }

    /// The stdout pilot printed so far.
    pub fn stdout_so_far(&self) -> String {
        fs::read_to_string(self.results.as_ref().unwrap().path().join("stdout")).unwrap_or_default()
    }

    /// Wait up to `within` for a whole line of stdout starting with `prefix` (with
    /// [`Pilot::pipes`] under `pilot run`: a line the command printed); None if it did not
    /// come, or pilot exited without it.
    pub fn wait_for_line(&mut self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let exited = !self.running();
            let out = self.stdout_so_far();
            // Only lines that ended: the last piece may be half a line still being written.
            let whole = out.rsplit_once('\n').map_or("", |(w, _)| w);
            if let Some(l) = whole.lines().find(|l| l.starts_with(prefix)) {
                return Some(l.to_string());
            }
            if exited || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send `sig` to pilot (by its PID).
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Is pilot still running?
    pub fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().expect("try_wait").is_none()
    }

    /// The stderr pilot printed so far.
    pub fn stderr_so_far(&self) -> String {
        fs::read_to_string(self.results.as_ref().unwrap().path().join("stderr")).unwrap_or_default()
    }

    /// Wait until pilot's stderr contains `needle` (with `-v`, events are printed as they
    /// happen: the way to know pilot is tracing). Fails the test after the run timeout.
    pub fn wait_for_stderr(&mut self, needle: &str) {
        let deadline = Instant::now() + self.timeout;
        while !self.stderr_so_far().contains(needle) {
            if !self.running() {
                panic!("pilot exited before printing {needle:?}:\n{}", self.stderr_so_far());
            }
            if Instant::now() > deadline {
                panic!("pilot did not print {needle:?} within {:?}:\n{}", self.timeout, self.stderr_so_far());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for pilot to exit (killing it and failing the test after the timeout).
    pub fn wait(mut self) -> Run {
        drop(self.stdin.take());
        let mut child = self.child.take().unwrap();
        let results = self.results.take().unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if self.started.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pilot {:?} did not finish within {:?}\nstderr:\n{}",
                    self.args,
                    self.timeout,
                    fs::read_to_string(results.path().join("stderr")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.started.elapsed();
        for c in self.copiers.drain(..) {
            let _ = c.join();
        }
        let read = |name: &str| fs::read_to_string(results.path().join(name)).unwrap_or_default();
        let stdout = read("stdout");
        let stderr = read("stderr");
        let events_text = fs::read_to_string(self.out_dir.join("events.jsonl")).ok();
        let mut events = Vec::new();
        let mut lines = Vec::new();
        for (i, line) in events_text.iter().flat_map(|t| t.lines()).enumerate() {
            let e: Event = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("events.jsonl line {}: {err}: {line}", i + 1));
            events.push(e);
            lines.push(line.to_string());
        }
        let summary = fs::read_to_string(self.out_dir.join("summary.json"))
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap_or_else(|err| panic!("summary.json: {err}: {t}")));
        use std::os::unix::process::ExitStatusExt as _;
        Run {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
            events,
            lines,
            summary,
            has_events_file: events_text.is_some(),
            args: self.args.clone(),
            dir: self.out_dir.clone(),
            pid: child.id(),
            elapsed,
            _results: results,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What one pilot run produced.
pub struct Run {
    /// pilot's exit code (None if a signal killed it).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// What the traced command printed on stdout (it inherits pilot's).
    pub stdout: String,
    /// pilot's stderr (account, errors) and the traced command's.
    pub stderr: String,
    pub events: Vec<Event>,
    /// events.jsonl, line by line (for failure messages).
    pub lines: Vec<String>,
    pub summary: Option<serde_json::Value>,
    pub has_events_file: bool,
    pub args: Vec<String>,
    /// `--out`: the trace or run directory (run-directory readers: rundir.rs).
    dir: PathBuf,
    /// pilot's pid (the agent's: its cgroup is named after it).
    pub pid: u32,
    /// From start to exit.
    pub elapsed: Duration,
    _results: TempDir,
}

impl Run {
    /// Everything about the run, for failure messages (events capped).
    pub fn dump(&self) -> String {
        const MAX: usize = 400;
        let mut s = format!("pilot {:?}\nexit code {:?} signal {:?}\n", self.args, self.code, self.signal);
        s += &format!("--- stdout ---\n{}\n--- stderr ---\n{}\n", self.stdout, self.stderr);
        s += &format!("--- events.jsonl ({} lines) ---\n", self.lines.len());
        for l in self.lines.iter().take(MAX) {
            s += l;
            s.push('\n');
        }
        if self.lines.len() > MAX {
            s += &format!("... {} more\n", self.lines.len() - MAX);
        }
        if let Some(sum) = &self.summary {
            s += &format!("--- summary.json ---\n{sum:#}\n");
        }
        s += &self.dump_run_dir();
        s
    }

    pub fn assert_exit(&self, code: i32) {
        assert_eq!(self.code, Some(code), "pilot's exit status\n{}", self.dump());
    }

    pub fn summary(&self) -> &serde_json::Value {
        self.summary.as_ref().unwrap_or_else(|| panic!("no summary.json\n{}", self.dump()))
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.kind == kind).collect()
    }

    pub fn all(&self, pred: impl Fn(&Event) -> bool) -> Vec<&Event> {
        self.events.iter().filter(|e| pred(e)).collect()
    }

    /// The first event matching `pred`; fails the test (describing `what`) if there is none.
    pub fn find(&self, what: &str, pred: impl Fn(&Event) -> bool) -> &Event {
        self.events
            .iter()
            .find(|e| pred(e))
            .unwrap_or_else(|| panic!("no event: {what}\n{}", self.dump()))
    }

    /// Exactly one event matches `pred`.
    pub fn one(&self, what: &str, pred: impl Fn(&Event) -> bool) -> &Event {
        let found = self.all(&pred);
        assert_eq!(found.len(), 1, "expected exactly one event: {what}, found {:#?}\n{}", found, self.dump());
        found[0]
    }

    /// The event of `kind` on `path`.
    pub fn at(&self, kind: &str, path: &str) -> &Event {
        self.find(&format!("{kind} on {path}"), |e| e.is(kind, path))
    }

    /// No event matches `pred`.
    pub fn none(&self, what: &str, pred: impl Fn(&Event) -> bool) {
        let found = self.all(pred);
        assert!(found.is_empty(), "unexpected event(s): {what}: {found:#?}\n{}", self.dump());
    }

    /// Every write event on `path`, with the sums of bytes and calls.
    pub fn writes_to(&self, path: &str) -> (Vec<&Event>, u64, u64) {
        let w = self.all(|e| e.is("write", path));
        let bytes = w.iter().map(|e| e.bytes.unwrap_or(0)).sum();
        let calls = w.iter().map(|e| e.count.unwrap_or(0)).sum();
        (w, bytes, calls)
    }

    /// The value of `key=` on the first stdout line of the effects helper that starts with `op `.
    pub fn fact(&self, op: &str, key: &str) -> i64 {
        let prefix = format!("{op} ");
        let pat = format!("{key}=");
        self.stdout
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(&pat)?.parse().ok()))
            .unwrap_or_else(|| panic!("no `{op} ... {key}=N` line on stdout\n{}", self.dump()))
    }

    /// The pid of the (first) process that exec'd `exe`.
    pub fn pid_of_exec(&self, exe: &str) -> u32 {
        self.find(&format!("exec of {exe}"), |e| e.kind == "exec" && e.ret == Some(0) && e.path() == exe).pid
    }

    /// summary.json's field as u64.
    pub fn summary_u64(&self, key: &str) -> u64 {
        self.summary()[key].as_u64().unwrap_or_else(|| panic!("summary.{key} is not a number\n{}", self.dump()))
    }
}

/// Assert an event field equals a value, printing the event and the run on failure.
#[macro_export]
macro_rules! check {
    ($run:expr, $event:expr, $field:ident, $want:expr) => {{
        let e = $event;
        assert_eq!(e.$field, $want, "field `{}` of {:#?}\n{}", stringify!($field), e, $run.dump());
    }};
}

// ---------------------------------------------------------------------------------------------
// Loopback peers

/// A listener on loopback that accepts connections and drains them, in a thread that stops
/// when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn tcp(addr: &str) -> (Server, u16) {
        let l = TcpListener::bind(addr).expect("binding a loopback listener");
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        (Server::serve(move || l.accept().map(|(s, _)| Box::new(s) as Box<dyn std::io::Read + Send>)), port)
    }

    pub fn unix(l: UnixListener) -> Server {
        l.set_nonblocking(true).unwrap();
        Server::serve(move || l.accept().map(|(s, _)| Box::new(s) as Box<dyn std::io::Read + Send>))
    }

    fn serve(mut accept: impl FnMut() -> std::io::Result<Box<dyn std::io::Read + Send>> + Send + 'static) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), received.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + RUN_TIMEOUT;
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match accept() {
                    Ok(mut conn) => {
                        let mut buf = Vec::new();
                        let _ = conn.read_to_end(&mut buf);
                        r.fetch_add(buf.len() as u64, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { stop, received, thread: Some(thread) }
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes the tests start

/// A live service (Python) holding `data` open for writing and appending to it, started in
/// `dir`; ready when constructed, killed on drop.
pub struct Service(Child);

impl Service {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn start(dir: &Path, data: &Path) -> Service {
        let script = format!(
            "import time\nf = open({:?}, 'a')\nprint('up', flush=True)\nwhile True:\n    time.sleep(0.1); f.write('x'); f.flush()\n",
            data.display().to_string()
        );
        fs::write(dir.join("store_svc.py"), script).expect("writing the service");
        let mut child = Command::new(PYTHON).arg(dir.join("store_svc.py")).current_dir(dir).stdout(Stdio::piped()).spawn().expect("starting the service");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().expect("piped")), &mut line).expect("the service starting");
        Service(child)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pids of the pilot's workload processes: command line contains `marker` (a unique string of
/// this test), leaving out pilot itself and its sandbox, which carry the script as arguments.
pub fn pids_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let is_pilot = argv0 == pilot_bin() || argv0 == "/proc/self/exe";
        if !is_pilot && String::from_utf8_lossy(&cmdline).contains(marker) && !state.contains(") Z ") {
            out.push(pid);
        }
    }
    out
}

/// A process a test started, killed by its PID (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc { child: cmd.stdin(Stdio::null()).spawn().expect("starting a helper process") }
    }

    /// `/bin/sh -c script`
    pub fn sh(script: &str) -> Proc {
        Proc::spawn(Command::new("/bin/sh").args(["-c", script]))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Has it not exited yet?
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Wait up to `within` for it to exit; how it ended.
    pub fn ended(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Wait up to `t` for it to exit; its exit code, or 128+signal.
    pub fn wait_timeout(&mut self, t: Duration) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt as _;
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Controls: the action without pilot

/// How a command run without pilot ended, and what it printed.
pub struct Direct {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A control: `argv` run as it would be without pilot (from /, stdin /dev/null), with our
/// descriptors `fds` as (ours, its number) like [`Pilot::inherit`].
pub fn direct(argv: &[String], fds: &[(RawFd, RawFd)]) -> Direct {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null()).current_dir("/");
    inherit_fds(&mut cmd, fds);
    let out = cmd.output().unwrap_or_else(|e| panic!("running {argv:?}: {e}"));
    Direct {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`direct`], which must succeed.
pub fn direct_ok(argv: &[String], fds: &[(RawFd, RawFd)]) -> Direct {
    let d = direct(argv, fds);
    assert!(d.status.success(), "control {argv:?} failed: {:?}\nstdout: {}\nstderr: {}", d.status, d.stdout, d.stderr);
    d
}

/// An argv of owned strings.
pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// `sh -c SCRIPT sh ARGS...` (the script sees ARGS as "$1"...).
pub fn sh_argv(script: &str, args: &[&str]) -> Vec<String> {
    let mut v = argv(&["sh", "-c", script, "sh"]);
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// `python3 -c CODE ARGS...` (the code sees ARGS as sys.argv[1:]).
pub fn py_argv(code: &str, args: &[&str]) -> Vec<String> {
    let mut v = argv(&[PYTHON, "-c", code]);
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// Fail at once, naming the interpreter, if [`PYTHON`] is missing.
pub fn require_python() {
    assert!(Path::new(PYTHON).exists(), "{PYTHON} is needed by this case");
}

/// Wait until `cond` holds (polling), up to `t`; false on timeout.
pub fn wait_until(t: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Does a process with this pid exist (zombies included)?
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Write `content` to `path` (used for cgroup control files).
pub fn write_file(path: &Path, content: &str) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(content.as_bytes())
}

/// A short random-enough suffix for names shared on the host (cgroups, abstract sockets).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{}-{nanos:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
