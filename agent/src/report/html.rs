//! The page: plain HTML, one inline stylesheet and one inline script, both pinned by hash in a
//! Content-Security-Policy that also forbids every fetch, so the file works offline and nothing
//! injected into it could run. Every recorded string goes through `esc`.
use std::{collections::BTreeMap, fmt::Write as _};

use sha2::{Digest, Sha256};

use super::{
    Recorded,
    layout::{Drawing, Marks, drawn},
};
use crate::{
    fidelity,
    diff::render::detail,
    graph::{Graph, NodeId, NodeKind},
    policy::eval::Evaluation,
};

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");
/// Rows of a table shown at most (the page says how many were left out).
const MAX_ROWS: usize = 3000;
/// Violations of one rule listed at most; the rest are counted on one line. A run that
/// creates 20,000 files in a live data directory violates one rule 20,000 times (a 43 MB page).
const VIOLATIONS_PER_RULE: usize = 20;

/// Text made safe for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

pub fn page(r: &Recorded, drawing: &Drawing, marks: &Marks) -> String {
    let verdict = r.verdict.as_ref().map(|v| v.evaluation.verdict.as_str()).unwrap_or("none");
    let command = r.intent.as_ref().map(|i| i.argv.join(" ")).unwrap_or_else(|| r.graph.target.clone());
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src '{}'; script-src '{}'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>pilot report: {} {}</title>\n<style>{CSS}</style></head>\n<body class=\"{}\">\n",
        csp_hash(CSS),
        csp_hash(JS),
        esc(&verdict.to_uppercase()),
        esc(&one_line(&command, 80)),
        esc(verdict)
    );
    header(&mut out, r, verdict, &command, marks);
    out.push_str("<nav><a href=\"#intent\">intent</a> <a href=\"#graph\">effect graph</a> <a href=\"#evidence\">evidence</a> <a href=\"#changes\">file changes</a> <a href=\"#blind-spots\">blind spots</a> <a href=\"#network\">network</a> <a href=\"#commit\">pilot vs live</a> <a href=\"#decision\">decision</a> <a href=\"#journal\">journal</a></nav>\n<main>\n");
    intent(&mut out, r);
    graph(&mut out, r, drawing, marks);
    evidence(&mut out, r);
    changes(&mut out, r);
    super::channels::section(&mut out, r);
    network(&mut out, r);
    commit_section(&mut out, r);
    super::signed::section(&mut out, &r.signed);
    journal(&mut out, r);
    let _ = writeln!(
        out,
        "</main>\n<footer>pilot {} report of {}</footer>\n<script>{JS}</script>\n</body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&r.dir.display().to_string())
    );
    out
}

