//! `pilot report DIR [--html FILE]`: one self-contained HTML page of a run, for a browser or a
//! ticket: the verdict and why, the intent and its journal entries, the effect graph drawn
//! (components as groups, the violating edges marked and linked to their evidence events), the
//! file changes, the network the sink caught, and after a commit, pilot against live.
//!
//! Everything is read back from the run directory with the types that wrote it; a file that is
//! there but unreadable is named on the page, never skipped silently.
mod channels;
mod html;
mod layout;
pub use layout::SpareDot;
mod signed;

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use crate::{
    cli::ReportArgs,
    error::{FileError, OnPath, REPORT, UsageError},
    graph::Graph,
    journal,
    rundir::{Changes, EVENTS, Fidelity, GRAPH, Intent, RunDir, SinkLog, Summary, Verdict},
};

/// Evidence lines shown at most (violations cite the first events of each edge).
const MAX_EVIDENCE: usize = 500;

/// A run directory, as recorded.
pub struct Recorded {
    pub dir: PathBuf,
    pub graph: Graph,
    pub summary: Option<Summary>,
    pub verdict: Option<Verdict>,
    pub intent: Option<Intent>,
    pub changes: Option<Changes>,
    pub sink: Option<SinkLog>,
    pub fidelity: Option<Fidelity>,
    pub live: Option<Graph>,
    pub live_summary: Option<Summary>,
    pub journal: Journal,
    /// events.jsonl line number -> the line, for the lines the violations cite.
    pub evidence: BTreeMap<u64, String>,
    /// decision.json, approvals, drift.json, the rollback manifest, each verified.
    pub signed: signed::Signed,
    /// Files present but unreadable, and anything else the reader should know is missing.
    pub problems: Vec<String>,
}

pub struct Journal {
    pub path: PathBuf,
    pub entries: Vec<journal::Entry>,
    /// Ok(entries in the chain) or what is wrong with it; None: no journal there.
    pub verified: Option<Result<u64, String>>,
}

/// `pilot report`.
pub fn run(args: ReportArgs) -> Result<i32> {
    let out = args.html.clone().unwrap_or_else(|| args.dir.join("report.html"));
    write(&args.dir, &out)?;
    println!("{}", out.display());
    Ok(0)
}

/// `DIR/report.html` after `pilot run` and `pilot commit`. The verdict stands either way: a
/// page that cannot be written is said, not a failed run.
pub fn write_into(dir: &Path) {
    write_into_with(dir, None, SpareDot::default())
}

/// `write_into`, with the run's graph as `pilot run` holds it (the same as its graph.json:
/// not read back and parsed again).
pub fn write_into_with(dir: &Path, graph: Option<Graph>, dot: SpareDot) {
    let out = dir.join("report.html");
    match write_with(dir, &out, graph, dot) {
        Ok(()) => eprintln!("  report: {}", out.display()),
        Err(e) => eprintln!("pilot: report.html not written: {} (try `pilot report {}`)", crate::error::one_line(&e), dir.display()),
    }
}

/// Write the report of the run in `dir` to `out`.
pub fn write(dir: &Path, out: &Path) -> Result<()> {
    write_with(dir, out, None, SpareDot::default())
}

fn write_with(dir: &Path, out: &Path, graph: Option<Graph>, dot: SpareDot) -> Result<()> {
    let recorded = load_with(dir, graph)?;
    let marks = layout::Marks::of(&recorded.graph, recorded.verdict.as_ref().map(|v| &v.evaluation.violations[..]).unwrap_or(&[]));
    let drawing = layout::draw_with(&recorded.graph, &marks, dot);
    let page = html::page(&recorded, &drawing, &marks);
    fs::write(out, page).on("writing", out, REPORT).map_err(FileError::usage)?;
    Ok(())
}

pub fn load(dir: &Path) -> Result<Recorded> {
    load_with(dir, None)
}

