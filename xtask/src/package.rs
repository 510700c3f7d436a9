//! `cargo xtask package-test` (also the last steps of `cargo xtask test`): build the Debian
//! package with cargo-deb, install it on this machine, start its unit (through systemd when
//! systemd runs; otherwise its ExecStart under its CapabilityBoundingSet with setpriv), check
//! that the metrics endpoint answers and that a pilot runs through the daemon, then purge the
//! package so the machine is left as it was found.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::cmd::{cargo, command, probe, run, target_dir, workspace_root};

pub const METRICS: &str = "127.0.0.1:9464";
const UNIT: &str = "/lib/systemd/system/pilot.service";

/// Man pages and completions for the package, made by `pilot generate` (agent/Cargo.toml lists
/// them as assets under cargo-deb's `target/release/` prefix, which it maps to the real target dir).
const GENERATED: &str = "release/generated";

/// Build target/debian/pilot_*.deb; its path. The release pilot is built first so that the man
/// pages and completions come from the very binary the package ships.
pub fn build_deb() -> anyhow::Result<PathBuf> {
    run(cargo().current_dir(workspace_root()).args(["build", "--release", "-p", "agent"]))?;
    generate_docs()?;
    let out = probe(cargo().current_dir(workspace_root()).args(["deb", "-p", "agent", "--no-build"]))
        .context("`cargo deb -p agent --no-build` failed (cargo xtask bootstrap installs cargo-deb)")?;
    let path = out.lines().rev().find(|l| l.trim_end().ends_with(".deb")).context("cargo deb printed no .deb path")?;
    Ok(PathBuf::from(path.trim()))
}

/// target/release/generated/: man/*.1.gz, pilot.bash, _pilot, pilot.fish.
fn generate_docs() -> anyhow::Result<()> {
    let dir = target_dir().join(GENERATED);
    let _ = std::fs::remove_dir_all(&dir);
    let pilot = target_dir().join("release/pilot");
    run(command(&pilot).args(["generate", "man", "--dir"]).arg(dir.join("man")))?;
    for shell in ["bash", "zsh", "fish"] {
        run(command(&pilot).args(["generate", shell, "--dir"]).arg(&dir))?;
    }
    // Debian Policy wants man pages gzipped; cargo-deb compresses only assets from outside the
    // target dir. -n: no name or time stamp in the archive, so the package is reproducible.
    let mut gzip = command("gzip");
    gzip.arg("-9n");
    for page in std::fs::read_dir(dir.join("man"))? {
        gzip.arg(page?.path());
    }
    run(&mut gzip)
}

/// The installed man pages and completions: pilot(1) and a page per command, bash completion
/// that registers for `pilot`, zsh's and fish's files in their vendor directories.
fn check_docs() -> anyhow::Result<()> {
    for page in ["pilot", "pilot-run", "pilot-trace", "pilot-journal-verify", "pilot-generate"] {
        let path = probe(command("man").args(["-w", page])).with_context(|| format!("`man -w {page}` finds no page"))?;
        if !path.trim().starts_with("/usr/share/man/man1/") || !path.trim().ends_with(".1.gz") {
            bail!("`man -w {page}` found {} instead of the package's /usr/share/man/man1/{page}.1.gz", path.trim());
        }
    }
    let rendered = probe(command("man").env("MANWIDTH", "80").env("LC_ALL", "C").args(["-P", "cat", "pilot-run"])).context("`man pilot-run` failed")?;
    if !rendered.contains("--timeout") || !rendered.contains("Exit status") {
        bail!("man pilot-run lacks its options or details:\n{rendered}");
    }
    let bash = "source /usr/share/bash-completion/completions/pilot && complete -p pilot";
    let registered = probe(command("bash").args(["-c", bash])).context("the bash completion does not load")?;
    if !registered.contains("-F _pilot") {
        bail!("the bash completion does not register for pilot: {registered}");
    }
    for f in ["/usr/share/zsh/vendor-completions/_pilot", "/usr/share/fish/vendor_completions.d/pilot.fish"] {
        if !std::fs::read_to_string(f).is_ok_and(|t| t.contains("commit")) {
            bail!("the package did not install {f}");
        }
    }
    Ok(())
}

pub fn package_test() -> anyhow::Result<()> {
    let deb = build_deb()?;
    println!("[package] built {}", deb.display());
    let installed = Installed::guard()?;
    run(command("dpkg").env("DEBIAN_FRONTEND", "noninteractive").arg("-i").arg(&deb))?;
    for f in ["/usr/bin/pilot", "/etc/pilot/pilot.toml", "/etc/pilot/policies/default.toml", UNIT] {
        if !Path::new(f).exists() {
            bail!("the package did not install {f}");
        }
    }
    check_docs()?;
    println!("[package] man pages (man -w pilot) and bash, zsh and fish completions are installed");
    if let Some(out) = probe(command("systemd-analyze").args(["verify", UNIT])) {
        println!("[package] systemd-analyze verify {UNIT}: ok {}", out.trim());
    } else {
        bail!("systemd-analyze verify {UNIT} failed: fix the unit (run it by hand to see why)");
    }
    installed.start()?;
    let metrics = wait_for_metrics(Duration::from_secs(30))?;
    if !metrics.contains("pilot_runs_active 0") {
        bail!("the metrics endpoint answered without pilot_runs_active:\n{metrics}");
    }
    println!("[package] the unit's metrics endpoint answers on {METRICS}");
    pilot_through_the_daemon()?;
    let after = scrape()?;
    if !after.contains("pilot_runs_total{command=\"run\",outcome=\"ok\"} 1") {
        bail!("the daemon did not count the run:\n{after}");
    }
    println!("[package] a pilot ran through the installed daemon and was counted");
    drop(installed);
    for f in ["/usr/bin/pilot", "/etc/pilot", UNIT, "/usr/share/man/man1/pilot.1.gz", "/usr/share/bash-completion/completions/pilot"] {
        if Path::new(f).exists() {
            bail!("{f} is still there after purging the package");
        }
    }
    println!("[package] purged: the machine is as it was");
    Ok(())
}

