//! Recovery policies: which components exist (beyond the discovered ones), which one is under
//! repair, which effects on which targets are dangerous, and the gate a run must pass.
//! TOML, strict: an unknown key is an error naming the file, line and key.
pub mod eval;
pub mod glob;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::UsageError;

/// The built-in policy, used when no `--policy` is given (also shipped as policies/default.toml).
pub const DEFAULT: &str = include_str!("../../../policies/default.toml");

#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, rename = "component")]
    pub components: Vec<ComponentSpec>,
    #[serde(default)]
    pub recovery: Option<Recovery>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub gate: Option<Gate>,
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
    /// or a selector: `@held` (a file a live process holds open or maps), `@data-dir` (in a
    /// live process's data directory), `@live-process`, `@live-service` (a listening endpoint),
    /// `@live-fs` (a filesystem a live process writes to; its effect is `fill`), `@host` (a
    /// host-wide setting: sysctl, sysfs, cgroup, netconf, clock, swap, mount, module).
    pub target: String,
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
}

/// A policy as loaded, with where it came from and its hash (for the journal).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub source: String,
    pub sha256: String,
    pub policy: Policy,
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
    Ok(Loaded { source: source.into(), sha256: sha256_hex(text.as_bytes()), policy })
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
        for e in &r.effects {
            if !crate::graph::SEVERITY_ORDER.contains(&e.as_str()) {
                return Err(UsageError::new(format!(
                    "{source}:{}: rule `{}`: unknown effect `{e}` (one of {})",
                    line_of(&format!("\"{e}\"")),
                    r.id,
                    crate::graph::SEVERITY_ORDER.join(", ")
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
        return Ok(vec![parse("(built-in default policy)", DEFAULT)?]);
    }
    // `--policy default` layers the built-in policy under a site's own files.
    paths.iter().map(|p| if p.as_os_str() == "default" { parse("(built-in default policy)", DEFAULT) } else { load(p) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}

/// The verdict as an SRE reads it in a terminal.
pub fn render(ev: &eval::Evaluation) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let affected = if ev.affected_components.is_empty() {
        "no other component affected".to_string()
    } else {
        format!("{} of {} components affected: {}", ev.affected_components.len(), ev.components, ev.affected_components.join(", "))
    };
    let _ = writeln!(
        out,
        "verdict: {}  risk {:.2}  containment {:.2} ({affected})",
        ev.verdict.as_str().to_uppercase(),
        ev.risk,
        ev.containment
    );
    for v in &ev.violations {
        let action = v.action.as_str();
        let events: Vec<String> = v.events.iter().map(u64::to_string).collect();
        let _ = writeln!(out, "  [{action}] {} (severity {:.1}): {}  [events.jsonl lines {}]", v.rule, v.severity, v.why, events.join(","));
    }
    for g in &ev.gate_failures {
        let _ = writeln!(out, "  [gate] {g}");
    }
    let sources: Vec<String> = ev.policies.iter().map(|p| format!("{} ({})", p.source, &p.sha256[..12])).collect();
    let _ = writeln!(out, "  policies: {}", sources.join(", "));
    out
}
