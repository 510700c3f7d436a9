//! Recovery policies: which components exist (beyond the discovered ones), which one is under
//! repair, which effects on which targets are dangerous, and the gate a run must pass.
//! TOML, strict: an unknown key is an error naming the file, line and key.
pub mod compile;
pub mod eval;
pub mod glob;
pub mod rpc;
pub mod routine;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::UsageError;

/// The built-in policy, used when no `--policy` is given (also shipped as policies/default.toml).
pub const DEFAULT: &str = include_str!("../../../policies/default.toml");
/// How the built-in policy is named as a source.
pub const BUILT_IN: &str = "(built-in default policy)";

#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy's version, recorded with every verdict, decision and journal entry.
    #[serde(default)]
    pub version: Option<Version>,
    /// After this date (a TOML date, `2026-06-30`, meaning 00:00 UTC that day; or a date-time)
    /// the policy is refused: thresholds are reviewed, not left to stand forever.
    #[serde(default)]
    pub expires: Option<toml::value::Datetime>,
    #[serde(default, rename = "component")]
    pub components: Vec<ComponentSpec>,
    #[serde(default)]
    pub recovery: Option<Recovery>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub gate: Option<Gate>,
    /// How the sink judges requests (issue 18).
    #[serde(default)]
    pub rpc: Option<RpcConfig>,
}

/// `[rpc]`: what the sink's protocol sessions must know about this site.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RpcConfig {
    /// HTTP paths (globs over `path?query`) whose GET changes state here, beyond the
    /// built-in ones (`*/shutdown*`, `*/flush*`...): captured, not forwarded.
    #[serde(default)]
    pub unsafe_get: Vec<String>,
}