/// A contained run through the installed daemon (its capability bounding set must suffice).
fn pilot_through_the_daemon() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("pilot-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        run(command("/usr/bin/pilot")
            .current_dir(&dir)
            .env("PILOT_JOURNAL", dir.join("journal.jsonl"))
            .args(["run", "--out"])
            .arg(dir.join("run"))
            .args(["--", "sh", "-c", "echo pilot > written.txt"]))?;
        let status = probe(command("/usr/bin/pilot").args(["status", "--json"])).context("pilot status failed")?;
        if !status.contains("\"exit_code\": 0") {
            bail!("pilot status does not show the run:\n{status}");
        }
        if dir.join("written.txt").exists() || !dir.join("run/verdict.json").exists() {
            bail!("the run through the daemon was not contained or wrote no verdict");
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn wait_for_metrics(limit: Duration) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        match scrape() {
            Ok(text) => return Ok(text),
            Err(e) if start.elapsed() > limit => return Err(e.context(format!("nothing answered on {METRICS} within {limit:?}"))),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

pub fn scrape() -> anyhow::Result<String> {
    let mut conn = TcpStream::connect(METRICS)?;
    // HTTP/1.1, as Prometheus scrapes (the daemon's hyper answers HTTP/1.0 in HTTP/1.0).
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    if !text.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics: {}", text.lines().next().unwrap_or(""));
    }
    Ok(text)
}

fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The installed package: stopped and purged on drop, with /run/pilot removed if we made it.
pub struct Installed {
    daemon: std::cell::RefCell<Option<Child>>,
    had_run_dir: bool,
    /// Where the Ansible role copies the package.
    had_cache_dir: bool,
}

impl Installed {
    /// Before installing: refuse to touch a pilot installed by someone else; purge on drop.
    pub fn guard() -> anyhow::Result<Installed> {
        if probe(command("dpkg-query").args(["-W", "-f=${Status}", "pilot"])).is_some_and(|s| s.contains("installed")) {
            bail!("the pilot package is already installed here: this test installs and purges it; run `dpkg --purge pilot` first");
        }
        if TcpStream::connect(METRICS).is_ok() {
            bail!("something already listens on {METRICS}: stop it (a pilot daemon?) before the package test");
        }
        Ok(Installed {
            daemon: Default::default(),
            had_run_dir: Path::new("/run/pilot").exists(),
            had_cache_dir: Path::new("/var/cache/pilot").exists(),
        })
    }

    /// Start the unit: systemctl where systemd runs, else its ExecStart under its
    /// CapabilityBoundingSet and Environment.
    pub fn start(&self) -> anyhow::Result<()> {
        if systemd_runs() {
            return run(command("systemctl").args(["start", "pilot"]));
        }
        let unit = std::fs::read_to_string(UNIT)?;
        let values = |key: &'static str| unit.lines().filter_map(move |l| l.strip_prefix(key)).flat_map(str::split_whitespace);
        let exec: Vec<&str> = values("ExecStart=").collect();
        let caps: Vec<String> =
            values("CapabilityBoundingSet=").map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())).collect();
        println!("[package] systemd is not running here: starting ExecStart with setpriv --bounding-set -all,{}", caps.join(","));
        let mut cmd = command("setpriv");
        cmd.arg(format!("--bounding-set=-all,{}", caps.join(","))).args(&exec).stdin(Stdio::null());
        for env in values("Environment=") {
            if let Some((k, v)) = env.split_once('=') {
                cmd.env(k, v);
            }
        }
        *self.daemon.borrow_mut() = Some(cmd.spawn().context("starting the unit's ExecStart")?);
        Ok(())
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if systemd_runs() {
            let _ = command("systemctl").args(["stop", "pilot"]).status();
        }
        if let Some(mut child) = self.daemon.borrow_mut().take() {
            unsafe { libc_kill(child.id() as i32, 15) };
            let deadline = Instant::now() + Duration::from_secs(45);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = command("dpkg").env("DEBIAN_FRONTEND", "noninteractive").args(["--purge", "pilot"]).status();
        if !self.had_run_dir {
            let _ = std::fs::remove_dir_all("/run/pilot");
        }
        if !self.had_cache_dir {
            let _ = std::fs::remove_dir_all("/var/cache/pilot");
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
