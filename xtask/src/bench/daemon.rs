//! The resident probe set (issue 19): what active runs cost every other process on the host,
//! through one daemon and each loading its own probes; how fast a run starts through a warm
//! daemon; and eight pilots at once through it, each judged as when it runs alone.
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::measure::{Env, bpf_programs, free_port, interleave, median, programs_released, remove, stdout_of};
use super::report::{Goal, Report, ns, ratio};

/// A `pilot daemon` of the bench's own (socket, metrics port, state directory in the scratch
/// space); stopped by pid (SIGTERM) on drop.
pub struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    pub fn start(env: &Env) -> anyhow::Result<Daemon> {
        let dir = env.fresh_dir("daemon")?;
        let socket = dir.join("pilot.sock");
        let config = dir.join("pilot.toml");
        let text = format!(
            "socket = {:?}\nmetrics_listen = \"127.0.0.1:{}\"\nstate_dir = {:?}\n",
            socket,
            free_port()?,
            dir.join("state")
        );
        std::fs::write(&config, text)?;
        let log = std::fs::File::create(dir.join("daemon.log"))?;
        let child = Command::new(&env.pilot)
            .arg("daemon")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting pilot daemon")?;
        let mut d = Daemon { child, socket };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.socket.exists() {
            if Instant::now() > deadline || d.child.try_wait()?.is_some() {
                bail!("pilot daemon did not listen on {} (see {}/daemon.log)", d.socket.display(), dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(d)
    }

    /// `pilot ARGS` as a client of this daemon.
    pub fn client(&self, env: &Env, args: &[&str]) -> Command {
        let mut cmd = env.pilot_cmd(args);
        cmd.env_remove("PILOT_NO_DAEMON").env("PILOT_SOCKET", &self.socket);
        cmd
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

/// Where runs go: through a daemon, or each loading its own probes.
#[derive(Clone, Copy)]
enum Via<'a> {
    Daemon(&'a Daemon),
    InProcess,
}

impl Via<'_> {
    fn pilot(&self, env: &Env, args: &[&str]) -> Command {
        match self {
            Via::Daemon(d) => d.client(env, args),
            Via::InProcess => env.pilot_cmd(args),
        }
    }
}

/// A `pilot trace` that stays active, tracking a shell blocked on a FIFO of its own until
/// dropped (the FIFO is opened for writing and closed: the shell's `read` ends).
struct Active {
    child: Child,
    fifo: PathBuf,
}

impl Active {
    fn start(env: &Env, via: Via, n: usize) -> anyhow::Result<Active> {
        let dir = env.fresh_dir(&format!("active-{n}"))?;
        let fifo = dir.join("fifo");
        if unsafe { libc::mkfifo(std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?.as_ptr(), 0o600) } != 0 {
            bail!("mkfifo {}: {}", fifo.display(), std::io::Error::last_os_error());
        }
        let out = dir.join("out");
        let script = format!("echo ready; read x < {}", fifo.display());
        let mut child = via
            .pilot(env, &["trace", "--out", &out.display().to_string(), "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pilot trace")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let active = Active { child, fifo };
        if line.trim() != "ready" {
            bail!("an active `pilot trace` did not start its command");
        }
        Ok(active)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        // Opening for writing blocks until the shell reads: it has, or it is gone.
        if let Ok(None) = self.child.try_wait()
            && let Ok(mut f) = std::fs::OpenOptions::new().write(true).custom_flags_nonblock().open(&self.fifo)
        {
            let _ = f.write_all(b"\n");
        }
        let _ = self.child.wait();
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    /// O_NONBLOCK: a FIFO whose reader is gone fails at once instead of blocking.
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// The configurations of the concurrent-runs comparison: (name, through the daemon, active runs).
const CONCURRENT: [(&str, bool, usize); 8] = [
    ("nothing loaded", false, 0),
    ("daemon, 0 active runs", true, 0),
    ("daemon, 1 active run", true, 1),
    ("daemon, 4 active runs", true, 4),
    ("daemon, 8 active runs", true, 8),
    ("in-process, 1 active run", false, 1),
    ("in-process, 4 active runs", false, 4),
    ("in-process, 8 active runs", false, 8),
];

/// The untracked loop (a process no run tracks) with 0, 1, 4, 8 runs active, through one daemon
/// and in-process, as ratios to nothing loaded from the same interleaved rounds.
pub fn concurrent(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "concurrent runs";
    let (n, rounds) = (env.size(10_000, 300), env.size(5, 1) as usize);
    let loop_dir = env.loop_dir("concurrent-loop")?;
    let argv = [env.benchloop.display().to_string(), "loop".into(), n.to_string(), loop_dir.display().to_string()];
    let mut wall = vec![Vec::new(); CONCURRENT.len()];
    let cpu = interleave(rounds, CONCURRENT.len(), |c| {
        let (_, through_daemon, runs) = CONCURRENT[c];
        let daemon = if through_daemon { Some(Daemon::start(env)?) } else { None };
        let via = daemon.as_ref().map(Via::Daemon).unwrap_or(Via::InProcess);
        let active: Vec<Active> = (0..runs).map(|i| Active::start(env, via, i)).collect::<anyhow::Result<_>>()?;
        let out = stdout_of(Command::new(&argv[0]).args(&argv[1..]))?;
        drop(active);
        drop(daemon);
        wall[c].push(super::measure::benchloop_value(&out, "ns_per_iter")?);
        super::measure::benchloop_value(&out, "cpu_ns_per_iter")
    })?;
    let base = median(&cpu[0]);
    let base_wall = median(&wall[0]);
    let mut ratios = serde_json::Map::new();
    for (c, (name, _, _)) in CONCURRENT.iter().enumerate() {
        let (m, w) = (median(&cpu[c]), median(&wall[c]));
        let value = if c == 0 { format!("{} ({})", ns(m), ns(w)) } else { format!("{} ({}); {} (wall {})", ns(m), ns(w), ratio(m / base), ratio(w / base_wall)) };
        r.row(S, format!("untracked loop CPU (wall), {name}"), value, "");
        ratios.insert(name.to_string(), json!({"cpu_ns": m, "wall_ns": w, "ratio": m / base, "samples": cpu[c]}));
    }
    let one = median(&cpu[2]);
    let eight = median(&cpu[4]);
    r.row(S, "daemon: 8 active runs / 1 active run (CPU), configurations apart", ratio(eight / one), "");
    let (one_ip, eight_ip) = (median(&cpu[5]), median(&cpu[7]));
    r.row(S, "in-process: 8 active runs / 1 active run (CPU), configurations apart", ratio(eight_ip / one_ip), "");
    r.set(S, "iterations", json!(n));
    r.set(S, "configs", Value::Object(ratios));
    r.set(S, "daemon_8_over_1_apart", json!(eight / one));
    r.set(S, "in_process_8_over_1_apart", json!(eight_ip / one_ip));
    let daemon = Daemon::start(env)?;
    let paired = paired_8_over_1(env, Via::Daemon(&daemon), &argv)?;
    drop(daemon);
    let paired_ip = paired_8_over_1(env, Via::InProcess, &argv)?;
    let (d, ip) = (median(&paired), median(&paired_ip));
    r.row(S, format!("daemon: 8 active runs / 1 active run (CPU), paired rounds, median of {}", paired.len()), format!("{} (rounds {})", ratio(d), list(&paired)), Goal::AtMost(1.1).judge(d, "x"));
    r.row(S, format!("in-process: 8 active runs / 1 active run (CPU), paired rounds, median of {}", paired_ip.len()), format!("{} (rounds {})", ratio(ip), list(&paired_ip)), "");
    r.set(S, "daemon_8_over_1", json!(d));
    r.set(S, "daemon_8_over_1_rounds", json!(paired));
    r.set(S, "in_process_8_over_1", json!(ip));
    r.set(S, "in_process_8_over_1_rounds", json!(paired_ip));
    remove(&loop_dir);
    Ok(())
}

fn list(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ")
}

/// The 8-over-1 figure from paired rounds: one run stays active throughout, and each round
/// measures the untracked loop with it alone and with seven more started beside it, back to
/// back (the order alternating), five loops each after a second's settling; the figure is the
/// median of the rounds' ratios. Configurations measured apart (the table above: a daemon and
/// its runs started afresh for each sample) sit tens of seconds apart, over which this VM's
/// own speed moved by up to 1.5x (the same loop, nothing loaded: 19 us and 33 us per
/// iteration 40 s apart).
fn paired_8_over_1(env: &Env, via: Via, argv: &[String]) -> anyhow::Result<Vec<f64>> {
    let rounds = env.size(9, 1) as usize;
    let before = bpf_programs();
    let first = Active::start(env, via, 100)?;
    let with_one = bpf_programs();
    let measure = || -> anyhow::Result<f64> {
        // The steady cost of active runs, not their start (the daemon refilling its spares,
        // the new runs' own start-up): both sides wait the same.
        std::thread::sleep(Duration::from_secs(1));
        let loops: Vec<f64> = (0..5)
            .map(|_| super::measure::benchloop_value(&stdout_of(Command::new(&argv[0]).args(&argv[1..]))?, "cpu_ns_per_iter"))
            .collect::<anyhow::Result<_>>()?;
        Ok(median(&loops))
    };
    let with_seven = |f: &dyn Fn() -> anyhow::Result<f64>| -> anyhow::Result<f64> {
        let more: Vec<Active> = (1..8).map(|i| Active::start(env, via, 100 + i)).collect::<anyhow::Result<_>>()?;
        let v = f();
        drop(more);
        programs_released(with_one);
        v
    };
    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (one, eight) = if round % 2 == 0 {
            let one = measure()?;
            (one, with_seven(&measure)?)
        } else {
            let eight = with_seven(&measure)?;
            (measure()?, eight)
        };
        eprintln!("[bench] paired round {round}: 1 active run {one:.0} ns, 8 active runs {eight:.0} ns per iteration");
        ratios.push(eight / one);
    }
    drop(first);
    programs_released(before);
    Ok(ratios)
}

/// `pilot run -- true` through a warm daemon and in-process, p50 and p99 over the same
/// interleaved rounds (20 in a full run).
pub fn start(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "warm-daemon start";
    let daemon = Daemon::start(env)?;
    // Warm: the daemon's first run fills its spare slots.
    run_true(env, Via::Daemon(&daemon))?;
    let rounds = env.size(20, 2) as usize;
    let samples = interleave(rounds, 2, |c| {
        let via = if c == 0 { Via::Daemon(&daemon) } else { Via::InProcess };
        run_true(env, via)
    })?;
    drop(daemon);
    let [(d50, d99), (i50, i99)] = [0, 1].map(|c| (median(&samples[c]), percentile(&samples[c], 0.99)));
    r.row(S, format!("pilot run -- true through a warm daemon, p50 / p99 of {rounds}"), format!("{} / {}", ns(d50), ns(d99)), Goal::AtMost(100.0).judge(d50 / 1e6, " ms"));
    r.row(S, format!("pilot run -- true in-process, p50 / p99 of {rounds}"), format!("{} / {}", ns(i50), ns(i99)), "");
    r.row(S, "warm daemon / in-process (p50)", ratio(d50 / i50), Goal::AtMost(0.333).judge(d50 / i50, "x"));
    r.set(S, "daemon_ns", json!({"p50": d50, "p99": d99, "samples": samples[0]}));
    r.set(S, "in_process_ns", json!({"p50": i50, "p99": i99, "samples": samples[1]}));
    Ok(())
}

/// Wall time of one `pilot run -- true` (its own run directory and journal).
fn run_true(env: &Env, via: Via) -> anyhow::Result<f64> {
    let scratch = env.fresh_dir("start-daemon")?;
    let out = scratch.join("run").display().to_string();
    let mut cmd = via.pilot(env, &["run", "--out", &out, "--", "true"]);
    cmd.env("PILOT_JOURNAL", scratch.join("journal.jsonl"));
    let t = super::measure::wall_time(&mut cmd)?;
    remove(&scratch);
    Ok(t.as_nanos() as f64)
}

/// The `q` quantile (nearest rank) of `samples`.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// What one of the eight pilots did, as its run directory says.
#[derive(Debug, PartialEq)]
struct Outcome {
    exit: i32,
    verdict: String,
    complete: bool,
    /// Why not complete: summary.json's loss counts and the processes the trace never saw.
    incomplete: String,
    /// Paths of other pilots' marker files its graph names (cross-talk: must be none).
    foreign: usize,
}

/// Eight pilots through one daemon, each alone and then all at once: the same verdicts,
/// complete, no effect of one in another's graph, and the wall time of all eight.
pub fn eight(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "8 concurrent pilots";
    const PILOTS: usize = 8;
    let files = env.size(200, 20);
    let shared = env.fresh_dir("eight-shared")?;
    std::fs::write(shared.join("common"), "base\n")?;
    // A live process half the pilots signal (held back by the sandbox; the policy blocks it).
    let mut live = Command::new("sleep").arg("3600").stdin(Stdio::null()).spawn().context("starting sleep")?;
    let live_pid = live.id();
    let daemon = Daemon::start(env);
    let result = daemon.and_then(|daemon| {
        let script = |i: usize| {
            let mine = shared.join(format!("mine-{i}"));
            let mut s = format!("mkdir -p {m} && i=0; while [ $i -lt {files} ]; do echo {i} > {m}/f$i; i=$((i+1)); done; echo {i} >> {c}", m = mine.display(), c = shared.join("common").display());
            if i % 2 == 1 {
                s.push_str(&format!("; kill -TERM {live_pid}"));
            }
            s
        };
        let alone: Vec<Outcome> = (0..PILOTS)
            .map(|i| {
                let child = spawn_pilot(env, &daemon, &format!("alone-{i}"), &script(i))?;
                outcome(env, child, &format!("alone-{i}"), i)
            })
            .collect::<anyhow::Result<_>>()?;
        let started = Instant::now();
        let children: Vec<Child> = (0..PILOTS).map(|i| spawn_pilot(env, &daemon, &format!("together-{i}"), &script(i))).collect::<anyhow::Result<_>>()?;
        let together: Vec<Outcome> = children.into_iter().enumerate().map(|(i, c)| outcome(env, c, &format!("together-{i}"), i)).collect::<anyhow::Result<_>>()?;
        Ok((alone, together, started.elapsed()))
    });
    let _ = live.kill();
    let _ = live.wait();
    let (alone, together, wall) = result?;
    let same = alone.iter().zip(&together).filter(|(a, t)| a.exit == t.exit && a.verdict == t.verdict).count();
    let complete = together.iter().filter(|t| t.complete).count();
    let foreign: usize = together.iter().map(|t| t.foreign).sum();
    let verdicts: Vec<String> = together.iter().map(|t| t.verdict.clone()).collect();
    r.row(S, "verdicts alone / together", format!("{} / {}", alone.iter().map(|a| a.verdict.as_str()).collect::<Vec<_>>().join(","), verdicts.join(",")), judge_count(same, PILOTS, "same verdict"));
    r.row(S, "complete (0 events lost)", format!("{complete} of {PILOTS}"), judge_count(complete, PILOTS, "complete"));
    r.row(S, "other pilots' files in a pilot's graph (cross-talk)", foreign.to_string(), if foreign == 0 { "0: met".into() } else { format!("0: MISSED ({foreign})") });
    r.row(S, format!("wall time of all {PILOTS} at once ({files} files each)"), ns(wall.as_nanos() as f64), "");
    r.set(S, "alone", json!(alone.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>()));
    r.set(S, "together", json!(together.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>()));
    r.set(S, "wall_ns", json!(wall.as_nanos() as f64));
    remove(&shared);
    for i in 0..PILOTS {
        remove(&env.work.join(format!("alone-{i}")));
        remove(&env.work.join(format!("together-{i}")));
    }
    Ok(())
}

fn judge_count(n: usize, of: usize, what: &str) -> String {
    if n == of { format!("all {of}: met") } else { format!("all {of} {what}: MISSED ({n})") }
}

fn spawn_pilot(env: &Env, daemon: &Daemon, name: &str, script: &str) -> anyhow::Result<Child> {
    let dir = env.fresh_dir(name)?;
    let out = dir.join("run").display().to_string();
    let mut cmd = daemon.client(env, &["run", "--out", &out, "--", "sh", "-c", script]);
    cmd.env("PILOT_JOURNAL", dir.join("journal.jsonl")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    cmd.spawn().context("starting pilot run")
}

fn outcome(env: &Env, mut child: Child, name: &str, i: usize) -> anyhow::Result<Outcome> {
    let exit = child.wait()?.code().unwrap_or(-1);
    let run = env.work.join(name).join("run");
    let read = |f: &str| -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(run.join(f)).with_context(|| format!("{name}: reading {f} (pilot exit {exit})"))?;
        Ok(serde_json::from_str(&text)?)
    };
    let verdict = read("verdict.json")?["verdict"].as_str().unwrap_or("?").to_string();
    let summary = read("summary.json")?;
    let complete = summary["complete"].as_bool() == Some(true) && summary["lost_events"].as_u64() == Some(0);
    let graph = std::fs::read_to_string(run.join("graph.json"))?;
    let unseen = serde_json::from_str::<Value>(&graph).ok().map(|g| g["channels"]["unseen_processes"].clone()).unwrap_or_default();
    let incomplete = if complete { String::new() } else { format!("lost {} {}; unseen {unseen}", summary["lost_events"], summary["lost_by_cause"]) };
    Ok(Outcome { exit, verdict, complete, incomplete, foreign: foreign_markers(&graph, i) })
}

/// How many of the other pilots' marker directories (`mine-J`) the effects in `graph` reach:
/// the targets of its edges, not its component nodes (the other pilots, live processes on the
/// host while this one ran, name theirs in their command lines).
fn foreign_markers(graph: &str, own: usize) -> usize {
    let g: Value = serde_json::from_str(graph).unwrap_or_default();
    let empty = Vec::new();
    let nodes = g["nodes"].as_array().unwrap_or(&empty);
    let path_of: std::collections::HashMap<&str, &str> = nodes.iter().filter_map(|n| Some((n["id"].as_str()?, n["path"].as_str()?))).collect();
    let reached: Vec<&str> = g["edges"].as_array().unwrap_or(&empty).iter().filter_map(|e| path_of.get(e["to"].as_str()?).copied()).collect();
    let names = |p: &str, j: usize| p.contains(&format!("/mine-{j}/")) || p.ends_with(&format!("/mine-{j}"));
    (0..8).filter(|j| *j != own).filter(|j| reached.iter().any(|p| names(p, *j))).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), 20.0);
        assert_eq!(percentile(&v, 0.5), 10.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn markers_of_other_pilots_are_found() {
        let g = r#"{"nodes":[{"id":"a","path":"/w/mine-3/f1"},{"id":"b","path":"/w/mine-1"},{"id":"c","path":"/w/mine-2"}],
                    "edges":[{"to":"a"},{"to":"b"}]}"#;
        assert_eq!(foreign_markers(g, 3), 1);
        assert_eq!(foreign_markers(g, 1), 1);
        assert_eq!(foreign_markers(g, 5), 2, "a node no edge reaches is not an effect");
    }
}
