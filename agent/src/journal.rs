//! The tamper-evident journal: every run, verdict, commit and force, appended as one JSON line
//! that binds its intent (argv, cwd, policy hashes, binary hash, host) to its outputs' hashes
//! and to the previous entry's hash. A head file keeps the last (seq, hash), so cutting
//! entries off the end is caught too. Each entry is signed with the host's run key
//! (`crate::keys`): an edit that recomputes the hashes of the chain and its head is still
//! caught, since it cannot re-sign.
//!
//! Default `/var/lib/pilot/journal.jsonl`; `PILOT_JOURNAL` overrides it.
use std::{
    collections::BTreeMap,
    fs::{self, OpenOptions},
    io::Write,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    error::{FileError, JOURNAL, OnPath},
    policy::sha256_hex,
};

pub const DEFAULT_PATH: &str = "/var/lib/pilot/journal.jsonl";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn path() -> PathBuf {
    std::env::var_os("PILOT_JOURNAL").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub ts_unix_ms: u128,
    /// run, verdict, commit, force.
    pub kind: String,
    pub host: String,
    pub run_dir: String,
    /// What was asked: argv, cwd, policy hashes, pilot binary hash.
    pub intent: Value,
    /// sha256 of each output file, by name.
    pub outputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub prev: String,
    /// The run key that signed it (`ed25519:HEX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    pub hash: String,
    /// ed25519 over `hash` (domain `pilot.journal/v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

impl Entry {
    /// The hash covers every field but `hash` and `sig`, in a fixed order (sorted keys).
    fn compute_hash(&self) -> String {
        let mut v = serde_json::to_value(self).expect("entry serializes");
        let o = v.as_object_mut().expect("object");
        o.remove("hash");
        o.remove("sig");
        sha256_hex(v.to_string().as_bytes())
    }
}

/// What to record (the journal fills seq, prev, hash and time).
pub struct Record<'a> {
    pub kind: &'a str,
    pub run_dir: &'a Path,
    pub intent: Value,
    pub outputs: &'a [&'a str],
    pub verdict: Option<&'a str>,
    pub note: Option<String>,
}

/// Append one entry; returns its seq.
pub fn append(r: Record) -> Result<u64> {
    append_to(&path(), r)
}

/// Append one entry to the journal at `path`, signed with the host's run key. An entry that
/// cannot be written whole (a full disk) is taken back, so the journal and its head stay as
/// they were and the chain intact.
fn append_to(path: &Path, r: Record) -> Result<u64> {
    let key = crate::keys::run_key()?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).on("creating", dir, JOURNAL)?;
    }
    let file = OpenOptions::new().create(true).append(true).read(true).open(path).on("opening the journal", path, JOURNAL)?;
    // One writer at a time: concurrent pilots share the journal.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    let (seq, prev) = match last(path)? {
        Some(e) => (e.seq + 1, e.hash),
        None => (1, GENESIS.to_string()),
    };
    let mut outputs = BTreeMap::new();
    for name in r.outputs {
        // Streamed (not read whole), and not hashed again when the decision just hashed it.
        if let Ok(sha) = crate::filestate::sha256_file(&r.run_dir.join(name)) {
            outputs.insert(name.to_string(), sha);
        }
    }
    let mut e = Entry {
        seq,
        ts_unix_ms: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
        kind: r.kind.into(),
        host: crate::procfs::hostname(),
        run_dir: r.run_dir.display().to_string(),
        intent: r.intent,
        outputs,
        verdict: r.verdict.map(str::to_string),
        note: r.note,
        prev,
        signer: Some(crate::keys::literal(&key.verifying_key())),
        hash: String::new(),
        sig: None,
    };
    e.hash = e.compute_hash();
    e.sig = Some(crate::keys::sign(key, crate::keys::JOURNAL, e.hash.as_bytes()));
    let mut line = serde_json::to_string(&e).context("encoding a journal entry")?;
    line.push('\n');
    let before = file.metadata().on("reading", path, JOURNAL)?.len();
    let head = head_path(path);
    let written = (&file)
        .write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .on("writing the journal", path, JOURNAL)
        .and_then(|()| write_head(&head, &e));
    if let Err(err) = written {
        let _ = file.set_len(before);
        let kept = match seq {
            1 => "the journal as it was (empty)".to_string(),
            n => format!("the journal as it was (entries 1 to {})", n - 1),
        };
        return Err(err.kept(vec![kept]).into());
    }
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    Ok(seq)
}

