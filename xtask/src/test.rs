//! `cargo xtask test`: bootstrap, then `cargo test` on the default members (agent, agent-common,
//! xtask; never agent-ebpf, which only builds for the BPF target), then `cargo xtask bench
//! --quick` as a smoke test of the benchmarks.
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
    // The benchmarks as a smoke test: every figure is produced (no goal is checked, nothing is
    // timed). Only on a full run: `cargo xtask test -- <args>` is a targeted run.
    println!("[test] benchmark smoke test: cargo xtask bench --quick");
    crate::bench::bench(true)
}
