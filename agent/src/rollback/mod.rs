//! Rollback as an artifact (seed essay 7.7). Before the live run, `pilot commit` saves the
//! pre-image of exactly what the pilot showed would change (changes.json: every created,
//! modified, deleted, renamed or re-permissioned path, and everything inside a directory it
//! deleted, replaced or renamed): content (as `rollback/blobs/<sha256>`), kind, mode, owner,
//! extended attributes, symlink target, times. After the live run it records each path's
//! post-commit state; the manifest is signed with the run key.
//!
//! `pilot rollback DIR` restores every path that is in its post-commit state, and refuses
//! (exit 3, changing nothing) when a path is in neither that state nor its pre-image: someone
//! changed it since, and restoring would destroy their change. `--force` restores over it.
//! What it cannot undo is listed by `readiness` and kept in the manifest (`cannot_undo`).
pub mod readiness;

use std::{
    collections::BTreeSet,
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::{
    error::{EXIT_AGENT, EXIT_BLOCKED, UsageError},
    filestate::FileState,
    graph::{EdgeKind, Graph, NodeKind, TRACED},
    journal, keys,
    rundir::{
        Changes, Intent, Manifest, RESTORED_SCHEMA, ROLLBACK_BLOBS, ROLLBACK_MANIFEST, ROLLBACK_RESTORED, ROLLBACK_SCHEMA, Restored,
        RollbackEntry, RunDir, Stamp,
    },
};

const MANIFEST_SIG: &str = "rollback/manifest.sig";

/// The paths a rollback of `changes` must restore, each with the change that named it.
pub fn paths(changes: &Changes) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for c in &changes.changes {
        out.push((c.path.clone(), c.change.clone()));
        if let Some(from) = &c.from {
            out.push((from.clone(), format!("{} (source)", c.change)));
            tree(Path::new(from), &mut out);
        }
        if matches!(c.change.as_str(), "deleted" | "replaced" | "renamed") {
            tree(Path::new(&c.path), &mut out);
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|(p, _)| seen.insert(p.clone()));
    out.sort();
    out
}

/// Everything under a production directory (not following symlinks), as `in-tree`.
fn tree(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(meta) = fs::symlink_metadata(dir) else { return };
    if !meta.is_dir() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        out.push((e.path().display().to_string(), "in-tree".into()));
        tree(&e.path(), out);
    }
}

