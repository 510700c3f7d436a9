//! What a pilot changed, read from the overlay's upper layers and the trace together:
//! created, modified (content or metadata only), deleted (whiteouts), directories replaced
//! (opaque), and renames (as renames, from the trace or overlay redirects). Both the `trusted.`
//! and `user.` xattr spellings are understood; with metacopy, an upper file may be an empty
//! stand-in, so content is never judged from the upper file alone.
pub mod render;

use std::{
    fs,
    io::{self, Read},
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};


use crate::{
    error::{FileError, INPUT},
    rundir::{CHANGES_SCHEMA, Change, Changes, HeldBack},
    sandbox::mounts::Plan,
};


/// `pilot diff DIR`: recomputed from the run directory, so it also works on older runs.
pub fn cmd(args: crate::cli::DiffArgs) -> anyhow::Result<i32> {
    if !args.dir.join("upper").is_dir() {
        return Err(crate::error::UsageError::new(format!(
            "{} has no upper/: give a run directory of `pilot run`",
            args.dir.display()
        ))
        .into());
    }
    let changes = compute(&args.dir)?;
    // issue 15: the blind spots the run found (graph.json), after the changes.
    let observed = crate::rundir::RunDir::at(&args.dir).graph().ok().and_then(|g| g.channels);
    if args.json {
        match &observed {
            // changes.json's fields, and the blind spots (an additional field).
            Some(o) => {
                #[derive(serde::Serialize)]
                struct WithBlindSpots<'a> {
                    #[serde(flatten)]
                    changes: &'a Changes,
                    blind_spots: crate::graph::BlindSpots,
                }
                let v = WithBlindSpots { changes: &changes, blind_spots: o.summary() };
                println!("{}", serde_json::to_string_pretty(&v).expect("changes serialize"));
            }
            None => print!("{}", render::json(&changes)),
        }
    } else {
        print!("{}", render::text(&changes));
        if let Some(o) = &observed {
            print!("{}", crate::channels::render(o));
        }
    }
    Ok(0)
}

/// Read the changes of the run in `run_dir` (its `upper/`, `mounts.json` and `events.jsonl`).
pub fn compute(run_dir: &Path) -> Result<Changes, FileError> {
    compute_with(run_dir, None)
}

/// `compute`, with the trace's successful renames (old, new) in order when the caller has them
/// (`pilot run` has its graph): events.jsonl is then not read again.
pub fn compute_with(run_dir: &Path, renames: Option<Vec<(String, String)>>) -> Result<Changes, FileError> {
    compute_io(run_dir, renames).map_err(|e| FileError::new("reading the overlay of", run_dir, e, INPUT))
}

fn compute_io(run_dir: &Path, renames: Option<Vec<(String, String)>>) -> io::Result<Changes> {
    let plans: Vec<Plan> = match fs::read_to_string(run_dir.join("mounts.json")) {
        Ok(text) => serde_json::from_str(&text).map_err(io::Error::other)?,
        Err(_) => Vec::new(),
    };
    let mut changes = Vec::new();
    for plan in plans {
        let Plan::Overlay { mount_point, key, .. } = plan else { continue };
        let upper = run_dir.join("upper").join(&key);
        if upper.is_dir() {
            let mp = Path::new(&mount_point);
            walk(&upper, &upper, mp, Some(mp), &mut changes)?;
        }
    }
    drop_redirect_sources(&mut changes);
    fold_renames(&mut changes, &renames.unwrap_or_else(|| renames_from_trace(run_dir)));
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Changes { schema: CHANGES_SCHEMA.into(), changes, held_back: held_back(run_dir) })
}

