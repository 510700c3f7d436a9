//! The signed decision (seed essay 5.5, 7.1): every `pilot run` ends by writing
//! `decision.json`, the SHA-256 of each file that says what was asked, what the host was and
//! what the pilot did (`rundir::BOUND`), the policies and the pilot binary, with the snapshot's
//! and the decision's boot-clock and wall-clock times, signed with the host's run key.
//! `pilot approve` signs a decision with another key (approval apart from execution); `pilot
//! commit` verifies both before anything runs live.
use std::{collections::BTreeMap, path::Path};

use anyhow::Result;
use ed25519_dalek::VerifyingKey;

use crate::{
    error::{EXIT_BLOCKED, UsageError},
    filestate::sha256_file,
    governance::CommitGate,
    graph::Graph,
    journal,
    keys::{self, Named},
    rundir::{
        APPROVAL_SCHEMA, Approval, ApprovalBody, BOUND, DECISION, DECISION_SCHEMA, Decision, DecisionBody, HostSnapshot, Intent,
        RunDir, SNAPSHOT, SNAPSHOT_SCHEMA, Stamp, Verdict,
    },
    snapshot::Snapshot,
};

/// What `pilot run` knows at its end, for snapshot.json and decision.json.
pub struct Pilot<'a> {
    pub snapshot: &'a Snapshot,
    pub taken: Stamp,
    pub listening_ports: &'a [u16],
    pub graph: &'a Graph,
    pub intent: &'a Intent,
    pub verdict: &'a Verdict,
}

/// Write snapshot.json, then decision.json signed with the run key.
pub fn record(dir: &RunDir, p: Pilot) -> Result<Decision> {
    let snapshot = HostSnapshot {
        schema: SNAPSHOT_SCHEMA.into(),
        taken: p.taken.clone(),
        host: p.intent.host.clone(),
        components: p.snapshot.components.clone(),
        filesystems: p.snapshot.filesystems.clone(),
        local_addrs: p.snapshot.local.iter().map(|a| a.to_string()).collect(),
        listening_ports: p.listening_ports.to_vec(),
        targets: crate::drift::targets(p.graph, dir.path()),
    };
    dir.write(&snapshot)?;
    let key = keys::run_key()?;
    let body = DecisionBody {
        schema: DECISION_SCHEMA.into(),
        run_dir: dir.path().display().to_string(),
        host: p.intent.host.clone(),
        verdict: p.verdict.evaluation.verdict.as_str().into(),
        files: hashes(dir)?,
        policies: p.verdict.evaluation.policies.clone(),
        pilot_sha256: p.intent.pilot_sha256.clone(),
        snapshot_taken: p.taken,
        decided: Stamp::now(),
        signer: keys::literal(&key.verifying_key()),
    };
    let decision = Decision { signature: keys::sign(key, keys::DECISION, &body.canonical()), body };
    dir.write(&decision)?;
    Ok(decision)
}

fn hashes(dir: &RunDir) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for name in BOUND {
        let path = dir.file(name);
        if path.exists() {
            out.insert(name.to_string(), sha256_file(&path)?);
        }
    }
    Ok(out)
}

/// A decision read back and checked.
pub struct Checked {
    pub decision: Decision,
    /// What approvals sign.
    pub sha256: String,
    pub signer: Option<VerifyingKey>,
    /// Empty: the decision verifies and every bound file is as it was signed.
    pub problems: Vec<String>,
}

