//! One function per part of the report (see BENCHMARKS.md for what each measures and why).
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::measure::{
    Attached, Env, benchloop_value, drop_caches, free_port, interleave, median, remove, stdout_of, wall_time,
};
use super::report::{Goal, Report, ns, ratio};

/// `benchloop loop N DIR`: ns per iteration of open/write/close/rename/unlink + UDP connect/send.
fn loop_argv(env: &Env, n: u64, dir: &Path) -> Vec<String> {
    vec![env.benchloop.display().to_string(), "loop".into(), n.to_string(), dir.display().to_string()]
}

fn loop_ns(cmd: &mut Command) -> anyhow::Result<f64> {
    benchloop_value(&stdout_of(cmd)?, "ns_per_iter")
}

/// The loop's CPU time and wall time per iteration.
fn loop_cpu_and_wall(cmd: &mut Command) -> anyhow::Result<(f64, f64)> {
    let out = stdout_of(cmd)?;
    Ok((benchloop_value(&out, "cpu_ns_per_iter")?, benchloop_value(&out, "ns_per_iter")?))
}

fn command(argv: &[String]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd
}

/// The syscall loop in a process nobody traces: nothing attached, empty programs (the floor),
/// the agent loaded.
pub fn untracked(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "untracked overhead";
    // Differences here are a few percent: more, shorter rounds than elsewhere.
    let (n, rounds) = (env.size(10_000, 300), env.rounds * 2 - 1);
    let dir = env.loop_dir("untracked")?;
    let modes = [Attached::Nothing, Attached::Floor, Attached::Agent];
    let mut wall = vec![Vec::new(); modes.len()];
    // The goal is judged on CPU time: the programs run in the looping task, and CPU time is
    // what other load on the machine does not inflate. Wall time is reported beside it.
    let cpu = interleave(rounds, modes.len(), |c| {
        let _attached = modes[c].load(env)?;
        let (cpu, w) = loop_cpu_and_wall(&mut command(&loop_argv(env, n, &dir)))?;
        wall[c].push(w);
        Ok(cpu)
    })?;
    let [native, floor, agent] = [0, 1, 2].map(|c| median(&cpu[c]));
    let [wn, wf, wa] = [0, 1, 2].map(|c| median(&wall[c]));
    r.row(S, "loop iteration CPU (wall), nothing attached", format!("{} ({})", ns(native), ns(wn)), "");
    r.row(S, "loop iteration CPU (wall), floor (empty programs)", format!("{} ({}); {} native", ns(floor), ns(wf), ratio(floor / native)), "");
    r.row(S, "loop iteration CPU (wall), agent loaded", format!("{} ({}); {} native", ns(agent), ns(wa), ratio(agent / native)), "");
    r.row(S, "agent / floor (CPU)", ratio(agent / floor), Goal::AtMost(1.1).judge(agent / floor, "x"));
    r.row(S, "agent / floor (wall)", ratio(wa / wf), "");
    r.set(S, "iterations", json!(n));
    r.set(S, "cpu_samples_ns_per_iter", json!({"native": cpu[0], "floor": cpu[1], "agent": cpu[2]}));
    r.set(S, "wall_samples_ns_per_iter", json!({"native": wall[0], "floor": wall[1], "agent": wall[2]}));
    r.set(S, "native_cpu_ns_per_iter", json!(native));
    r.set(S, "floor_cpu_ns_per_iter", json!(floor));
    r.set(S, "agent_cpu_ns_per_iter", json!(agent));
    r.set(S, "agent_over_floor", json!(agent / floor));
    Ok(())
}

/// The bpftrace program compared with pilot: the same syscalls, one line per event.
const BPFTRACE_SCRIPT: &str = r#"
tracepoint:syscalls:sys_enter_openat /pid == cpid/ { printf("%d open %s\n", tid, str(args->filename)); }
tracepoint:syscalls:sys_enter_rename /pid == cpid/ { printf("%d rename %s %s\n", tid, str(args->oldname), str(args->newname)); }
tracepoint:syscalls:sys_enter_unlink /pid == cpid/ { printf("%d unlink %s\n", tid, str(args->pathname)); }
tracepoint:syscalls:sys_exit_openat, tracepoint:syscalls:sys_exit_rename, tracepoint:syscalls:sys_exit_unlink,
tracepoint:syscalls:sys_exit_write, tracepoint:syscalls:sys_exit_close, tracepoint:syscalls:sys_exit_socket,
tracepoint:syscalls:sys_exit_connect, tracepoint:syscalls:sys_exit_sendto
/pid == cpid/ { printf("%d %s %d\n", tid, probe, args->ret); }
"#;

