//! The run directory: a stable interface (runbooks, CI gates and `pilot report` read it), so
//! its file names, schema ids and types live here, with one way to read and write each.
//! `pilot run` and `pilot trace --out` write it; `commit`, `check`, `report`, `diff` and the
//! daemon read it. This module depends on the types it stores (graph, policy evaluation) and on
//! nothing that reads it.
//!
//! | file | type | written by |
//! |---|---|---|
//! | `intent.json` | [`Intent`] | run |
//! | `events.jsonl` | one [`crate::event::Event`] per line | run, trace (`output.rs`) |
//! | `summary.json` | [`Summary`] | run, trace |
//! | `graph.json`, `graph.dot` | [`crate::graph::Graph`] | run, trace |
//! | `changes.json` | [`Changes`] | run, diff |
//! | `sink.json` | [`SinkLog`] | run |
//! | `verdict.json` | [`Verdict`] | run |
//! | `snapshot.json` | [`HostSnapshot`] | run |
//! | `decision.json` | [`Decision`] (signed by the run key) | run |
//! | `approvals/<fingerprint>.json` | [`Approval`] | approve |
//! | `drift.json` | [`Drift`] | commit |
//! | `rollback/manifest.json`, `rollback/blobs/`, `rollback/restored.json` | [`Manifest`], [`Restored`] | commit, rollback |
//! | `fidelity.json` | [`Fidelity`] | commit |
//! | `live/` | a run directory of the live run | commit |
//! | `mounts.json`, `upper/`, `stdout.log`, `stderr.log`, `sandbox-error.txt` | the sandbox's | run |
//! | `report.html` | | report |
mod changes;
mod decision;
mod drift;
mod fidelity;
mod intent;
mod rollback;
mod sink;
mod snapshot;
mod summary;
mod verdict;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Serialize, de::DeserializeOwned};

pub use changes::{CHANGES_SCHEMA, Change, Changes, HeldBack};
pub use decision::{APPROVAL_SCHEMA, Approval, ApprovalBody, DECISION_SCHEMA, Decision, DecisionBody, Stamp, boot_id};
pub use drift::{DRIFT_SCHEMA, Drift, DriftItem};
pub use rollback::{Entry as RollbackEntry, Manifest, RESTORED_SCHEMA, ROLLBACK_SCHEMA, Restored};
pub use snapshot::{HostSnapshot, SNAPSHOT_SCHEMA, Target};
pub use fidelity::{Divergence, FIDELITY_SCHEMA, FileChannel, FileMismatch, Fidelity};
pub use intent::{INTENT_SCHEMA, Intent};
pub use sink::{Access, Caught, Category, Disposition, Rpc, SinkLog};
pub use summary::{SUMMARY_SCHEMA, Summary};
pub use verdict::{Containment, VERDICT_SCHEMA, Verdict};

use crate::{
    error::{FileError, OnPath, RUN_DIR, UsageError},
    graph::Graph,
};

pub const INTENT: &str = "intent.json";
pub const EVENTS: &str = "events.jsonl";
pub const SUMMARY: &str = "summary.json";
pub const GRAPH: &str = "graph.json";
pub const GRAPH_DOT: &str = "graph.dot";
pub const CHANGES: &str = "changes.json";
pub const SINK: &str = "sink.json";
pub const VERDICT: &str = "verdict.json";
pub const FIDELITY: &str = "fidelity.json";
pub const REPORT: &str = "report.html";
pub const MOUNTS: &str = "mounts.json";
pub const UPPER: &str = "upper";
pub const WORK: &str = "work";
pub const ROOT: &str = "root";
pub const LIVE: &str = "live";
pub const STDOUT_LOG: &str = "stdout.log";
pub const STDERR_LOG: &str = "stderr.log";
pub const SANDBOX_ERROR: &str = "sandbox-error.txt";
pub const SNAPSHOT: &str = "snapshot.json";
pub const DECISION: &str = "decision.json";
pub const APPROVALS: &str = "approvals";
pub const DRIFT: &str = "drift.json";
pub const ROLLBACK: &str = "rollback";
pub const ROLLBACK_MANIFEST: &str = "rollback/manifest.json";
pub const ROLLBACK_BLOBS: &str = "rollback/blobs";
pub const ROLLBACK_RESTORED: &str = "rollback/restored.json";

/// The files a decision binds by hash: an edit of any breaks it (and every approval of it).
pub const BOUND: [&str; 8] = [INTENT, SNAPSHOT, EVENTS, SUMMARY, GRAPH, CHANGES, SINK, VERDICT];

/// A JSON file of the run directory: its name and type.
pub trait RunFile: Serialize + DeserializeOwned {
    const NAME: &'static str;
}

