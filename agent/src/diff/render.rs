//! `pilot diff` views: a list for the terminal, or changes.json.
use std::fmt::Write as _;

use foldhash::HashMap;

use super::Changes;
use crate::graph::aggregate::Aggregate;

pub fn json(c: &Changes) -> String {
    serde_json::to_string_pretty(c).expect("changes serialize") + "\n"
}

pub fn text(c: &Changes) -> String {
    text_folded(c, &[])
}

/// `text`, with each directory tree of `trees` (graph.json's aggregates) that the run created
/// or deleted wholesale as one line with counts instead of a line per file: what `pilot run`
/// prints (`-v` passes no trees, so every change is listed).
pub fn text_folded(c: &Changes, trees: &[Aggregate]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "changes the pilot made (kept in its overlay; production untouched): {}", c.changes.len());
    let roots: HashMap<&str, usize> = trees.iter().enumerate().map(|(i, a)| (a.path.as_str(), i)).collect();
    // Per tree: (directories, others) folded into its line.
    let mut folded: Vec<(u64, u64)> = vec![(0, 0); trees.len()];
    let tree_of = |ch: &super::Change| -> Option<usize> {
        if roots.is_empty() || !matches!(ch.change.as_str(), "created" | "deleted") {
            return None;
        }
        let t = crate::graph::aggregate::root_of(&ch.path, &roots)?;
        let how = &trees[t].how;
        (how.as_str() == if ch.change == "created" { "created" } else { "deleted" }).then_some(t)
    };
    for ch in &c.changes {
        if let Some(t) = tree_of(ch) {
            let f = &mut folded[t];
            if ch.kind == "dir" { f.0 += 1 } else { f.1 += 1 }
            continue;
        }
        let mark = match ch.change.as_str() {
            "created" => '+',
            "deleted" => '-',
            "renamed" => '>',
            "replaced" => '!',
            _ => '~',
        };
        let mut line = format!("  {mark} {:<9} {:<7} {}", ch.change, ch.kind, ch.path);
        let what = detail(ch);
        if !what.is_empty() {
            let _ = write!(line, "  ({what})");
        }
        if let Some(t) = &ch.target {
            let _ = write!(line, " -> {t}");
        }
        let _ = writeln!(out, "{line}");
    }
    for (a, (dirs, others)) in trees.iter().zip(&folded).filter(|(_, f)| f.0 + f.1 > 0) {
        let mark = if a.how == "created" { '+' } else { '-' };
        let _ = writeln!(out, "  {mark} {:<9} {:<7} {}/  ({dirs} directories, {others} files and others; `pilot diff` lists each)", a.how, "tree", a.path);
    }
    if !c.held_back.is_empty() {
        let _ = writeln!(out, "changes the live run would make that the sandbox held back or refused (not made): {}", c.held_back.len());
        for h in &c.held_back {
            let value = h.value.as_deref().map(|v| format!(" -> {v}")).unwrap_or_default();
            let _ = writeln!(out, "  ! {:<11} {}{value}  ({}, by {} {}, events.jsonl line {})", h.kind, h.target, h.how, h.pid, h.comm, h.event);
        }
    }
    out
}

/// What else there is to say about a change: where it was renamed from, what changed.
pub fn detail(ch: &super::Change) -> String {
    match ch.change.as_str() {
        "created" | "deleted" => String::new(),
        "renamed" => format!("from {}", ch.from.as_deref().unwrap_or("?")),
        "replaced" => "directory replaced: its old contents are gone".into(),
        "metadata" => metadata(ch),
        _ => match (ch.live_size, ch.size) {
            (Some(a), Some(b)) => format!("content, {a} -> {b} bytes"),
            _ => "content".into(),
        },
    }
}

fn metadata(ch: &super::Change) -> String {
    let mut parts = Vec::new();
    if ch.mode != ch.live_mode {
        parts.push(format!("mode {} -> {}", ch.live_mode.as_deref().unwrap_or("?"), ch.mode.as_deref().unwrap_or("?")));
    }
    if !ch.xattrs.is_empty() {
        parts.push(format!("xattrs {}", ch.xattrs.join(",")));
    }
    if ch.owner != ch.live_owner {
        parts.push(format!("owner {} -> {}", ch.live_owner.as_deref().unwrap_or("?"), ch.owner.as_deref().unwrap_or("?")));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rundir::Change;

    fn change(path: &str, how: &str, kind: &str) -> Change {
        Change { path: path.into(), change: how.into(), kind: kind.into(), ..Default::default() }
    }

    #[test]
    fn a_tree_created_or_deleted_wholesale_is_one_line() {
        let mut changes = vec![change("/x/new", "created", "dir"), change("/x/new/d", "created", "dir")];
        changes.extend((0..30).map(|i| change(&format!("/x/new/d/f{i}"), "created", "file")));
        changes.extend((0..3).map(|i| change(&format!("/x/gone/f{i}"), "deleted", "file")));
        changes.push(change("/x/new/d/f0", "modified", "file"));
        changes.push(change("/x/other", "created", "file"));
        let c = Changes { schema: String::new(), changes, held_back: Vec::new() };
        let trees = [
            Aggregate { path: "/x/new".into(), how: "created".into(), ..Default::default() },
            Aggregate { path: "/x/gone".into(), how: "deleted".into(), ..Default::default() },
        ];
        let text = text_folded(&c, &trees);
        assert!(text.starts_with("changes the pilot made (kept in its overlay; production untouched): 37\n"), "{text}");
        assert!(text.contains("  + created   tree    /x/new/  (2 directories, 30 files and others; `pilot diff` lists each)\n"), "{text}");
        assert!(text.contains("  - deleted   tree    /x/gone/  (0 directories, 3 files and others;"), "{text}");
        assert!(text.contains("  ~ modified  file    /x/new/d/f0"), "a change other than the tree's own stays listed: {text}");
        assert!(text.contains("  + created   file    /x/other\n"), "{text}");
        assert_eq!(text.lines().count(), 5, "{text}");
        // No trees (`-v`, `pilot diff`): every change listed.
        assert_eq!(text_folded(&c, &[]).lines().count(), 38);
        assert_eq!(text_folded(&c, &[]), super::text(&c));
    }
}
