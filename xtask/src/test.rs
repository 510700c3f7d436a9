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
    let status = status(
        cargo()
            .current_dir(workspace_root())
            .env("RUST_BACKTRACE", "1")
            .arg("test")
            .args(extra_args),
    )?;
    if !status.success() || !extra_args.is_empty() {
        return Ok(exit_code(status));
    }
    // The fleet pieces, after the suite: the package installed and purged here.
    crate::package::package_test()?;
    crate::ansible::ansible_test()?;
    Ok(ExitCode::SUCCESS)
}