/// `'sha256-BASE64'` of an inline element's text, for the Content-Security-Policy.
fn csp_hash(text: &str) -> String {
    format!("sha256-{}", base64(&Sha256::digest(text.as_bytes())))
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn one_line(s: &str, max: usize) -> String {
    let s = s.replace('\n', "; ");
    if s.chars().count() <= max { s } else { s.chars().take(max - 1).collect::<String>() + "…" }
}

/// Label of a node id, for text.
fn name(g: &Graph, id: &NodeId) -> String {
    g.node(id).map(|n| n.label.clone()).unwrap_or_else(|| id.to_string())
}

fn header(out: &mut String, r: &Recorded, verdict: &str, command: &str, marks: &Marks) {
    let badge = if r.verdict.is_some() { verdict.to_uppercase() } else { "NO VERDICT".into() };
    let _ = writeln!(out, "<header>\n<div id=\"verdict\" class=\"verdict {0}\" data-verdict=\"{0}\">{1}</div>", esc(verdict), esc(&badge));
    let _ = write!(out, "<h1><code>{}</code></h1>\n<p class=\"sub\">on {}", esc(&one_line(command, 300)), esc(&r.graph.host));
    if let Some(v) = &r.verdict {
        let _ = write!(out, ", pilot exit {}{}", v.pilot_exit, if v.timed_out { " (timed out)" } else { "" });
    }
    out.push_str("</p>\n");
    if !r.graph.complete {
        let _ = writeln!(out, "<p class=\"incomplete\">INCOMPLETE: {} events were lost; the pilot may have done more than is shown.</p>", r.graph.lost_events);
    }
    for p in &r.problems {
        let _ = writeln!(out, "<p class=\"problem\">{}</p>", esc(p));
    }
    let Some(v) = &r.verdict else {
        out.push_str("<p id=\"why\">No verdict.json: this run was traced, not piloted. <code>pilot check DIR</code> evaluates it against a policy.</p>\n</header>\n");
        return;
    };
    why(out, r, &v.evaluation, marks);
    out.push_str("</header>\n");
}

fn why(out: &mut String, r: &Recorded, ev: &Evaluation, marks: &Marks) {
    let affected = if ev.affected_components.is_empty() { "none".to_string() } else { ev.affected_components.join(", ") };
    let _ = writeln!(
        out,
        "<p class=\"figures\">risk <b>{:.2}</b> · containment <b>{:.2}</b> ({} of {} components affected: {})</p>\n<section id=\"why\">",
        ev.risk,
        ev.containment,
        ev.affected_components.len(),
        ev.components,
        esc(&affected)
    );
    if ev.violations.is_empty() && ev.gate_failures.is_empty() {
        out.push_str("<p>No rule was violated and the gate passed.</p>\n");
    }
    if !ev.violations.is_empty() {
        out.push_str("<ol class=\"violations\">\n");
    }
    // Each violation's edges, from one pass over the marks (a filter per violation was
    // quadratic: 20,000 violations took 0.3 s of the report).
    let mut edges_of: Vec<Vec<usize>> = vec![Vec::new(); ev.violations.len()];
    for (ei, vi) in &marks.violating {
        edges_of[*vi].push(*ei);
    }
    let mut rules = crate::policy::PerRule::new(VIOLATIONS_PER_RULE);
    for (vi, v) in ev.violations.iter().enumerate() {
        if !rules.show(&v.rule, vi) {
            continue;
        }
        let harmed = v.component.as_deref().unwrap_or("no component");
        let _ = write!(
            out,
            "<li id=\"v{vi}\" class=\"violation {}\"><span class=\"tag\">{}</span> <b>{}</b> (severity {:.2}) harms <b class=\"harmed\">{}</b><br>{}<br>",
            esc(v.action.as_str()),
            esc(v.action.as_str()),
            esc(&v.rule),
            v.severity,
            esc(harmed),
            esc(&v.why)
        );
        edges_of[vi].sort_unstable();
        let edges: Vec<String> = edges_of[vi]
            .iter()
            .map(|&ei| {
                let e = &r.graph.edges[ei];
                format!("<a href=\"#e{ei}\">{} {} {}</a>", esc(&name(&r.graph, &e.from)), esc(e.kind.as_str()), esc(&name(&r.graph, &e.to)))
            })
            .collect();
        let _ = write!(out, "edges: {}", if edges.is_empty() { "none in the graph".into() } else { edges.join(", ") });
        let lines: Vec<String> = v.events.iter().map(|n| format!("<a href=\"#ev-{n}\">{n}</a>")).collect();
        let _ = writeln!(out, " · evidence: events.jsonl line {}</li>", lines.join(", "));
    }
    for (rule, hidden) in rules.folded() {
        // The graph links its marked edges to their violation: those anchors stay.
        let anchors: String = hidden.iter().filter(|vi| !edges_of[**vi].is_empty()).map(|vi| format!("<a id=\"v{vi}\"></a>")).collect();
        let _ = writeln!(
            out,
            "<li class=\"violation folded\">{anchors}<b>{}</b>: {} more violation(s) of this rule, not listed here (<code>verdict.json</code> lists every one)</li>",
            esc(rule),
            hidden.len()
        );
    }
    if !ev.violations.is_empty() {
        out.push_str("</ol>\n");
    }
    for g in &ev.gate_failures {
        let _ = writeln!(out, "<p class=\"gate\"><span class=\"tag\">gate</span> {}</p>", esc(g));
    }
    out.push_str("</section>\n");
}

fn row(out: &mut String, cells: &[String]) {
    out.push_str("<tr>");
    for c in cells {
        let _ = write!(out, "<td>{c}</td>");
    }
    out.push_str("</tr>\n");
}

fn table_head(out: &mut String, id: &str, heads: &[&str]) {
    let _ = write!(out, "<table id=\"{id}\"><thead><tr>");
    for h in heads {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr></thead><tbody>\n");
}

fn table_end(out: &mut String, shown: usize, total: usize) {
    out.push_str("</tbody></table>\n");
    if total > shown {
        let _ = writeln!(out, "<p class=\"problem\">{} more rows are not shown (the run directory has them all).</p>", total - shown);
    }
}

fn intent(out: &mut String, r: &Recorded) {
    out.push_str("<section id=\"intent\"><h2>Intent</h2>\n");
    let Some(i) = &r.intent else {
        out.push_str("<p>No intent.json (a `pilot trace`, not a `pilot run`).</p></section>\n");
        return;
    };
    out.push_str("<table class=\"facts\">\n");
    let argv: Vec<String> = i.argv.iter().map(|a| format!("<code>{}</code>", esc(a))).collect();
    row(out, &["command".into(), argv.join(" ")]);
    row(out, &["cwd".into(), format!("<code>{}</code>", esc(&i.cwd.display().to_string()))]);
    row(out, &["host".into(), esc(&i.host)]);
    row(out, &["uid".into(), i.uid.to_string()]);
    let policies: Vec<String> = i.policies.iter().map(|p| format!("{} <code>sha256 {}</code>", esc(&p.source), esc(&p.sha256))).collect();
    row(out, &["policies".into(), policies.join("<br>")]);
    row(out, &["pilot binary".into(), format!("<code>sha256 {}</code>", esc(&i.pilot_sha256))]);
    row(out, &["environment".into(), format!("{} variables (values not shown: they may hold secrets)", i.env.len())]);
    if let Some(v) = &r.verdict {
        let c = &v.contained_by;
        let text = format!("files: {}; network: {}; unix sockets: {}; signals: {}", c.files, c.network, c.unix_sockets, c.signals);
        row(out, &["containment".into(), esc(&text)]);
    }
    if let Some(s) = &r.summary {
        let text = format!(
            "{} processes, {} events in {} ms, {} lost",
            s.processes, s.events, s.duration_ms, s.lost_events
        );
        row(out, &["trace".into(), esc(&text)]);
    }
    out.push_str("</table>\n</section>\n");
}

fn graph(out: &mut String, r: &Recorded, d: &Drawing, marks: &Marks) {
    let g = &r.graph;
    let comps: std::collections::BTreeSet<&str> = g.nodes.iter().filter(|n| drawn(n)).filter_map(|n| n.component.as_deref()).collect();
    let _ = write!(
        out,
        "<section id=\"graph\" data-nodes=\"{}\" data-edges=\"{}\" data-violating=\"{}\"><h2>Effect graph</h2>\n\
         <p>{} nodes, {} edges, {} groups; laid out by {}. Red: effects on another component; thick red: a violation \
         (click it for the rule); bold: destructive; dashed: failed.</p>\n\
         <div class=\"tools\"><button data-zoom=\"out\">−</button><button data-zoom=\"in\">+</button><button data-zoom=\"fit\">fit</button>\
         <button data-zoom=\"1\">100%</button> <span id=\"zoom\"></span> (ctrl+wheel zooms, drag pans)</div>\n\
         <div id=\"canvas\">{}</div>\n",
        d.nodes,
        g.edges.len(),
        marks.violating.len(),
        d.nodes,
        g.edges.len(),
        comps.len(),
        esc(&d.engine),
        d.svg
    );
    components(out, r);
    trees(out, g, &marks.view);
    let _ = writeln!(out, "<details><summary>All {} edges as a table</summary>", g.edges.len());
    table_head(out, "edges", &["", "by", "effect", "on", "component", "count", "failed", "bytes", "events.jsonl"]);
    for (i, e) in g.edges.iter().enumerate().take(MAX_ROWS) {
        let mark = if marks.violating.contains_key(&i) { "violation" } else if e.cross_component { "cross" } else { "" };
        row(
            out,
            &[
                format!("<a href=\"#e{i}\">{mark}</a>"),
                esc(&name(g, &e.from)),
                esc(&format!("{}{}", e.kind, e.detail.as_deref().map(|d| format!(" {d}")).unwrap_or_default())),
                esc(&name(g, &e.to)),
                esc(e.component.as_deref().unwrap_or("")),
                e.count.to_string(),
                e.failed.to_string(),
                e.bytes.to_string(),
                e.events.first().map(|n| n.to_string()).unwrap_or_default(),
            ],
        );
    }
    table_end(out, g.edges.len().min(MAX_ROWS), g.edges.len());
    out.push_str("</details>\n</section>\n");
}

/// Each directory tree drawn as one node, expandable into its files (graph.json's aggregates).
fn trees(out: &mut String, g: &Graph, view: &crate::graph::aggregate::View) {
    if !view.drawn.iter().any(|d| *d) {
        return;
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); g.aggregates.len()];
    for (node, tree) in &view.members {
        members[*tree].push(*node);
    }
    let mut kinds: std::collections::HashMap<usize, std::collections::BTreeMap<crate::graph::EdgeKind, u64>> = Default::default();
    for f in &view.folded {
        for ei in &f.edges {
            let e = &g.edges[*ei];
            if let Some(to) = g.ends_of(*ei).1 {
                *kinds.entry(to).or_default().entry(e.kind).or_default() += e.count;
            }
        }
    }
    let _ = writeln!(out, "<h3>Directory trees</h3>\n<p>Each tree the pilot created or deleted wholesale is one node in the drawing; open it for its files.</p>");
    for (t, a) in g.aggregates.iter().enumerate().filter(|(t, _)| view.drawn[*t]) {
        let effects: Vec<String> = a.effects.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        let _ = writeln!(
            out,
            "<details id=\"tree{t}\"><summary><code>{}/</code> {}: {} files and directories; {}{}</summary>",
            esc(&a.path),
            esc(&a.how),
            a.nodes,
            esc(&effects.join(", ")),
            if a.bytes > 0 { format!("; {} bytes written", a.bytes) } else { String::new() }
        );
        let mut nodes = std::mem::take(&mut members[t]);
        nodes.sort_by(|x, y| g.nodes[*x].label.cmp(&g.nodes[*y].label));
        table_head(out, &format!("tree{t}-files"), &["path", "effects"]);
        for i in nodes.iter().take(MAX_ROWS) {
            let effects: Vec<String> = kinds.get(i).into_iter().flatten().map(|(k, n)| format!("{k} x{n}")).collect();
            row(out, &[format!("<code>{}</code>", esc(&g.nodes[*i].label)), esc(&effects.join(", "))]);
        }
        table_end(out, nodes.len().min(MAX_ROWS), nodes.len());
        out.push_str("</details>\n");
    }
}

/// The host's components the graph reaches, with their processes.
fn components(out: &mut String, r: &Recorded) {
    let affected: Vec<&str> = r.verdict.iter().flat_map(|v| v.evaluation.affected_components.iter().map(String::as_str)).collect();
    let touched = r.graph.touched();
    if touched.is_empty() {
        out.push_str("<p>The pilot touched no other component.</p>\n");
        return;
    }
    table_head(out, "components", &["component", "kind", "pids", "effects on it", "affected"]);
    for (name, edges) in &touched {
        let c = r.graph.components.iter().find(|c| c.name == *name);
        let pids: Vec<String> = c.map(|c| c.processes.iter().map(|m| m.pid.to_string()).collect()).unwrap_or_default();
        let mut kinds: Vec<&str> = edges.iter().map(|e| e.kind.as_str()).collect();
        kinds.sort();
        kinds.dedup();
        row(
            out,
            &[
                format!("<b>{}</b>", esc(name)),
                esc(c.map(|c| c.kind.as_str()).unwrap_or("")),
                esc(&pids.join(", ")),
                esc(&kinds.join(", ")),
                if affected.contains(name) { "<b class=\"bad\">yes</b>".into() } else { "no".into() },
            ],
        );
    }
    table_end(out, touched.len(), touched.len());
}

fn evidence(out: &mut String, r: &Recorded) {
    out.push_str("<section id=\"evidence\"><h2>Evidence events</h2>\n");
    if r.evidence.is_empty() {
        out.push_str("<p>No violation, so no evidence to show.</p></section>\n");
        return;
    }
    out.push_str("<p>The lines of <code>events.jsonl</code> the violations cite.</p>\n<ol class=\"events\">\n");
    for (n, line) in &r.evidence {
        let _ = writeln!(out, "<li id=\"ev-{n}\"><span class=\"line\">{n}</span> <code>{}</code></li>", esc(line));
    }
    out.push_str("</ol></section>\n");
}

fn changes(out: &mut String, r: &Recorded) {
    out.push_str("<section id=\"changes\"><h2>File changes</h2>\n");
    let Some(c) = &r.changes else {
        out.push_str("<p>No changes.json (only `pilot run` contains writes in an overlay).</p></section>\n");
        return;
    };
    let _ = writeln!(out, "<p>{} changes, kept in the pilot's overlay: production was not touched (<code>pilot diff</code>).</p>", c.changes.len());
    table_head(out, "changes-table", &["change", "kind", "path", "detail"]);
    for ch in c.changes.iter().take(MAX_ROWS) {
        let mut more = detail(ch);
        if let Some(t) = &ch.target {
            more.push_str(&format!(" -> {t}"));
        }
        let _ = writeln!(
            out,
            "<tr class=\"{0}\"><td>{0}</td><td>{1}</td><td><code>{2}</code></td><td>{3}</td></tr>",
            esc(&ch.change),
            esc(&ch.kind),
            esc(&ch.path),
            esc(&more)
        );
    }
    table_end(out, c.changes.len().min(MAX_ROWS), c.changes.len());
    held_back(out, c);
    out.push_str("</section>\n");
}

/// Issue 16: what the live run would change that the sandbox held back or refused.
fn held_back(out: &mut String, c: &crate::rundir::Changes) {
    if c.held_back.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<h3 id=\"held-back\">Held back by the sandbox</h3>\n<p>{} change(s) the live run would make to the host or to live processes; the sandbox did not make them.</p>",
        c.held_back.len()
    );
    table_head(out, "held-back-table", &["kind", "target", "value", "how", "by", "event"]);
    for h in c.held_back.iter().take(MAX_ROWS) {
        let _ = writeln!(
            out,
            "<tr class=\"held\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
            esc(&h.kind),
            esc(&h.target),
            esc(h.value.as_deref().unwrap_or("")),
            esc(&h.how),
            h.pid,
            esc(&h.comm),
            h.event
        );
    }
    table_end(out, c.held_back.len().min(MAX_ROWS), c.held_back.len());
}

