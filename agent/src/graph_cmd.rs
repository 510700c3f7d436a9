//! `pilot graph DIR`: re-render the effect graph of a recorded run; `pilot merge`: join the
//! graphs of several hosts.
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::{
    cli::{GraphArgs, GraphFormat, MergeArgs},
    error::{FileError, OnPath, RUN_DIR, UsageError, kept_in},
    graph::{Graph, SCHEMA_MERGED, merge, render},
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
    let graph = read(&path)?;
    let text = match args.format {
        GraphFormat::Text => render::text(&graph),
        GraphFormat::Dot => render::dot(&graph),
        GraphFormat::Json => render::json(&graph),
    };
    print!("{text}");
    Ok(0)
}

pub fn merge(args: MergeArgs) -> Result<i32> {
    let mut inputs = Vec::new();
    for given in &args.graphs {
        let path = if given.is_dir() { given.join("graph.json") } else { given.clone() };
        let graph = read(&path)?;
        if graph.schema == SCHEMA_MERGED {
            return Err(UsageError::new(format!(
                "{} is already merged: give the graph.json of each host instead",
                path.display()
            ))
            .into());
        }
        inputs.push((path.display().to_string(), graph));
    }
    let merged = merge::merge(inputs);
    write_merged(&args.out, &merged)?;
    let across = merged.edges.iter().filter(|e| e.to_host.is_some()).count();
    eprintln!(
        "pilot merge: {} graph(s) from host(s) {}: {across} edge(s) across hosts; wrote graph.json and graph.dot in {}",
        merged.hosts.len(),
        merged.host,
        args.out.display()
    );
    Ok(0)
}

fn write_merged(dir: &Path, g: &Graph) -> Result<()> {
    std::fs::create_dir_all(dir).on("creating", dir, RUN_DIR).map_err(FileError::usage)?;
    for (name, text) in [("graph.json", render::json(g)), ("graph.dot", render::dot(g))] {
        let path: PathBuf = dir.join(name);
        std::fs::write(&path, text).map_err(|e| {
            let _ = std::fs::remove_file(&path);
            FileError::new("writing", &path, e, RUN_DIR).kept(kept_in(dir, Some(name)))
        })?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<Graph> {
    Graph::read(path).map_err(|e| UsageError::new(format!("{}: {e}", path.display())).into())
}
