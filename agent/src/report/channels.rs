//! Issue 15: the report's blind-spot section: what the overlay, the sink and the cgroup saw
//! that no traced syscall explains, and whether io_uring was in use.
use std::fmt::Write as _;

use super::{Recorded, html::esc};

pub fn section(out: &mut String, r: &Recorded) {
    out.push_str("<section id=\"blind-spots\"><h2>Blind spots</h2>\n");
    let Some(c) = &r.graph.channels else {
        out.push_str("<p>No second channel watched this run (only `pilot run` has an overlay, a sink and a cgroup).</p></section>\n");
        return;
    };
    if !c.io_uring.is_empty() {
        let _ = writeln!(out, "<p class=\"bad\" id=\"io-uring\">{} ({}).</p>", esc(crate::graph::channels::IO_URING_NOTE), esc(&c.io_uring.join(", ")));
    }
    if c.blind_spots.is_empty() {
        let names: Vec<&str> = c.watched_by.iter().map(|x| x.as_str()).collect();
        let _ = writeln!(out, "<p>None: the trace explains everything the {} saw.</p></section>", esc(&names.join(", ")));
        return;
    }
    let _ = writeln!(
        out,
        "<p class=\"bad\"><b>{}</b> effect(s) seen by another channel and by no traced syscall: judged like any effect, and blocked on anything a live component holds.</p>",
        c.blind_spots.len()
    );
    out.push_str("<table id=\"blind-spot-table\"><thead><tr><th>channel</th><th>what it saw</th><th>where</th><th>effect</th><th>owner</th></tr></thead><tbody>\n");
    for b in &c.blind_spots {
        let owner = match (&b.component, b.held) {
            (Some(c), Some(h)) => format!("{c} ({})", h.verb()),
            (Some(c), None) => c.clone(),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "<tr class=\"blind\"><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(b.channel.map_or("?", |c| c.as_str())),
            esc(&b.change),
            esc(&b.path),
            esc(&b.effect.map(|e| e.to_string()).unwrap_or_default()),
            esc(&owner)
        );
    }
    out.push_str("</tbody></table></section>\n");
}

/// The pilot-vs-live section's file channel (fidelity.json `files`).
pub fn files(out: &mut String, f: &crate::rundir::Fidelity) {
    let Some(c) = &f.files else { return };
    let bad = !c.live_not_shown.is_empty();
    let _ = writeln!(
        out,
        "<p id=\"files-channel\" class=\"{}\">The files as the second channel ({} watched, content hashed up to {} MiB): {} agree, <b>{}</b> changed live that the pilot did not show, {} the pilot changed that live did not.</p>",
        if bad { "bad" } else { "ok" },
        c.watched,
        c.hash_limit >> 20,
        c.agree,
        c.live_not_shown.len(),
        c.pilot_not_made.len()
    );
    if c.live_not_shown.is_empty() && c.pilot_not_made.is_empty() {
        return;
    }
    out.push_str("<table id=\"files-mismatch\"><thead><tr><th>path</th><th>pilot</th><th>live</th></tr></thead><tbody>\n");
    for m in c.live_not_shown.iter().chain(&c.pilot_not_made) {
        let _ = writeln!(out, "<tr class=\"diverges\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>", esc(&m.path), esc(&m.pilot), esc(&m.live));
    }
    out.push_str("</tbody></table>\n");
}