/// Bytes of content the pre-images of `paths` take.
pub fn bytes_needed(paths: &[(String, String)]) -> u64 {
    paths.iter().filter_map(|(p, _)| fs::symlink_metadata(p).ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}

/// Save the pre-images (just before the live run): `rollback/blobs/` and the manifest, its
/// post-commit states still to come (`finish`).
pub fn save(dir: &RunDir, changes: &Changes, cannot_undo: Vec<String>, max_bytes: u64) -> Result<Manifest> {
    let blobs = dir.file(ROLLBACK_BLOBS);
    fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let free = rustix::fs::statvfs(&blobs).map(|s| s.f_bavail * s.f_frsize).unwrap_or(u64::MAX);
    let mut bytes = 0u64;
    let mut entries = Vec::new();
    for (path, change) in paths(changes) {
        let p = Path::new(&path);
        let mut pre = FileState::capture(p, 0).unwrap_or_else(|_| FileState::absent());
        let mut entry = RollbackEntry { path: path.clone(), change, pre: FileState::absent(), post: None, blob: None, unsaved: None };
        match pre.kind.as_str() {
            "file" if bytes + pre.size > max_bytes => {
                entry.unsaved = Some(format!("{} B would take the pre-images over rollback_max_bytes ({max_bytes} B)", pre.size))
            }
            "file" if bytes + pre.size > free => entry.unsaved = Some(format!("no space for its {} B in the run directory", pre.size)),
            "file" => match save_blob(p, &blobs) {
                Ok((sha, size)) => {
                    bytes += size;
                    pre.sha256 = Some(sha.clone());
                    pre.size = size;
                    entry.blob = Some(sha);
                }
                Err(e) => entry.unsaved = Some(format!("could not be read: {e}")),
            },
            "socket" => entry.unsaved = Some("a socket cannot be restored".into()),
            _ => {}
        }
        entry.pre = pre;
        entries.push(entry);
    }
    let manifest = Manifest {
        schema: ROLLBACK_SCHEMA.into(),
        run_dir: dir.path().display().to_string(),
        saved: Stamp::now(),
        committed: None,
        entries,
        bytes,
        max_bytes,
        cannot_undo,
        uncovered: Vec::new(),
    };
    write_signed(dir, &manifest)?;
    Ok(manifest)
}

/// Copy a file into `blobs/<sha256>`, hashing as it goes; (sha256, size).
fn save_blob(path: &Path, blobs: &Path) -> std::io::Result<(String, u64)> {
    let tmp = blobs.join(format!(".partial.{}", std::process::id()));
    let mut dst = fs::File::create(&tmp)?;
    let (sha, size) = copy_hashing(&mut fs::File::open(path)?, &mut dst)?;
    fs::rename(&tmp, blobs.join(&sha))?;
    Ok((sha, size))
}

/// After the live run: every path's post-commit state, and the live run's changes the pilot
/// did not show (no pre-image: a rollback does not undo them).
pub fn finish(dir: &RunDir, mut manifest: Manifest, live: Option<&Graph>) -> Result<Manifest> {
    for e in &mut manifest.entries {
        e.post = Some(FileState::capture(Path::new(&e.path), u64::MAX).unwrap_or_else(|_| FileState::absent()));
    }
    manifest.committed = Some(Stamp::now());
    if let Some(g) = live {
        let known: BTreeSet<&str> = manifest.entries.iter().map(|e| e.path.as_str()).collect();
        let run_dir = dir.path().display().to_string();
        // path -> the effects the live run had on it, for paths the manifest does not have.
        let mut effects: std::collections::BTreeMap<&str, BTreeSet<EdgeKind>> = Default::default();
        for e in g.edges.iter().filter(|e| e.kind.is_destructive() || matches!(e.kind, EdgeKind::Create | EdgeKind::Mkdir | EdgeKind::Link | EdgeKind::Symlink)) {
            let from_traced = g.node(&e.from).is_some_and(|n| n.component.as_deref() == Some(TRACED));
            let Some(path) = g.node(&e.to).filter(|n| n.node_type == NodeKind::File).and_then(|n| n.path.as_deref()) else { continue };
            let pseudo = ["/proc/", "/sys/", "/dev/"].iter().any(|p| path.starts_with(p)) || path.starts_with(&run_dir);
            if from_traced && e.count > e.failed && !pseudo && !known.contains(path) {
                effects.entry(path).or_default().insert(e.kind);
            }
        }
        let mut uncovered = BTreeSet::new();
        for (path, kinds) in effects {
            // Made and gone within the live run (a tool's temporary file): nothing left to undo.
            let gone = fs::symlink_metadata(path).is_err();
            if gone && (kinds.contains(&EdgeKind::Create) || kinds.contains(&EdgeKind::Mkdir)) {
                continue;
            }
            let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            uncovered.insert(format!("{} {path}: the live run did this, the pilot did not show it", kinds.join("+")));
        }
        manifest.uncovered = uncovered.into_iter().collect();
    }
    write_signed(dir, &manifest)?;
    Ok(manifest)
}

/// The manifest and its run-key signature (rollback writes as root what it says: it must be
/// the one commit wrote).
fn write_signed(dir: &RunDir, manifest: &Manifest) -> Result<()> {
    let text = crate::rundir::pretty(manifest);
    dir.write_text(ROLLBACK_MANIFEST, &text)?;
    let sig = keys::sign(keys::run_key()?, keys::ROLLBACK, text.as_bytes());
    dir.write_text(MANIFEST_SIG, &format!("{sig}\n"))
}

fn read_verified(dir: &RunDir) -> Result<Result<Manifest, String>> {
    let path = dir.file(ROLLBACK_MANIFEST);
    let text = fs::read_to_string(&path).map_err(|_| {
        UsageError::new(format!("{} has no rollback/manifest.json: only a committed run directory can be rolled back", dir.path().display()))
    })?;
    let sig = fs::read_to_string(dir.file(MANIFEST_SIG)).unwrap_or_default();
    let key = keys::run_public().ok_or_else(|| UsageError::new("no run key on this host to check the rollback manifest with"))?;
    if !keys::verify(&key, keys::ROLLBACK, text.as_bytes(), sig.trim()) {
        return Ok(Err("rollback/manifest.json does not verify against this host's run key: it was edited since the commit".into()));
    }
    Ok(Ok(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?))
}

/// Is the manifest's signature valid (for the report)?
pub fn manifest_verifies(dir: &RunDir) -> Option<Result<(), String>> {
    match read_verified(dir) {
        Ok(Ok(_)) => Some(Ok(())),
        Ok(Err(e)) => Some(Err(e)),
        Err(_) => None,
    }
}

/// Where one path stands.
enum Stand {
    /// Already its pre-commit self.
    Unchanged,
    /// In its post-commit state: restore it.
    Restore,
    /// Neither: changed since the commit.
    Conflict(String),
}

fn stand(e: &RollbackEntry, now: &FileState) -> Stand {
    if now.same_as(&e.pre) {
        return Stand::Unchanged;
    }
    match &e.post {
        Some(post) if now.same_as(post) => Stand::Restore,
        Some(post) => Stand::Conflict(format!("changed since the commit: {} now, the commit left {}", now.describe(), post.describe())),
        None => Stand::Conflict(format!("{} now, and the commit recorded no post-commit state", now.describe())),
    }
}

/// `pilot rollback DIR [--force]`.
pub fn cmd(dir: &Path, force: bool) -> Result<i32> {
    let dir = RunDir::open(dir)?;
    let intent: Intent = dir.read()?;
    let manifest = match read_verified(&dir)? {
        Ok(m) => m,
        Err(why) => {
            eprintln!("pilot: refusing to roll back: {why}");
            return Ok(EXIT_BLOCKED);
        }
    };
    let mut result = Restored { schema: RESTORED_SCHEMA.into(), at: Stamp::now(), forced: force, restored: vec![], unchanged: vec![], conflicts: vec![], failed: vec![] };
    let mut todo: Vec<(&RollbackEntry, FileState)> = Vec::new();
    for e in &manifest.entries {
        let now = FileState::capture(Path::new(&e.path), u64::MAX).unwrap_or_else(|_| FileState::absent());
        match stand(e, &now) {
            Stand::Unchanged => result.unchanged.push(e.path.clone()),
            Stand::Restore => todo.push((e, now)),
            Stand::Conflict(why) => {
                result.conflicts.push(format!("{}: {why}", e.path));
                if force {
                    todo.push((e, now));
                }
            }
        }
    }
    for (e, now) in &todo {
        if now.kind == "dir" && !e.pre.exists() {
            let known: BTreeSet<&str> = manifest.entries.iter().map(|x| x.path.as_str()).collect();
            for extra in fs::read_dir(&e.path).into_iter().flatten().flatten().map(|x| x.path().display().to_string()) {
                if !known.contains(extra.as_str()) {
                    result.conflicts.push(format!("{}: holds {extra}, which the commit did not make: the directory is not removed", e.path));
                }
            }
        }
    }
    let missing: Vec<String> = todo
        .iter()
        .filter(|(e, _)| e.pre.kind == "file" && e.blob.is_none())
        .map(|(e, _)| format!("{}: no pre-image ({})", e.path, e.unsaved.as_deref().unwrap_or("not saved")))
        .collect();
    let record = |verdict: &str, note: String| {
        journal::append(journal::Record {
            kind: "rollback",
            run_dir: dir.path(),
            intent: intent.for_journal(),
            outputs: &[ROLLBACK_MANIFEST, ROLLBACK_RESTORED],
            verdict: Some(verdict),
            note: Some(note),
        })
    };
    if (!result.conflicts.is_empty() || !missing.is_empty()) && !force {
        eprintln!("pilot: refusing to roll back {}: nothing was changed", dir.path().display());
        for c in result.conflicts.iter().chain(&missing) {
            eprintln!("  - {c}");
        }
        eprintln!("  Look at these paths first; `pilot rollback --force` restores the pre-images over them (journaled).");
        dir.write(&result)?;
        record("refused", format!("{} path(s) changed since the commit, {} without pre-image", result.conflicts.len(), missing.len()))?;
        return Ok(EXIT_BLOCKED);
    }
    result.failed.extend(missing);
    restore_all(&dir, &todo, &mut result);
    dir.write(&result)?;
    let note = format!(
        "{} restored, {} already as before, {} conflict(s){}, {} failed",
        result.restored.len(),
        result.unchanged.len(),
        result.conflicts.len(),
        if force && !result.conflicts.is_empty() { " restored over (--force)" } else { "" },
        result.failed.len()
    );
    record(if result.failed.is_empty() { "restored" } else { "partly-restored" }, note.clone())?;
    crate::report::write_into(dir.path());
    eprintln!("pilot: rollback of {}: {note}", dir.path().display());
    for f in &result.failed {
        eprintln!("  failed: {f}");
    }
    if !manifest.cannot_undo.is_empty() || !manifest.uncovered.is_empty() {
        eprintln!("  not undone (no rollback can): {}", manifest.cannot_undo.len() + manifest.uncovered.len());
        for c in manifest.cannot_undo.iter().chain(&manifest.uncovered) {
            eprintln!("    - {c}");
        }
    }
    Ok(if result.failed.is_empty() { 0 } else { EXIT_AGENT })
}

/// Removals deepest first (what the commit created, what changed kind), then pre-images
/// shallowest first (directories before what they hold), then directory times; then each path
/// is read again and must be its pre-image.
fn restore_all(dir: &RunDir, todo: &[(&RollbackEntry, FileState)], result: &mut Restored) {
    let mut sorted: Vec<&(&RollbackEntry, FileState)> = todo.iter().collect();
    sorted.sort_by(|a, b| b.0.path.cmp(&a.0.path));
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for (e, now) in &sorted {
        if now.exists() && (!e.pre.exists() || e.pre.kind != now.kind) {
            let p = Path::new(&e.path);
            let r = if now.kind == "dir" { fs::remove_dir(p) } else { fs::remove_file(p) };
            if let Err(err) = r {
                result.failed.push(format!("{}: removing it: {err}", e.path));
                failed.insert(e.path.clone());
            }
        }
    }
    for (e, now) in sorted.iter().rev() {
        if e.pre.exists()
            && !failed.contains(&e.path)
            && let Err(err) = restore(dir, e, now)
        {
            result.failed.push(format!("{}: {err}", e.path));
            failed.insert(e.path.clone());
        }
    }
    for (e, _) in &sorted {
        if e.pre.kind == "dir" {
            let _ = set_mtime(Path::new(&e.path), e.pre.mtime_ns);
        }
    }
    for (e, _) in todo {
        if failed.contains(&e.path) {
            continue;
        }
        let now = FileState::capture(Path::new(&e.path), u64::MAX).unwrap_or_else(|_| FileState::absent());
        if now.same_as(&e.pre) {
            result.restored.push(format!("{}: {}", e.path, if e.pre.exists() { e.pre.describe() } else { "removed".into() }));
        } else {
            result.failed.push(format!("{}: is {} after restoring, not {}", e.path, now.describe(), e.pre.describe()));
        }
    }
}

/// Put one pre-image in place: files and symlinks are built beside the path and renamed over
/// it (readers see the old or the restored file, never half of one); when only metadata
/// differs, the file is kept and its metadata set.
fn restore(dir: &RunDir, e: &RollbackEntry, now: &FileState) -> std::io::Result<()> {
    let path = Path::new(&e.path);
    let pre = &e.pre;
    match pre.kind.as_str() {
        "dir" => {
            if !path.is_dir() {
                fs::create_dir(path)?;
            }
            meta(path, pre)
        }
        "file" if now.kind == "file" && now.sha256 == pre.sha256 => {
            meta(path, pre)?;
            set_mtime(path, pre.mtime_ns)
        }
        "file" => {
            let blob = e.blob.as_deref().ok_or_else(|| std::io::Error::other("no pre-image"))?;
            let tmp = beside(path);
            copy_blob(&dir.file(ROLLBACK_BLOBS).join(blob), blob, &tmp)?;
            meta(&tmp, pre)?;
            set_mtime(&tmp, pre.mtime_ns)?;
            fs::rename(&tmp, path)
        }
        "symlink" => {
            let tmp = beside(path);
            std::os::unix::fs::symlink(pre.target.as_deref().unwrap_or(""), &tmp)?;
            std::os::unix::fs::lchown(&tmp, Some(pre.uid), Some(pre.gid))?;
            fs::rename(&tmp, path)
        }
        "fifo" | "char-device" | "block-device" => {
            let tmp = beside(path);
            let kind = match pre.kind.as_str() {
                "fifo" => rustix::fs::FileType::Fifo,
                "char-device" => rustix::fs::FileType::CharacterDevice,
                _ => rustix::fs::FileType::BlockDevice,
            };
            rustix::fs::mknodat(rustix::fs::CWD, &tmp, kind, rustix::fs::Mode::from_raw_mode(pre.mode), pre.rdev)?;
            meta(&tmp, pre)?;
            fs::rename(&tmp, path)
        }
        k => Err(std::io::Error::other(format!("a {k} cannot be restored"))),
    }
}

fn beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.pilot-rollback.{}", std::process::id()))
}

