//! `cargo xtask vm-test`: the integration tests on other kernels. Each Debian cloud kernel
//! boots under qemu from an initramfs holding pilot, the test binaries and what they need; the
//! guest runs `pilot doctor`, checks that `pilot run` refuses a kernel without overlayfs, runs
//! the tests and reports on its second serial port. The host kernel runs the same tests
//! natively. The result is a matrix, kernel x test.
mod cpio;
mod guest;
mod initramfs;
mod kernel;
mod qemu;
mod servers;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    bootstrap,
    cmd::{cargo, command, run, target_dir, workspace_root},
};

/// Kernels of the default matrix (plus the host's).
pub const DEFAULT_KERNELS: &[&str] = &["6.1", "6.12"];
/// What the VM side needs on the host.
const VM_PACKAGES: &[&str] =
    &["qemu-system-x86", "busybox-static", "kmod", "xz-utils", "python3", "util-linux", "gcc", "libc6-dev", "e2fsprogs"];
/// Kernel modules a pilot needs that Debian builds as modules: overlayfs, loop (the guest's
/// ext4 /tmp), and sock_diag for TCP and UDP, by which the sink finds a connection's original
/// destination (on a host, modprobe loads them at the first query; the guest has no modprobe
/// setup, and without them every forwarded read fails as "original destination unknown").
const MODULES: &[&str] = &["overlay", "loop", "tcp_diag", "udp_diag"];
const MEMORY_MIB: u32 = 3072;
/// With the RPC suite: its servers and the Java runtime in the image (which lives in the
/// guest's RAM), three etcd members, three ZooKeeper JVMs and PostgreSQL running.
const RPC_MEMORY_MIB: u32 = 4096;

/// The default test set of `cargo xtask vm-test` (about an hour per kernel under TCG: see
/// xtask/README.md): the kernel-facing binaries, the leak suite, the differential suite
/// (issue 16) and the RPC suite's read-only cases (issue 18, its servers in the guest image).
/// `binary` or `binary:libtest-filter`.
pub const DEFAULT_TESTS: &[&str] = &["doctor", "trace_signals", "trace_net", "run_lifecycle", "leak", "differential", "rpc:reads::"];

/// Boot-to-poweroff limit when `--timeout` is not given: 20 minutes for the quick binaries,
/// plus, per long selection, what it took under TCG on the 2-core project machine with margin
/// (leak 14 min; differential and rpc:reads:: 7-8 min each on 6.1 and 6.12).
pub fn default_timeout(tests: &[String]) -> Duration {
    let extra: u64 = tests
        .iter()
        .map(|t| match t.split(':').next().unwrap_or(t) {
            "leak" => 1200,
            "differential" | "rpc" => 600,
            _ => 0,
        })
        .sum();
    Duration::from_secs(1200 + extra)
}

/// The set CI runs (`cargo xtask test`): every kernel-facing binary but the leak suite, which
/// takes 10-17 minutes per kernel under TCG and once locked up a 6.1 guest on a loaded machine
/// (see vagrant/README.md), and but the differential and RPC suites (7-8 minutes each per
/// kernel: 30 minutes more for the matrix); `cargo xtask vm-test` runs them.
pub const CI_TESTS: &[&str] = &["doctor", "trace_signals", "trace_net", "run_lifecycle"];

/// Tests a kernel cannot pass for a reason of its own, not pilot's: (series, binary, test, why).
/// Skipped there (libtest --skip), shown as n/a with the reason.
const NOT_ON: &[(&str, &str, &str, &str)] = &[(
    "6.1",
    "leak",
    "file_setxattr_mounted_fs",
    "tmpfs has user.* xattrs only from Linux 6.6: the case's control cannot set one",
)];

pub struct Options {
    pub kernels: Vec<String>,
    pub tests: Vec<String>,
    /// Per-kernel time limit (boot to poweroff).
    pub timeout: Duration,
    /// Also run the tests natively on the host kernel.
    pub host: bool,
}

/// One column of the matrix.
struct Column {
    kernel: String,
    outcome: Outcome,
    /// Where the console log was kept (failures only).
    log: Option<PathBuf>,
}