/// Events the sandbox's supervisor held back or refused (signals to live processes, host
/// and live-process changes), and write-opens of /proc/sys, /sys and cgroup files the
/// read-only /proc and /sys refused (no supervisor), in order.
fn held_back(run_dir: &Path) -> Vec<HeldBack> {
    let mut out = Vec::new();
    let Ok(events) = fs::File::open(run_dir.join("events.jsonl")) else { return out };
    // Line by line: a big run's events.jsonl is tens of MB, and reading it whole cost more
    // (fresh memory) than the scan.
    let lines = io::BufRead::lines(io::BufReader::with_capacity(1 << 16, events)).map_while(Result::ok);
    for (i, line) in lines.enumerate() {
        if !line.contains("\"supervisor\":\"held back\"") && !line.contains("\"supervisor\":\"refused\"") && !line.contains("\"EROFS\"") {
            continue;
        }
        let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let s = |k: &str| e[k].as_str().map(str::to_string);
        let mut kind = s("kind").unwrap_or_default();
        let how = match s("supervisor") {
            Some(h) => h,
            None => {
                // EROFS on a write-open of a kernel setting: the pilot's read-only /proc, /sys.
                let Some(k) = s("path").as_deref().and_then(crate::sandbox::supervisor::host_kind_of_path) else { continue };
                kind = k.as_str().into();
                "refused".into()
            }
        };
        let target = match (e["target_pid"].as_i64(), s("target"), s("path")) {
            (Some(p), _, _) if p < 0 => format!("process group {}", -p),
            (Some(p), _, _) => format!("pid {p}"),
            (None, Some(t), _) => t,
            (None, None, Some(p)) => crate::sandbox::supervisor::sysctl_key(&p).unwrap_or(p),
            _ => continue,
        };
        let value = s("value").or_else(|| s("signal_name"));
        out.push(HeldBack { kind, target, value, how, pid: e["pid"].as_u64().unwrap_or(0) as u32, comm: s("comm").unwrap_or_default(), event: i as u64 + 1 });
    }
    out
}

