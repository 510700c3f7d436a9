//! Big actions (issue 19): `pilot run -- tar xf` of 5,000 to 100,000 small files. The cost
//! must grow with the work, not faster: end-to-end time, post-processing time (from the last
//! event in to pilot's exit), the agent's peak RSS and the run directory's size.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde_json::json;

use super::measure::{Env, JournaledFs, emptied, interleave, median, remove};
use super::report::{Goal, Report, ns};

/// What one extraction cost.
#[derive(Debug, Default, Clone, Copy)]
struct Cost {
    wall_ns: f64,
    /// The agent's CPU (user + system, and user alone) and wall time from its last event to its
    /// exit (its `since: post-processing` log line).
    post_cpu_ms: f64,
    post_user_ms: f64,
    post_wall_ms: f64,
    /// Peak RSS of the pilot process (wait4: tar's is a few MiB, pilot's is the peak).
    maxrss_kib: f64,
    run_dir_bytes: u64,
}

fn extract(env: &Env, fs: &Path, files: u64) -> anyhow::Result<Cost> {
    let tar = super::sections::tarball(env, files)?;
    let scratch = emptied(fs.join("scaling"))?;
    let dest = scratch.join("dest");
    std::fs::create_dir_all(&dest)?;
    let out = scratch.join("run");
    let log = scratch.join("stderr.log");
    let (tar_s, dest_s, out_s) = (tar.display().to_string(), dest.display().to_string(), out.display().to_string());
    let mut cmd = env.pilot_cmd(&["run", "--out", &out_s, "--", "tar", "xf", &tar_s, "-C", &dest_s]);
    cmd.env("PILOT_JOURNAL", scratch.join("journal.jsonl"))
        .env("RUST_LOG", "pilot=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let started = Instant::now();
    let child = cmd.spawn().context("starting pilot run")?;
    let (status, rusage) = wait4(child.id() as i32)?;
    let wall_ns = started.elapsed().as_nanos() as f64;
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    if status != 0 {
        let tail: Vec<&str> = err.lines().filter(|l| !l.contains(" DEBUG ")).rev().take(3).collect();
        bail!("pilot run of tar xf ({files} files) exited with wait status {status}: {}", tail.join(" | "));
    }
    let (post_cpu_ms, post_user_ms, post_wall_ms) = post_processing(&err).context("no `since: post-processing` line in pilot's log")?;
    let cost = Cost { wall_ns, post_cpu_ms, post_user_ms, post_wall_ms, maxrss_kib: rusage.ru_maxrss as f64, run_dir_bytes: du(&out)? };
    remove(&scratch);
    Ok(cost)
}

/// `tar xf` of the same tarball without pilot, into a fresh directory of the same file system:
/// wall ns.
fn native_extract(env: &Env, fs: &Path, files: u64) -> anyhow::Result<f64> {
    let tar = super::sections::tarball(env, files)?;
    let scratch = emptied(fs.join("scaling-native"))?;
    let started = Instant::now();
    let status = Command::new("tar").arg("xf").arg(&tar).arg("-C").arg(&scratch).status().context("starting tar")?;
    let wall_ns = started.elapsed().as_nanos() as f64;
    remove(&scratch);
    if !status.success() {
        bail!("tar xf ({files} files) without pilot: {status}");
    }
    Ok(wall_ns)
}

/// Wait for `pid`: its wait status and resource usage (its reaped descendants' included).
fn wait4(pid: i32) -> anyhow::Result<(i32, libc::rusage)> {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } == pid {
            return Ok((status, usage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            bail!("waiting for pilot: {err}");
        }
    }
}

/// (CPU, user CPU, wall) ms of
/// `... DEBUG pilot::bench: since: post-processing cpu_ms=12 user_ms=10 wall_ms=34`.
fn post_processing(log: &str) -> Option<(f64, f64, f64)> {
    let line = log.lines().find(|l| l.contains("since: post-processing"))?;
    let field = |k: &str| -> Option<f64> { line.split_once(k)?.1.split_whitespace().next()?.parse().ok() };
    Some((field(" cpu_ms=")?, field(" user_ms=")?, field(" wall_ms=")?))
}

/// Bytes under `path` (`du -sb`: the overlay's files included).
fn du(path: &std::path::Path) -> anyhow::Result<u64> {
    let out = super::measure::stdout_of(Command::new("du").arg("-sb").arg(path))?;
    out.split_whitespace().next().and_then(|n| n.parse().ok()).context("du printed no size")
}

/// Each size once per round (seven rounds of the smaller ones, interleaved; the biggest once),
/// on a journaled ext4 of the bench's own (`JournaledFs`). The doubling is judged on the median
/// of the rounds' own 20,000/10,000 ratios: this VM's speed moves by 1.4x for minutes at a
/// time (user time alone: the same 10,000-file run took 151 or 271 ms in one bench), and two
/// runs of one round share the state; the ratio of the medians is shown beside it.
pub fn scaling(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    const S: &str = "scaling";
    let sizes: [u64; 4] = if env.quick { [100, 200, 400, 1_000] } else { [5_000, 10_000, 20_000, 100_000] };
    let rounds = env.size(7, 1) as usize;
    let fs = JournaledFs::make(env.work.parent().unwrap_or(&env.work).join("scaling-fs"), "6G")?;
    let mut costs: Vec<Vec<Cost>> = vec![Vec::new(); sizes.len()];
    // The fourth configuration: the 20,000-file extraction without pilot, on the same file
    // system in the same rounds.
    let mut native = Vec::new();
    interleave(rounds, 4, |c| {
        match c {
            3 => native.push(native_extract(env, &fs.dir, sizes[2])?),
            c => costs[c].push(extract(env, &fs.dir, sizes[c])?),
        }
        Ok(0.0)
    })?;
    costs[3].push(extract(env, &fs.dir, sizes[3])?);
    r.set(S, "files_on", json!(fs.kind));
    r.row(S, "file system of the extractions (run directories, overlays, native)", fs.kind, "");
    let med = |c: usize, f: fn(&Cost) -> f64| median(&costs[c].iter().map(f).collect::<Vec<_>>());
    for (c, files) in sizes.iter().enumerate() {
        let (wall, cpu, pw) = (med(c, |k| k.wall_ns), med(c, |k| k.post_cpu_ms), med(c, |k| k.post_wall_ms));
        let user = med(c, |k| k.post_user_ms);
        let (rss, size) = (med(c, |k| k.maxrss_kib) / 1024.0, med(c, |k| k.run_dir_bytes as f64) / (1 << 20) as f64);
        let goal = if c == 2 { Goal::AtMost(2.0).judge(wall / 1e9, " s end to end") } else { String::new() };
        let beside = if c == 2 { format!(" (native {} in the same rounds)", ns(median(&native))) } else { String::new() };
        let value = format!("{}{beside} end to end; post-processing {cpu:.0} ms CPU ({user:.0} ms user; {pw:.0} ms wall); agent peak RSS {rss:.1} MiB; run directory {size:.1} MiB", ns(wall));
        r.row(S, format!("pilot run -- tar xf, {files} files"), value, goal);
        r.set(S, &files.to_string(), json!({"wall_ns": wall, "post_cpu_ms": cpu, "post_user_ms": user, "post_wall_ms": pw, "agent_maxrss_mib": rss, "run_dir_mib": size, "samples": format!("{:?}", costs[c])}));
    }
    let ratio_of = |a: usize, b: usize, f: fn(&Cost) -> f64| med(a, f) / med(b, f);
    let paired = |f: fn(&Cost) -> f64| -> Vec<f64> { costs[2].iter().zip(&costs[1]).map(|(big, small)| f(big) / f(small)).collect() };
    let (cpu2, user2, wall2) = (median(&paired(|k| k.post_cpu_ms)), median(&paired(|k| k.post_user_ms)), median(&paired(|k| k.post_wall_ms)));
    let rounds_text = paired(|k| k.post_cpu_ms).iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ");
    r.row(
        S,
        format!("post-processing, {} / {} files, CPU (user; wall), median of the rounds' ratios", sizes[2], sizes[1]),
        format!("{cpu2:.2}x ({user2:.2}x; {wall2:.2}x); rounds {rounds_text}; ratio of the medians {:.2}x", ratio_of(2, 1, |k| k.post_cpu_ms)),
        Goal::AtMost(2.0).judge(cpu2, "x"),
    );
    let (c5, u5, w5) = (ratio_of(3, 2, |k| k.post_cpu_ms), ratio_of(3, 2, |k| k.post_user_ms), ratio_of(3, 2, |k| k.post_wall_ms));
    r.row(S, format!("post-processing, {} / {} files, CPU (user; wall)", sizes[3], sizes[2]), format!("{c5:.2}x ({u5:.2}x; {w5:.2}x); files x{}", sizes[3] / sizes[2]), "");
    let per_file = med(3, |k| k.maxrss_kib) / sizes[3] as f64;
    r.row(S, format!("agent peak RSS per file, {} files", sizes[3]), format!("{per_file:.1} KiB"), "");
    r.set(S, "native_tar_wall_ns", json!(median(&native)));
    r.set(S, "post_processing_cpu_doubling", json!(cpu2));
    r.set(S, "post_processing_wall_doubling", json!(wall2));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_post_processing_line_is_found() {
        let log = "x DEBUG pilot::run: other\n2026-12-01T23:00:00Z DEBUG pilot::bench: since: post-processing cpu_ms=123 user_ms=100 wall_ms=456\n";
        assert_eq!(post_processing(log), Some((123.0, 100.0, 456.0)));
        assert_eq!(post_processing("nothing"), None);
    }
}