#[derive(Default)]
struct Outcome {
    /// (binary, test) -> ok / FAILED / ignored
    results: Vec<(String, String, String)>,
    exits: Vec<(String, i32)>,
    doctor: Option<serde_json::Value>,
    /// Problems that are not a test's: no boot, timeout, doctor wrong, refusal missing.
    problems: Vec<String>,
    /// (binary, test, why) left out on this kernel (NOT_ON).
    not_applicable: Vec<(String, String, String)>,
    /// (binary, test, why) that skipped themselves (a server not in the image).
    skipped: Vec<(String, String, String)>,
    complete: bool,
}

pub fn vm_test(opts: &Options) -> anyhow::Result<ExitCode> {
    bootstrap::bootstrap("vm-test")?;
    bootstrap::apt_packages(VM_PACKAGES)?;
    let vm_dir = target_dir().join("vm");
    std::fs::create_dir_all(&vm_dir)?;
    let tests = build_tests(&opts.tests)?;
    let helpers = build_helpers(&vm_dir)?;
    let pilot = target_dir().join("debug").join("pilot");
    let mut columns = Vec::new();
    for series in &opts.kernels {
        println!("[vm-test] kernel {series}");
        columns.push(run_guest(series, &vm_dir, &pilot, &tests, &helpers, opts.timeout)?);
    }
    if opts.host {
        println!("[vm-test] host kernel (native)");
        columns.push(run_host(&pilot, &tests, &helpers)?);
    }
    let failed = print_matrix(&columns);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Build pilot and the chosen integration-test binaries; their paths come from cargo's JSON.
fn build_tests(selection: &[String]) -> anyhow::Result<Vec<guest::TestRun>> {
    run(cargo().current_dir(workspace_root()).args(["build", "-p", "agent"]))?;
    let mut cmd = cargo();
    cmd.current_dir(workspace_root()).args(["test", "-p", "agent", "--no-run", "--message-format=json"]);
    for sel in selection {
        cmd.args(["--test", sel.split(':').next().unwrap_or(sel)]);
    }
    println!("  $ {}", crate::cmd::display(&cmd));
    let out = cmd.stderr(std::process::Stdio::inherit()).output().context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the integration tests failed; see cargo's output above");
    }
    let mut exes = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str()) {
            exes.push((name.to_string(), exe.to_string()));
        }
    }
    selection
        .iter()
        .map(|sel| {
            let (name, filter) = sel.split_once(':').unwrap_or((sel, ""));
            let exe = exes.iter().find(|(n, _)| n == name).map(|(_, e)| e.clone());
            let exe = exe.with_context(|| format!("no integration test named {name} (see agent/Cargo.toml)"))?;
            let args = if filter.is_empty() { Vec::new() } else { vec![filter.to_string()] };
            Ok(guest::TestRun { name: name.to_string(), exe, args })
        })
        .collect()
}

/// The tests' C helpers, linked statically (the guest has no gcc); the tests take them from
/// the environment instead of compiling them.
fn build_helpers(vm_dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let dir = vm_dir.join("helpers");
    std::fs::create_dir_all(&dir)?;
    let root = workspace_root();
    let mut env = Vec::new();
    for (var, src, flags) in [
        ("PILOT_TEST_EFFECTS", "tests/helpers/effects.c", &["-O1", "-pthread"][..]),
        ("PILOT_TEST_URING", "tests/leak/uring_write.c", &["-O2"][..]),
    ] {
        let out = dir.join(Path::new(src).file_stem().unwrap_or_default());
        run(command("gcc").arg("-static").args(flags).arg("-o").arg(&out).arg(root.join(src)))?;
        env.push((var.to_string(), out.display().to_string()));
    }
    Ok(env)
}

