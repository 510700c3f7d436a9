//! The page's "Decision" section: decision.json's hashes and signature (verified now), each
//! approval (verified now), the drift check of the commit, and the rollback manifest.
use std::fmt::Write as _;

use super::html::esc;
use crate::{
    decision::{self, Checked},
    keys,
    rundir::{Approval, Drift, Manifest, Restored, RunDir},
};

/// What the run directory holds of the signed pipeline.
#[derive(Default)]
pub struct Signed {
    pub decision: Option<Checked>,
    /// (file, approval, verdict on it now).
    pub approvals: Vec<(String, Option<Approval>, Result<(), String>)>,
    pub drift: Option<Drift>,
    pub rollback: Option<Manifest>,
    pub rollback_verifies: Option<Result<(), String>>,
    pub restored: Option<Restored>,
}

pub fn load(run: &RunDir, problems: &mut Vec<String>) -> Signed {
    // Integrity and signature; who signed is shown (the page may be written on another host).
    let decision = decision::check(run, None).unwrap_or_else(|e| {
        problems.push(format!("decision.json could not be read: {}", crate::error::one_line(&e)));
        None
    });
    let run_key = keys::run_public();
    let approvals = run
        .approvals()
        .into_iter()
        .map(|(path, read)| {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            match read {
                Err(e) => (file, None, Err(format!("not an approval: {e}"))),
                Ok(a) => {
                    let status = approval_status(&a, decision.as_ref(), run_key.as_ref());
                    (file, Some(a), status)
                }
            }
        })
        .collect();
    Signed {
        decision,
        approvals,
        drift: run.read_optional(problems),
        rollback: run.read_optional(problems),
        rollback_verifies: crate::rollback::manifest_verifies(run),
        restored: run.read_optional(problems),
    }
}

fn approval_status(a: &Approval, d: Option<&Checked>, run_key: Option<&ed25519_dalek::VerifyingKey>) -> Result<(), String> {
    let key = keys::parse_literal(&a.body.approver).ok_or("no valid approver key")?;
    if !keys::verify(&key, keys::APPROVAL, &a.body.canonical(), &a.signature) {
        return Err("signature does not verify".into());
    }
    if Some(&key) == run_key {
        return Err("signed by the run key: does not count".into());
    }
    match d {
        Some(d) if d.sha256 == a.body.decision_sha256 => Ok(()),
        _ => Err("approves another decision: does not count".into()),
    }
}

pub fn section(out: &mut String, s: &Signed) {
    out.push_str("<section id=\"decision\"><h2>Decision, approvals, drift, rollback</h2>\n");
    decision_part(out, s);
    approvals_part(out, s);
    drift_part(out, s);
    rollback_part(out, s);
    out.push_str("</section>\n");
}

fn decision_part(out: &mut String, s: &Signed) {
    let Some(c) = &s.decision else {
        out.push_str("<p>No decision.json: a `pilot trace`, or a pilot from before signed decisions.</p>\n");
        return;
    };
    let d = &c.decision.body;
    let signer = c.signer.map(|k| keys::fingerprint(&k)).unwrap_or_else(|| "?".into());
    if c.problems.is_empty() {
        let _ = writeln!(
            out,
            "<p id=\"decision-status\" class=\"ok\">Decision <code>{}</code> ({}) verified: signed by run key <code>{}</code>, every bound file as signed.</p>",
            esc(&c.sha256[..16]),
            esc(&d.verdict),
            esc(&signer)
        );
    } else {
        let _ = writeln!(out, "<p id=\"decision-status\" class=\"bad\">Decision <code>{}</code> does NOT verify:</p><ul>", esc(&c.sha256[..16]));
        for p in &c.problems {
            let _ = writeln!(out, "<li class=\"bad\">{}</li>", esc(p));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<table id=\"decision-files\" class=\"facts\">\n");
    for (file, h) in &d.files {
        let _ = writeln!(out, "<tr><td>{}</td><td><code>sha256 {}</code></td></tr>", esc(file), esc(h));
    }
    for p in &d.policies {
        let v = p.version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default();
        let signed = p.signed_by.as_deref().map(|k| format!(", signed by {k}")).unwrap_or_default();
        let _ = writeln!(out, "<tr><td>policy {}{}</td><td><code>sha256 {}</code>{}</td></tr>", esc(&p.source), esc(&v), esc(&p.sha256), esc(&signed));
    }
    let _ = writeln!(out, "<tr><td>pilot binary</td><td><code>sha256 {}</code></td></tr>", esc(&d.pilot_sha256));
    let _ = writeln!(
        out,
        "<tr><td>snapshot taken</td><td>{} UTC, boot clock {} ns (boot {})</td></tr>",
        super::html::utc(d.snapshot_taken.wall_unix_ms as u128),
        d.snapshot_taken.boottime_ns,
        esc(&d.snapshot_taken.boot_id)
    );
    let _ = writeln!(out, "<tr><td>decided</td><td>{} UTC, boot clock {} ns</td></tr>", super::html::utc(d.decided.wall_unix_ms as u128), d.decided.boottime_ns);
    out.push_str("</table>\n");
}

fn approvals_part(out: &mut String, s: &Signed) {
    if s.approvals.is_empty() {
        out.push_str("<p id=\"approvals\">No approvals (<code>pilot approve DIR --key FILE</code>).</p>\n");
        return;
    }
    out.push_str("<table id=\"approvals\"><thead><tr><th>approver</th><th>key</th><th>when (UTC)</th><th>note</th><th>verified now</th></tr></thead><tbody>\n");
    for (file, a, status) in &s.approvals {
        let (name, key, when, note) = match a {
            Some(a) => (
                a.body.approver_name.clone(),
                keys::parse_literal(&a.body.approver).map(|k| keys::fingerprint(&k)).unwrap_or_default(),
                super::html::utc(a.body.approved.wall_unix_ms as u128),
                a.body.note.clone().unwrap_or_default(),
            ),
            None => (file.clone(), String::new(), String::new(), String::new()),
        };
        let (class, text) = match status {
            Ok(()) => ("ok", "valid, of this decision".to_string()),
            Err(e) => ("bad", e.clone()),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&name),
            esc(&key),
            esc(&when),
            esc(&note),
            esc(&text)
        );
    }
    out.push_str("</tbody></table>\n");
}

