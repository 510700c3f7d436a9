//! `pilot commit DIR`: run a pilot's intent live, traced the same way, and measure how far the
//! live effect graph is from the pilot's (fidelity, seed essay eq. 3). Refuses a blocked pilot
//! unless `--force`, which the journal records.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    cli::{CommitArgs, TraceArgs},
    error::UsageError,
    graph::{Graph, TRACED},
    journal, run,
    trace::{self, Launch},
};

/// What a pilot was asked to do, recorded by `pilot run` so `commit` replays exactly that.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Intent {
    pub schema: String,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub uid: u32,
    pub host: String,
    pub policies: Vec<crate::policy::eval::PolicyRef>,
    pub pilot_sha256: String,
}

impl Intent {
    pub fn capture(argv: &[String], policies: &[crate::policy::Loaded]) -> Result<Intent> {
        Ok(Intent {
            schema: "pilot.intent/v1".into(),
            argv: argv.to_vec(),
            cwd: std::env::current_dir()?,
            env: std::env::vars().collect(),
            uid: unsafe { libc::getuid() },
            host: fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().into(),
            policies: policies.iter().map(|p| crate::policy::eval::PolicyRef { source: p.source.clone(), sha256: p.sha256.clone() }).collect(),
            pilot_sha256: fs::read("/proc/self/exe").map(|b| crate::policy::sha256_hex(&b)).unwrap_or_default(),
        })
    }

    /// The journal's view: no environment values (they may hold secrets), only their hash.
    pub fn for_journal(&self) -> serde_json::Value {
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        serde_json::json!({
            "argv": self.argv,
            "cwd": self.cwd,
            "uid": self.uid,
            "host": self.host,
            "policies": self.policies,
            "pilot_sha256": self.pilot_sha256,
            "env_sha256": crate::policy::sha256_hex(env.join("\n").as_bytes()),
        })
    }
}

