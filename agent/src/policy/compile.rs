//! Policies compiled once, at load: rule targets parsed into selectors, path and program globs
//! into globset matchers, effect names into edge kinds. Evaluation then never re-parses a rule.
use globset::{GlobMatcher, GlobSet};

use super::{Policy, glob, routine::Routine};
use crate::graph::EdgeKind;

/// What a rule's `target` selects.
#[derive(Debug, Clone)]
pub enum Selector {
    /// `*`: any component but the traced tree and the one under recovery.
    AnyOther,
    /// `@held`: a file a live process holds open or maps.
    Held,
    /// `@live-log`: a file live processes hold and only append to.
    LiveLog,
    /// `@data-dir`: an existing path in a live data directory (or the directory, or an
    /// ancestor of it); not a log directory, not a rotated log.
    DataDir,
    /// `@data-dir-new`: a file the traced tree made in a live data directory.
    DataDirNew,
    /// `@data-dir-like`: such a new file, named like a file the component holds open there.
    DataDirLike,
    /// `@live-process`: a live process, or a process group the pilot did not create.
    LiveProcess,
    /// `@live-service`: an endpoint a live process listens on.
    LiveService,
    /// `@live-fs`: a filesystem live processes write to.
    LiveFs,
    /// `@host`: a host-wide setting (issue 16).
    Host,
    /// `@endpoint`: any destination outside the pilot, a live local service or another
    /// host's (issue 18).
    AnyEndpoint,
    /// A path glob (`/var/lib/**`).
    Path(GlobMatcher),
    /// `unix:/run/x.sock`.
    Unix(String),
    /// `ADDR:PORT`, `[v6]:PORT`, `:PORT` (empty addr: any).
    Endpoint { addr: String, port: u16 },
    /// A component by name.
    Component(String),
}

impl Selector {
    pub fn parse(t: &str) -> Result<Selector, globset::Error> {
        Ok(match t {
            "*" => Selector::AnyOther,
            "@held" => Selector::Held,
            "@live-log" => Selector::LiveLog,
            "@data-dir" => Selector::DataDir,
            "@data-dir-new" => Selector::DataDirNew,
            "@data-dir-like" => Selector::DataDirLike,
            "@live-process" => Selector::LiveProcess,
            "@live-service" => Selector::LiveService,
            "@live-fs" => Selector::LiveFs,
            "@host" => Selector::Host,
            "@endpoint" => Selector::AnyEndpoint,
            _ if t.starts_with('/') || t.contains('*') => Selector::Path(glob::matcher(t)?),
            _ if t.starts_with("unix:") => Selector::Unix(t[5..].to_string()),
            _ => match endpoint_spec(t) {
                Some((addr, port)) => Selector::Endpoint { addr: addr.to_string(), port },
                None => Selector::Component(t.to_string()),
            },
        })
    }
}

/// `ADDR:PORT`, `[v6]:PORT` or `:PORT`.
fn endpoint_spec(t: &str) -> Option<(&str, u16)> {
    let (addr, port) = t.rsplit_once(':')?;
    let port = port.parse().ok()?;
    Some((addr.trim_start_matches('[').trim_end_matches(']'), port))
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// Empty: every kind.
    pub effects: Vec<EdgeKind>,
    pub target: Selector,
    /// Protocol, operation, resource... of rpc effects (issue 18).
    pub rpc: super::rpc::RpcKeys,
    /// Only edges recognized as one of these (empty: any edge).
    pub when: Vec<Routine>,
    /// Not edges recognized as one of these.
    pub unless: Vec<Routine>,
}

impl Rule {
    /// The rule's effects name this kind (or none: every kind).
    pub fn selects_kind(&self, kind: crate::graph::EdgeKind) -> bool {
        self.effects.is_empty() || self.effects.contains(&kind)
    }

    pub fn selects(&self, e: &crate::graph::Edge) -> bool {
        self.selects_kind(e.kind) && self.rpc.selects(e)
    }

    /// Does an edge recognized as `routine` (None: no routine) count for this rule?
    pub fn counts(&self, routine: Option<Routine>) -> bool {
        let when = self.when.is_empty() || routine.is_some_and(|r| self.when.contains(&r));
        when && !routine.is_some_and(|r| self.unless.contains(&r))
    }
}

/// A component a policy names.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub paths: GlobSet,
    pub ports: Vec<u16>,
    pub unix: Vec<String>,
    pub exe: GlobSet,
}

/// The component under recovery: a name, or a glob over discovered names.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub name: String,
    pub glob: Option<GlobMatcher>,
}

impl Recovery {
    pub fn is(&self, component: &str) -> bool {
        self.name == component || self.glob.as_ref().is_some_and(|g| g.is_match(component))
    }
}

/// A policy ready to evaluate; `rules[i]` is `policy.rules[i]` compiled.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub rules: Vec<Rule>,
    pub components: Vec<Component>,
    pub recovery: Option<Recovery>,
}

/// Compile `p` (already validated: effect names are known); errors name what failed.
pub fn compile(p: &Policy) -> Result<Compiled, String> {
    let rules = p
        .rules
        .iter()
        .map(|r| {
            let target = Selector::parse(&r.target).map_err(|e| format!("rule `{}`: target `{}`: {e}", r.id, r.target))?;
            let effects = r.effects.iter().filter_map(|e| EdgeKind::parse(e)).collect();
            let rpc = super::rpc::RpcKeys::compile(r).map_err(|e| format!("rule `{}`: operations/resources: {e}", r.id))?;
            let routines = |names: &[String]| names.iter().filter_map(|n| Routine::parse(n)).collect();
            Ok(Rule { effects, target, rpc, when: routines(&r.when), unless: routines(&r.unless) })
        })
        .collect::<Result<_, String>>()?;
    let components = p
        .components
        .iter()
        .map(|c| {
            let bad = |e: globset::Error| format!("component `{}`: {e}", c.name);
            Ok(Component {
                name: c.name.clone(),
                paths: glob::set(&c.paths).map_err(bad)?,
                ports: c.ports.clone(),
                unix: c.unix.clone(),
                exe: glob::set(&c.exe).map_err(bad)?,
            })
        })
        .collect::<Result<_, String>>()?;
    let recovery = match &p.recovery {
        Some(r) => Some(Recovery {
            name: r.component.clone(),
            glob: r.component.contains(['*', '?', '[']).then(|| glob::matcher(&r.component)).transpose().map_err(|e| format!("recovery.component: {e}"))?,
        }),
        None => None,
    };
    Ok(Compiled { rules, components, recovery })
}
