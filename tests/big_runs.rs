//! A big action stays readable (issue 19): `pilot run -- tar xf` of a few thousand small files
//! keeps every node and edge in graph.json and adds the directory tree it created as one
//! aggregate; `pilot graph`, the account on stderr and report.html show that tree as one node
//! with counts (the report's expandable), and `-v` lists every change. Not timed: the
//! benchmark's "scaling" section measures what such runs cost.
mod common;

use std::{path::Path, process::Command};

use common::{Pilot, Scratch, pilot_bin};
use serde_json::Value;

const FILES: usize = 2_000;

/// DIR/tree.tar: `./src/modNN/fI.txt`, 100 files a directory (made with tar, as a user would).
fn tarball(d: &Scratch) -> String {
    let tree = d.mkdir("tree");
    for i in 0..FILES {
        let dir = Path::new(&tree).join(format!("src/mod{:02}", i / 100));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    let tar = d.join("tree.tar");
    let ok = Command::new("tar").args(["cf", &tar, "-C", &tree, "."]).status().unwrap();
    assert!(ok.success());
    tar
}

#[test]
fn a_created_tree_is_one_node_in_every_view_and_every_file_stays_in_graph_json() {
    let d = Scratch::new();
    let tar = tarball(&d);
    // Control: tar without pilot creates the files.
    let control = d.mkdir("control");
    assert!(Command::new("tar").args(["xf", &tar, "-C", &control]).status().unwrap().success());
    assert!(Path::new(&control).join("src/mod19/f1999.txt").exists(), "control: tar extracts");

    let dest = d.mkdir("dest");
    let run = Pilot::pilot_run().command(&["tar", "xf", &tar, "-C", &dest]).run();
    run.assert_ran();
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(!Path::new(&dest).join("src").exists(), "LEAK: the pilot's extraction reached the host");

    // graph.json: every file node and its create edge, and the tree as an aggregate.
    let graph = run.json("graph.json");
    let root = format!("{dest}/src");
    let nodes = graph["nodes"].as_array().unwrap();
    let files = nodes.iter().filter(|n| n["path"].as_str().is_some_and(|p| p.starts_with(&format!("{root}/")) && p.ends_with(".txt"))).count();
    assert_eq!(files, FILES, "every file is still a node of graph.json");
    let creates = graph["edges"].as_array().unwrap().iter().filter(|e| e["kind"] == "create" && e["failed"].as_u64().unwrap_or(0) < e["count"].as_u64().unwrap_or(1)).count();
    assert!(creates >= FILES, "every create edge is still in graph.json ({creates})");
    let aggs = graph["aggregates"].as_array().unwrap_or_else(|| panic!("no aggregates in graph.json\n{}", run.dump()));
    let tree: &Value = aggs.iter().find(|a| a["path"] == root.as_str()).unwrap_or_else(|| panic!("no aggregate for {root}: {aggs:?}"));
    assert_eq!(tree["how"], "created");
    assert_eq!(tree["id"], format!("tree:{root}"));
    assert_eq!(tree["nodes"].as_u64(), Some((FILES + 1 + FILES / 100) as u64), "{tree}");
    assert!(tree["effects"]["create"].as_u64().unwrap() >= FILES as u64, "{tree}");

    // The account on stderr: a count of the effects not printed, the tree as one change.
    assert!(run.stderr.contains("more distinct effects on nothing a component holds (`-v` lists every one)"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("+ created   tree    {root}/  ({} directories, {FILES} files and others", FILES / 100 + 1)), "{}", run.stderr);
    assert!(run.stderr.lines().count() < 200, "the account stays short: {} lines", run.stderr.lines().count());

    // `pilot graph DIR`: the tree as one line per effect, no line per file.
    let text = Command::new(pilot_bin()).args(["graph", run.dir().to_str().unwrap()]).output().unwrap();
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("{root}/ (created: {} files and directories)", FILES + 1 + FILES / 100)), "{text}");
    assert!(!text.contains("f1999.txt"), "pilot graph lists the tree's files one by one:\n{text}");

    // report.html: the tree is one node of the drawing, expandable into its files.
    let html = run.read("report.html");
    assert!(html.contains("<details id=\"tree0\">"), "no expandable tree in report.html");
    assert!(html.contains("xlink:href=\"#tree0\""), "the drawing's tree node links to its files");
}

#[test]
fn verbose_lists_every_change() {
    let d = Scratch::new();
    let tar = tarball(&d);
    let dest = d.mkdir("dest");
    let run = Pilot::pilot_run().args(["-v"]).command(&["tar", "xf", &tar, "-C", &dest]).run();
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let listed = run.stderr.lines().filter(|l| l.contains("+ created   file") && l.contains(&dest)).count();
    assert_eq!(listed, FILES, "-v lists every created file");
    assert!(!run.stderr.contains("more distinct effects"), "-v prints every effect");
}
