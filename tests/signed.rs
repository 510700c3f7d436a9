//! The recovery pipeline on the real kernel: pilot -> signed decision -> approvals -> drift-checked
//! commit -> rollback. Every test has its own run key (PILOT_RUN_KEY), journal and host config
//! (PILOT_CONFIG) in its scratch directory, and pilots real scripts against files it made; each
//! refusal has its control (the same commit going through once the cause is gone, or the
//! production change the commit really makes).
mod common;

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use common::{Proc, Scratch, effects, wait_until};
use serde_json::Value;
use sha2::{Digest, Sha256};

const PILOT: &str = env!("CARGO_BIN_EXE_pilot");

/// One host as these tests see it: a run key, a journal, a config, a work directory.
struct Host {
    d: Scratch,
    work: PathBuf,
}

impl Host {
    fn new() -> Host {
        let d = Scratch::new();
        let work = d.path().join("work");
        fs::create_dir_all(&work).unwrap();
        Host { d, work }
    }

    fn run_key(&self) -> PathBuf {
        self.d.path().join("etc/run.key")
    }

    fn journal(&self) -> PathBuf {
        self.d.path().join("journal.jsonl")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(PILOT);
        c.args(args)
            .current_dir(&self.work)
            .env("PILOT_RUN_KEY", self.run_key())
            .env("PILOT_JOURNAL", self.journal())
            .env("PILOT_CONFIG", self.d.path().join("pilot.toml"))
            .env("PILOT_NO_DAEMON", "1")
            .stdin(Stdio::null());
        c
    }

