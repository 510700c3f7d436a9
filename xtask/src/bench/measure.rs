//! How the benchmarks measure: configurations interleaved round by round (A B C, B C A, ...) so
//! machine noise (other builds, frequency changes) spreads over all of them, medians of the
//! rounds, and the helpers every section uses to run and time things.
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Everything a section needs: the binaries under test and a scratch directory.
pub struct Env {
    pub pilot: PathBuf,
    pub benchloop: PathBuf,
    /// Scratch space, emptied at the start and removed at the end.
    pub work: PathBuf,
    pub quick: bool,
    /// Rounds per interleaved measurement.
    pub rounds: usize,
    /// Where the syscall loops make their files.
    pub loops: LoopFs,
}

impl Env {
    /// `full` normally, `quick` with `--quick` (the CI smoke test).
    pub fn size(&self, full: u64, quick: u64) -> u64 {
        if self.quick { quick } else { full }
    }

    /// A fresh, empty directory under the scratch space.
    pub fn fresh_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        emptied(self.work.join(name))
    }

    /// A fresh, empty directory for a syscall loop's files (see [`LoopFs`]).
    pub fn loop_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        emptied(self.loops.dir.join(name))
    }

    /// `pilot ARGS` in-process (PILOT_NO_DAEMON: a host's daemon never serves the bench unless
    /// a section starts its own), with the bench's run key (the host's is left alone).
    pub fn pilot_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.pilot);
        cmd.args(args).env("PILOT_NO_DAEMON", "1").env("PILOT_RUN_KEY", self.work.parent().unwrap_or(&self.work).join("run.key"));
        cmd
    }

    /// `pilot trace --out <scratch> -- argv...`, keeping a latency histogram in `latency`.
    pub fn pilot_trace(&self, argv: &[String], latency: Option<&Path>) -> anyhow::Result<Command> {
        let out = self.fresh_dir("trace-out")?;
        let mut cmd = Command::new(&self.pilot);
        cmd.arg("trace").arg("--out").arg(out).arg("--").args(argv);
        if let Some(path) = latency {
            cmd.env("PILOT_BENCH_LATENCY", path);
        }
        Ok(cmd)
    }
}

/// A tmpfs the bench mounts for the syscall loops' files, unmounted when dropped. The disk is
/// no place for them on this VM: its root is ext4 without a journal, and ext4 then leaves an
/// inode freed in the last 60 s (300 s while its inode-table block is dirty) unused, every
/// create scanning past it (fs/ext4/ialloc.c, `recently_deleted`). A create+unlink there costs
/// 4 to 20 us depending on what was deleted nearby lately: configurations that differ in file
/// activity elsewhere (active runs writing run directories) moved the loop by up to 2.5x with
/// the same BPF run time per syscall. On a tmpfs the loop only measures syscalls.
pub struct LoopFs {
    pub dir: PathBuf,
    /// "tmpfs", or "disk" when mounting one failed (the report says which).
    pub kind: &'static str,
}

impl LoopFs {
    pub fn mount(dir: PathBuf) -> anyhow::Result<LoopFs> {
        // One a killed bench left at our path (nothing else mounts there).
        unmount(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
        let ok = unsafe {
            libc::mount(c"pilot-bench".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), libc::MS_NOSUID | libc::MS_NODEV, c"size=256m,mode=0755".as_ptr().cast())
        } == 0;
        if !ok {
            eprintln!("[bench] cannot mount a tmpfs at {} ({}): the loops use the disk", dir.display(), std::io::Error::last_os_error());
        }
        Ok(LoopFs { dir, kind: if ok { "tmpfs" } else { "disk" } })
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        unmount(&self.dir);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// An ext4 with a journal (what a host's data disk is by default), made in a sparse image file
/// and loop-mounted, unmounted and removed when dropped: the scaling section extracts and
/// deletes hundreds of thousands of files, and on this VM's journal-less root every create then
/// scans past the inodes recent rounds freed (see [`LoopFs`]): a native `tar xf` of 20,000
/// files took 0.6 s on a fresh file system and 18 s there after a few rounds.
pub struct JournaledFs {
    pub dir: PathBuf,
    image: PathBuf,
    /// "ext4 (journal, loop image)", or "disk" when making or mounting one failed.
    pub kind: &'static str,
}

impl JournaledFs {
    pub fn make(dir: PathBuf, size: &str) -> anyhow::Result<JournaledFs> {
        let image = dir.with_extension("img");
        unmount(&dir);
        let _ = std::fs::remove_file(&image);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let made = Command::new("truncate").args(["-s", size]).arg(&image).status().is_ok_and(|s| s.success())
            && Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image).status().is_ok_and(|s| s.success())
            && Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&dir).status().is_ok_and(|s| s.success());
        if !made {
            eprintln!("[bench] cannot make and mount an ext4 image at {}: the scaling runs use the disk", dir.display());
            let _ = std::fs::remove_file(&image);
        }
        Ok(JournaledFs { dir, image, kind: if made { "ext4 (journal, loop image)" } else { "disk" } })
    }
}

impl Drop for JournaledFs {
    fn drop(&mut self) {
        // Not detached: the loop device is freed (autoclear) only once the mount is gone.
        unmount_with(&self.dir, 0);
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_file(&self.image);
    }
}

fn unmount(dir: &Path) {
    unmount_with(dir, libc::MNT_DETACH);
}