/// Copy a blob, checking it is still the content it is named after.
fn copy_blob(blob: &Path, sha: &str, to: &Path) -> std::io::Result<()> {
    let mut dst = fs::OpenOptions::new().write(true).create_new(true).open(to)?;
    let (copied, _) = copy_hashing(&mut fs::File::open(blob)?, &mut dst)?;
    if copied != sha {
        let _ = fs::remove_file(to);
        return Err(std::io::Error::other(format!("the saved pre-image {} is corrupted", blob.display())));
    }
    Ok(())
}

/// Copy `src` into `dst` (synced), hashing what passes: (sha256, bytes).
fn copy_hashing(src: &mut fs::File, dst: &mut fs::File) -> std::io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        size += n as u64;
    }
    dst.sync_all()?;
    Ok((hex::encode(h.finalize()), size))
}

/// Owner, then mode (chown clears setuid bits), then extended attributes to exactly the
/// pre-image's. Failures show when the result is compared with the pre-image.
fn meta(path: &Path, pre: &FileState) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(pre.uid), Some(pre.gid))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(pre.mode))?;
    for name in crate::filestate::xattrs(path).keys() {
        if !pre.xattrs.contains_key(name) {
            let _ = rustix::fs::lremovexattr(path, name.as_str());
        }
    }
    for (name, value) in &pre.xattrs {
        if let Ok(v) = hex::decode(value) {
            let _ = rustix::fs::lsetxattr(path, name.as_str(), &v, rustix::fs::XattrFlags::empty());
        }
    }
    Ok(())
}

fn set_mtime(path: &Path, ns: i64) -> std::io::Result<()> {
    let t = rustix::fs::Timespec { tv_sec: ns.div_euclid(1_000_000_000), tv_nsec: ns.rem_euclid(1_000_000_000) as _ };
    let times = rustix::fs::Timestamps { last_access: t, last_modification: t };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}
