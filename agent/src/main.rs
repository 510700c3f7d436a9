//! pilot: see DESIGN in the README. `main` parses the command line and maps errors to exit
//! codes; the work lives in the modules, in the order an event flows through them:
//! probes (kernel) -> decode -> tracker -> output/account.
mod account;
mod bench;
mod cli;
mod commit;
mod decode;
mod diff;
mod error;
mod event;
mod graph;
mod graph_cmd;
mod journal;
mod output;
mod policy;
mod probes;
mod procfs;
mod run;
mod sandbox;
mod session;
mod sink;
mod snapshot;
mod trace;
mod tracker;

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Trace(args) => trace::run(args),
        cli::Command::Graph(args) => graph_cmd::run(args),
        cli::Command::Run(args) => run::run(args),
        cli::Command::Diff(args) => diff_cmd(args),
        cli::Command::Check(args) => check_cmd(args),
        cli::Command::Gc => run::gc(true).map(|n| {
            eprintln!("pilot gc: {n} stale pilot cgroup(s) removed");
            0
        }),
        cli::Command::Commit(args) => commit::run(args),
        cli::Command::Journal { command: cli::JournalCommand::Verify { path } } => journal::verify_cmd(path),
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