/// Each JSON file of the run directory: its type and its name.
macro_rules! run_files {
    ($($ty:ty => $name:expr),* $(,)?) => {
        $(impl RunFile for $ty {
            const NAME: &'static str = $name;
        })*
    };
}

run_files! {
    Intent => INTENT,
    Summary => SUMMARY,
    Changes => CHANGES,
    SinkLog => SINK,
    Verdict => VERDICT,
    Fidelity => FIDELITY,
    HostSnapshot => SNAPSHOT,
    Decision => DECISION,
    Drift => DRIFT,
    Manifest => ROLLBACK_MANIFEST,
    Restored => ROLLBACK_RESTORED,
}

/// A run directory on disk.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
    /// How its files are named to the reader: `live/` for the live run's.
    prefix: &'static str,
}

impl RunDir {
    /// Create (with parents) and take the absolute path.
    pub fn create(path: &Path) -> Result<RunDir> {
        fs::create_dir_all(path).on("creating", path, RUN_DIR).map_err(FileError::usage)?;
        let path = fs::canonicalize(path).on("reading", path, RUN_DIR)?;
        Ok(RunDir { path, prefix: "" })
    }

    /// An existing run directory; bad input when it is not one.
    pub fn open(path: &Path) -> Result<RunDir, UsageError> {
        let abs = fs::canonicalize(path)
            .map_err(|e| UsageError::new(format!("{}: {e}: give the run directory of a `pilot run`", path.display())))?;
        Ok(RunDir { path: abs, prefix: "" })
    }

    /// A path taken as it is (readers that name the missing file themselves).
    pub fn at(path: &Path) -> RunDir {
        RunDir { path: path.to_path_buf(), prefix: "" }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `live/`: the run directory of the live run `pilot commit` made.
    pub fn live(&self) -> RunDir {
        RunDir { path: self.path.join(LIVE), prefix: "live/" }
    }

    /// A required file: missing or unreadable is bad input naming it.
    pub fn read<T: RunFile>(&self) -> Result<T> {
        let path = self.file(T::NAME);
        let text = fs::read_to_string(&path)
            .map_err(|e| UsageError::new(format!("{}: {e}: give the run directory of a `pilot run`", path.display())))?;
        parse(&path, &text)
    }

    /// An optional file: None when absent; present but unreadable is a problem to name.
    pub fn read_optional<T: RunFile>(&self, problems: &mut Vec<String>) -> Option<T> {
        let path = self.file(T::NAME);
        let text = fs::read_to_string(&path).ok()?;
        serde_json::from_str(&text).map_err(|e| problems.push(format!("{}{} could not be read: {e}", self.prefix, T::NAME))).ok()
    }

    /// graph.json, its schema checked.
    pub fn graph(&self) -> Result<Graph> {
        let path = self.file(GRAPH);
        Graph::read(&path).map_err(|e| {
            UsageError::new(format!("{}: give a run directory of `pilot run` or `pilot trace --out`", crate::error::one_line(&e))).into()
        })
    }

    /// Write a file as pretty JSON with a final newline (every JSON file of the directory).
    pub fn write<T: RunFile>(&self, value: &T) -> Result<()> {
        // Streamed: snapshot.json and changes.json are megabytes in a big run.
        self.make_parent(T::NAME)?;
        Ok(crate::output::write_whole_with(&self.path, T::NAME, |w| {
            serde_json::to_writer_pretty(&mut *w, value).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })?)
    }

    fn make_parent(&self, name: &str) -> Result<()> {
        let path = self.file(name);
        if let Some(parent) = path.parent().filter(|p| !p.exists()) {
            fs::create_dir_all(parent).on("creating", parent, RUN_DIR)?;
        }
        Ok(())
    }

    /// Written whole or not at all: a file cut short by a full disk is removed, and the
    /// error says what the directory kept.
    pub fn write_text(&self, name: &str, text: &str) -> Result<()> {
        self.make_parent(name)?;
        Ok(crate::output::write_whole(&self.path, name, text)?)
    }
}

impl RunDir {
    /// `approvals/*.json`, each read or the reason it could not be, in name order.
    pub fn approvals(&self) -> Vec<(PathBuf, Result<Approval, String>)> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.file(APPROVALS))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect())
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let read = fs::read_to_string(&p).map_err(|e| e.to_string()).and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
                (p, read)
            })
            .collect()
    }

    /// Write `approvals/NAME.json`.
    pub fn write_approval(&self, name: &str, a: &Approval) -> Result<PathBuf> {
        let rel = format!("{APPROVALS}/{name}.json");
        self.write_text(&rel, &pretty(a))?;
        Ok(self.file(&rel))
    }
}

/// The JSON text of a run-directory file.
pub fn pretty<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("run-directory types serialize");
    s.push('\n');
    s
}

fn parse<T: RunFile>(path: &Path, text: &str) -> Result<T> {
    let value: T = serde_json::from_str(text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(value)
}
