//! Project automation for pilot: `cargo xtask <command>` (see `cargo xtask --help`).
mod bench;
mod bootstrap;
mod cmd;
mod demo;
mod test;

use std::process::{ExitCode, ExitStatus};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Build, test and demo pilot (run as root: loading BPF programs needs it)",
    after_help = "Examples:\n  \
        cargo xtask bootstrap\n  \
        cargo xtask test -- -p agent -- --nocapture\n  \
        cargo xtask demo\n  \
        cargo xtask bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up this host (Debian 12, as root): nightly + rust-src, LLVM 22 and test tools from
    /// apt, bpf-linker, tracefs.
    ///
    /// Every step checks first and is skipped when already satisfied, so it is safe to run
    /// again. Installing bpf-linker (first run only) compiles it and takes ~5 minutes.
    Bootstrap,
    /// Bootstrap, then run `cargo test` on agent, agent-common and xtask, then `bench --quick`
    /// (a smoke test: every figure produced, no goal checked; skipped when ARGS are given).
    ///
    /// The eBPF crate is not a default workspace member, so it is only built (for the BPF
    /// target) by agent's build script. The exit status is cargo's.
    Test {
        /// Extra arguments for `cargo test`, after `--` (e.g. `-- -p agent`, or `-- -- --nocapture` for the test binaries)
        #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
        args: Vec<String>,
    },
    /// Bootstrap, build pilot (release) and trace a small script that touches files, opens a
    /// loopback TCP connection and signals a child.
    ///
    /// The run directory (events.jsonl, summary.json) is kept under target/demo/.
    Demo,
    /// Bootstrap (plus strace, bpftrace, redis, bubblewrap), build pilot (release) and measure
    /// its overhead, throughput, start time and footprint; prints a table and writes
    /// target/bench/report.json.
    ///
    /// Configurations are interleaved round by round and medians reported, to cancel machine
    /// noise. See BENCHMARKS.md for what each figure means.
    Bench {
        /// Smoke test (CI): tiny sizes, one round, the debug build; checks every figure is
        /// produced, not the goals.
        #[arg(long)]
        quick: bool,
    },
}

/// An error that ends xtask with a specific exit status and a message printed as-is.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// A child's exit status as ours: its code, or 128 + signal when it was killed.
pub fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Bootstrap => bootstrap::bootstrap("bootstrap").map(|()| ExitCode::SUCCESS),
        Command::Test { args } => test::test(args),
        Command::Demo => demo::demo().map(|()| ExitCode::SUCCESS),
        Command::Bench { quick } => bench::bench(*quick),
    };
    result.unwrap_or_else(|err| match err.downcast_ref::<Exit>() {
        Some(exit) => {
            eprintln!("{}", exit.message);
            ExitCode::from(exit.code)
        }
        None => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_args_after_double_dash_pass_through() {
        let cli = Cli::try_parse_from(["xtask", "test", "--", "-p", "agent", "--", "--nocapture"])
            .unwrap();
        let Command::Test { args } = cli.command else {
            panic!("not test")
        };
        assert_eq!(args, ["-p", "agent", "--", "--nocapture"]);
    }
}