/// The head file, replaced whole (written beside it, then renamed), so a full disk cannot leave
/// it half written.
fn write_head(head: &Path, e: &Entry) -> Result<(), FileError> {
    let mut tmp = head.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = fs::write(&tmp, format!("{} {}\n", e.seq, e.hash))
        .on("writing the journal's head", &tmp, JOURNAL)
        .and_then(|()| fs::rename(&tmp, head).on("writing the journal's head", head, JOURNAL));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

fn last(path: &Path) -> Result<Option<Entry>> {
    // Unreadable is not empty: starting the chain again at 1 would break it.
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(FileError::new("reading the journal", path, e, JOURNAL).into()),
    };
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => Ok(Some(serde_json::from_str(l).context("the journal's last entry is not valid: run `pilot journal verify`")?)),
        None => Ok(None),
    }
}

/// The entries recorded for one run directory (unreadable lines are left to `verify`).
pub fn entries_for(path: &Path, run_dir: &Path) -> Vec<Entry> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let run_dir = run_dir.display().to_string();
    text.lines().filter_map(|l| serde_json::from_str::<Entry>(l).ok()).filter(|e| e.run_dir == run_dir).collect()
}

/// Check every entry's hash, signature, the chain, the sequence and the head against this
/// host's run key. Ok(count) or the first bad entry described.
pub fn verify(path: &Path) -> Result<u64, String> {
    let trusted: Vec<_> = crate::keys::run_public().into_iter().collect();
    verify_with(path, &trusted)
}

/// `verify` with the keys entries may be signed by (none: each entry's own signer is taken,
/// which proves integrity but not who wrote it).
pub fn verify_with(path: &Path, trusted: &[ed25519_dalek::VerifyingKey]) -> Result<u64, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    verify_text(path, &text, trusted)
}

/// [`verify_with`] of the journal at `path` whose content is `text`.
fn verify_text(path: &Path, text: &str, trusted: &[ed25519_dalek::VerifyingKey]) -> Result<u64, String> {
    let mut signed_seen = false;
    let mut prev = GENESIS.to_string();
    let mut expect_seq = 1;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let e: Entry = serde_json::from_str(line).map_err(|err| format!("line {lineno}: not a journal entry ({err})"))?;
        if e.seq != expect_seq {
            return Err(format!("line {lineno}: entry {} where entry {expect_seq} belongs: entries were removed or reordered", e.seq));
        }
        if e.prev != prev {
            return Err(format!("line {lineno}: entry {} does not follow the entry before it: entries were removed, reordered or edited", e.seq));
        }
        if e.compute_hash() != e.hash {
            return Err(format!("line {lineno}: entry {} was edited (its hash does not match its content)", e.seq));
        }
        match (&e.signer, &e.sig) {
            (Some(signer), Some(sig)) => {
                let key = crate::keys::parse_literal(signer).ok_or_else(|| format!("line {lineno}: entry {}: malformed signer", e.seq))?;
                if !crate::keys::verify(&key, crate::keys::JOURNAL, e.hash.as_bytes(), sig) {
                    return Err(format!("line {lineno}: entry {}: its signature does not verify: the entry was forged or edited", e.seq));
                }
                if !trusted.is_empty() && !trusted.contains(&key) {
                    return Err(format!(
                        "line {lineno}: entry {} is signed by {}, not by this host's run key: it was written elsewhere or forged",
                        e.seq,
                        crate::keys::fingerprint(&key)
                    ));
                }
                signed_seen = true;
            }
            // Entries from before journals were signed may open a journal, never follow a signed one.
            _ if signed_seen => return Err(format!("line {lineno}: entry {} is not signed, after signed entries: its signature was stripped", e.seq)),
            _ => {}
        }
        prev = e.hash.clone();
        expect_seq += 1;
    }
    let count = expect_seq - 1;
    match fs::read_to_string(head_path(path)) {
        Ok(head) => {
            let mut parts = head.split_whitespace();
            let (seq, hash) = (parts.next().and_then(|s| s.parse::<u64>().ok()), parts.next());
            if seq != Some(count) || hash != Some(prev.as_str()) {
                return Err(format!(
                    "the journal ends at entry {count} but its head records entry {}: entries were cut off the end",
                    seq.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
                ));
            }
        }
        Err(_) if count == 0 => {}
        Err(_) => return Err(format!("{} is missing: cannot tell whether entries were cut off", head_path(path).display())),
    }
    Ok(count)
}

