//! Commit's second channel: the live run has no overlay, so the files themselves are the
//! observer. Before `pilot commit` runs the intent live, the state of every path the pilot
//! changed (changes.json) and of every file a live component holds that the pilot touched is
//! recorded (kind, size, mtime, inode, mode, owner, and a SHA-256 of the content up to
//! `filestate::HASH_LIMIT`, 64 MiB; bigger files are compared by size, mtime and inode); after
//! it, again. A live change the pilot did not show, or a pilot change the live run did not
//! make, counts in fidelity.json (`files`).
use std::{collections::BTreeMap, path::Path};

use crate::{
    filestate::{FileState, HASH_LIMIT},
    graph::{Graph, NodeKind, TRACED},
    rundir::{Changes, FileChannel, FileMismatch},
};

/// What was recorded before the live run: path -> (what the pilot did there, its state).
pub struct Watch {
    paths: BTreeMap<String, (Option<String>, FileState)>,
}

impl Watch {
    pub fn before(changes: &Changes, pilot: &Graph) -> Watch {
        let mut paths: BTreeMap<String, (Option<String>, FileState)> = BTreeMap::new();
        for c in &changes.changes {
            paths.insert(c.path.clone(), (Some(c.change.clone()), FileState::default()));
            if let Some(from) = &c.from {
                paths.insert(from.clone(), (Some("renamed away".into()), FileState::default()));
            }
        }
        for e in &pilot.edges {
            let Some(n) = pilot.node(&e.to).filter(|n| n.node_type == NodeKind::File) else { continue };
            let live_held = n.held.is_some() && n.component.as_deref().is_some_and(|c| c != TRACED);
            if let (true, Some(p)) = (live_held, &n.path) {
                paths.entry(p.clone()).or_insert((None, FileState::default()));
            }
        }
        for (path, (_, state)) in paths.iter_mut() {
            *state = capture(path);
        }
        Watch { paths }
    }

    /// Compare with the files after the live run.
    pub fn after(&self) -> FileChannel {
        let mut out = FileChannel { watched: self.paths.len(), hash_limit: HASH_LIMIT, ..Default::default() };
        for (path, (pilot, before)) in &self.paths {
            let now = capture(path);
            let live = changed(before, &now);
            match (pilot, live) {
                (Some(_), Some(_)) | (None, None) => out.agree += 1,
                (None, Some(what)) => out.live_not_shown.push(FileMismatch { path: path.clone(), pilot: "unchanged".into(), live: what }),
                (Some(p), None) => out.pilot_not_made.push(FileMismatch { path: path.clone(), pilot: p.clone(), live: "unchanged".into() }),
            }
        }
        out
    }
}

/// Put the file channel into fidelity.json and print what it found: a live change the pilot
/// did not show means the pilot did not predict the live run (outside the gate); a pilot
/// change the live run did not make is counted (nondeterminism, a race), not gated.
pub fn judge(f: &mut crate::rundir::Fidelity, files: FileChannel) {
    if !files.live_not_shown.is_empty() {
        f.within_gate = false;
    }
    eprintln!(
        "pilot: files: {} watched, {} agree, {} changed live that the pilot did not show, {} the pilot changed that live did not",
        files.watched,
        files.agree,
        files.live_not_shown.len(),
        files.pilot_not_made.len()
    );
    for m in files.live_not_shown.iter().chain(&files.pilot_not_made) {
        eprintln!("  - {}: pilot {}, live {}", m.path, m.pilot, m.live);
    }
    f.files = Some(files);
}

fn capture(path: &str) -> FileState {
    FileState::capture(Path::new(path), HASH_LIMIT).unwrap_or_default()
}

/// How the live run changed a path, if it did. A new mtime alone is a change only where no
/// content hash says more (files over the limit).
fn changed(before: &FileState, now: &FileState) -> Option<String> {
    let hashed = before.sha256.is_some() && now.sha256.is_some();
    let what: Vec<String> = now.drifted_from(before).into_iter().filter(|w| !(hashed && w.starts_with("modified (mtime)"))).collect();
    (!what.is_empty()).then(|| what.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rundir::Change;

    #[test]
    fn a_live_change_the_pilot_did_not_show_and_the_reverse_are_counted() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        for p in [&a, &b, &c] {
            std::fs::write(p, "before").unwrap();
        }
        let change = |p: &Path| Change { path: p.display().to_string(), change: "modified".into(), kind: "file".into(), ..Default::default() };
        let changes = Changes { schema: String::new(), changes: vec![change(&a), change(&b)], held_back: vec![] };
        let mut g = Graph::default();
        g.push_node(crate::graph::Node {
            id: crate::graph::NodeId::file(&c.display().to_string()),
            node_type: NodeKind::File,
            path: Some(c.display().to_string()),
            component: Some("db".into()),
            held: Some(crate::graph::Hold::Open),
            ..Default::default()
        });
        g.edges.push(crate::graph::Edge { to: crate::graph::NodeId::file(&c.display().to_string()), kind: crate::graph::EdgeKind::Utime, count: 1, ..Default::default() });
        let w = Watch::before(&changes, &g);
        std::fs::write(&a, "after").unwrap(); // the pilot showed it: agree
        std::fs::write(&c, "changed live").unwrap(); // the pilot did not show it
        let f = w.after();
        assert_eq!((f.watched, f.agree), (3, 1));
        assert_eq!(f.live_not_shown.len(), 1);
        assert!(f.live_not_shown[0].path.ends_with("/c") && f.live_not_shown[0].live.contains("content changed"), "{f:?}");
        assert_eq!(f.pilot_not_made[0].path, b.display().to_string());
    }
}
