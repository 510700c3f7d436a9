//! Project automation for pilot: `cargo xtask <command>` (see `cargo xtask --help`).
mod ansible;
mod bench;
mod bootstrap;
mod cmd;
mod demo;
mod scenarios;
mod package;
mod test;
mod vm;

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
        cargo xtask scenarios\n  \
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
    /// Bootstrap, build pilot (release) and play one recovery bug end to end: start a tiny
    /// production, pilot the harmful recovery (blocked), show its effect graph, pilot the fixed
    /// one and commit it live.
    ///
    /// The scenarios are the folders of tests/scenarios/; the runs and the journal are kept
    /// under target/demo/.
    Demo {
        /// Which scenario (a folder of tests/scenarios/).
        #[arg(default_value = demo::DEFAULT_SCENARIO)]
        scenario: String,
    },
    /// Bootstrap, then run the recovery-failure scenario suite (tests/scenarios/) and print
    /// each piloted action's verdict, the detection rate and the false alarms.
    ///
    /// Each scenario starts a small live "production", pilots a harmful recovery (it must be
    /// blocked, production untouched) and its fixed twin (it must pass and commit live).
    /// Writes target/scenarios/report.json. Exit 0 only when every scenario is caught and no
    /// fixed twin is blocked.
    Scenarios {
        /// Only scenarios whose test name contains this (e.g. `disk`).
        filter: Option<String>,
    },
    /// Build the Debian package without installing it: the release pilot, its man pages and
    /// completions (`pilot generate`), then `cargo deb --no-build`; prints the .deb's path.
    Package,
    /// Bootstrap, build the Debian package (cargo-deb), install it here, start its unit, check
    /// the metrics endpoint, the man pages and completions, and a pilot through the daemon,
    /// then purge it.
    ///
    /// Refuses to run when the pilot package is already installed. Part of `cargo xtask test`.
    PackageTest,
    /// Bootstrap, install ansible-core from PyPI (a venv under target/), apply the rollout
    /// playbook (deploy/ansible) to this machine twice and require the second run to change
    /// nothing, then purge the package.
    ///
    /// Part of `cargo xtask test`.
    AnsibleTest,
    /// Run the integration tests on other kernels: Debian's 6.1 and 6.12 cloud kernels under
    /// qemu, plus the host kernel natively, and print a matrix kernel x test.
    ///
    /// Kernels are fetched with `apt-get download` and cached under target/vm/; each boots
    /// from an initramfs holding pilot, the test binaries and busybox, runs `pilot doctor`
    /// (checked against what the kernel has), checks that `pilot run` refuses a kernel without
    /// overlayfs, and runs the tests. Console logs of failing kernels stay in target/vm/.
    #[command(after_help = "Examples:\n  \
        cargo xtask vm-test                                  6.1, 6.12 and the host, default tests\n  \
        cargo xtask vm-test --kernel 6.1 --test leak         one kernel, one test binary\n  \
        cargo xtask vm-test --kernel 6.12 --test leak:tcp    a libtest filter after the colon\n  \
        cargo xtask vm-test --kernel 6.1 --test rpc:reads:: --no-host   the RPC reads, servers in the guest\n  \
        cargo xtask vm-test --kernel 6.12 --test differential --no-host\n  \
        cargo xtask vm-test --no-host --timeout 1800")]
    VmTest {
        /// Kernel series to boot (repeatable; default 6.1 and 6.12): Debian's newest
        /// linux-image-<VERSION>*-cloud-amd64.
        #[arg(long = "kernel", value_name = "VERSION")]
        kernels: Vec<String>,
        /// Test binary to run, optionally with a libtest filter: NAME or NAME:FILTER
        /// (repeatable; default: the set in xtask/src/vm/mod.rs).
        #[arg(long = "test", value_name = "FILTER")]
        tests: Vec<String>,
        /// Seconds one kernel may take from boot to poweroff (default: 1200, plus what the
        /// leak, differential and rpc selections take under TCG).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Skip the host kernel column.
        #[arg(long)]
        no_host: bool,
    },
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
        /// Run only this section (repeatable), e.g. `--section scaling`: for working on one
        /// figure (written to target/bench/report-partial.json); goals are judged on a full run.
        #[arg(long, value_name = "NAME")]
        section: Vec<String>,
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
        Command::Demo { scenario } => demo::demo(scenario).map(|()| ExitCode::SUCCESS),
        Command::Scenarios { filter } => scenarios::scenarios(filter.as_deref()),
        Command::Package => package::build_deb().map(|deb| {
            println!("{}", deb.display());
            ExitCode::SUCCESS
        }),
        Command::PackageTest => {
            bootstrap::bootstrap("package-test").and_then(|()| package::package_test()).map(|()| ExitCode::SUCCESS)
        }
        Command::AnsibleTest => {
            bootstrap::bootstrap("ansible-test").and_then(|()| ansible::ansible_test()).map(|()| ExitCode::SUCCESS)
        }
        Command::VmTest { kernels, tests, timeout, no_host } => {
            let tests: Vec<String> = if tests.is_empty() { vm::DEFAULT_TESTS.iter().map(|t| t.to_string()).collect() } else { tests.clone() };
            vm::vm_test(&vm::Options {
                kernels: if kernels.is_empty() { vm::DEFAULT_KERNELS.iter().map(|k| k.to_string()).collect() } else { kernels.clone() },
                timeout: timeout.map(std::time::Duration::from_secs).unwrap_or_else(|| vm::default_timeout(&tests)),
                tests,
                host: !no_host,
            })
        }
        Command::Bench { quick, section } => bench::bench(*quick, section),
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