/// A component named explicitly; these names win over discovered ones.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    pub name: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub unix: Vec<String>,
    #[serde(default)]
    pub exe: Vec<String>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// The component under repair: its own effects are expected. A name or a glob over
    /// discovered names (`*batch_worker*`: discovered names carry the interpreter).
    pub component: String,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    /// Edge kinds (write, unlink, rename, signal, connect, send...); empty: every kind.
    #[serde(default)]
    pub effects: Vec<String>,
    /// `*` (any component but the traced tree and the one under recovery), a component name,
    /// a path glob (`/var/lib/**`), an endpoint (`127.0.0.1:5432`, `:5432`, `unix:/run/x.sock`),
    /// or a selector: `@held` (a file a live process holds open or maps), `@live-log` (a held
    /// file live processes only append to), `@data-dir` (an existing path in a live data
    /// directory, the directory itself or an ancestor of one; not a log directory, not a
    /// rotated log), `@data-dir-new` (a file the traced tree made in a live data directory),
    /// `@data-dir-like` (such a new file named like files the component holds open there),
    /// `@live-process` (a process-group kill counts per member), `@live-service` (a listening
    /// endpoint), `@live-fs` (a filesystem a live process writes to; its effect is `fill`), `@host` (a
    /// host-wide setting: sysctl, sysfs, cgroup, netconf, clock, swap, mount, module).
    pub target: String,
    /// Only effects recognized as these routine operations (policy/routine.rs:
    /// `handled-signal`, `log-rotation`, `copytruncate`) count for this rule.
    #[serde(default)]
    pub when: Vec<String>,
    /// Effects recognized as these routine operations do not count for this rule.
    #[serde(default)]
    pub unless: Vec<String>,
    /// Violated when the matching effects on one target exceed these (none given: any match).
    #[serde(default)]
    pub max_count: Option<u64>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Effects per second on one target.
    #[serde(default)]
    pub max_rate: Option<f64>,
    /// For `fill` effects on a filesystem: the fraction of its free space (when the pilot
    /// started) the run may write there.
    #[serde(default)]
    pub max_fill: Option<f64>,
    // --- issue 18: rpc effects (a rule with any of these matches only `rpc` edges) ---
    /// Protocols: dns, redis, postgresql, http, etcd, zookeeper.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Operation globs as the protocol names them: `FLUSH*`, `CONFIG SET`, `DROP *`, `POST`.
    #[serde(default)]
    pub operations: Vec<String>,
    /// Resource globs: keys, tables, paths (`session:*`, `public.*`, `/v1/members*`).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Resource globs the rule leaves out (`/app/cache/*`: a cleanup may delete its own cache).
    #[serde(default)]
    pub except_resources: Vec<String>,
    /// read, mutation, unclassified, opaque.
    #[serde(default)]
    pub access: Vec<String>,
    /// For mutations: write, delete, admin.
    #[serde(default)]
    pub categories: Vec<String>,
    /// forwarded, captured, shadowed, blackholed.
    #[serde(default)]
    pub dispositions: Vec<String>,
    /// Only connect/send edges the sink never saw (`--allow`): its rpc edges stand for the rest.
    #[serde(default)]
    pub unseen_by_sink: bool,
    pub action: Action,
    pub severity: f64,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Block,
    Warn,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Warn => "warn",
        }
    }
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    #[serde(default)]
    pub max_risk: Option<f64>,
    #[serde(default)]
    pub min_containment: Option<f64>,
    #[serde(default)]
    pub max_fidelity_error: Option<f64>,
    /// Block when events were lost (default true).
    #[serde(default)]
    pub require_complete: Option<bool>,
    /// `pilot commit` needs this many approvals (`pilot approve`) of the exact decision, by
    /// distinct keys among `approvers`, none of them the run key (default 0).
    #[serde(default)]
    pub required_approvals: Option<u32>,
    /// Who may approve: `ed25519:HEX` keys, `.pub` files or directories of them (relative to
    /// this policy's directory).
    #[serde(default)]
    pub approvers: Option<Vec<String>>,
    /// A commit of a pilot older than this is refused (default 1h): production moves on.
    #[serde(default)]
    pub max_age: Option<String>,
    /// Refuse a commit whose pilot shows effects a rollback cannot undo (default false).
    #[serde(default)]
    pub rollback_readiness_required: Option<bool>,
    /// The most file content `pilot commit` saves as pre-images (default 1 GiB).
    #[serde(default)]
    pub rollback_max_bytes: Option<u64>,
    /// Every policy used must be signed (`pilot policy sign`) by one of these keys.
    #[serde(default)]
    pub policy_signers: Option<Vec<String>>,
    /// issue 15 (the essay's dual-channel verification): how many channels must have seen a
    /// change for it to count as known (default 2: the trace and the out-of-band observer that
    /// saw it). A change only the overlay, the sink or the cgroup saw is then a `blind-spot`
    /// violation: blocked on anything a live component holds, a warning elsewhere. 1: a
    /// blind spot is judged by the rules alone, like any effect.
    #[serde(default)]
    pub required_observers: Option<u8>,
}

/// `version = 3` or `version = "2026.05-2"`: kept as text.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Version {
    Number(i64),
    Text(String),
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Number(n) => write!(f, "{n}"),
            Version::Text(t) => f.write_str(t),
        }
    }
}

/// A policy as loaded, with where it came from and its hash (for the journal).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub source: String,
    pub sha256: String,
    pub policy: Policy,
    /// The same, ready to evaluate.
    pub compiled: compile::Compiled,
    /// The key that signed it (`FILE.sig`, checked by `crate::governance::admit`).
    pub signed_by: Option<String>,
}