#[derive(Clone, Copy, PartialEq)]
enum Tracer {
    Native,
    Pilot,
    Strace,
    Bpftrace,
}

impl Tracer {
    fn name(self) -> &'static str {
        match self {
            Tracer::Native => "native",
            Tracer::Pilot => "pilot trace",
            Tracer::Strace => "strace -f -o /dev/null",
            Tracer::Bpftrace => "bpftrace (same syscalls)",
        }
    }

    fn command(self, env: &Env, argv: &[String]) -> anyhow::Result<Command> {
        Ok(match self {
            Tracer::Native => command(argv),
            Tracer::Pilot => env.pilot_trace(argv, None)?,
            Tracer::Strace => {
                let mut cmd = Command::new("strace");
                cmd.args(["-f", "-o", "/dev/null", "--"]).args(argv);
                cmd
            }
            Tracer::Bpftrace => {
                let mut cmd = Command::new("bpftrace");
                cmd.args(["-o", "/dev/null", "-c", &argv.join(" "), "-e", BPFTRACE_SCRIPT]);
                cmd
            }
        })
    }
}

/// Whether bpftrace runs here: None, or why not (its own error).
fn bpftrace_problem() -> Option<String> {
    let out = Command::new("bpftrace").args(["-e", "BEGIN { exit(); }"]).stdin(Stdio::null()).output();
    match out {
        Err(e) => Some(format!("cannot start bpftrace: {e}")),
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            Some(format!("bpftrace fails here: {}", err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message")))
        }
        Ok(_) => None,
    }
}

/// The loop as a traced process: native, under pilot, strace and bpftrace, its files on the
/// disk (where the goal was set); native and under pilot again with its files on the loops'
/// tmpfs, where no file system history inflates native (pilot's added cost shows whole).
pub fn tracked(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "tracked overhead";
    let n = env.size(10_000, 200);
    let dir = env.fresh_dir("tracked")?;
    let argv = loop_argv(env, n, &dir);
    let fast_argv = loop_argv(env, n, &env.loop_dir("tracked")?);
    let bpftrace_error = bpftrace_problem();
    let mut tracers = vec![Tracer::Native, Tracer::Pilot, Tracer::Strace];
    if bpftrace_error.is_none() {
        tracers.push(Tracer::Bpftrace);
    }
    let disk = tracers.len();
    let mut late_error = None;
    let samples = interleave(env.rounds, disk + 2, |c| {
        if c >= disk {
            let tracer = [Tracer::Native, Tracer::Pilot][c - disk];
            return loop_ns(&mut tracer.command(env, &fast_argv)?);
        }
        let result = loop_ns(&mut tracers[c].command(env, &argv)?);
        // bpftrace failing mid-run is a finding for the table, not a reason to stop.
        if tracers[c] == Tracer::Bpftrace && result.is_err() {
            late_error = result.as_ref().err().map(|e| format!("{e:#}"));
            return Ok(f64::NAN);
        }
        result
    })?;
    let med: Vec<f64> = samples.iter().map(|s| median(s)).collect();
    let native = med[0];
    let added = |v: f64| v - native;
    for (i, t) in tracers.iter().enumerate() {
        let value = if i == 0 { ns(med[i]) } else { format!("{} ({} native)", ns(med[i]), ratio(med[i] / native)) };
        let goal = if *t == Tracer::Pilot { Goal::AtMost(1.3).judge(med[i] / native, "x") } else { String::new() };
        r.row(S, format!("loop iteration, {}", t.name()), value, goal);
        r.set(S, &format!("{}_ns_per_iter", t.name().split(' ').next().unwrap_or("?")), json!(med[i]));
        r.set(S, &format!("{}_samples", t.name().split(' ').next().unwrap_or("?")), json!(samples[i]));
    }
    let (fast_native, fast_pilot) = (med[disk], med[disk + 1]);
    r.row(S, format!("loop iteration on a {}, native", env.loops.kind), ns(fast_native), "");
    r.row(S, format!("loop iteration on a {}, pilot trace", env.loops.kind), format!("{} ({} native, +{} per iteration)", ns(fast_pilot), ratio(fast_pilot / fast_native), ns(fast_pilot - fast_native)), "");
    r.set(S, "loop_fs_native_ns_per_iter", json!(fast_native));
    r.set(S, "loop_fs_pilot_ns_per_iter", json!(fast_pilot));
    r.set(S, "loop_fs_pilot_over_native", json!(fast_pilot / fast_native));
    let pilot = med[1];
    // Below native (noise) counts as adding 1% of native, so the ratio stays finite and honest.
    let pilot_added = added(pilot).max(native * 0.01);
    let cheaper = added(med[2]) / pilot_added;
    r.row(S, "strace's added cost / pilot's added cost", ratio(cheaper), Goal::AtLeast(5.0).judge(cheaper, "x"));
    r.row(S, "strace time / pilot time", ratio(med[2] / pilot), "");
    r.set(S, "iterations", json!(n));
    r.set(S, "pilot_over_native", json!(pilot / native));
    r.set(S, "strace_added_over_pilot_added", json!(cheaper));
    match bpftrace_error.or(late_error) {
        Some(why) => {
            r.row(S, "loop iteration, bpftrace", format!("not measured: {}", why.chars().take(150).collect::<String>()), "");
            r.set(S, "bpftrace_error", json!(why));
        }
        None => {
            let b = med[3];
            r.row(S, "bpftrace's added cost / pilot's added cost", ratio(added(b) / pilot_added), "");
        }
    }
    Ok(())
}

/// A source-tree-like tarball of `files` small files in 100-file directories, made once and kept.
pub fn tarball(env: &Env, files: u64) -> anyhow::Result<std::path::PathBuf> {
    let tar = env.work.parent().context("no parent")?.join(format!("tree-{files}.tar"));
    if tar.is_file() {
        return Ok(tar);
    }
    let tree = env.fresh_dir("tree")?;
    for i in 0..files {
        let dir = tree.join(format!("src/mod{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let body = format!("// file {i}\n{}", "fn f() { let x = 1; }\n".repeat((i % 50) as usize + 1));
        std::fs::write(dir.join(format!("f{i}.rs")), body)?;
    }
    let partial = tar.with_extension("partial");
    stdout_of(Command::new("tar").arg("cf").arg(&partial).arg("-C").arg(&tree).arg("."))?;
    std::fs::rename(&partial, &tar)?;
    remove(&tree);
    Ok(tar)
}

/// Workloads nobody wrote for us: extracting a source tarball, and redis-benchmark.
pub fn workload(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "real workload";
    if let Err(e) = tar_workload(env, r) {
        r.failed(S, "tar xf", &e);
    }
    if let Err(e) = redis_workload(env, r) {
        r.failed(S, "redis-benchmark", &e);
    }
    Ok(())
}

/// Three ways to run a workload: natively, with the agent loaded beside it, traced by pilot.
const WORKLOAD_CONFIGS: [&str; 3] = ["native", "untracked (agent loaded)", "tracked (pilot trace)"];

fn workload_command(env: &Env, config: usize, argv: &[String]) -> anyhow::Result<Command> {
    if config == 2 { env.pilot_trace(argv, None) } else { Ok(command(argv)) }
}

fn workload_attached(config: usize) -> Attached {
    if config == 1 { Attached::Agent } else { Attached::Nothing }
}

fn tar_workload(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "real workload";
    let files = env.size(20_000, 500);
    let tar = tarball(env, files)?;
    let samples = interleave(env.rounds.min(3), 3, |c| {
        let dest = env.fresh_dir("untar")?;
        let argv: Vec<String> = [env.benchloop.display().to_string(), "time".into(), "tar".into(), "xf".into()]
            .into_iter()
            .chain([tar.display().to_string(), "-C".into(), dest.display().to_string()])
            .collect();
        let _attached = workload_attached(c).load(env)?;
        let elapsed = benchloop_value(&stdout_of(&mut workload_command(env, c, &argv)?)?, "ns");
        remove(&dest);
        elapsed
    })?;
    let med: Vec<f64> = samples.iter().map(|s| median(s)).collect();
    for (i, name) in WORKLOAD_CONFIGS.iter().enumerate() {
        let rel = if i == 0 { String::new() } else { format!(" ({} native)", ratio(med[i] / med[0])) };
        r.row(S, format!("tar xf ({files} files), {name}"), format!("{}{rel}", ns(med[i])), "");
    }
    r.set(S, "tar_files", json!(files));
    r.set(S, "tar_ns", json!({"native": med[0], "untracked": med[1], "tracked": med[2], "samples": samples}));
    Ok(())
}

/// A loopback redis-server of our own, on a free port; killed when dropped.
struct Redis(std::process::Child, u16);

impl Redis {
    fn start(env: &Env) -> anyhow::Result<Redis> {
        let port = free_port()?;
        let dir = env.fresh_dir("redis")?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (apt: redis-server)")?;
        let redis = Redis(child, port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let pong = Command::new("redis-cli").args(["-p", &port.to_string(), "ping"]).output();
            if pong.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG") {
                return Ok(redis);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("redis-server on 127.0.0.1:{port} did not answer PING within 10 s")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Requests per second of `test` (SET, GET) in redis-benchmark's --csv output.
fn redis_rps(csv: &str, test: &str) -> anyhow::Result<f64> {
    let prefix = format!("\"{test}\",\"");
    csv.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.split('"').next()?.parse().ok())
        .with_context(|| format!("no {test} line in redis-benchmark's output: {csv:?}"))
}

fn redis_workload(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "real workload";
    let redis = Redis::start(env)?;
    let n = env.size(50_000, 2_000);
    let argv: Vec<String> = ["redis-benchmark", "-h", "127.0.0.1", "-p", &redis.1.to_string(), "-q", "--csv", "-t", "set,get", "-n", &n.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut get_samples = vec![Vec::new(); 3];
    let set_samples = interleave(env.rounds.min(3), 3, |c| {
        let _attached = workload_attached(c).load(env)?;
        let csv = stdout_of(&mut workload_command(env, c, &argv)?)?;
        get_samples[c].push(redis_rps(&csv, "GET")?);
        redis_rps(&csv, "SET")
    })?;
    drop(redis);
    let set: Vec<f64> = set_samples.iter().map(|s| median(s)).collect();
    let get: Vec<f64> = get_samples.iter().map(|s| median(s)).collect();
    for (i, name) in WORKLOAD_CONFIGS.iter().enumerate() {
        let rel = if i == 0 { String::new() } else { format!(" ({} / {} of native)", pct(set[i] / set[0]), pct(get[i] / get[0])) };
        r.row(S, format!("redis-benchmark SET / GET ({n} each), {name}"), format!("{:.0} / {:.0} req/s{rel}", set[i], get[i]), "");
    }
    r.set(S, "redis_requests", json!(n));
    r.set(S, "redis_set_rps", json!({"native": set[0], "untracked": set[1], "tracked": set[2]}));
    r.set(S, "redis_get_rps", json!({"native": get[0], "untracked": get[1], "tracked": get[2]}));
    Ok(())
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Both cores producing events flat out, traced: rate, loss per cause, latency, and the
/// agent's footprint (the run is `footprint_events` long: 10 million in a full run).
pub fn throughput(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "throughput";
    const F: &str = "agent footprint";
    let events = env.size(10_000_000, 20_000);
    let workers = 2u64;
    let per_worker = events / workers; // one open event per iteration
    let dir = env.fresh_dir("spin")?;
    let argv = vec![
        env.benchloop.display().to_string(),
        "spin".into(),
        workers.to_string(),
        per_worker.to_string(),
        dir.display().to_string(),
    ];
    let native_ns = benchloop_value(&stdout_of(&mut command(&argv))?, "ns")?;
    let latency_file = env.work.join("latency.json");
    let out = stdout_of(&mut env.pilot_trace(&argv, Some(&latency_file))?)?;
    let traced_ns = benchloop_value(&out, "ns")?;
    let summary: Value = read_json(&env.work.join("trace-out/summary.json"))?;
    let latency: Value = read_json(&latency_file)?;
    let recorded = summary["events"].as_f64().unwrap_or(f64::NAN);
    let lost = summary["lost_events"].as_u64().unwrap_or(u64::MAX);
    let rate = recorded / (traced_ns / 1e9);
    let native_rate = (workers * per_worker) as f64 / (native_ns / 1e9);
    r.row(S, format!("event rate, {workers} producers flat out, traced"), format!("{:.0} events/s ({} events)", rate, recorded), "");
    r.row(S, "same producers untraced (syscall pairs/s)", format!("{native_rate:.0}/s"), "");
    let causes: Vec<String> = summary["lost_by_cause"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect())
        .unwrap_or_default();
    r.row(S, "events lost (by cause)", format!("{lost} ({})", causes.join(", ")), if lost == 0 { "0: met".to_string() } else { format!("0: MISSED ({lost} lost)") });
    let q = |k: &str| latency[k].as_f64().unwrap_or(f64::NAN);
    r.row(S, "latency kernel -> graph p50 / p99 / p999", format!("{} / {} / {}", ns(q("p50_ns")), ns(q("p99_ns")), ns(q("p999_ns"))), "");
    r.set(S, "events", json!(recorded));
    r.set(S, "events_per_s", json!(rate));
    r.set(S, "untraced_pairs_per_s", json!(native_rate));
    r.set(S, "lost_events", json!(lost));
    r.set(S, "lost_by_cause", summary["lost_by_cause"].clone());
    r.set(S, "latency", latency.clone());

    let rss_mib = q("agent_maxrss_kib") / 1024.0;
    let cpu_s = q("agent_cpu_ms") / 1000.0;
    r.row(F, format!("peak RSS tracing {recorded} events"), format!("{rss_mib:.1} MiB"), Goal::AtMost(64.0).judge(rss_mib, " MiB"));
    r.row(F, "agent CPU", format!("{cpu_s:.2} s ({} per event; {:.0}% of one core)", ns(cpu_s * 1e9 / recorded), 100.0 * cpu_s / (traced_ns / 1e9)), "");
    r.set(F, "events", json!(recorded));
    r.set(F, "peak_rss_mib", json!(rss_mib));
    r.set(F, "cpu_s", json!(cpu_s));
    remove(&env.work.join("trace-out"));
    Ok(())
}

pub fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// How a sandbox for `true` is started.
fn start_command(env: &Env, which: usize, scratch: &Path, bwrap_overlay: bool) -> Command {
    match which {
        0 => {
            let mut cmd = Command::new(&env.pilot);
            cmd.arg("run").arg("--out").arg(scratch.join("run")).args(["--", "true"]);
            cmd.env("PILOT_JOURNAL", scratch.join("journal.jsonl"));
            cmd
        }
        1 => {
            let mut cmd = Command::new("bwrap");
            if bwrap_overlay {
                cmd.args(["--overlay-src", "/", "--tmp-overlay", "/"]);
            } else {
                cmd.args(["--dev-bind", "/", "/"]);
            }
            cmd.args(["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--proc", "/proc", "--dev", "/dev", "--", "true"]);
            cmd
        }
        _ => {
            let u = scratch.join("unshare");
            let script = format!(
                "mount -t tmpfs none {u} && mkdir {u}/u {u}/w {u}/m && \
                 mount -t overlay overlay -o lowerdir=/,upperdir={u}/u,workdir={u}/w {u}/m && exec chroot {u}/m /bin/true",
                u = u.display()
            );
            let mut cmd = Command::new("unshare");
            cmd.args(["--mount", "--pid", "--ipc", "--uts", "--fork", "--propagation", "private", "sh", "-c", &script]);
            cmd
        }
    }
}

/// `pilot run -- true` against bwrap and unshare + overlay by hand, warm and cold.
pub fn start(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "pilot start";
    let bwrap_overlay = stdout_of(Command::new("bwrap").arg("--help")).is_ok_and(|h| h.contains("--overlay-src"));
    let bwrap_name = if bwrap_overlay { "bwrap --tmp-overlay /" } else { "bwrap (0.8: no --overlay; bind /)" };
    let names = ["pilot run -- true", bwrap_name, "unshare + overlay by hand"];
    let measure = |c: usize, cold: bool| -> anyhow::Result<f64> {
        let scratch = env.fresh_dir("start")?;
        std::fs::create_dir_all(scratch.join("unshare"))?;
        if cold {
            drop_caches();
        }
        let t = wall_time(&mut start_command(env, c, &scratch, bwrap_overlay))?;
        remove(&scratch);
        Ok(t.as_nanos() as f64)
    };
    let warm = interleave(env.size(10, 1) as usize, 3, |c| measure(c, false))?;
    let cold = interleave(env.size(3, 1) as usize, 3, |c| measure(c, true))?;
    for (i, name) in names.iter().enumerate() {
        let (w, c) = (median(&warm[i]), median(&cold[i]));
        let goal = if i == 0 { Goal::AtMost(100.0).judge(w / 1e6, " ms warm") } else { String::new() };
        r.row(S, *name, format!("{} warm, {} cold", ns(w), ns(c)), goal);
        r.set(S, name, json!({"warm_ns": w, "cold_ns": c, "warm_samples": warm[i], "cold_samples": cold[i]}));
    }
    let phases = start_phases(env)?;
    let text: Vec<String> = phases.iter().map(|(p, ms)| format!("{p} {ms:.0}")).collect();
    r.row(S, "where a warm `pilot run -- true` spends it (ms)", text.join("; "), "");
    r.set(S, "phases_ms", json!(phases.into_iter().collect::<serde_json::Map<String, Value>>()));
    Ok(())
}

/// One warm `pilot run -- true` with its phase log (`RUST_LOG=pilot=debug`): phase, ms.
fn start_phases(env: &Env) -> anyhow::Result<Vec<(String, Value)>> {
    Ok(start_phases_nested(env)?.into_iter().map(|(name, _, ms)| (name, ms)).collect())
}

fn start_phases_nested(env: &Env) -> anyhow::Result<Vec<(String, usize, Value)>> {
    let scratch = env.fresh_dir("start")?;
    let out = Command::new(&env.pilot)
        .arg("run")
        .arg("--out")
        .arg(scratch.join("run"))
        .args(["--", "true"])
        .env("PILOT_JOURNAL", scratch.join("journal.jsonl"))
        .env("RUST_LOG", "pilot=debug")
        .stdin(Stdio::null())
        .output()?;
    remove(&scratch);
    Ok(parse_phases(&String::from_utf8_lossy(&out.stderr)))
}

/// The close lines of pilot's `phase` spans (tracing-subscriber's FmtSpan::CLOSE), in order,
/// with their depth (1: top level; a nested phase names its parents first):
/// `... DEBUG phase{name="probes load"}: pilot::probes: close time.busy=448ms time.idle=27.5µs`.
pub fn parse_phases(log: &str) -> Vec<(String, usize, Value)> {
    log.lines()
        .filter_map(|l| {
            let spans = l.split_once("}: ")?.0;
            let depth = spans.matches("phase{name=\"").count();
            let name = spans.rsplit_once("phase{name=\"")?.1.split_once('"')?.0;
            let busy = l.split_once("time.busy=")?.1.split_whitespace().next()?;
            Some((name.to_string(), depth, json!(duration_ms(busy)?)))
        })
        .collect()
}

/// `448ms`, `2.69ms`, `31.4µs`, `1.20s`, `950ns` as milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "ns" => n / 1e6,
        "µs" | "us" => n / 1e3,
        "ms" => n,
        "s" => n * 1e3,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_lines_are_parsed_in_order() {
        let log = "2026-12-01T19:54:11Z DEBUG phase{name=\"probes load\"}: pilot::probes: close time.busy=448ms time.idle=27.5µs\nother\n\
                   x DEBUG phase{name=\"pilot ran\"}: pilot::run: close time.busy=1.20s time.idle=19.5µs\n\
                   x DEBUG phase{name=\"detach\"}: pilot::run: close time.busy=31.4µs time.idle=1ns\n";
        let phases = parse_phases(log);
        assert_eq!(
            phases,
            [("probes load".to_string(), 1, json!(448.0)), ("pilot ran".to_string(), 1, json!(1200.0)), ("detach".to_string(), 1, json!(0.0314))]
        );
        let nested = parse_phases("x DEBUG phase{name=\"judging\"}:phase{name=\"policy\"}: pilot::run: close time.busy=2ms time.idle=1ns");
        assert_eq!(nested, [("policy".to_string(), 2, json!(2.0))]);
    }

    #[test]
    fn redis_csv_is_parsed() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"41322.31\",\"0.6\"\n\"GET\",\"45045.04\",\"0.5\"\n";
        assert_eq!(redis_rps(csv, "SET").unwrap(), 41322.31);
        assert_eq!(redis_rps(csv, "GET").unwrap(), 45045.04);
        assert!(redis_rps(csv, "INCR").is_err());
    }
}