/// `live_dir`: the live directory `dir` stands for (not its own path inside a directory the
/// pilot renamed: its entries are the live ones of the redirect's source); None: there is
/// none (a directory the pilot created), so no entry has a live file to compare (a big
/// created tree costs one stat per file, not two).
fn walk(root: &Path, dir: &Path, mount_point: &Path, live_dir: Option<&Path>, out: &mut Vec<Change>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let upper = entry.path();
        let rel = upper.strip_prefix(root).map_err(io::Error::other)?;
        // The path as the pilot names it, and the live file it was made from.
        let shown = mount_point.join(rel);
        let live = live_dir.map(|d| d.join(entry.file_name()));
        // Through the directory's fd (statx at the entry's name), not the whole path again.
        let meta = entry.metadata()?;
        let live_meta = live.as_ref().and_then(|l| fs::symlink_metadata(l).ok());
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            // A whiteout: deleted from the pilot's view.
            out.push(Change {
                path: shown.display().to_string(),
                change: "deleted".into(),
                kind: live_meta.as_ref().map(kind_of).unwrap_or("file").into(),
                live_size: live_meta.as_ref().filter(|m| m.is_file()).map(|m| m.len()),
                ..Default::default()
            });
            continue;
        }
        // Read once: most entries (files the pilot created) have none, and a lookup per name
        // walked the whole path again (two or three per entry were a tenth of a big run's
        // post-processing).
        let upper_xattrs = xattrs(&upper);
        let mut c = Change { path: shown.display().to_string(), kind: kind_of(&meta).into(), ..Default::default() };
        c.mode = Some(format!("{:o}", meta.mode() & 0o7777));
        c.owner = Some(format!("{}:{}", meta.uid(), meta.gid()));
        if let Some(lm) = &live_meta {
            c.live_mode = Some(format!("{:o}", lm.mode() & 0o7777));
            c.live_owner = Some(format!("{}:{}", lm.uid(), lm.gid()));
        }
        if ft.is_dir() {
            let mut live_here = live.clone().filter(|_| live_meta.as_ref().is_some_and(|m| m.is_dir()));
            if let Some(from) = overlay_xattr(&upper_xattrs, "redirect") {
                let source = redirect_source(&from, &shown, mount_point);
                live_here = Some(PathBuf::from(&source));
                c.change = "renamed".into();
                c.from = Some(source);
                out.push(c);
            } else if live_meta.as_ref().is_some_and(|m| m.is_dir()) {
                if overlay_xattr(&upper_xattrs, "opaque").as_deref() == Some("y") {
                    c.change = "replaced".into();
                    out.push(c);
                } else {
                    c.xattrs = live.as_ref().map(|l| changed_xattrs(&upper_xattrs, l)).unwrap_or_default();
                    if c.mode != c.live_mode || c.owner != c.live_owner || !c.xattrs.is_empty() {
                        c.change = "metadata".into();
                        out.push(c);
                    }
                }
            } else {
                c.change = "created".into();
                out.push(c);
            }
            walk(root, &upper, mount_point, live_here.as_deref(), out)?;
            continue;
        }
        if ft.is_symlink() {
            c.target = fs::read_link(&upper).ok().map(|t| t.display().to_string());
            let live_target = live.as_ref().and_then(|l| fs::read_link(l).ok()).map(|t| t.display().to_string());
            c.change = match (&live_meta, live_target == c.target) {
                (None, _) => "created",
                (Some(_), false) => "modified",
                (Some(_), true) => "metadata",
            }
            .into();
            out.push(c);
            continue;
        }
        c.size = ft.is_file().then(|| meta.len());
        // A file renamed by the pilot (metacopy keeps its data in the lower layer, named by a
        // redirect): it stands for its source.
        let mut live_meta = live_meta;
        let mut live = live;
        // A hard link of a metacopy file carries the redirect too (its data is the source's),
        // but leaves no whiteout where the source was: only a rename does.
        if let Some(from) = overlay_xattr(&upper_xattrs, "redirect").filter(|_| ft.is_file()) {
            let source = redirect_source(&from, &shown, mount_point);
            if source != shown.display().to_string() && is_whiteout(&root.join(Path::new(&source).strip_prefix(mount_point).unwrap_or(Path::new("")))) {
                c.from = Some(source.clone());
                live_meta = fs::symlink_metadata(&source).ok();
                live = Some(PathBuf::from(&source));
            }
        }
        match (&live_meta, &live) {
            (Some(lm), Some(live)) => {
                c.live_size = lm.is_file().then(|| lm.len());
                let metacopy = overlay_xattr(&upper_xattrs, "metacopy").is_some();
                let content = !metacopy && ft.is_file() && !same_content(&upper, live)?;
                c.content_changed = Some(content);
                if c.from.is_some() {
                    c.change = "renamed".into();
                } else if lm.file_type() != ft {
                    c.change = "modified".into();
                    c.content_changed = Some(true);
                } else if content {
                    c.change = "modified".into();
                } else {
                    c.xattrs = changed_xattrs(&upper_xattrs, live);
                    if c.mode != c.live_mode || c.owner != c.live_owner || !c.xattrs.is_empty() {
                        c.change = "metadata".into();
                    } else {
                        continue; // copied up, nothing changed (e.g. opened for writing only)
                    }
                }
            }
            _ => c.change = "created".into(),
        }
        out.push(c);
    }
    Ok(())
}

fn is_whiteout(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

fn kind_of(m: &fs::Metadata) -> &'static str {
    let ft = m.file_type();
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else {
        "file"
    }
}

/// `trusted.overlay.NAME` (root mounts) or `user.overlay.NAME` (userxattr mounts), from an
/// entry's attributes (`xattrs`).
fn overlay_xattr(attrs: &std::collections::BTreeMap<String, String>, name: &str) -> Option<String> {
    ["trusted.overlay.", "user.overlay."].iter().find_map(|prefix| attrs.get(&format!("{prefix}{name}")).cloned())
}