/// `pilot journal verify [--key PUB]...`.
pub fn verify_cmd(path: Option<PathBuf>, keys: &[PathBuf]) -> Result<i32> {
    let path = path.unwrap_or_else(self::path);
    if !path.exists() {
        bail!(crate::error::UsageError::new(format!("no journal at {}: nothing has been recorded there", path.display())));
    }
    let mut trusted: Vec<_> = crate::keys::run_public().into_iter().collect();
    for k in keys {
        trusted.push(crate::keys::load_public(k)?.key);
    }
    // Unreadable is not tampered: say why it cannot be read.
    let text = fs::read_to_string(&path).on("reading the journal", &path, JOURNAL)?;
    match verify_text(&path, &text, &trusted) {
        Ok(n) => {
            let by = if trusted.is_empty() {
                "each by the key it names (no run key here to check them against: give --key)".to_string()
            } else {
                let names: Vec<String> = trusted.iter().map(crate::keys::fingerprint).collect();
                format!("by {}", names.join(", "))
            };
            println!("journal {}: {n} entries, chain intact, signatures valid ({by})", path.display());
            Ok(0)
        }
        Err(why) => {
            println!("journal {}: TAMPERED: {why}", path.display());
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_with(n: usize) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("j.jsonl");
        // SAFETY: tests in this module run with their own journal path and run key.
        unsafe { std::env::set_var("PILOT_JOURNAL", &path) };
        unsafe { std::env::set_var("PILOT_RUN_KEY", d.path().join("run.key")) };
        for i in 0..n {
            append(Record {
                kind: "run",
                run_dir: d.path(),
                intent: serde_json::json!({"argv": ["x", i.to_string()]}),
                outputs: &[],
                verdict: Some("pass"),
                note: None,
            })
            .unwrap();
        }
        (d, path)
    }

    fn record(dir: &Path) -> Record<'_> {
        Record { kind: "run", run_dir: dir, intent: serde_json::json!({}), outputs: &[], verdict: None, note: None }
    }

    #[test]
    fn a_journal_under_a_file_says_where_and_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("file"), "").unwrap();
        let path = d.path().join("file/journal.jsonl");
        let msg = crate::error::one_line(&append_to(&path, record(d.path())).unwrap_err());
        assert!(msg.starts_with(&format!("creating {}: file exists (os error 17): something that is not a directory is in the way", d.path().join("file").display())), "{msg}");
        assert!(msg.contains("PILOT_JOURNAL=FILE"), "{msg}");
    }

    #[test]
    fn an_entry_that_cannot_be_written_whole_is_taken_back() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("j.jsonl");
        append_to(&path, record(d.path())).unwrap();
        let before = fs::read_to_string(&path).unwrap();
        // The head cannot be replaced (its temporary name is taken by a directory).
        fs::create_dir(d.path().join("j.jsonl.head.tmp")).unwrap();
        let msg = crate::error::one_line(&append_to(&path, record(d.path())).unwrap_err());
        assert!(msg.contains("j.jsonl.head.tmp: is a directory"), "{msg}");
        assert!(msg.contains("kept: the journal as it was (entries 1 to 1)"), "{msg}");
        assert_eq!(fs::read_to_string(&path).unwrap(), before, "the journal is as it was");
        assert_eq!(verify(&path), Ok(1), "and its chain and head intact");
    }

    // One test: the journal path is process-global (an environment variable).
    #[test]
    fn detects_edit_delete_reorder_and_truncate() {
        let (_d, path) = journal_with(4);
        assert_eq!(verify(&path), Ok(4));
        let orig = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = orig.lines().collect();

        fs::write(&path, orig.replace("\"pass\"", "\"block\"")).unwrap();
        assert!(verify(&path).unwrap_err().contains("edited"));

        let without_second = [lines[0], lines[2], lines[3]].join("\n") + "\n";
        fs::write(&path, without_second).unwrap();
        assert!(verify(&path).unwrap_err().contains("line 2"));

        let reordered = [lines[0], lines[2], lines[1], lines[3]].join("\n") + "\n";
        fs::write(&path, reordered).unwrap();
        assert!(verify(&path).is_err());

        let truncated = [lines[0], lines[1]].join("\n") + "\n";
        fs::write(&path, truncated).unwrap();
        assert!(verify(&path).unwrap_err().contains("cut off"));

        fs::write(&path, &orig[..orig.len() - 20]).unwrap();
        assert!(verify(&path).unwrap_err().contains("line 4"));

        fs::write(&path, &orig).unwrap();
        assert_eq!(verify(&path), Ok(4));
    }
}
