//! `cargo xtask bootstrap`: idempotent toolchain setup for a fresh Debian 12 host (as root).
//! Each step checks first and only acts when something is missing.
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::Exit;
use crate::cmd::{self, cargo, command, probe, run};

/// Libraries bpf-linker and libbpf-sys build against, plus the tools the test suite shells out to.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // libbpf-sys builds its vendored libbpf (make, pkg-config, libelf and zlib headers)
    "libelf-dev",
    "pkg-config",
    "make",
    // the agent links libseccomp (its sandbox's seccomp filter and user notification)
    "libseccomp-dev",
    "iproute2",
    "procps",
    // tests: the C effects helper, the JVM tracing test, DOT output checked with `dot -Tsvg`
    "gcc",
    "openjdk-17-jdk-headless",
    "graphviz",
    // tests: `pilot report` pages opened in a real browser (headless)
    "chromium",
    // the package test (xtask/src/package.rs) and the Ansible recipe test (a venv for PyPI)
    "python3-venv",
    "util-linux",
    // tests/cli_conventions.rs and the package test: generated man pages rendered (`man -l`,
    // `man -w`), the zsh completion parsed (`zsh -n`)
    "man-db",
    "zsh",
    // tests/rpc.rs: real servers and clients the sink's protocol sessions are tried against
    // (dnsmasq-base: the binary without a service that would take port 53 at install)
    "redis-server",
    "redis-tools",
    "postgresql",
    "dnsmasq-base",
    "curl",
    // the routine-operations suite (tests/scenarios/routine/): Debian's logrotate, rsync
    // backups, and a live PostgreSQL 15 for pg_dump and pg_basebackup
    "logrotate",
    "rsync",
    // (etcd-server 3.4: etcd; etcd-client: etcdctl; zookeeper: the server and zkCli.sh in
    // /usr/share/zookeeper/bin, no service started, unlike zookeeperd)
    "etcd-server",
    "etcd-client",
    "zookeeper",
];
/// What only `cargo xtask bench` needs: the tools pilot is compared with and the workloads.
pub const BENCH_APT_PACKAGES: &[&str] = &["strace", "bpftrace", "redis-server", "redis-tools", "bubblewrap", "tar"];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const TRACEFS: &str = "/sys/kernel/tracing";

/// Runs every step; `subcommand` only names what to re-run in the "needs root" advice.
pub fn bootstrap(subcommand: &str) -> anyhow::Result<()> {
    require_root(subcommand)?;
    nightly_rust_src()?;
    apt_packages(APT_PACKAGES)?;
    bpf_linker()?;
    cargo_deb()?;
    tracefs()?;
    Ok(())
}

/// cargo-deb builds the Debian package (`cargo deb -p agent`).
fn cargo_deb() -> anyhow::Result<()> {
    const WHAT: &str = "cargo-deb";
    if let Some(version) = probe(cargo().args(["deb", "--version"])) {
        step(WHAT, format_args!("ok (already there: {})", version.trim()));
        return Ok(());
    }
    step(WHAT, "installing with cargo install --locked (a few minutes)");
    run(cargo().args(["install", "cargo-deb", "--locked"])).context("installing cargo-deb failed: see cargo's output above")
}

fn step(what: &str, outcome: impl std::fmt::Display) {
    println!("[bootstrap] {what}: {outcome}");
}

fn require_root(subcommand: &str) -> anyhow::Result<()> {
    if effective_uid()? == 0 {
        return Ok(());
    }
    Err(Exit {
        code: 2,
        message: format!(
            "pilot needs root to load BPF programs: run this as root (sudo -E cargo xtask {subcommand})"
        ),
    }
    .into())
}

/// The effective uid from /proc/self/status, falling back to `id -u`.
fn effective_uid() -> anyhow::Result<u32> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(uid) = parse_effective_uid(&status)
    {
        return Ok(uid);
    }
    probe(command("id").arg("-u"))
        .and_then(|out| out.trim().parse().ok())
        .context("could not tell whether we are root (no /proc/self/status, `id -u` failed)")
}

