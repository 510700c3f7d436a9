//! `pilot commit DIR`: run a pilot's intent live, traced the same way, and measure how far the
//! live effect graph is from the pilot's (fidelity, seed essay eq. 3). Refuses a blocked pilot
//! unless `--force`, which the journal records.
use anyhow::Result;

use crate::{
    cli::{CommitArgs, TraceArgs},
    error::{EXIT_BLOCKED, EXIT_COMMAND_FAILED, UsageError},
    fidelity,
    journal,
    policy::eval::Verdict as Decision,
    rundir::{FIDELITY, GRAPH, Intent, RunDir, Verdict},
    trace::{self, Launch},
};

pub fn run(args: CommitArgs) -> Result<i32> {
    let dir = RunDir::open(&args.dir)?;
    let intent: Intent = dir.read()?;
    let verdict: Verdict = dir.read()?;
    let decision = verdict.evaluation.verdict;
    if decision == Decision::Block {
        if !args.force {
            eprintln!(
                "pilot: refusing to commit: the pilot's verdict was {} (see {}/verdict.json). \
                 `pilot commit --force` overrides it, and the journal records that.",
                decision.as_str(),
                dir.path().display()
            );
            return Ok(EXIT_BLOCKED);
        }
        journal::append(journal::Record {
            kind: "force",
            run_dir: dir.path(),
            intent: intent.for_journal(),
            outputs: &["verdict.json"],
            verdict: Some(decision.as_str()),
            note: Some(format!("commit forced over a {} verdict by uid {}", decision.as_str(), rustix::process::getuid().as_raw())),
        })?;
    }
    let live = dir.live();
    if live.file(GRAPH).exists() {
        return Err(UsageError::new(format!("{} was already committed ({} exists)", dir.path().display(), live.path().display())).into());
    }
    eprintln!("pilot: committing `{}` live (verdict {})", intent.argv.join(" "), decision.as_str());
    let trace_args = TraceArgs {
        out: Some(live.path().to_path_buf()),
        verbose: args.verbose,
        pid: None,
        cgroup: None,
        events: Default::default(),
        command: intent.argv.clone(),
    };
    let status = trace::run_with(trace_args, Launch { cwd: Some(intent.cwd.clone()), env: Some(intent.env.clone()) })?;
    let max = verdict.evaluation.gate.max_fidelity_error;
    let fidelity = fidelity::compare(&dir.graph()?, &live.graph()?, dir.path(), max);
    dir.write(&fidelity)?;
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
        outputs: &["live/events.jsonl", "live/graph.json", FIDELITY],
        verdict: Some(if fidelity.within_gate { "fidelity-ok" } else { "fidelity-over-gate" }),
        note: Some(format!("live exit {status}")),
    })?;
    crate::report::write_into(dir.path());
    Ok(if status == 0 { 0 } else { EXIT_COMMAND_FAILED })
}