fn load_with(dir: &Path, graph: Option<Graph>) -> Result<Recorded> {
    let not_a_run = |why: String| UsageError::new(format!("{}: {why}: give a run directory of `pilot run` (or `pilot trace --out`)", dir.display()));
    let dir = fs::canonicalize(dir).map_err(|e| not_a_run(e.to_string()))?;
    let run = RunDir::at(&dir);
    let graph_path = run.file(GRAPH);
    if !graph_path.is_file() {
        return Err(not_a_run("not a run directory (no graph.json)".into()).into());
    }
    let graph = match graph {
        Some(g) => g,
        None => Graph::read(&graph_path).map_err(|e| not_a_run(format!("graph.json: {e}")))?,
    };
    let mut problems = Vec::new();
    let verdict: Option<Verdict> = run.read_optional(&mut problems);
    let evidence = evidence(&run, verdict.as_ref(), &mut problems)?;
    let journal_path = journal::path();
    let journal = Journal {
        entries: journal::entries_for(&journal_path, &dir),
        verified: journal_path.exists().then(|| journal::verify(&journal_path)),
        path: journal_path,
    };
    Ok(Recorded {
        summary: run.read_optional(&mut problems),
        intent: run.read_optional::<Intent>(&mut problems),
        changes: run.read_optional::<Changes>(&mut problems),
        sink: run.read_optional::<SinkLog>(&mut problems),
        fidelity: run.read_optional::<Fidelity>(&mut problems),
        live: live_graph(&run.live(), &mut problems),
        live_summary: run.live().read_optional(&mut problems),
        signed: signed::load(&run, &mut problems),
        verdict,
        graph,
        journal,
        evidence,
        problems,
        dir,
    })
}

/// live/graph.json, after a commit: None when absent; unreadable is a problem the page names.
fn live_graph(live: &RunDir, problems: &mut Vec<String>) -> Option<Graph> {
    let path = live.file(GRAPH);
    if !path.exists() {
        return None;
    }
    Graph::read(&path).map_err(|e| problems.push(format!("live/graph.json could not be read: {e}"))).ok()
}