fn network(out: &mut String, r: &Recorded) {
    let g = &r.graph;
    out.push_str("<section id=\"network\"><h2>Network</h2>\n");
    let endpoint = |ei: usize| g.ends_of(ei).1.is_some_and(|t| g.nodes[t].node_type == NodeKind::Endpoint);
    let net: Vec<&crate::graph::Edge> = g.edges.iter().enumerate().filter(|(ei, _)| endpoint(*ei)).map(|(_, e)| e).collect();
    if net.is_empty() {
        out.push_str("<p>The pilot made no network effect.</p>\n");
    } else {
        out.push_str("<p>Where the pilot tried to connect and send (as it asked; the cgroup hooks sent TCP and UDP to the sink).</p>\n");
        table_head(out, "net-edges", &["by", "effect", "destination", "owner", "count", "failed", "bytes"]);
        for e in net.iter().take(MAX_ROWS) {
            let owner = g.node(&e.to).map(|n| format!("{}{}", n.component.as_deref().unwrap_or(""), n.held.map(|h| format!(" ({h})")).unwrap_or_default())).unwrap_or_default();
            // issue 18: an rpc edge says what the requests were and what the sink did.
            let effect = match &e.rpc {
                Some(r) => format!("rpc {} ({}, {})", e.detail.as_deref().unwrap_or(""), json_name(&r.access), json_name(&r.disposition)),
                None => e.kind.to_string(),
            };
            row(out, &[esc(&name(g, &e.from)), esc(&effect), esc(&name(g, &e.to)), esc(&owner), e.count.to_string(), e.failed.to_string(), e.bytes.to_string()]);
        }
        table_end(out, net.len().min(MAX_ROWS), net.len());
    }
    match &r.sink {
        None => out.push_str("<p>No sink.json (no sink in a `pilot trace`).</p>\n"),
        Some(s) if s.is_empty() => out.push_str("<p>The sink caught nothing.</p>\n"),
        Some(s) => {
            let _ = writeln!(out, "<p>The sink caught {} connection(s) or datagram source(s), {} bytes:</p>", s.len(), s.iter().map(|c| c.bytes).sum::<u64>());
            table_head(out, "sink", &["proto", "from (the pilot's side)", "to (meant)", "protocol", "count", "bytes", "first bytes"]);
            for c in s.iter().take(MAX_ROWS) {
                let to = format!("{}{}", c.to.as_deref().unwrap_or(""), c.component.as_deref().map(|k| format!(" ({k})")).unwrap_or_default());
                row(out, &[esc(&c.proto), esc(&c.from), esc(&to), esc(c.protocol.as_deref().unwrap_or("")), c.count.to_string(), c.bytes.to_string(), format!("<code>{}</code>", esc(&c.head))]);
            }
            table_end(out, s.len().min(MAX_ROWS), s.len());
        }
    }
    out.push_str("</section>\n");
}

