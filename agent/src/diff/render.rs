//! `pilot diff` views: a list for the terminal, or changes.json.
use std::fmt::Write as _;

use super::Changes;

pub fn json(c: &Changes) -> String {
    serde_json::to_string_pretty(c).expect("changes serialize") + "\n"
}

pub fn text(c: &Changes) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "changes the pilot made (kept in its overlay; production untouched): {}", c.changes.len());
    for ch in &c.changes {
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