impl Loaded {
    /// Where it came from and its hash, as the verdict, intent and journal cite it.
    pub fn reference(&self) -> eval::PolicyRef {
        eval::PolicyRef {
            source: self.source.clone(),
            sha256: self.sha256.clone(),
            version: self.policy.version.as_ref().map(|v| v.to_string()),
            signed_by: self.signed_by.clone(),
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse a policy; errors say `FILE:LINE: message` (the message names the key).
pub fn parse(source: &str, text: &str) -> Result<Loaded, UsageError> {
    let policy: Policy = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(0);
        let msg = e.message().trim().replace('\n', " ");
        UsageError::new(format!("{source}:{line}: {msg}"))
    })?;
    validate(source, text, &policy)?;
    let compiled = compile::compile(&policy).map_err(|e| UsageError::new(format!("{source}: {e}")))?;
    Ok(Loaded { source: source.into(), sha256: sha256_hex(text.as_bytes()), policy, compiled, signed_by: None })
}

fn validate(source: &str, text: &str, p: &Policy) -> Result<(), UsageError> {
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or(0);
    for r in &p.rules {
        if let Some(f) = r.max_fill.filter(|f| !(*f > 0.0 && *f <= 1.0)) {
            return Err(UsageError::new(format!(
                "{source}:{}: rule `{}`: max_fill is a fraction of the free space, in (0, 1], not {f}",
                line_of("max_fill"),
                r.id
            )));
        }
        if !(0.0..=1.0).contains(&r.severity) {
            return Err(UsageError::new(format!(
                "{source}:{}: rule `{}`: severity must be between 0 and 1, not {}",
                line_of(&format!("\"{}\"", r.id)),
                r.id,
                r.severity
            )));
        }
        for name in r.when.iter().chain(&r.unless) {
            if routine::Routine::parse(name).is_none() {
                let known: Vec<&str> = routine::Routine::ALL.iter().map(|r| r.as_str()).collect();
                return Err(UsageError::new(format!(
                    "{source}:{}: rule `{}`: unknown routine `{name}` (one of {})",
                    line_of(&format!("\"{name}\"")),
                    r.id,
                    known.join(", ")
                )));
            }
        }
        for e in &r.effects {
            if crate::graph::EdgeKind::parse(e).is_none() {
                let known: Vec<&str> = crate::graph::EdgeKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(UsageError::new(format!(
                    "{source}:{}: rule `{}`: unknown effect `{e}` (one of {})",
                    line_of(&format!("\"{e}\"")),
                    r.id,
                    known.join(", ")
                )));
            }
        }
    }
    for r in &p.rules {
        let allowed: [(&str, &Vec<String>, &[&str]); 3] = [
            ("access", &r.access, &["read", "mutation", "unclassified", "opaque"]),
            ("categories", &r.categories, &["write", "delete", "admin"]),
            ("dispositions", &r.dispositions, &["forwarded", "captured", "shadowed", "blackholed"]),
        ];
        for (key, values, known) in allowed {
            if let Some(v) = values.iter().find(|v| !known.contains(&v.as_str())) {
                return Err(UsageError::new(format!(
                    "{source}:{}: rule `{}`: {key} `{v}` is not one of {}",
                    line_of(&format!("\"{v}\"")),
                    r.id,
                    known.join(", ")
                )));
            }
        }
    }
    if let Some(g) = &p.gate {
        for (key, v) in [("max_risk", g.max_risk), ("min_containment", g.min_containment), ("max_fidelity_error", g.max_fidelity_error)] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return Err(UsageError::new(format!("{source}:{}: gate.{key} must be between 0 and 1", line_of(key))));
                }
            }
        }
        if let Some(n) = g.required_observers.filter(|n| !(1..=2).contains(n)) {
            return Err(UsageError::new(format!(
                "{source}:{}: gate.required_observers must be 1 (one channel suffices) or 2 (the trace and an observer), not {n}",
                line_of("required_observers")
            )));
        }
        crate::governance::validate_gate(source, g).map_err(|(key, e)| UsageError::new(format!("{source}:{}: gate.{key}: {e}", line_of(key))))?;
    }
    Ok(())
}

pub fn load(path: &Path) -> Result<Loaded, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError::new(format!("policy {}: {e}", path.display())))?;
    parse(&path.display().to_string(), &text)
}

