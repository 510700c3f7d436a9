//! The `pilot` binary: parses the command line, hands each command to the library (src/lib.rs)
//! and maps its errors to exit codes (src/error.rs).

use clap::Parser;
use pilot::{bench, cgroup, check, cli, commit, daemon, decision, diff, doctor, error, generate, governance, graph_cmd, journal, keys, report, rollback, run, sandbox, session, trace};

/// mimalloc: see src/alloc.rs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    pilot::alloc::return_freed_memory();
    // A run the daemon started runs in-process, with exactly the client's environment.
    let from_daemon = daemon::client::started_by_daemon();
    session::observe_with(bench::Latency::observer);
    let cli = cli::Cli::parse();
    init_logs(cli.log_format);
    if prints_only(&cli.command) {
        // `pilot graph DIR | head` ends quietly, as `cat` would, instead of a panic on EPIPE.
        // Not for commands with sockets (run, trace, daemon, status, doctor): a peer that went
        // away is an error they report.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if matches!(cli.command, cli::Command::Trace(_) | cli::Command::Run(_)) {
        // ^C or SIGTERM (the daemon's stop) before a pilot is set up must not kill the agent
        // mid-setup: it is counted and acted on once the pilot runs.
        session::catch_interrupts();
    }
    let result = match cli.command {
        cli::Command::Trace(_) | cli::Command::Run(_) if !from_daemon && let Some(code) = via_daemon() => Ok(code),
        cli::Command::Trace(args) => trace::run(args),
        cli::Command::Graph(args) => graph_cmd::run(args),
        cli::Command::Run(args) => run::run(args),
        cli::Command::Daemon(args) => daemon::run(args),
        cli::Command::Status { json } => daemon::client::status(json),
        cli::Command::Diff(args) => diff::cmd(args),
        cli::Command::Check(args) => check::run(args),
        cli::Command::Gc => cgroup::gc(true).map(|n| {
            eprintln!("pilot gc: {n} stale pilot cgroup(s) removed");
            0
        }),
        cli::Command::Commit(args) => commit::run(args),
        cli::Command::Report(args) => report::run(args),
        cli::Command::Journal { command: cli::JournalCommand::Verify { path, key } } => journal::verify_cmd(path, &key),
        cli::Command::Approve(args) => decision::cmd_approve(&args.dir, &args.key, args.note),
        cli::Command::Rollback(args) => rollback::cmd(&args.dir, args.force),
        cli::Command::Key { command: cli::KeyCommand::New { file } } => keys::cmd_new(&file),
        cli::Command::Policy { command: cli::PolicyCommand::Sign { file, key } } => governance::cmd_sign(&file, &key),
        cli::Command::Merge(args) => graph_cmd::merge(args),
        cli::Command::Doctor { json } => doctor::run(json),
        cli::Command::Generate(args) => generate::run(args),
        cli::Command::Sandbox { spec } => sandbox::main(&spec),
        cli::Command::Bench { args } => bench::main(&args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("pilot: {}", error::one_line(&err));
            std::process::exit(error::exit_code(&err));
        }
    }
}

/// Commands whose only output is what they print (and files they write).
fn prints_only(command: &cli::Command) -> bool {
    use cli::Command::*;
    matches!(command, Graph(_) | Check(_) | Journal { .. } | Diff(_) | Report(_) | Merge(_) | Generate(_))
}

/// The daemon's exit status for this run, or None to run in-process.
fn via_daemon() -> Option<i32> {
    match daemon::client::forward() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pilot: {}", error::one_line(&err));
            Some(error::EXIT_AGENT)
        }
    }
}

/// Structured logs on stderr (tracing; `log` records of libraries are forwarded), filtered by
/// RUST_LOG.
fn init_logs(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A span's close line gives its duration: `phase` spans time start-up and tear-down.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .with_ansi(unsafe { libc::isatty(2) } == 1);
    let _ = match format {
        cli::LogFormat::Json => logs.json().try_init(),
        cli::LogFormat::Text => logs.try_init(),
    };
}