fn drift_part(out: &mut String, s: &Signed) {
    let Some(d) = &s.drift else {
        out.push_str("<p id=\"drift\">No drift check yet (<code>pilot commit</code> makes one).</p>\n");
        return;
    };
    let age = d.age_ms.map(|a| format!("{:.1} s", a as f64 / 1000.0)).unwrap_or_else(|| "unknown (rebooted since)".into());
    let verdict = if d.refusals.is_empty() {
        "no drift that matters: the commit went ahead".to_string()
    } else if d.forced {
        "drifted: committed anyway with --force (journaled)".to_string()
    } else {
        "drifted: the commit was refused".to_string()
    };
    let _ = writeln!(
        out,
        "<p id=\"drift\" class=\"{}\">Drift check at {} UTC: pilot {age} old (max_age {:.0} s); verdict then {}, on the host as it was then {}: {}.</p>",
        if d.refusals.is_empty() { "ok" } else { "bad" },
        super::html::utc(d.checked.wall_unix_ms as u128),
        d.max_age_ms as f64 / 1000.0,
        esc(&d.verdict_then),
        esc(&d.verdict_now),
        esc(&verdict)
    );
    if !d.items.is_empty() || !d.refusals.is_empty() {
        out.push_str("<ul id=\"drift-items\">\n");
        for r in &d.refusals {
            let _ = writeln!(out, "<li class=\"bad\">refuses: {}</li>", esc(r));
        }
        for i in d.items.iter().filter(|i| !i.refuses) {
            let _ = writeln!(out, "<li>{}: {}</li>", esc(&i.target), esc(&i.what));
        }
        out.push_str("</ul>\n");
    }
}

fn rollback_part(out: &mut String, s: &Signed) {
    let Some(m) = &s.rollback else {
        out.push_str("<p id=\"rollback\">No rollback manifest (a commit saves one before its live run).</p>\n");
        return;
    };
    let sig = match &s.rollback_verifies {
        Some(Ok(())) => "signed by the run key, verified".to_string(),
        Some(Err(e)) => e.clone(),
        None => "not verified".into(),
    };
    let _ = writeln!(
        out,
        "<p id=\"rollback\">Rollback manifest: {} path(s), {} B of pre-images (budget {} B); {}. <code>pilot rollback DIR</code> restores them.</p>",
        m.entries.len(),
        m.bytes,
        m.max_bytes,
        esc(&sig)
    );
    out.push_str("<table id=\"rollback-entries\"><thead><tr><th>path</th><th>change</th><th>before the commit</th><th>after it</th><th>pre-image</th></tr></thead><tbody>\n");
    for e in m.entries.iter().take(3000) {
        let saved = match (&e.blob, &e.unsaved) {
            (Some(b), _) => format!("blob {}", &b[..12]),
            (None, Some(why)) => format!("NOT SAVED: {why}"),
            (None, None) => "metadata".into(),
        };
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.path),
            esc(&e.change),
            esc(&e.pre.describe()),
            esc(&e.post.as_ref().map(|p| p.describe()).unwrap_or_else(|| "—".into())),
            esc(&saved)
        );
    }
    out.push_str("</tbody></table>\n");
    if !m.cannot_undo.is_empty() || !m.uncovered.is_empty() {
        out.push_str("<p>A rollback cannot undo:</p><ul id=\"cannot-undo\">\n");
        for c in m.cannot_undo.iter().chain(&m.uncovered) {
            let _ = writeln!(out, "<li class=\"bad\">{}</li>", esc(c));
        }
        out.push_str("</ul>\n");
    }
    if let Some(r) = &s.restored {
        let _ = writeln!(
            out,
            "<p id=\"restored\">Rolled back at {} UTC{}: {} restored, {} already as before, {} conflict(s), {} failed.</p>",
            super::html::utc(r.at.wall_unix_ms as u128),
            if r.forced { " with --force" } else { "" },
            r.restored.len(),
            r.unchanged.len(),
            r.conflicts.len(),
            r.failed.len()
        );
    }
}