/// Names of extended attributes that differ between the upper copy and the live file
/// (overlayfs's own `*.overlay.*` bookkeeping left out).
fn changed_xattrs(a: &std::collections::BTreeMap<String, String>, live: &Path) -> Vec<String> {
    let b = xattrs(live);
    let mut names: Vec<String> = a.keys().chain(b.keys()).filter(|n| !n.contains(".overlay.")).cloned().collect();
    names.sort();
    names.dedup();
    names.retain(|n| a.get(n) != b.get(n));
    names
}

/// An entry's extended attributes, values as text (overlayfs's are paths and flags).
fn xattrs(path: &Path) -> std::collections::BTreeMap<String, String> {
    let text = |v: Vec<u8>| String::from_utf8_lossy(&v).trim_end_matches('\0').to_string();
    crate::filestate::xattr_values(path).into_iter().map(|(name, value)| (name, text(value))).collect()
}

/// An overlay redirect is absolute within the mount, or relative to the parent directory.
fn redirect_source(redirect: &str, live: &Path, mount_point: &Path) -> String {
    if let Some(abs) = redirect.strip_prefix('/') {
        mount_point.join(abs).display().to_string()
    } else {
        live.parent().unwrap_or(Path::new("/")).join(redirect).display().to_string()
    }
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (ma, mb) = (fs::metadata(a)?, fs::metadata(b)?);
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// A directory (or metacopy file) the pilot renamed leaves a whiteout at its old path: the
/// `renamed` change already says it is gone from there.
fn drop_redirect_sources(changes: &mut Vec<Change>) {
    let sources: std::collections::HashSet<String> = changes.iter().filter(|c| c.change == "renamed").filter_map(|c| c.from.clone()).collect();
    changes.retain(|c| !(c.change == "deleted" && sources.contains(&c.path)));
}

/// Successful renames the trace saw, in order: (old, new).
fn renames_from_trace(run_dir: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(run_dir.join("events.jsonl")).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("\"kind\":\"rename\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["ret"] == 0)
        .filter_map(|e| Some((e["path"].as_str()?.to_string(), e["path2"].as_str()?.to_string())))
        .collect()
}

/// A deletion of `old` and a creation (or change) of `new` that the trace saw as one rename
/// become one `renamed` change.
fn fold_renames(changes: &mut Vec<Change>, renames: &[(String, String)]) {
    if renames.is_empty() {
        return;
    }
    // Each path's deleted and surviving change, looked up once per rename (a run renaming
    // thousands of files costs as many lookups, not renames times changes).
    let mut gone: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut present: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        let map = if c.change == "deleted" { &mut gone } else { &mut present };
        map.entry(c.path.clone()).or_insert(i);
    }
    let mut removed = vec![false; changes.len()];
    for (old, new) in renames {
        let Some(&g) = gone.get(old).filter(|g| !removed[**g]) else { continue };
        let Some(&a) = present.get(new) else { continue };
        if changes[a].change == "renamed" {
            continue; // an overlay redirect said so already
        }
        let arrived = &mut changes[a];
        arrived.from = Some(old.clone());
        if arrived.change != "created" {
            arrived.content_changed = Some(true); // renamed over an existing file
        }
        arrived.change = "renamed".into();
        removed[g] = true;
    }
    let mut i = 0;
    changes.retain(|_| {
        i += 1;
        !removed[i - 1]
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traced_rename_is_one_change() {
        let mut changes = vec![
            Change { path: "/d/a".into(), change: "deleted".into(), kind: "file".into(), ..Default::default() },
            Change { path: "/d/b".into(), change: "created".into(), kind: "file".into(), ..Default::default() },
        ];
        fold_renames(&mut changes, &[("/d/a".into(), "/d/b".into())]);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].change, "renamed");
        assert_eq!(changes[0].from.as_deref(), Some("/d/a"));
    }

    #[test]
    fn redirects_resolve_within_the_mount() {
        assert_eq!(redirect_source("/var/old", Path::new("/srv/new"), Path::new("/srv")), "/srv/var/old");
        assert_eq!(redirect_source("old", Path::new("/srv/x/new"), Path::new("/srv")), "/srv/x/old");
    }
}
