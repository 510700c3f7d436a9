//! `pilot commit DIR`: run a pilot's intent live, traced the same way, and measure how far the
//! live effect graph is from the pilot's (fidelity, seed essay eq. 3). Before it runs anything,
//! `crate::authorize` binds the commit to the pilot's signed decision, its approvals and the
//! host's state (drift); `crate::rollback` saves pre-images first and post-commit states after.
use anyhow::Result;

use crate::{
    cli::{CommitArgs, TraceArgs},
    error::{EXIT_COMMAND_FAILED, UsageError},
    fidelity,
    journal,
    rollback,
    rundir::{Changes, DRIFT, FIDELITY, GRAPH, Intent, ROLLBACK_MANIFEST, RunDir, Verdict},
    trace::{self, Launch},
};

pub fn run(args: CommitArgs) -> Result<i32> {
    let dir = RunDir::open(&args.dir)?;
    let intent: Intent = dir.read()?;
    let verdict: Verdict = dir.read()?;
    let live = dir.live();
    if live.file(GRAPH).exists() {
        return Err(UsageError::new(format!("{} was already committed ({} exists)", dir.path().display(), live.path().display())).into());
    }
    // Bound to the signed decision, approved, no drift (crate::authorize).
    let auth = match crate::authorize::check(&dir, &intent, &verdict, args.force)? {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    let decision = verdict.evaluation.verdict;
    let changes: Changes = dir.read()?;
    let manifest = rollback::save(&dir, &changes, auth.cannot_undo.clone(), auth.gate.rollback_max_bytes)?;
    eprintln!(
        "pilot: rollback: pre-images of {} path(s) ({} B) saved in {}/rollback/",
        manifest.entries.len(),
        manifest.bytes,
        dir.path().display()
    );
    // issue 15: the files as the second channel of the live run (no overlay there).
    let watch = crate::channels::live::Watch::before(&changes, &dir.graph()?);
    eprintln!("pilot: committing `{}` live (verdict {})", intent.argv.join(" "), decision.as_str());
    let trace_args = TraceArgs {
        out: Some(live.path().to_path_buf()),
        verbose: args.verbose,
        pid: None,
        cgroup: None,
        events: Default::default(),
        command: intent.argv.clone(),
    };
    let status = trace::run_with(trace_args, Launch { cwd: Some(intent.cwd.clone()), env: Some(intent.env.clone()), proxy: true });
    // The post-commit states are recorded whatever became of the live run: a rollback needs them.
    let manifest = rollback::finish(&dir, manifest, live.graph().ok().as_ref())?;
    let status = status?;
    let max = verdict.evaluation.gate.max_fidelity_error;
    let mut fidelity = fidelity::compare(&dir.graph()?, &live.graph()?, dir.path(), max);
    crate::channels::live::judge(&mut fidelity, watch.after());
    dir.write(&fidelity)?;
    eprintln!(
        "pilot: `pilot rollback {}` restores them{}",
        dir.path().display(),
        if manifest.cannot_undo.is_empty() && manifest.uncovered.is_empty() {
            String::new()
        } else {
            format!("; it cannot undo {} effect(s) (see rollback/manifest.json)", manifest.cannot_undo.len() + manifest.uncovered.len())
        }
    );
    eprintln!(
        "pilot: fidelity error {:.3} (gate max {:.3}): {}; {} edges only in the pilot, {} only live, {} diverging",
        fidelity.error,
        max,
        if fidelity.within_gate { "within the gate" } else { "OVER THE GATE: the pilot did not predict the live run" },
        fidelity.only_pilot.len(),
        fidelity.only_live.len(),
        fidelity.diverging.len()
    );
    journal::append(journal::Record {
        kind: "commit",
        run_dir: dir.path(),
        intent: intent.for_journal(),
        outputs: &["live/events.jsonl", "live/graph.json", FIDELITY, DRIFT, ROLLBACK_MANIFEST],
        verdict: Some(if fidelity.within_gate { "fidelity-ok" } else { "fidelity-over-gate" }),
        note: Some(format!("live exit {status}")),
    })?;
    crate::report::write_into(dir.path());
    Ok(if status == 0 { 0 } else { EXIT_COMMAND_FAILED })
}