/// An enum's serde name (`mutation`, `captured`).
fn json_name<T: serde::Serialize>(v: &Option<T>) -> String {
    v.as_ref().and_then(|x| serde_json::to_value(x).ok()).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn commit_section(out: &mut String, r: &Recorded) {
    out.push_str("<section id=\"commit\"><h2>Pilot vs live</h2>\n");
    let (Some(f), Some(live)) = (&r.fidelity, &r.live) else {
        out.push_str("<p>Not committed: <code>pilot commit DIR</code> runs it live and measures fidelity.</p></section>\n");
        return;
    };
    let live_exit = r.live_summary.as_ref().map(|s| s.exit_code.map_or("null".into(), |c| c.to_string())).unwrap_or_else(|| "?".into());
    let _ = writeln!(
        out,
        "<p id=\"fidelity\" class=\"{}\">fidelity error <b>{:.3}</b> (gate max {:.3}): {}. {} edges in the pilot, {} live; live exit {}.</p>",
        if f.within_gate { "ok" } else { "bad" },
        f.error,
        f.max_fidelity_error,
        if f.within_gate { "within the gate" } else { "OVER THE GATE: the pilot did not predict the live run" },
        f.edges_pilot,
        f.edges_live,
        esc(&live_exit)
    );
    let pilot = fidelity::keyed(&r.graph, &r.dir);
    let live = fidelity::keyed(live, &r.dir);
    // effect -> (pilot (count, bytes), live (count, bytes))
    type Side = Option<(u64, u64)>;
    let mut rows: BTreeMap<&String, (Side, Side)> = BTreeMap::new();
    for (k, v) in &pilot {
        rows.entry(k).or_default().0 = Some(*v);
    }
    for (k, v) in &live {
        rows.entry(k).or_default().1 = Some(*v);
    }
    table_head(out, "side-by-side", &["effect", "pilot count", "pilot bytes", "live count", "live bytes", ""]);
    let cell = |v: Option<(u64, u64)>, bytes: bool| v.map(|(c, b)| if bytes { b } else { c }.to_string()).unwrap_or_else(|| "—".into());
    for (k, (p, l)) in rows.iter().take(MAX_ROWS) {
        let status = match (p, l) {
            (Some(_), None) => "only-pilot",
            (None, Some(_)) => "only-live",
            (Some(a), Some(b)) if a != b => "diverges",
            _ => "same",
        };
        let _ = writeln!(
            out,
            "<tr class=\"{status}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(k),
            cell(*p, false),
            cell(*p, true),
            cell(*l, false),
            cell(*l, true),
            status.replace('-', " ")
        );
    }
    table_end(out, rows.len().min(MAX_ROWS), rows.len());
    super::channels::files(out, f);
    out.push_str("</section>\n");
}

fn journal(out: &mut String, r: &Recorded) {
    let j = &r.journal;
    let _ = write!(out, "<section id=\"journal\"><h2>Journal</h2>\n<p><code>{}</code>: ", esc(&j.path.display().to_string()));
    match &j.verified {
        None => out.push_str("no journal there.</p>\n"),
        Some(Ok(n)) => {
            let _ = writeln!(out, "intact ({n} entries, hash chain verified).</p>");
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "<b class=\"bad\">does not verify: {}</b></p>", esc(e));
        }
    }
    if j.entries.is_empty() {
        out.push_str("<p>No entry of this journal is about this run directory.</p></section>\n");
        return;
    }
    table_head(out, "journal-entries", &["entry", "time (UTC)", "kind", "verdict", "note", "hash"]);
    for e in &j.entries {
        row(
            out,
            &[
                e.seq.to_string(),
                utc(e.ts_unix_ms),
                esc(&e.kind),
                esc(e.verdict.as_deref().unwrap_or("")),
                esc(e.note.as_deref().unwrap_or("")),
                format!("<code>{}</code>", esc(&e.hash[..e.hash.len().min(16)])),
            ],
        );
    }
    table_end(out, j.entries.len(), j.entries.len());
    out.push_str("</section>\n");
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in milliseconds (civil calendar from days).
pub(super) fn utc(ms: u128) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_ampersands() {
        assert_eq!(esc("<script>alert('x')</script> & \"q\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
        assert_eq!(esc("/var/lib/ok"), "/var/lib/ok");
    }

    #[test]
    fn csp_hashes_are_base64_sha256() {
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(csp_hash("").len(), "sha256-".len() + 44);
    }

    #[test]
    fn unix_times_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_795_306_977_000), "2026-11-22 00:22:57");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