/// `Uid:` line of /proc/PID/status: real, effective, saved, filesystem.
fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn nightly_rust_src() -> anyhow::Result<()> {
    const WHAT: &str = "nightly toolchain with rust-src";
    let installed = probe(command("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]));
    match installed {
        Some(list) if has_rust_src(&list) => step(WHAT, "ok (already there)"),
        Some(_) => {
            step(
                WHAT,
                "adding rust-src to nightly (the eBPF crate builds core from source)",
            );
            run(command("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                "nightly",
            ]))?;
        }
        None => {
            if cmd::find_in_path("rustup").is_none() {
                bail!(
                    "rustup is not installed (or not in PATH nor {}): install it from https://rustup.rs, then run `cargo xtask bootstrap` again",
                    cmd::cargo_bin_dir().display()
                );
            }
            step(WHAT, "installing nightly (minimal profile) with rust-src");
            run(command("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))?;
        }
    }
    Ok(())
}

fn has_rust_src(component_list: &str) -> bool {
    component_list
        .lines()
        .any(|l| l.split_whitespace().next() == Some("rust-src"))
}

/// Installs whichever of `packages` dpkg does not report as installed (apt-get update once).
pub fn apt_packages(packages: &[&str]) -> anyhow::Result<()> {
    let what = format!("apt packages ({})", packages.join(" "));
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        step(&what, "ok (already there)");
        return Ok(());
    }
    if cmd::find_in_path("apt-get").is_none() {
        // A RHEL-family box (vagrant/): its provisioning installs the equivalents with dnf.
        step(&what, "skipped: no apt-get on this host; install the equivalents of these packages yourself");
        return Ok(());
    }
    step(&what, format_args!("installing {}", missing.join(" ")));
    run(command("apt-get").arg("update")).context(
        "`apt-get update` failed: check the network and /etc/apt/sources.list.d, then run `cargo xtask bootstrap` again",
    )?;
    run(command("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing))
    .with_context(|| {
        format!(
            "could not install {}: if apt said \"Unable to locate package\" for an llvm-22 package, add the LLVM apt \
             repository (https://apt.llvm.org, e.g. `bash llvm.sh 22`) and run `cargo xtask bootstrap` again",
            missing.join(" ")
        )
    })
}

fn dpkg_installed(package: &str) -> bool {
    probe(command("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

fn bpf_linker() -> anyhow::Result<()> {
    const WHAT: &str = "bpf-linker";
    let found = cmd::find_in_path("bpf-linker");
    if let Some(path) = &found
        && let Some(version) = probe(command(path).arg("--version"))
    {
        step(
            WHAT,
            format_args!("ok (already there: {}, {})", path.display(), version.trim()),
        );
        return Ok(());
    }
    step(
        WHAT,
        format_args!(
            "installing with cargo install against {LLVM_PREFIX} into {} (this takes ~5 minutes)",
            cmd::cargo_bin_dir().display()
        ),
    );
    let mut install = cargo();
    install.env("LLVM_PREFIX", LLVM_PREFIX).args([
        "install",
        "bpf-linker",
        "--no-default-features",
        "--features",
        "llvm-22",
    ]);
    if found.is_some() {
        // Present but `--version` fails (e.g. its LLVM went away): cargo would skip it otherwise.
        install.arg("--force");
    }
    run(&mut install).context(
        "building bpf-linker failed: make sure llvm-22-dev and libpolly-22-dev are installed \
         (`cargo xtask bootstrap` does it) and a C toolchain is present (apt-get install build-essential)",
    )?;
    if probe(command("bpf-linker").arg("--version")).is_none() {
        bail!(
            "bpf-linker was installed but `bpf-linker --version` still fails: check {}",
            cmd::cargo_bin_dir().display()
        );
    }
    Ok(())
}

fn tracefs() -> anyhow::Result<()> {
    let what = format!("tracefs at {TRACEFS}");
    let events = Path::new(TRACEFS).join("events");
    if events.is_dir() {
        step(&what, "ok (already there)");
        return Ok(());
    }
    step(
        &what,
        "mounting it (mount -t tracefs nodev /sys/kernel/tracing)",
    );
    run(command("mount").args(["-t", "tracefs", "nodev", TRACEFS])).context(
        "could not mount tracefs: the kernel needs CONFIG_TRACING; in a container, run it \
         privileged or bind-mount the host's /sys/kernel/tracing",
    )?;
    if !events.is_dir() {
        bail!(
            "mounted tracefs but {} is still missing: is the kernel built with CONFIG_FTRACE?",
            events.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_field() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\tcat\n"), None);
    }

    #[test]
    fn rust_src_is_matched_as_a_whole_component() {
        assert!(has_rust_src(
            "cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!has_rust_src(
            "rust-std-x86_64-unknown-linux-gnu\nrust-src-extra\n"
        ));
    }
}