pub fn run(args: CommitArgs) -> Result<i32> {
    let dir = fs::canonicalize(&args.dir)
        .map_err(|e| UsageError::new(format!("{}: {e}: give the run directory of a `pilot run`", args.dir.display())))?;
    let intent: Intent = read_json(&dir.join("intent.json"))?;
    let verdict: serde_json::Value = read_json(&dir.join("verdict.json"))?;
    let pilot_verdict = verdict["verdict"].as_str().unwrap_or("unknown").to_string();
    if pilot_verdict == "block" || pilot_verdict == "unknown" {
        if !args.force {
            eprintln!(
                "pilot: refusing to commit: the pilot's verdict was {pilot_verdict} (see {}/verdict.json). \
                 `pilot commit --force` overrides it, and the journal records that.",
                dir.display()
            );
            return Ok(run::EXIT_BLOCKED);
        }
        journal::append(journal::Record {
            kind: "force",
            run_dir: &dir,
            intent: intent.for_journal(),
            outputs: &["verdict.json"],
            verdict: Some(&pilot_verdict),
            note: Some(format!("commit forced over a {pilot_verdict} verdict by uid {}", unsafe { libc::getuid() })),
        })?;
    }
    let live = dir.join("live");
    if live.join("graph.json").exists() {
        return Err(UsageError::new(format!("{} was already committed ({} exists)", dir.display(), live.display())).into());
    }
    eprintln!("pilot: committing `{}` live (verdict {pilot_verdict})", intent.argv.join(" "));
    let trace_args = TraceArgs {
        out: Some(live.clone()),
        verbose: args.verbose,
        pid: None,
        cgroup: None,
        events: Default::default(),
        command: intent.argv.clone(),
    };
    let status = trace::run_with(trace_args, Launch { cwd: Some(intent.cwd.clone()), env: Some(intent.env.clone()) })?;
    let max = verdict["gate"]["max_fidelity_error"].as_f64().unwrap_or(1.0);
    let pilot = Graph::read(&dir.join("graph.json"))?;
    let live_graph = Graph::read(&live.join("graph.json"))?;
    let fidelity = compare(&pilot, &live_graph, &dir, max);
    fs::write(dir.join("fidelity.json"), serde_json::to_string_pretty(&fidelity)? + "\n")?;
    eprintln!(
        "pilot: fidelity error {:.3} (gate max {:.3}): {}; {} edges only in the pilot, {} only live, {} diverging",
        fidelity.error,
        max,
        if fidelity.within_gate { "within the gate" } else { "OVER THE GATE: the pilot did not predict the live run" },
        fidelity.only_pilot.len(),
        fidelity.only_live.len(),
        fidelity.diverging.len()
    );
    journal::append(journal::Record {
        kind: "commit",
        run_dir: &dir,
        intent: intent.for_journal(),
        outputs: &["live/events.jsonl", "live/graph.json", "fidelity.json"],
        verdict: Some(if fidelity.within_gate { "fidelity-ok" } else { "fidelity-over-gate" }),
        note: Some(format!("live exit {status}")),
    })?;
    crate::report::write_into(&dir);
    Ok(if status == 0 { 0 } else { run::EXIT_COMMAND_FAILED })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path)
        .map_err(|e| UsageError::new(format!("{}: {e}: give the run directory of a `pilot run`", path.display())))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Fidelity {
    pub schema: String,
    /// 0: the live run did exactly what the pilot did; 1: nothing in common.
    pub error: f64,
    pub max_fidelity_error: f64,
    pub within_gate: bool,
    pub edges_pilot: usize,
    pub edges_live: usize,
    pub only_pilot: Vec<String>,
    pub only_live: Vec<String>,
    pub diverging: Vec<Divergence>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Divergence {
    pub edge: String,
    pub pilot_count: u64,
    pub live_count: u64,
    pub pilot_bytes: u64,
    pub live_bytes: u64,
}

/// Distance between the pilot's and the live graph: edges are matched by (who, kind, what),
/// where who is the process's command line (pids differ between runs) and what is the path,
/// endpoint or process it touched. The sink's redirect is invisible here: the trace records
/// the destination the program asked for, so pilot and live network edges compare as equal.
///
/// error = (|only pilot| + |only live| + sum of divergence over common edges) / |all edges|,
/// divergence = max(relative count difference, relative byte difference), each in [0, 1].
pub fn compare(pilot: &Graph, live: &Graph, run_dir: &Path, max: f64) -> Fidelity {
    let p = keyed(pilot, run_dir);
    let l = keyed(live, run_dir);
    let all: BTreeSet<&String> = p.keys().chain(l.keys()).collect();
    let only_pilot: Vec<String> = p.keys().filter(|k| !l.contains_key(*k)).cloned().collect();
    let only_live: Vec<String> = l.keys().filter(|k| !p.contains_key(*k)).cloned().collect();
    let mut diverging = Vec::new();
    let mut sum = (only_pilot.len() + only_live.len()) as f64;
    for (k, (pc, pb)) in &p {
        let Some((lc, lb)) = l.get(k) else { continue };
        let rel = |a: u64, b: u64| if a.max(b) == 0 { 0.0 } else { a.abs_diff(b) as f64 / a.max(b) as f64 };
        let d = rel(*pc, *lc).max(rel(*pb, *lb));
        if d > 0.0 {
            sum += d;
            diverging.push(Divergence { edge: k.clone(), pilot_count: *pc, live_count: *lc, pilot_bytes: *pb, live_bytes: *lb });
        }
    }
    let error = if all.is_empty() { 0.0 } else { sum / all.len() as f64 };
    Fidelity {
        schema: "pilot.fidelity/v1".into(),
        error,
        max_fidelity_error: max,
        within_gate: error <= max,
        edges_pilot: p.len(),
        edges_live: l.len(),
        only_pilot,
        only_live,
        diverging,
    }
}

/// Edge key -> (count that took effect, bytes). Leaves out what only says where output went
/// (the run directory's logs, terminals, pipes: a pipe's inode differs between runs).
pub fn keyed(g: &Graph, run_dir: &Path) -> BTreeMap<String, (u64, u64)> {
    let label = |id: &str| -> String {
        match g.node(id) {
            Some(n) if n.node_type == "process" && n.component.as_deref() == Some(TRACED) => {
                format!("[{}]", n.argv.as_ref().map(|a| a.join(" ")).unwrap_or_else(|| n.label.clone()))
            }
            Some(n) => n.label.clone(),
            None => id.to_string(),
        }
    };
    let run_dir = run_dir.display().to_string();
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in &g.edges {
        let target = label(&e.to);
        if target.starts_with(&run_dir) || is_output_channel(&target) {
            continue;
        }
        let key = format!("{} {} {}", label(&e.from), e.kind, without_pids(&target));
        let v = out.entry(key).or_default();
        // A signal the pilot's PID namespace stopped counts as sent, as the gate counts it.
        v.0 += g.node(&e.to).map_or(e.count.saturating_sub(e.failed), |n| crate::policy::eval::effective(e, n));
        v.1 += e.bytes;
    }
    out
}

/// Where a command's output goes, or its own process state, rather than what it changes.
/// (/proc is read-only in a pilot: a JVM's write to /proc/self/coredump_filter fails there.)
fn is_output_channel(target: &str) -> bool {
    target.starts_with("pipe:[")
        || target.starts_with("/dev/pts/")
        || target.starts_with("/proc/self/")
        || target.starts_with("/proc/thread-self/")
        || ["/dev/null", "/dev/tty", "/dev/console"].contains(&target)
}

/// A path with its all-digit components as `N`: pids differ between the pilot (its own PID
/// namespace) and the live run, e.g. a JVM's /tmp/hsperfdata_root/<pid>.
fn without_pids(path: &str) -> String {
    if !path.starts_with('/') {
        return path.to_string();
    }
    path.split('/').map(|c| if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) { "N" } else { c }).collect::<Vec<_>>().join("/")
}