/// The policies to apply: the given files, or the built-in default.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Loaded>, UsageError> {
    if paths.is_empty() {
        let mut loaded = vec![parse(BUILT_IN, DEFAULT)?];
        crate::governance::admit(&mut loaded)?;
        return Ok(loaded);
    }
    // `--policy default` layers the built-in policy under a site's own files.
    let mut loaded = paths
        .iter()
        .map(|p| if p.as_os_str() == "default" { parse(BUILT_IN, DEFAULT) } else { load(p) })
        .collect::<Result<Vec<_>, _>>()?;
    crate::governance::admit(&mut loaded)?;
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(rule: &str, i: usize) -> eval::Violation {
        eval::Violation {
            rule: rule.into(),
            action: Action::Warn,
            severity: 0.1,
            component: None,
            target: format!("/data/f{i}"),
            target_id: format!("file:/data/f{i}"),
            effects: vec!["create".into()],
            count: 1,
            bytes: 0,
            why: format!("create /data/f{i}"),
            edges: Vec::new(),
            events: vec![i as u64],
            channels: Vec::new(),
        }
    }

    #[test]
    fn many_violations_of_a_rule_print_as_ten_and_a_count() {
        let mut ev = eval::evaluate(&crate::graph::Graph::default(), &load_all(&[]).unwrap());
        ev.violations = (0..25).map(|i| violation("live-data", i)).chain((0..2).map(|i| violation("other", i))).collect();
        let text = render(&ev);
        assert_eq!(text.matches("] live-data (severity").count(), 10, "{text}");
        assert_eq!(text.matches("] other (severity").count(), 2, "{text}");
        assert!(text.contains("  [warn] live-data: 15 more like these (every one: verdict.json"), "{text}");
        assert!(!text.contains("other: "), "a rule printed whole has no count line: {text}");
        let all = render_with(&ev, true);
        assert_eq!(all.matches("] live-data (severity").count(), 25, "-v prints every one: {all}");
        assert!(!all.contains("more like these"), "{all}");
    }

    #[test]
    fn the_default_policy_parses() {
        let p = parse("default", DEFAULT).unwrap();
        assert!(!p.policy.rules.is_empty());
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let err = parse("p.toml", "[[rule]]\nid = \"x\"\ntarget = \"*\"\naction = \"block\"\nseverity = 0.5\nmax_cnt = 3\n").unwrap_err();
        assert!(err.0.starts_with("p.toml:6:"), "{err}");
        assert!(err.0.contains("max_cnt"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let err = parse("p.toml", "[[rule]]\nid = \"x\"\ntarget = \"*\"\naction = \"block\"\nseverity = 2.0\n").unwrap_err();
        assert!(err.0.contains("severity"), "{err}");
        let err = parse("p.toml", "[[rule]]\nid = \"x\"\ntarget = \"*\"\neffects = [\"delete\"]\naction = \"block\"\nseverity = 0.2\n").unwrap_err();
        assert!(err.0.contains("unknown effect `delete`"), "{err}");
        let err = parse("p.toml", "[[rule]]\nid = \"x\"\ntarget = \"*\"\naction = \"deny\"\nseverity = 0.2\n").unwrap_err();
        assert!(err.0.starts_with("p.toml:4:"), "{err}");
        let err = parse("p.toml", "[[rule]]\nid = \"x\"\ntarget = \"*\"\nunless = [\"logrotate\"]\naction = \"warn\"\nseverity = 0.2\n").unwrap_err();
        assert!(err.0.starts_with("p.toml:4:") && err.0.contains("unknown routine `logrotate`"), "{err}");
    }
}

/// The first `limit` violations of each rule, in order, and the indices of the rest: how the
/// terminal and the report keep a rule violated 20,000 times readable.
pub struct PerRule<'a> {
    limit: usize,
    /// (rule, violations shown, indices of the rest), rules in order of their first violation.
    rules: Vec<(&'a str, usize, Vec<usize>)>,
    index: std::collections::HashMap<&'a str, usize>,
}

impl<'a> PerRule<'a> {
    pub fn new(limit: usize) -> PerRule<'a> {
        PerRule { limit, rules: Vec::new(), index: std::collections::HashMap::new() }
    }

    /// Whether violation `vi`, of `rule`, is shown (else it joins the rest).
    pub fn show(&mut self, rule: &'a str, vi: usize) -> bool {
        let i = *self.index.entry(rule).or_insert_with(|| {
            self.rules.push((rule, 0, Vec::new()));
            self.rules.len() - 1
        });
        let (_, shown, rest) = &mut self.rules[i];
        if *shown < self.limit {
            *shown += 1;
            return true;
        }
        rest.push(vi);
        false
    }

    /// The rules with violations not shown, and those violations' indices.
    pub fn folded(&self) -> impl Iterator<Item = (&'a str, &[usize])> {
        self.rules.iter().filter(|(_, _, rest)| !rest.is_empty()).map(|(rule, _, rest)| (*rule, &rest[..]))
    }
}

