//! pilot: see DESIGN in the README. `main` parses the command line and maps errors to exit
//! codes; the work lives in the modules, in the order an event flows through them:
//! probes (kernel) -> decode -> tracker -> output/account.
mod account;
mod cli;
mod decode;
mod error;
mod event;
mod graph;
mod graph_cmd;
mod output;
mod probes;
mod procfs;
mod sandbox;
mod session;
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
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("pilot: {}", error::one_line(&err));
            std::process::exit(error::exit_code(&err));
        }
    }
}