/// Read decision.json and check its signature, its signer against `host_key` (the run key of
/// the host that commits; None where the decision is only read, e.g. an approver's
/// workstation), and every bound file's hash. None: the directory has no decision.
pub fn check(dir: &RunDir, host_key: Option<&VerifyingKey>) -> Result<Option<Checked>> {
    if !dir.file(DECISION).exists() {
        return Ok(None);
    }
    let decision: Decision = dir.read()?;
    let mut problems = Vec::new();
    let signer = keys::parse_literal(&decision.body.signer);
    match &signer {
        None => problems.push("decision.json names no valid signer".to_string()),
        Some(k) if !keys::verify(k, keys::DECISION, &decision.body.canonical(), &decision.signature) => {
            problems.push("decision.json's signature does not verify: the decision was edited".to_string())
        }
        Some(k) => {
            if let Some(run) = host_key.filter(|r| *r != k) {
                problems.push(format!(
                    "decision.json is signed by {}, not by this host's run key {}",
                    keys::fingerprint(k),
                    keys::fingerprint(run)
                ));
            }
        }
    }
    for name in BOUND {
        let path = dir.file(name);
        let now = if path.exists() { Some(sha256_file(&path)?) } else { None };
        match (decision.body.files.get(name), now) {
            (Some(then), Some(now)) if *then != now => {
                problems.push(format!("{name} changed since the pilot (sha256 {} signed, {} now)", short(then), short(&now)))
            }
            (Some(_), None) => problems.push(format!("{name} is gone since the pilot")),
            (None, Some(_)) => problems.push(format!("{name} was not there when the pilot decided")),
            _ => {}
        }
    }
    let sha256 = decision.body.sha256();
    Ok(Some(Checked { decision, sha256, signer, problems }))
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// How the approvals of a run directory stand against a gate.
pub struct Approvals {
    /// Distinct approvers whose approval counts, by name.
    pub counted: Vec<String>,
    /// Approvals that do not count, and why.
    pub rejected: Vec<String>,
    /// Listed approvers who have not approved, by name.
    pub missing: Vec<String>,
}

/// Check every `approvals/*.json` against `decision_sha256`, the run key and the gate.
pub fn approvals(dir: &RunDir, decision_sha256: &str, run_key: Option<&VerifyingKey>, gate: &CommitGate) -> Approvals {
    let mut counted: Vec<(VerifyingKey, String)> = Vec::new();
    let mut rejected = Vec::new();
    for (path, read) in dir.approvals() {
        let file = path.file_name().map(|f| format!("approvals/{}", f.to_string_lossy())).unwrap_or_default();
        let a = match read {
            Ok(a) => a,
            Err(e) => {
                rejected.push(format!("{file}: not an approval ({e})"));
                continue;
            }
        };
        match judge(&a, decision_sha256, run_key, gate) {
            Ok(key) => {
                if !counted.iter().any(|(k, _)| *k == key) {
                    let name = gate.approvers.iter().find(|n| n.key == key).map(|n| n.name.clone()).unwrap_or(a.body.approver_name.clone());
                    counted.push((key, name));
                }
            }
            Err(why) => rejected.push(format!("{file} ({}): {why}", a.body.approver_name)),
        }
    }
    counted.sort_by_key(|(k, _)| gate.approvers.iter().position(|n| n.key == *k));
    let missing = gate.approvers.iter().filter(|n| !counted.iter().any(|(k, _)| *k == n.key)).map(|n| n.name.clone()).collect();
    Approvals { counted: counted.into_iter().map(|(_, n)| n).collect(), rejected, missing }
}

/// The approver's key when `a` counts.
fn judge(a: &Approval, decision_sha256: &str, run_key: Option<&VerifyingKey>, gate: &CommitGate) -> Result<VerifyingKey, String> {
    let key = keys::parse_literal(&a.body.approver).ok_or("names no valid approver key")?;
    if !keys::verify(&key, keys::APPROVAL, &a.body.canonical(), &a.signature) {
        return Err("its signature does not verify".into());
    }
    if a.body.decision_sha256 != decision_sha256 {
        return Err(format!(
            "approves another decision ({}, decision {}), not this one ({})",
            a.body.run_dir,
            short(&a.body.decision_sha256),
            short(decision_sha256)
        ));
    }
    if run_key == Some(&key) {
        return Err("signed by the run key: the host that executes cannot approve its own decision".into());
    }
    if !gate.approvers.iter().any(|n| n.key == key) {
        return Err(format!("{} is not among the gate's approvers", keys::fingerprint(&key)));
    }
    Ok(key)
}

/// Sign `decision_sha256` as an approval by `key`.
pub fn approval(decision: &Checked, key: &ed25519_dalek::SigningKey, name: &str, note: Option<String>) -> Approval {
    let body = ApprovalBody {
        schema: APPROVAL_SCHEMA.into(),
        decision_sha256: decision.sha256.clone(),
        run_dir: decision.decision.body.run_dir.clone(),
        approver: keys::literal(&key.verifying_key()),
        approver_name: name.into(),
        note,
        approved: Stamp::now(),
    };
    Approval { signature: keys::sign(key, keys::APPROVAL, &body.canonical()), body }
}

/// `pilot approve DIR --key FILE [--note TEXT]`.
pub fn cmd_approve(dir: &Path, key: &Path, note: Option<String>) -> Result<i32> {
    let dir = RunDir::open(dir)?;
    let secret = keys::load_secret(key)?;
    let public = secret.verifying_key();
    let name = keys::load_public(key).map(|n| n.name).unwrap_or_else(|_| keys::fingerprint(&public));
    let Some(checked) = check(&dir, None)? else {
        return Err(UsageError::new(format!("{} has no decision.json: approve the run directory of a `pilot run`", dir.path().display())).into());
    };
    if !checked.problems.is_empty() {
        eprintln!("pilot: refusing to approve {}: its decision does not verify:", dir.path().display());
        for p in &checked.problems {
            eprintln!("  - {p}");
        }
        eprintln!("  pilot again and approve the new run directory.");
        return Ok(EXIT_BLOCKED);
    }
    if checked.signer == Some(public) {
        eprintln!("pilot: refusing to approve with the run key: approval must come from a key apart from the one that executes");
        return Ok(EXIT_BLOCKED);
    }
    let intent: Intent = dir.read()?;
    let verdict: Verdict = dir.read()?;
    let d = &checked.decision.body;
    eprintln!("pilot: approving `{}` on {} (verdict {}, risk {:.2})", intent.argv.join(" "), d.host, d.verdict, verdict.evaluation.risk);
    eprintln!("  decision {} signed by run key {}", short(&checked.sha256), checked.signer.map(|k| keys::fingerprint(&k)).unwrap_or_default());
    for (file, h) in &d.files {
        eprintln!("    {file:<14} sha256 {}", short(h));
    }
    let approval = approval(&checked, &secret, &name, note.clone());
    let path = dir.write_approval(&keys::fingerprint(&public), &approval)?;
    let rel = path.strip_prefix(dir.path()).unwrap_or(&path).display().to_string();
    journal::append(journal::Record {
        kind: "approve",
        run_dir: dir.path(),
        intent: intent.for_journal(),
        outputs: &[DECISION, SNAPSHOT, &rel],
        verdict: Some(&d.verdict),
        note: Some(format!("approved by {name} ({}){}", keys::fingerprint(&public), note.map(|n| format!(": {n}")).unwrap_or_default())),
    })?;
    crate::report::write_into(dir.path());
    println!("{}", path.display());
    Ok(0)
}

/// The names of the keys an approval gate lists, for messages.
pub fn names(keys: &[Named]) -> String {
    keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
}
