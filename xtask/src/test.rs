//! `cargo xtask test`: bootstrap, then `cargo test` on the default members (agent, agent-common,
//! xtask; never agent-ebpf, which only builds for the BPF target), then (full runs only, no
//! extra arguments) the package test.
use std::process::ExitCode;

use anyhow::Context as _;

use crate::bootstrap::bootstrap;
use crate::cmd::{cargo, command, probe, status, workspace_root};
use crate::exit_code;

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
    if !status.success() || !extra_args.is_empty() {
        return Ok(exit_code(status));
    }
    // The fleet pieces, after the suite: the package installed and purged here.
    crate::package::package_test()?;
    crate::ansible::ansible_test()?;
    Ok(ExitCode::SUCCESS)
}
