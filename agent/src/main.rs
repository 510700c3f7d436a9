//! pilot: see DESIGN in the README. `main` parses the command line and maps errors to exit
//! codes; the work lives in the modules, in the order an event flows through them:
//! probes (kernel) -> decode -> tracker -> output/account.
mod account;
mod bench;
mod cli;
mod commit;
mod daemon;
mod decode;
mod diff;
mod doctor;
mod error;
mod event;
mod graph;
mod graph_cmd;
mod journal;
mod output;
mod policy;
mod probes;
mod procfs;
mod report;
mod run;
mod sandbox;
mod session;
mod sink;
mod snapshot;
mod trace;
mod tracker;

use clap::Parser;

fn main() {
    // A run the daemon started runs in-process, with exactly the client's environment.
    let from_daemon = std::env::var_os(daemon::client::DAEMON_RUN_ENV).is_some();
    if from_daemon {
        unsafe { std::env::remove_var(daemon::client::DAEMON_RUN_ENV) };
    }
    let cli = cli::Cli::parse();
    init_logs(cli.log_format);
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
        cli::Command::Diff(args) => diff_cmd(args),
        cli::Command::Check(args) => check_cmd(args),
        cli::Command::Gc => run::gc(true).map(|n| {
            eprintln!("pilot gc: {n} stale pilot cgroup(s) removed");
            0
        }),
        cli::Command::Commit(args) => commit::run(args),
        cli::Command::Report(args) => report::run(args),
        cli::Command::Journal { command: cli::JournalCommand::Verify { path } } => journal::verify_cmd(path),
        cli::Command::Merge(args) => graph_cmd::merge(args),
        cli::Command::Doctor { json } => doctor::run(json),
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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(unsafe { libc::isatty(2) } == 1);
    let _ = match format {
        cli::LogFormat::Json => logs.json().try_init(),
        cli::LogFormat::Text => logs.try_init(),
    };
}

/// `pilot diff DIR`: recomputed from the run directory, so it also works on older runs.
fn diff_cmd(args: cli::DiffArgs) -> anyhow::Result<i32> {
    if !args.dir.join("upper").is_dir() {
        return Err(error::UsageError::new(format!(
            "{} has no upper/: give a run directory of `pilot run`",
            args.dir.display()
        ))
        .into());
    }
    let changes = diff::compute(&args.dir)?;
    print!("{}", if args.json { diff::render::json(&changes) } else { diff::render::text(&changes) });
    Ok(0)
}

/// `pilot check DIR`: the verdict of a recorded run under the given policies.
fn check_cmd(args: cli::CheckArgs) -> anyhow::Result<i32> {
    let policies = policy::load_all(&args.policy)?;
    let path = args.dir.join("graph.json");
    let graph = graph::Graph::read(&path).map_err(|e| {
        error::UsageError::new(format!("{}: {e}: give a run directory of `pilot run` or `pilot trace --out`", path.display()))
    })?;
    let ev = policy::eval::evaluate(&graph, &policies);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ev)?);
    } else {
        print!("{}", policy::render(&ev));
    }
    Ok(if ev.verdict == policy::eval::Verdict::Block { run::EXIT_BLOCKED } else { 0 })
}