/// The verdict as an SRE reads it in a terminal.
pub fn render(ev: &eval::Evaluation) -> String {
    render_with(ev, false)
}

/// Violations of one rule printed at most, unless `all` (`pilot run -v`): the rest are counted
/// on one line. A run that creates 20,000 files in a live data directory violates one rule
/// 20,000 times; verdict.json lists every one.
const PRINTED_PER_RULE: usize = 10;

/// The evaluation as text: the verdict line, then violations (the first PRINTED_PER_RULE of
/// each rule, or `all`), routines, gate failures and notes.
pub fn render_with(ev: &eval::Evaluation, all: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let affected = if ev.affected_components.is_empty() {
        "no other component affected".to_string()
    } else {
        format!("{} of {} components affected: {}", ev.affected_components.len(), ev.components, ev.affected_components.join(", "))
    };
    // issue 18: a verdict never hides traffic to live components pilot could not judge.
    let unjudged = if ev.unjudged.is_empty() {
        String::new()
    } else {
        format!("; traffic pilot could not judge reached {}", ev.unjudged.join(", "))
    };
    let _ = writeln!(
        out,
        "verdict: {}  risk {:.2}  containment {:.2} ({affected}){unjudged}",
        ev.verdict.as_str().to_uppercase(),
        ev.risk,
        ev.containment
    );
    let mut rules = PerRule::new(if all { usize::MAX } else { PRINTED_PER_RULE });
    for (vi, v) in ev.violations.iter().enumerate() {
        if !rules.show(&v.rule, vi) {
            continue;
        }
        let action = v.action.as_str();
        let events: Vec<String> = v.events.iter().map(u64::to_string).collect();
        // issue 15: a blind spot has no syscall behind it, only the channel that saw it.
        let names: Vec<&str> = v.channels.iter().map(|c| c.as_str()).collect();
        let evidence = match (events.is_empty(), names.is_empty()) {
            (true, false) => format!("seen by: {}", names.join(", ")),
            (false, false) => format!("events.jsonl lines {}; seen by: {}", events.join(","), names.join(", ")),
            _ => format!("events.jsonl lines {}", events.join(",")),
        };
        let _ = writeln!(out, "  [{action}] {} (severity {:.1}): {}  [{evidence}]", v.rule, v.severity, v.why);
    }
    for (rule, rest) in rules.folded() {
        let action = ev.violations[rest[0]].action.as_str();
        let _ = writeln!(out, "  [{action}] {rule}: {} more like these (every one: verdict.json, `pilot check --json DIR`, `pilot run -v`)", rest.len());
    }
    for r in &ev.routines {
        let events: Vec<String> = r.events.iter().map(u64::to_string).collect();
        let _ = writeln!(out, "  [routine] {}: {}  [events.jsonl lines {}]", r.routine.as_str(), r.why, events.join(","));
    }
    for g in &ev.gate_failures {
        let _ = writeln!(out, "  [gate] {g}");
    }
    for n in &ev.notes {
        let _ = writeln!(out, "  [note] {n}");
    }
    let sources: Vec<String> = ev
        .policies
        .iter()
        .map(|p| {
            let version = p.version.as_deref().map(|v| format!("version {v}, ")).unwrap_or_default();
            let signed = p.signed_by.as_deref().map(|k| format!(", signed by {k}")).unwrap_or_default();
            format!("{} ({version}{}{signed})", p.source, &p.sha256[..12])
        })
        .collect();
    let _ = writeln!(out, "  policies: {}", sources.join(", "));
    out
}