fn run_guest(
    series: &str,
    vm_dir: &Path,
    pilot: &Path,
    tests: &[guest::TestRun],
    helpers: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<Column> {
    let k = kernel::fetch(series, vm_dir)?;
    let dir = vm_dir.join(&k.release);
    std::fs::create_dir_all(&dir)?;
    // The guest stops its tests a minute before the host kills it: what ran is still reported.
    let budget = timeout.saturating_sub(Duration::from_secs(60));
    let (tests, not_applicable) = for_kernel(series, tests);
    let tests = &tests[..];
    let init = guest::init(&pilot.display().to_string(), tests, helpers, budget);
    let mut files = vec![pilot.to_path_buf(), PathBuf::from("/usr/bin/python3"), PathBuf::from("/usr/bin/setpriv"), PathBuf::from("/usr/sbin/mkfs.ext4")];
    let mut trees = vec![python_stdlib()?, workspace_root().join("policies")];
    // The differential suite's actions as the host has them (busybox has no prlimit, and its
    // renice and ip print otherwise).
    files.extend(["/usr/bin/prlimit", "/usr/bin/renice", "/usr/bin/unshare", "/usr/bin/ip", "/usr/sbin/sysctl"].iter().map(PathBuf::from).filter(|p| p.exists()));
    files.extend(tests.iter().map(|t| PathBuf::from(&t.exe)));
    files.extend(helpers.iter().map(|(_, p)| PathBuf::from(p)));
    let mut memory = MEMORY_MIB;
    if tests.iter().any(|t| t.name == "rpc") {
        let rpc = servers::contents()?;
        for m in &rpc.missing {
            println!("  not in the image: {m}; its rpc tests skip");
        }
        files.extend(rpc.files);
        trees.extend(rpc.trees);
        memory = RPC_MEMORY_MIB;
    }
    let contents = initramfs::Contents {
        init: &init,
        files,
        trees,
        dirs: vec![target_dir().join("tmp")],
        modules: MODULES,
    };
    let initrd = dir.join("initrd.cpio");
    let started = Instant::now();
    let bytes = initramfs::build(&k, &contents, &initrd)?;
    println!("  initramfs {} ({} MiB) in {:.1}s", initrd.display(), bytes >> 20, started.elapsed().as_secs_f64());
    let boot = qemu::boot(&k.vmlinuz, &initrd, &dir, memory, timeout)?;
    println!("  {} ran {:.0}s under {}", k.release, boot.elapsed.as_secs_f64(), qemu::accel());
    let report = guest::parse(&std::fs::read_to_string(&boot.report).unwrap_or_default());
    let mut outcome = Outcome {
        results: report.results.clone(),
        exits: report.exits.clone(),
        doctor: report.doctor.as_deref().and_then(|d| serde_json::from_str(d).ok()),
        complete: report.done,
        problems: Vec::new(),
        not_applicable,
        skipped: report.skipped.clone(),
    };
    outcome.problems = guest_problems(&report, &boot, timeout);
    outcome.problems.extend(doctor_problems(&k.release, outcome.doctor.as_ref(), report.doctor_exit, true));
    let failed = !outcome.problems.is_empty() || outcome.results.iter().any(|r| r.2 == "FAILED") || outcome.exits.iter().any(|e| e.1 != 0);
    let log = failed.then(|| boot.console.clone());
    if !failed {
        let _ = std::fs::remove_file(&initrd); // hundreds of MiB; rebuilt in seconds
    }
    Ok(Column { kernel: k.release, outcome, log })
}

/// What went wrong with the guest itself (not its tests): no boot, timeout, no end, no refusal.
fn guest_problems(report: &guest::Report, boot: &qemu::Boot, timeout: Duration) -> Vec<String> {
    let mut problems: Vec<String> = report.setup_failures.iter().map(|f| format!("guest setup: {f}")).collect();
    if report.booted.is_none() {
        problems.push("the guest never reported (no boot: see the console log)".into());
    } else if boot.timed_out {
        problems.push(format!("timed out after {}s (raise --timeout)", timeout.as_secs()));
    } else if !report.done {
        problems.push("the guest stopped before DONE (panic? see the console log)".into());
    }
    match &report.refused {
        Some((5, _)) => {}
        Some((code, msg)) => problems.push(format!("pilot run without overlayfs exited {code}, not 5: {msg}")),
        None if report.booted.is_some() => problems.push("no pilot run refusal reported".into()),
        None => {}
    }
    problems
}

/// The tests as this kernel runs them: NOT_ON's cases skipped, and listed.
fn for_kernel(series: &str, tests: &[guest::TestRun]) -> (Vec<guest::TestRun>, Vec<(String, String, String)>) {
    let not_applicable: Vec<(String, String, String)> = NOT_ON
        .iter()
        .filter(|(s, b, _, _)| *s == series && tests.iter().any(|t| t.name == *b))
        .map(|(_, b, t, why)| (b.to_string(), t.to_string(), why.to_string()))
        .collect();
    let tests = tests
        .iter()
        .map(|t| {
            let mut args = t.args.clone();
            for (_, test, _) in not_applicable.iter().filter(|(b, _, _)| *b == t.name) {
                args.extend(["--skip".to_string(), test.clone()]);
            }
            guest::TestRun { name: t.name.clone(), exe: t.exe.clone(), args }
        })
        .collect();
    (tests, not_applicable)
}

fn python_stdlib() -> anyhow::Result<PathBuf> {
    let out = crate::cmd::probe(command("/usr/bin/python3").args(["-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"]))
        .context("/usr/bin/python3 is needed on the host (its standard library goes into the guest)")?;
    Ok(PathBuf::from(out.trim()))
}

/// The same tests and doctor on the host kernel, natively.
fn run_host(pilot: &Path, tests: &[guest::TestRun], helpers: &[(String, String)]) -> anyhow::Result<Column> {
    let mut outcome = Outcome { complete: true, ..Default::default() };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let doctor = command(pilot).args(["doctor", "--json"]).output().context("running pilot doctor")?;
    outcome.doctor = serde_json::from_slice(&doctor.stdout).ok();
    outcome.problems.extend(doctor_problems(&release, outcome.doctor.as_ref(), doctor.status.code(), false));
    let log_dir = target_dir().join("vm").join("host");
    std::fs::create_dir_all(&log_dir)?;
    let mut log = None;
    for t in tests {
        let mut cmd = command(&t.exe);
        cmd.arg("--test-threads=2").args(&t.args).envs(helpers.iter().map(|(k, v)| (k, v)));
        println!("  $ {}", crate::cmd::display(&cmd));
        let out = cmd.output().with_context(|| format!("running {}", t.exe))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        let path = log_dir.join(format!("{}.log", t.name));
        std::fs::write(&path, &text)?;
        let lines: String = text
            .lines()
            .filter_map(|l| match l.strip_prefix("SKIP ") {
                Some(skip) => Some(format!("SKIPPED {} {skip}\n", t.name)),
                None => (l.starts_with("test ") && l.contains(" ... ")).then(|| format!("RESULT {} {l}\n", t.name)),
            })
            .collect();
        let report = guest::parse(&lines);
        outcome.results.extend(report.results);
        outcome.skipped.extend(report.skipped);
        let code = out.status.code().unwrap_or(-1);
        outcome.exits.push((t.name.clone(), code));
        if code != 0 {
            log = Some(path);
        }
    }
    Ok(Column { kernel: format!("host {release}"), outcome, log })
}

/// What `pilot doctor` must say: run contained (exit 0), and Unix sockets by cgroup hooks
/// exactly on 6.7 and later. In the Debian guests kprobes, fentry and BPF LSM work too.
fn doctor_problems(release: &str, doctor: Option<&serde_json::Value>, exit: Option<i32>, debian_guest: bool) -> Vec<String> {
    let Some(d) = doctor else { return vec!["pilot doctor --json gave no report".into()] };
    let mut problems = Vec::new();
    if exit != Some(0) || d["run_contained"] != true {
        problems.push(format!("pilot doctor says run cannot be contained (exit {exit:?})"));
    }
    let hooks_expected = kernel_at_least(release, 6, 7);
    if (d["unix_sockets"] == "cgroup hooks") != hooks_expected {
        problems.push(format!("pilot doctor says Unix sockets by {} on {release}", d["unix_sockets"]));
    }
    if debian_guest {
        for name in ["kprobes", "fentry", "bpf_lsm"] {
            if present(d, name) != Some(true) {
                problems.push(format!("pilot doctor does not find {name}, which Debian's kernel has"));
            }
        }
    }
    problems
}

fn present(doctor: &serde_json::Value, name: &str) -> Option<bool> {
    doctor["features"].as_array()?.iter().find(|f| f["name"] == name)?["present"].as_bool()
}

fn kernel_at_least(release: &str, major: u64, minor: u64) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u64>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// Prints the matrix; true when anything failed.
fn print_matrix(columns: &[Column]) -> bool {
    let mut tests: Vec<(String, String)> = Vec::new();
    for c in columns {
        for (b, t, _) in c.outcome.results.iter().chain(&c.outcome.not_applicable) {
            if !tests.iter().any(|x| x.0 == *b && x.1 == *t) {
                tests.push((b.clone(), t.clone()));
            }
        }
    }
    tests.sort();
    let width = tests.iter().map(|(b, t)| b.len() + t.len() + 2).chain([30]).max().unwrap_or(30);
    let cell = 28;
    let mut out = format!("\n{:<width$}", "test");
    for c in columns {
        out += &format!(" {:<cell$}", truncate(&c.kernel, cell));
    }
    out += "\n";
    for (b, t) in &tests {
        out += &format!("{:<width$}", format!("{b}::{t}"));
        for c in columns {
            let r = c.outcome.results.iter().find(|r| r.0 == *b && r.1 == *t).map(|r| r.2.as_str());
            let na = c.outcome.not_applicable.iter().any(|r| r.0 == *b && r.1 == *t);
            let skipped = c.outcome.skipped.iter().any(|r| r.0 == *b && r.1 == *t);
            let shown = match r {
                None if na => "n/a",
                Some("ok") if skipped => "skip",
                Some("ok") => "pass",
                Some("ignored") => "skip",
                Some(_) => "FAIL",
                None => "-",
            };
            out += &format!(" {shown:<cell$}");
        }
        out += "\n";
    }
    out += &doctor_rows(columns, width, cell);
    let mut failed = false;
    for c in columns {
        let test_failures = c.outcome.results.iter().filter(|r| r.2 == "FAILED").count();
        let bad_exits: Vec<String> = c.outcome.exits.iter().filter(|e| e.1 != 0).map(|e| format!("{} exited {}", e.0, e.1)).collect();
        let ok = c.outcome.problems.is_empty() && test_failures == 0 && bad_exits.is_empty() && c.outcome.complete;
        failed |= !ok;
        let skipped = |b: &str, t: &str| c.outcome.skipped.iter().any(|s| s.0 == b && s.1 == t);
        let passed = c.outcome.results.iter().filter(|r| r.2 == "ok" && !skipped(&r.0, &r.1)).count();
        out += &format!("\n{}: {} ({passed} passed, {test_failures} failed)\n", c.kernel, if ok { "PASS" } else { "FAIL" });
        for p in c.outcome.problems.iter().chain(&bad_exits) {
            out += &format!("  - {p}\n");
        }
        for (b, t, why) in &c.outcome.not_applicable {
            out += &format!("  n/a {b}::{t}: {why}\n");
        }
        for (b, t, why) in &c.outcome.skipped {
            out += &format!("  skip {b}::{t}: {why}\n");
        }
        if let Some(log) = &c.log {
            out += &format!("  log: {}\n", log.display());
        }
    }
    println!("{out}");
    failed
}

/// The doctor's features, one row each, where the columns differ (or every row with one column).
fn doctor_rows(columns: &[Column], width: usize, cell: usize) -> String {
    let Some(first) = columns.iter().find_map(|c| c.outcome.doctor.as_ref()) else { return String::new() };
    let names: Vec<String> = first["features"].as_array().into_iter().flatten().filter_map(|f| f["name"].as_str().map(String::from)).collect();
    let mut out = String::new();
    for name in names {
        let cells: Vec<&str> = columns
            .iter()
            .map(|c| match c.outcome.doctor.as_ref().and_then(|d| present(d, &name)) {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            })
            .collect();
        if columns.len() > 1 && cells.iter().all(|c| *c == cells[0]) {
            continue;
        }
        out += &format!("{:<width$}", format!("doctor: {name}"));
        for c in cells {
            out += &format!(" {c:<cell$}");
        }
        out += "\n";
    }
    out
}

fn truncate(s: &str, n: usize) -> &str {
    &s[..s.len().min(n)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_hooks_are_expected_from_6_7() {
        assert!(!kernel_at_least("6.1.0-56-cloud-amd64", 6, 7));
        assert!(kernel_at_least("6.12.117+deb12-cloud-amd64", 6, 7));
        assert!(kernel_at_least("6.18.44-fc-v657", 6, 7));
    }

    #[test]
    fn long_selections_get_more_time() {
        let t = |sel: &[&str]| default_timeout(&sel.iter().map(|s| s.to_string()).collect::<Vec<_>>()).as_secs();
        assert_eq!(t(&["doctor", "trace_net"]), 1200);
        assert_eq!(t(&["rpc:reads::"]), 1800);
        assert_eq!(t(DEFAULT_TESTS), 3600);
    }

    #[test]
    fn doctor_must_match_the_kernel() {
        let d = serde_json::json!({"run_contained": true, "unix_sockets": "network namespace (abstract names isolated; paths to the sink)", "features": []});
        assert!(doctor_problems("6.1.0-56-cloud-amd64", Some(&d), Some(0), false).is_empty());
        assert_eq!(doctor_problems("6.12.1", Some(&d), Some(0), false).len(), 1);
        assert_eq!(doctor_problems("6.1.0", Some(&d), Some(0), true).len(), 3, "kprobes, fentry, bpf_lsm");
    }
}