fn unmount_with(dir: &Path, flags: libc::c_int) {
    if let Ok(target) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) {
        unsafe { libc::umount2(target.as_ptr(), flags) };
    }
}

/// `dir`, removed if it was there and made again, empty.
pub fn emptied(dir: PathBuf) -> anyhow::Result<PathBuf> {
    remove(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Remove a scratch file or directory, whatever it is.
pub fn remove(path: &Path) {
    let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
}

/// Run every configuration once per round, starting each round one configuration later, and
/// return each configuration's samples. Each starts once the kernel has let go of the BPF
/// programs the one before it loaded.
pub fn interleave(
    rounds: usize,
    configs: usize,
    mut measure: impl FnMut(usize) -> anyhow::Result<f64>,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut samples = vec![Vec::with_capacity(rounds); configs];
    let programs = bpf_programs();
    for round in 0..rounds {
        for k in 0..configs {
            let config = (round + k) % configs;
            samples[config].push(measure(config)?);
            // What one configuration loaded must not tax the next one's syscalls.
            programs_released(programs);
        }
    }
    Ok(samples)
}

pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Run `cmd` to completion; its stdout when it exits 0, else an error with its stderr's tail.
pub fn stdout_of(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        bail!("{:?} failed ({}): {}", cmd.get_program(), out.status, tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number printed by benchloop as `benchloop <key> <number>`.
pub fn benchloop_value(output: &str, key: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("benchloop "))
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .with_context(|| format!("no `benchloop {key}` line in the output: {output:?}"))
}

/// Wall time of `cmd` (started to exited), which must succeed; its output is discarded.
pub fn wall_time(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let elapsed = start.elapsed();
    if !status.success() {
        bail!("{:?} failed ({status}); run it by hand to see why", cmd.get_program());
    }
    Ok(elapsed)
}

/// How many BPF programs the kernel holds (BPF_PROG_GET_NEXT_ID over every id).
pub fn bpf_programs() -> usize {
    /// The `BPF_*_GET_NEXT_ID` part of `union bpf_attr`.
    #[repr(C)]
    struct NextId {
        start_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
    let (mut n, mut id) = (0, 0);
    loop {
        let mut attr = NextId { start_id: id, next_id: 0, open_flags: 0 };
        // SAFETY: the kernel reads and writes `attr`, of the size given, and nothing else.
        let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_GET_NEXT_ID, &mut attr as *mut NextId, std::mem::size_of::<NextId>()) };
        if r != 0 {
            return n;
        }
        n += 1;
        id = attr.next_id;
    }
}

/// Wait until the kernel holds at most `count` BPF programs again. A pilot that exited has
/// closed its links, but the kernel detaches them later, one RCU grace period per tracepoint:
/// 8 agents' programs kept taxing every syscall for 5-6 s after the agents had gone, which
/// the next configuration measured as its own cost. Or until the count has not moved for a
/// second: a daemon loads spare programs for its next runs as it hands others out, so its count
/// may settle above `count`.
pub fn programs_released(count: usize) {
    let deadline = Instant::now() + Duration::from_secs(12);
    let (mut last, mut since) = (bpf_programs(), Instant::now());
    while last > count && since.elapsed() < Duration::from_secs(1) {
        if Instant::now() > deadline {
            eprintln!("[bench] BPF programs of stopped pilots still loaded after 12 s ({last} > {count}): measuring anyway");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
        let now = bpf_programs();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// A pilot helper holding programs attached while it lives: `pilot __bench load floor|agent`.
/// Dropping it closes its stdin, which ends it.
pub struct Loaded(Child);

impl Loaded {
    pub fn start(pilot: &Path, what: &str) -> anyhow::Result<Loaded> {
        let mut child = Command::new(pilot)
            .args(["__bench", "load", what])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} __bench load {what}", pilot.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("no stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`pilot __bench load {what}` did not get ready (see its error above)");
        }
        Ok(Loaded(child))
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// What is attached while a configuration runs.
#[derive(Clone, Copy, PartialEq)]
pub enum Attached {
    Nothing,
    Floor,
    Agent,
}

impl Attached {
    pub fn load(self, env: &Env) -> anyhow::Result<Option<Loaded>> {
        match self {
            Attached::Nothing => Ok(None),
            Attached::Floor => Loaded::start(&env.pilot, "floor").map(Some),
            Attached::Agent => Loaded::start(&env.pilot, "agent").map(Some),
        }
    }
}

/// Drop the page cache, so the next start is cold.
pub fn drop_caches() {
    unsafe { libc::sync() };
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_rotates_the_order_and_keeps_samples_apart() {
        let mut order = Vec::new();
        let samples = interleave(3, 3, |c| {
            order.push(c);
            Ok(c as f64)
        })
        .unwrap();
        assert_eq!(order, [0, 1, 2, 1, 2, 0, 2, 0, 1]);
        assert_eq!(samples, [vec![0.0; 3], vec![1.0; 3], vec![2.0; 3]]);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn benchloop_lines_are_found_among_others() {
        let out = "hello\nbenchloop ns_per_iter 12.5\nbenchloop ns 99\n";
        assert_eq!(benchloop_value(out, "ns_per_iter").unwrap(), 12.5);
        assert_eq!(benchloop_value(out, "ns").unwrap(), 99.0);
        assert!(benchloop_value(out, "rate").is_err());
    }
}