/// The events.jsonl lines the violations cite.
fn evidence(dir: &RunDir, verdict: Option<&Verdict>, problems: &mut Vec<String>) -> Result<BTreeMap<u64, String>> {
    let mut wanted: Vec<u64> = verdict.iter().flat_map(|v| v.evaluation.violations.iter().flat_map(|x| x.events.iter().copied())).collect();
    wanted.sort();
    wanted.dedup();
    if wanted.len() > MAX_EVIDENCE {
        problems.push(format!("violations cite {} events; the first {MAX_EVIDENCE} are shown", wanted.len()));
        wanted.truncate(MAX_EVIDENCE);
    }
    let mut out = BTreeMap::new();
    let Some(&last) = wanted.last() else { return Ok(out) };
    let path = dir.file(EVENTS);
    let Ok(file) = fs::File::open(&path) else {
        problems.push("events.jsonl is missing: the evidence events cannot be shown".into());
        return Ok(out);
    };
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let n = i as u64 + 1;
        if n > last {
            break;
        }
        if wanted.binary_search(&n).is_ok() {
            out.insert(n, line.with_context(|| format!("reading {}", path.display()))?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        graph::{Edge, Node, SCHEMA, TRACED},
        rundir::{Caught, Change, Containment},
        policy::eval::{Evaluation, GateValues, Verdict as Decision, Violation},
    };

    const EVIL: &str = "/tmp/x\"'><script>alert(1)</script><img src=x onerror=alert(2)>&amp;";

    fn hostile() -> Recorded {
        let node = |id: &str, label: &str, comp: Option<&str>| Node {
            id: id.into(),
            node_type: if id.starts_with("file:") { "file".into() } else { "process".into() },
            label: label.into(),
            component: comp.map(str::to_string),
            ..Default::default()
        };
        let graph = Graph {
            schema: SCHEMA.into(),
            target: EVIL.into(),
            host: EVIL.into(),
            complete: false,
            lost_events: 3,
            nodes: vec![node("process:1:1", EVIL, Some(TRACED)), node(&format!("file:{EVIL}"), EVIL, Some(EVIL))],
            edges: vec![Edge { from: "process:1:1".into(), to: format!("file:{EVIL}").into(), kind: "unlink".into(), count: 1, cross_component: true, component: Some(EVIL.into()), detail: Some(EVIL.into()), events: vec![1], ..Default::default() }],
            ..Default::default()
        };
        let violation = Violation {
            rule: EVIL.into(),
            action: crate::policy::Action::Block,
            severity: 0.9,
            component: Some(EVIL.into()),
            target: EVIL.into(),
            target_id: format!("file:{EVIL}").into(),
            effects: vec!["unlink".into()],
            count: 1,
            bytes: 0,
            why: EVIL.into(),
            edges: vec![["process:1:1".into(), "unlink".into(), format!("file:{EVIL}")]],
            events: vec![1],
            channels: vec![],
        };
        let evaluation = Evaluation {
            verdict: Decision::Block,
            risk: 0.9,
            containment: 0.5,
            affected_components: vec![EVIL.into()],
            components: 2,
            complete: false,
            violations: vec![violation],
            gate_failures: vec![EVIL.into()],
            unjudged: Vec::new(),
            gate: GateValues { max_risk: 0.5, min_containment: 0.0, max_fidelity_error: 0.25, require_complete: true, required_observers: 2 },
            policies: vec![],
            routines: vec![],
            notes: vec![],
        };
        let verdict = Verdict {
            schema: "pilot.verdict/v1".into(),
            pilot_exit: 0,
            evaluation,
            lost_events: 3,
            timed_out: false,
            command: vec![EVIL.into()],
            cwd: EVIL.into(),
            contained_by: Containment { files: EVIL.into(), network: EVIL.into(), unix_sockets: EVIL.into(), signals: EVIL.into(), capabilities_dropped: vec![] },
        };
        Recorded {
            dir: PathBuf::from(EVIL),
            graph,
            summary: None,
            verdict: Some(verdict),
            intent: None,
            changes: Some(Changes { schema: "pilot.changes/v1".into(), changes: vec![Change { path: EVIL.into(), change: "deleted".into(), kind: "file".into(), ..Default::default() }], held_back: vec![] }),
            sink: Some(vec![Caught { proto: "tcp".into(), from: EVIL.into(), bytes: 5, count: 1, first_unix_ms: 0, head: EVIL.into(), ..Default::default() }]),
            fidelity: None,
            live: None,
            live_summary: None,
            journal: Journal { path: PathBuf::from(EVIL), entries: vec![], verified: Some(Err(EVIL.into())) },
            evidence: [(1, format!("{{\"path\":\"{EVIL}\"}}"))].into(),
            signed: Default::default(),
            problems: vec![EVIL.into()],
        }
    }

    /// Whatever a path, a command line or a payload holds, the page stays one page with one script.
    #[test]
    fn recorded_strings_cannot_break_out_of_the_page() {
        let r = hostile();
        let marks = layout::Marks::of(&r.graph, &r.verdict.as_ref().unwrap().evaluation.violations);
        for drawing in [layout::draw_with(&r.graph, &marks, SpareDot::default()), layout::Drawing { svg: layout::fallback(&r.graph, &marks), engine: "built-in".into(), nodes: 2 }] {
            let page = html::page(&r, &drawing, &marks);
            assert_eq!(page.matches("<script").count(), 1, "only the page's own script");
            assert!(!page.contains("<img"), "no element from the data");
            assert!(!page.contains("x\"'>"), "no quote from the data closes an attribute");
            assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "shown as text");
            assert!(page.contains("&amp;amp;"), "an ampersand stays literal");
            assert!(page.contains("INCOMPLETE: 3 events were lost"), "a run that lost events says so at the top");
            assert!(page.contains("class=\"edge k_unlink destructive cross violating\""), "{}", drawing.engine);
        }
    }

    /// 25 violations of one rule: 20 listed, the rest counted on one line, and the graph's link
    /// to a violation not listed still lands (on that line).
    #[test]
    fn many_violations_of_one_rule_are_listed_up_to_twenty() {
        let mut r = hostile();
        let ev = &mut r.verdict.as_mut().unwrap().evaluation;
        let first = ev.violations[0].clone();
        let mut plain = first.clone();
        plain.rule = "live-data".into();
        plain.edges.clear();
        ev.violations = (0..24).map(|_| plain.clone()).chain([first]).collect();
        ev.violations[24].rule = "live-data".into();
        let marks = layout::Marks::of(&r.graph, &r.verdict.as_ref().unwrap().evaluation.violations);
        assert_eq!(marks.violating.values().copied().collect::<Vec<_>>(), vec![24], "the edge's violation is the 25th");
        let drawing = layout::Drawing { svg: layout::fallback(&r.graph, &marks), engine: "built-in".into(), nodes: 2 };
        let page = html::page(&r, &drawing, &marks);
        assert_eq!(page.matches("<li id=\"v").count(), 20, "20 listed");
        assert!(page.contains("<li class=\"violation folded\"><a id=\"v24\"></a><b>live-data</b>: 5 more violation(s) of this rule"), "{page}");
        assert!(page.contains("href=\"#v24\""), "the graph links the violation it marks");
    }
}
