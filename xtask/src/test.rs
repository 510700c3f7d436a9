//! `cargo xtask test`: bootstrap, then `cargo test` on the default members (agent, agent-common,
//! xtask; never agent-ebpf, which only builds for the BPF target), then (full runs only, no
//! extra arguments) the scenario table, `cargo xtask bench --quick` as a smoke test of the
//! benchmarks, the package and Ansible tests, and the VM kernel matrix (`cargo xtask vm-test`
//! with its defaults and a CI-sized time limit per kernel).
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::bootstrap::bootstrap;
use crate::cmd::{cargo, command, probe, status, workspace_root};
use crate::{exit_code, vm};

/// Time one kernel of the matrix may take in CI (TCG on 2 cores: the CI set took 6-8 minutes per
/// kernel on a busy machine).
const VM_BUDGET_PER_KERNEL: Duration = Duration::from_secs(15 * 60);

pub fn test(extra_args: &[String]) -> anyhow::Result<ExitCode> {
    bootstrap("test")?;
    let kernel = probe(command("uname").arg("-r")).context("`uname -r` failed")?;
    println!("[test] kernel {}", kernel.trim());
    let results = crate::scenarios::results_file()?;
    let status = status(
        cargo()
            .current_dir(workspace_root())
            .env("RUST_BACKTRACE", "1")
            .env(crate::scenarios::RESULTS_ENV, &results)
            // The suite's pilots sign with a run key of their own, leaving the host's
            // (/etc/pilot/run.key, made by a first pilot) alone.
            .env("PILOT_RUN_KEY", workspace_root().join("target/pilot-test-run.key"))
            .arg("test")
            .args(extra_args),
    )?;
    // The scenario suite ran with the rest: its table and detection rate, for the CI log.
    if extra_args.is_empty() {
        let caught_all = crate::scenarios::report(&results, true)?;
        if status.success() && !caught_all {
            println!("[test] the scenario suite did not catch every scenario, or raised a false alarm");
            return Ok(ExitCode::FAILURE);
        }
    }
    if !status.success() {
        return Ok(exit_code(status));
    }
    // The rest only for the whole suite: `cargo xtask test -- -p agent --test x` is a quick run.
    if !extra_args.is_empty() {
        println!("[test] package, Ansible and VM tests skipped (extra cargo arguments)");
        return Ok(ExitCode::SUCCESS);
    }
    // The benchmarks as a smoke test: every figure is produced (no goal is checked, nothing is
    // timed).
    println!("[test] benchmark smoke test: cargo xtask bench --quick");
    let bench = crate::bench::bench(true, &[])?;
    if bench != ExitCode::SUCCESS {
        return Ok(bench);
    }
    // The fleet pieces: the package installed and purged here, the rollout recipe applied twice.
    crate::package::package_test()?;
    crate::ansible::ansible_test()?;
    if std::env::var("PILOT_VM_TEST").is_ok_and(|v| v == "0") {
        println!("[test] VM kernel matrix skipped (PILOT_VM_TEST=0)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("[test] VM kernel matrix (cargo xtask vm-test)");
    vm::vm_test(&vm::Options {
        kernels: vm::DEFAULT_KERNELS.iter().map(|k| k.to_string()).collect(),
        tests: vm::CI_TESTS.iter().map(|t| t.to_string()).collect(),
        timeout: VM_BUDGET_PER_KERNEL,
        // The host column runs the same subset again natively (~2 min): like against like.
        host: true,
    })
}