    fn pilot(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `pilot run` of a shell script, expected to pass; its run directory.
    fn run(&self, name: &str, script: &str, policies: &[&str]) -> PathBuf {
        let dir = self.d.path().join(name);
        let mut args = vec!["run", "--out", dir.to_str().unwrap()];
        for p in policies {
            args.extend(["--policy", p]);
        }
        args.extend(["--", "sh", "-c", script]);
        let o = self.pilot(&args);
        assert_eq!(o.status.code(), Some(0), "pilot run {script}: {}", text(&o));
        dir
    }

    /// `pilot key new` (the approver's or signer's key); the secret key's path.
    fn key(&self, name: &str) -> PathBuf {
        let dir = self.d.path().join("keys");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let o = self.pilot(&["key", "new", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        path
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.work.join(name);
        fs::write(&p, content).unwrap();
        p
    }

    fn policy(&self, name: &str, text: &str) -> String {
        let p = self.d.path().join(name);
        fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn pub_of(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

#[test]
fn a_signed_decision_verifies_and_an_edit_of_any_bound_file_breaks_it() {
    let h = Host::new();
    h.file("conf.txt", "v1\n");
    let run = h.run("run", "echo v2 > conf.txt", &[]);
    let decision: Value = serde_json::from_str(&fs::read_to_string(run.join("decision.json")).unwrap()).unwrap();
    assert_eq!(decision["schema"], "pilot.decision/v1");
    assert_eq!(decision["verdict"], "pass");
    assert!(decision["signer"].as_str().unwrap().starts_with("ed25519:"));
    assert!(decision["snapshot_taken"]["boottime_ns"].as_u64().unwrap() > 0 && !decision["snapshot_taken"]["boot_id"].as_str().unwrap().is_empty());
    assert_eq!(decision["pilot_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(fs::metadata(h.run_key()).unwrap().permissions().mode() & 0o777, 0o600, "the run key made at first use is 0600");
    let snapshot: Value = serde_json::from_str(&fs::read_to_string(run.join("snapshot.json")).unwrap()).unwrap();
    let conf = format!("file:{}", h.work.join("conf.txt").display());
    let target = snapshot["targets"].as_array().unwrap().iter().find(|t| t["id"] == conf.as_str()).unwrap_or_else(|| panic!("{snapshot}"));
    assert_eq!(target["state"]["size"], 3, "the production state the pilot ran against");

    let alice = h.key("alice");
    let bound = ["intent.json", "snapshot.json", "events.jsonl", "summary.json", "graph.json", "changes.json", "sink.json", "verdict.json", "decision.json"];
    for name in bound {
        assert!(decision["files"].get(name).is_some() || name == "decision.json", "{name} is bound: {decision}");
        let path = run.join(name);
        let orig = fs::read(&path).unwrap();
        let mut edited = orig.clone();
        // One byte, as an attacker (or a careless editor) would change a verdict or a path.
        let at = edited.iter().position(|b| b.is_ascii_digit()).unwrap_or(0);
        edited[at] = if edited[at] == b'7' { b'8' } else { b'7' };
        fs::write(&path, &edited).unwrap();
        let o = h.pilot(&["approve", s(&run), "--key", s(&alice)]);
        assert_eq!(o.status.code(), Some(3), "{name} edited: {}", text(&o));
        let expect = if name == "decision.json" { "signature does not verify".to_string() } else { format!("{name} changed since the pilot") };
        assert!(text(&o).contains(&expect), "{name}: {}", text(&o));
        fs::write(&path, &orig).unwrap();
    }
    assert!(!run.join("approvals").exists(), "nothing was approved while the decision did not verify");
    // Control: the untouched decision verifies and is approved.
    let o = h.pilot(&["approve", s(&run), "--key", s(&alice), "--note", "INC-1: checked"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let approvals: Vec<_> = fs::read_dir(run.join("approvals")).unwrap().collect();
    assert_eq!(approvals.len(), 1);
    // The run key itself may not approve.
    let o = h.pilot(&["approve", s(&run), "--key", s(&h.run_key())]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("run key"), "{}", text(&o));
    let report = fs::read_to_string(run.join("report.html")).unwrap();
    assert!(report.contains("id=\"decision-status\" class=\"ok\""), "the report verifies the decision");
    assert!(report.contains("valid, of this decision"), "and the approval");
}

/// An approval of `run`'s decision signed with the run key (which `pilot approve` refuses to
/// make): written as an attacker with the key file would.
fn forge_run_key_approval(h: &Host, run: &Path) {
    use pilot::rundir::{APPROVAL_SCHEMA, Approval, ApprovalBody, Decision, RunDir, Stamp};
    let decision: Decision = serde_json::from_str(&fs::read_to_string(run.join("decision.json")).unwrap()).unwrap();
    let key = pilot::keys::load_secret(&h.run_key()).unwrap();
    let body = ApprovalBody {
        schema: APPROVAL_SCHEMA.into(),
        decision_sha256: decision.body.sha256(),
        run_dir: run.display().to_string(),
        approver: pilot::keys::literal(&key.verifying_key()),
        approver_name: "run".into(),
        note: None,
        approved: Stamp::now(),
    };
    let a = Approval { signature: pilot::keys::sign(&key, pilot::keys::APPROVAL, &body.canonical()), body };
    RunDir::at(run).write_approval("forged-by-run-key", &a).unwrap();
}

#[test]
fn commit_needs_the_required_approvals_of_this_exact_decision() {
    let h = Host::new();
    let alice = h.key("alice");
    let bob = h.key("bob");
    let mallory = h.key("mallory");
    let approvers = h.d.path().join("approvers");
    fs::create_dir_all(&approvers).unwrap();
    for k in [&alice, &bob] {
        fs::copy(pub_of(k), approvers.join(pub_of(k).file_name().unwrap())).unwrap();
    }
    let gate = h.policy("two-approvals.toml", &format!("version = 3\n[gate]\nrequired_approvals = 2\napprovers = [\"{}\"]\n", approvers.display()));
    let target = h.file("conf.txt", "old\n");
    let run = h.run("run", "echo new > conf.txt", &["default", &gate]);
    let other = h.run("other", "echo other > conf2.txt", &["default", &gate]);

    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("requires 2 approval(s)") && text(&o).contains("missing: alice, bob"), "{}", text(&o));

    // Approvals that do not count: the run key's, another run's, a key not listed.
    forge_run_key_approval(&h, &run);
    let o = h.pilot(&["approve", s(&other), "--key", s(&alice)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let theirs = fs::read_dir(other.join("approvals")).unwrap().next().unwrap().unwrap().path();
    fs::copy(&theirs, run.join("approvals/copied-from-other.json")).unwrap();
    let o = h.pilot(&["approve", s(&run), "--key", s(&mallory)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("it has 0") && t.contains("missing: alice, bob"), "{t}");
    assert!(t.contains("signed by the run key"), "{t}");
    assert!(t.contains("approves another decision"), "{t}");
    assert!(t.contains("not among the gate's approvers"), "{t}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "old\n", "nothing ran");

    let o = h.pilot(&["approve", s(&run), "--key", s(&alice)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("it has 1 (alice); missing: bob"), "{}", text(&o));

    // A changed policy invalidates every approval: the gate file is bound by hash.
    let o = h.pilot(&["approve", s(&run), "--key", s(&bob)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let orig = fs::read_to_string(&gate).unwrap();
    fs::write(&gate, orig.replace("required_approvals = 2", "required_approvals = 1")).unwrap();
    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("changed since the pilot"), "{}", text(&o));
    fs::write(&gate, orig).unwrap();

    // Control: two listed approvers signed this decision: it commits, for real.
    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("approved by alice, bob"), "{}", text(&o));
    assert_eq!(fs::read_to_string(&target).unwrap(), "new\n");
    let journal = fs::read_to_string(h.journal()).unwrap();
    assert!(journal.contains("\"kind\":\"approve\""), "approvals are journaled");
    assert!(journal.contains("\"version\":\"3\""), "the journal records the policy version");
}

#[test]
fn commit_refuses_after_the_target_file_changed() {
    let h = Host::new();
    let target = h.file("conf.txt", "as piloted\n");
    let run = h.run("run", "echo replaced > conf.txt", &[]);
    fs::write(&target, "changed by someone else\n").unwrap();
    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains(&format!("file:{}", target.display())) && t.contains("content changed"), "{t}");
    assert!(t.contains("pilot again"), "{t}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "changed by someone else\n", "the commit did not run");
    let drift: Value = serde_json::from_str(&fs::read_to_string(run.join("drift.json")).unwrap()).unwrap();
    assert!(!drift["refusals"].as_array().unwrap().is_empty(), "{drift}");
    // Control: a pilot of the state as it is now commits.
    let again = h.run("again", "echo replaced > conf.txt", &[]);
    let o = h.pilot(&["commit", s(&again)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fs::read_to_string(&target).unwrap(), "replaced\n");
}

#[test]
fn commit_refuses_after_a_new_live_process_opened_the_target() {
    let h = Host::new();
    let target = h.file("data.log", "records\n");
    let run = h.run("run", "echo compacted > data.log", &[]);
    // A reader starts after the pilot: overwriting its file is what the policy blocks.
    let mut reader = Proc::sh(&format!("exec sleep 60 < {}", target.display()));
    let fd0 = format!("/proc/{}/fd/0", reader.pid());
    assert!(wait_until(Duration::from_secs(10), || fs::read_link(&fd0).is_ok_and(|p| p == target)), "the reader holds the file");
    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("block now, pass then") && t.contains("now held by sleep"), "{t}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "records\n");
    // Control: the reader gone, the same decision commits.
    reader.kill();
    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fs::read_to_string(&target).unwrap(), "compacted\n");
}

#[test]
fn commit_refuses_a_pilot_older_than_max_age_unless_forced() {
    let h = Host::new();
    let gate = h.policy("fresh.toml", "[gate]\nmax_age = \"2s\"\n");
    let target = h.file("conf.txt", "old\n");
    let run = h.run("run", "echo new > conf.txt", &["default", &gate]);
    // Older than the gate allows (the boot clock counts, not the wall clock).
    std::thread::sleep(Duration::from_secs(3));
    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("over the gate's max_age 2s"), "{}", text(&o));
    assert_eq!(fs::read_to_string(&target).unwrap(), "old\n");
    let o = h.pilot(&["commit", "--force", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fs::read_to_string(&target).unwrap(), "new\n");
    let journal = fs::read_to_string(h.journal()).unwrap();
    assert!(journal.contains("\"kind\":\"force\"") && journal.contains("commit forced over drift"), "{journal}");
}

/// Content, mode, uid, gid, extended attributes, symlink target.
type State = (Vec<u8>, u32, u32, u32, Vec<(String, Vec<u8>)>, Option<PathBuf>);

/// What rollback must bring back: content, mode, owner, xattrs (and symlink targets).
fn state(p: &Path) -> State {
    let m = fs::symlink_metadata(p).unwrap();
    let content = if m.is_file() { fs::read(p).unwrap() } else { Vec::new() };
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut names[..]).unwrap_or(0);
    let mut xattrs: Vec<(String, Vec<u8>)> = names[..n]
        .split(|b| *b == 0)
        .filter(|x| !x.is_empty())
        .map(|name| {
            let name = String::from_utf8_lossy(name).into_owned();
            let mut v = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]).unwrap();
            (name, v[..len].to_vec())
        })
        .collect();
    xattrs.sort();
    (content, m.mode() & 0o7777, m.uid(), m.gid(), xattrs, fs::read_link(p).ok())
}

#[test]
fn commit_then_rollback_restores_files_byte_for_byte() {
    let h = Host::new();
    let conf = h.file("conf.txt", "port = 5432\nmax = 10\n");
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&conf, Some(1234), Some(2345)).unwrap();
    rustix::fs::setxattr(&conf, "user.owner-team", b"db", rustix::fs::XattrFlags::empty()).unwrap();
    let segment = h.file("segment-0001", &"x".repeat(100_000));
    let link = h.work.join("current");
    std::os::unix::fs::symlink("segment-0001", &link).unwrap();
    let before: Vec<_> = [&conf, &segment, &link].iter().map(|p| state(p)).collect();
    let script = format!(
        "printf 'port = 6543\\n' > conf.txt && chmod 600 conf.txt && chown 0:0 conf.txt && {fx} setxattr conf.txt user.owner-team ops && \
         rm segment-0001 && ln -sfn segment-0002 current && mkdir archive && echo moved > archive/index",
        fx = effects()
    );
    let run = h.run("run", &script, &[]);
    assert_eq!(before, [&conf, &segment, &link].iter().map(|p| state(p)).collect::<Vec<_>>(), "the pilot changed nothing");
    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The control: the commit really changed production.
    assert_eq!(fs::read_to_string(&conf).unwrap(), "port = 6543\n");
    assert_eq!(fs::metadata(&conf).unwrap().uid(), 0);
    assert!(!segment.exists() && h.work.join("archive/index").exists());
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("segment-0002"));
    let manifest: Value = serde_json::from_str(&fs::read_to_string(run.join("rollback/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["schema"], "pilot.rollback/v1");
    assert!(manifest["bytes"].as_u64().unwrap() >= 100_000, "{manifest}");

    let o = h.pilot(&["rollback", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let after: Vec<_> = [&conf, &segment, &link].iter().map(|p| state(p)).collect();
    assert_eq!(before, after, "content, mode, owner, xattrs and symlink target restored");
    assert!(!h.work.join("archive").exists(), "what the commit created is gone");
    // Again: nothing left to do.
    let o = h.pilot(&["rollback", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("0 restored"), "{}", text(&o));
    let journal = fs::read_to_string(h.journal()).unwrap();
    assert!(journal.contains("\"kind\":\"rollback\""), "journaled");
    let report = fs::read_to_string(run.join("report.html")).unwrap();
    assert!(report.contains("id=\"rollback-entries\"") && report.contains("signed by the run key, verified"), "the report shows the manifest");
}

#[test]
fn rollback_over_a_file_changed_since_the_commit_is_refused() {
    let h = Host::new();
    let conf = h.file("conf.txt", "v1\n");
    let other = h.file("other.txt", "a\n");
    let run = h.run("run", "echo v2 > conf.txt; echo b > other.txt", &[]);
    let o = h.pilot(&["commit", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    fs::write(&conf, "v3, an operator's fix after the commit\n").unwrap();
    let o = h.pilot(&["rollback", s(&run)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains(&conf.display().to_string()) && text(&o).contains("since the commit"), "{}", text(&o));
    assert_eq!(fs::read_to_string(&conf).unwrap(), "v3, an operator's fix after the commit\n", "not overwritten");
    assert_eq!(fs::read_to_string(&other).unwrap(), "b\n", "nothing was rolled back");
    // A manifest edited to restore other content is refused: it is signed with the run key.
    let m = run.join("rollback/manifest.json");
    let orig = fs::read_to_string(&m).unwrap();
    fs::write(&m, orig.replacen("\"mode\": 420", "\"mode\": 2541", 1)).unwrap();
    let o = h.pilot(&["rollback", "--force", s(&run)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("does not verify"), "{}", text(&o));
    fs::write(&m, orig).unwrap();
    // --force restores over it (journaled).
    let o = h.pilot(&["rollback", "--force", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fs::read_to_string(&conf).unwrap(), "v1\n");
    assert_eq!(fs::read_to_string(&other).unwrap(), "a\n");
}

#[test]
fn expired_and_unsigned_policies_are_refused() {
    let h = Host::new();
    let expired = h.policy("expired.toml", "version = \"2024.1\"\nexpires = 2001-01-01\n");
    let o = h.pilot(&["run", "--policy", &expired, "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(&format!("policy {expired} expired on 2001-01-01")), "{}", text(&o));
    let current = h.policy("current.toml", "version = \"2026.2\"\nexpires = 2999-01-01\n");
    let run = h.run("run", "true", &["default", &current]);
    let o = h.pilot(&["check", "--policy", "default", "--policy", &current, s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("version 2026.2"), "pilot check names the version: {}", text(&o));

    // A gate requiring signed policies: unsigned refused, signed admitted, edited refused.
    let signer = h.key("policy-signer");
    let governed = h.policy("governed.toml", &format!("version = 1\n[gate]\npolicy_signers = [\"{}\"]\nmax_risk = 0.5\n", pub_of(&signer).display()));
    let o = h.pilot(&["run", "--policy", &governed, "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not signed"), "{}", text(&o));
    let o = h.pilot(&["policy", "sign", &governed, "--key", s(&signer)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    h.run("signed", "true", &[&governed]);
    let orig = fs::read_to_string(&governed).unwrap();
    fs::write(&governed, orig.replace("max_risk = 0.5", "max_risk = 1.0")).unwrap();
    let o = h.pilot(&["run", "--policy", &governed, "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "loosened without a signature: {}", text(&o));
    assert!(text(&o).contains("changed after it was signed"), "{}", text(&o));
    fs::write(&governed, orig).unwrap();

    // The host's config can require it too, for every run (the built-in policy has no signature).
    fs::write(h.d.path().join("pilot.toml"), format!("policy_signers = [\"{}\"]\n", pub_of(&signer).display())).unwrap();
    let o = h.pilot(&["run", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("built-in policy carries no signature"), "{}", text(&o));
    h.run("host-signed", "true", &[&governed]);
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn tampering_with_a_signed_journal_entry_is_detected() {
    let h = Host::new();
    h.run("run", "true", &[]);
    h.run("run2", "true", &[]);
    let verify = |h: &Host| h.pilot(&["journal", "verify", s(&h.journal())]);
    let o = verify(&h);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("4 entries, chain intact, signatures valid"), "{}", text(&o));

    // An attacker without the run key edits entry 2 and recomputes every hash, the chain and
    // the head: the hash chain alone would not notice.
    let orig = fs::read_to_string(h.journal()).unwrap();
    let mut entries: Vec<Value> = orig.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    entries[1]["verdict"] = "block".into();
    let mut prev = entries[0]["hash"].as_str().unwrap().to_string();
    for e in entries.iter_mut().skip(1) {
        e["prev"] = prev.clone().into();
        let mut unsigned = e.clone();
        unsigned.as_object_mut().unwrap().remove("hash");
        unsigned.as_object_mut().unwrap().remove("sig");
        let hash = sha256_hex(unsigned.to_string().as_bytes());
        e["hash"] = hash.clone().into();
        prev = hash;
    }
    let forged: String = entries.iter().map(|e| format!("{e}\n")).collect();
    fs::write(h.journal(), &forged).unwrap();
    fs::write(format!("{}.head", h.journal().display()), format!("{} {prev}\n", entries.len())).unwrap();
    let o = verify(&h);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("entry 2: its signature does not verify"), "{}", text(&o));

    // Re-signed with another key: caught, it is not this host's run key.
    let mallory = pilot::keys::load_secret(&h.key("mallory")).unwrap();
    // A journal of one entry, written and signed with that key from scratch.
    let mut first: Value = serde_json::from_str(orig.lines().next().unwrap()).unwrap();
    first["signer"] = pilot::keys::literal(&mallory.verifying_key()).into();
    let mut unsigned = first.clone();
    unsigned.as_object_mut().unwrap().remove("hash");
    unsigned.as_object_mut().unwrap().remove("sig");
    let hash = sha256_hex(unsigned.to_string().as_bytes());
    first["sig"] = pilot::keys::sign(&mallory, pilot::keys::JOURNAL, hash.as_bytes()).into();
    first["hash"] = hash.clone().into();
    fs::write(h.journal(), format!("{first}\n")).unwrap();
    fs::write(format!("{}.head", h.journal().display()), format!("1 {hash}\n")).unwrap();
    let o = verify(&h);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not by this host's run key"), "{}", text(&o));

    // Control: the journal as written verifies again.
    fs::write(h.journal(), &orig).unwrap();
    let head = orig.lines().count();
    let last: Value = serde_json::from_str(orig.lines().last().unwrap()).unwrap();
    fs::write(format!("{}.head", h.journal().display()), format!("{head} {}\n", last["hash"].as_str().unwrap())).unwrap();
    assert_eq!(verify(&h).status.code(), Some(0));
}
