//! `pilot check DIR`: re-evaluate a recorded run against policies, without re-running it.
use crate::{cli, error, graph, policy, run};

/// `pilot check DIR`: the verdict of a recorded run under the given policies.
pub fn run(args: cli::CheckArgs) -> anyhow::Result<i32> {
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
