//! `pilot check DIR`: re-evaluate a recorded run against policies, without re-running it.
use crate::{cli, error::EXIT_BLOCKED, policy, rundir::RunDir};

/// `pilot check DIR`: the verdict of a recorded run under the given policies.
pub fn run(args: cli::CheckArgs) -> anyhow::Result<i32> {
    let policies = policy::load_all(&args.policy)?;
    let graph = RunDir::at(&args.dir).graph()?;
    let ev = policy::eval::evaluate(&graph, &policies);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ev)?);
    } else {
        print!("{}", policy::render(&ev));
    }
    Ok(if ev.verdict == policy::eval::Verdict::Block { EXIT_BLOCKED } else { 0 })
}
