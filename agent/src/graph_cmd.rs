//! `pilot graph DIR`: re-render the effect graph of a recorded run.
use anyhow::Result;

use crate::{
    cli::{GraphArgs, GraphFormat},
    error::UsageError,
    graph::{Graph, render},
};

pub fn run(args: GraphArgs) -> Result<i32> {
    let path = args.dir.join("graph.json");
    if !path.exists() {
        return Err(UsageError::new(format!(
            "no graph.json in {}: give a run directory written by `pilot trace --out DIR`",
            args.dir.display()
        ))
        .into());
    }
    let graph = Graph::read(&path).map_err(|e| UsageError::new(format!("{}: {e}", path.display())))?;
    let text = match args.format {
        GraphFormat::Text => render::text(&graph),
        GraphFormat::Dot => render::dot(&graph),
        GraphFormat::Json => render::json(&graph),
    };
    print!("{text}");
    Ok(0)
}
