//! Commit authorization (seed essay 5.5 and 5.6): what `pilot commit` checks before anything
//! runs live, in this order:
//!
//! 1. the policies the pilot used are still the same files (same hashes), unexpired, signed
//!    where the host or a gate requires it;
//! 2. decision.json verifies: signed by this host's run key, every bound file as it was;
//! 3. the gate's `required_approvals`: distinct listed approvers, not the run key, each having
//!    signed this exact decision;
//! 4. the verdict was not block;
//! 5. the drift check (`crate::drift`) and the gate's `max_age`;
//! 6. rollback readiness, when the gate requires it.
//!
//! 1 to 3 cannot be forced: a commit is bound to what was piloted and approved. 4 to 6 give
//! way to `--force`, each time with a `force` journal entry saying what was overridden.
use std::path::PathBuf;

use anyhow::Result;

use crate::{
    decision,
    drift,
    error::EXIT_BLOCKED,
    governance::CommitGate,
    journal, keys,
    policy::{self, BUILT_IN, Loaded, eval::Verdict as Decision},
    rollback,
    rundir::{Changes, DRIFT, Drift, HostSnapshot, Intent, RunDir, VERDICT, Verdict},
};

/// A commit that may go ahead.
pub struct Authorized {
    pub gate: CommitGate,
    /// Effects of the pilot no rollback can undo (kept in the rollback manifest).
    pub cannot_undo: Vec<String>,
    pub drift: Drift,
}

/// Ok(authorized) or Err(exit status) after saying why on stderr.
pub fn check(dir: &RunDir, intent: &Intent, verdict: &Verdict, force: bool) -> Result<Result<Authorized, i32>> {
    let policies = reload(intent)?;
    for (then, now) in intent.policies.iter().zip(&policies) {
        if then.sha256 != now.sha256 {
            return refuse(&[format!(
                "policy {} changed since the pilot (sha256 {} then, {} now): its verdict and every approval were about the old one",
                then.source,
                &then.sha256[..12],
                &now.sha256[..12]
            )]);
        }
    }
    let gate = CommitGate::of(&policies)?;
    let run_key = keys::run_public();
    let Some(checked) = decision::check(dir, run_key.as_ref())? else {
        return refuse(&["the run directory has no decision.json (a pilot from before signed decisions)".into()]);
    };
    if !checked.problems.is_empty() {
        return refuse(&checked.problems);
    }
    if gate.required_approvals > 0 {
        let a = decision::approvals(dir, &checked.sha256, run_key.as_ref(), &gate);
        if (a.counted.len() as u32) < gate.required_approvals {
            let mut why = vec![format!(
                "the gate requires {} approval(s) of this decision by distinct approvers ({}); it has {}{}; missing: {} (`pilot approve {} --key KEY`)",
                gate.required_approvals,
                decision::names(&gate.approvers),
                a.counted.len(),
                if a.counted.is_empty() { String::new() } else { format!(" ({})", a.counted.join(", ")) },
                a.missing.join(", "),
                dir.path().display()
            )];
            why.extend(a.rejected.iter().map(|r| format!("not counted: {r}")));
            return refuse(&why);
        }
        eprintln!("pilot: approved by {}", a.counted.join(", "));
    }
    let decided = verdict.evaluation.verdict;
    if decided == Decision::Block {
        if !force {
            eprintln!(
                "pilot: refusing to commit: the pilot's verdict was {} (see {}/verdict.json). \
                 `pilot commit --force` overrides it, and the journal records that.",
                decided.as_str(),
                dir.path().display()
            );
            return Ok(Err(EXIT_BLOCKED));
        }
        forced(dir, intent, VERDICT, Some(decided.as_str()), format!("commit forced over a {} verdict by uid {}", decided.as_str(), uid()))?;
    }
    let snapshot: HostSnapshot = dir.read()?;
    let graph = dir.graph()?;
    let mut drift = drift::check(drift::Pilot {
        run_dir: dir.path(),
        snapshot: &snapshot,
        graph: &graph,
        evaluation: &verdict.evaluation,
        policies: &policies,
        max_age: gate.max_age,
    });
    let churn = |what: &[String], how: &str| (!what.is_empty()).then(|| format!("{} component(s) {how}", what.len()));
    for i in drift.items.iter().filter(|i| !i.target.starts_with("component:")) {
        eprintln!("pilot: drift: {}: {}", i.target, i.what);
    }
    let churned: Vec<String> = [churn(&drift.components_appeared, "appeared"), churn(&drift.components_gone, "went")].into_iter().flatten().collect();
    if !churned.is_empty() {
        eprintln!("pilot: drift: since the pilot, {} on the host (listed in drift.json)", churned.join(", "));
    }
    if !drift.refusals.is_empty() {
        drift.forced = force;
        dir.write(&drift)?;
        if !force {
            let mut why = drift.refusals.clone();
            why.push(format!("production is not what the pilot ran against: pilot again (`pilot run` the same command) and commit that run; see {}/drift.json", dir.path().display()));
            return refuse(&why);
        }
        forced(dir, intent, DRIFT, None, format!("commit forced over drift by uid {}: {}", uid(), drift.refusals.join("; ")))?;
    }
    dir.write(&drift)?;
    let changes: Changes = dir.read()?;
    let mut cannot_undo = rollback::readiness::cannot_undo(&graph, &changes, dir.path(), &rollback::readiness::FromGraph(&graph));
    let needed = rollback::bytes_needed(&rollback::paths(&changes));
    if needed > gate.rollback_max_bytes {
        cannot_undo.push(format!(
            "pre-images of {needed} B, over rollback_max_bytes ({} B): some changes would have no pre-image",
            gate.rollback_max_bytes
        ));
    }
    if gate.rollback_readiness_required && !cannot_undo.is_empty() {
        if !force {
            let mut why = vec!["the gate requires rollback readiness, and a rollback could not undo:".to_string()];
            why.extend(cannot_undo.iter().map(|c| format!("  {c}")));
            return refuse(&why);
        }
        forced(dir, intent, VERDICT, None, format!("commit forced without rollback readiness by uid {}: {}", uid(), cannot_undo.join("; ")))?;
    }
    Ok(Ok(Authorized { gate, cannot_undo, drift }))
}

/// The policies the pilot used, read again from where they were (relative paths from the
/// pilot's cwd).
fn reload(intent: &Intent) -> Result<Vec<Loaded>> {
    let paths: Vec<PathBuf> = intent
        .policies
        .iter()
        .map(|p| if p.source == BUILT_IN { PathBuf::from("default") } else { intent.cwd.join(&p.source) })
        .collect();
    let mut loaded = policy::load_all(&paths)?;
    for (l, p) in loaded.iter_mut().zip(&intent.policies) {
        l.source = p.source.clone();
    }
    Ok(loaded)
}

fn refuse(why: &[String]) -> Result<Result<Authorized, i32>> {
    eprintln!("pilot: refusing to commit:");
    for w in why {
        eprintln!("  - {w}");
    }
    Ok(Err(EXIT_BLOCKED))
}

fn forced(dir: &RunDir, intent: &Intent, output: &str, verdict: Option<&str>, note: String) -> Result<()> {
    eprintln!("pilot: {note}");
    journal::append(journal::Record { kind: "force", run_dir: dir.path(), intent: intent.for_journal(), outputs: &[output], verdict, note: Some(note) })?;
    Ok(())
}

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}
