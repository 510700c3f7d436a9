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
    path::Path,
};


use crate::{
    error::{FileError, INPUT, OnPath},
    rundir::{CHANGES_SCHEMA, Change, Changes},
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
    let mounts = run_dir.join("mounts.json");
    let plans: Vec<Plan> = match fs::read_to_string(&mounts) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not a mounts.json of pilot ({e})")))
            .on("reading", &mounts, INPUT)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(FileError::new("reading", &mounts, e, INPUT)),
    };
    let mut changes = Vec::new();
    for plan in plans {
        let Plan::Overlay { mount_point, key } = plan else { continue };
        let upper = run_dir.join("upper").join(&key);
        if upper.is_dir() {
            walk(&upper, &upper, Path::new(&mount_point), &mut changes)?;
        }
    }
    fold_renames(&mut changes, &renames_from_trace(run_dir));
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Changes { schema: CHANGES_SCHEMA.into(), changes })
}

fn walk(root: &Path, dir: &Path, mount_point: &Path, out: &mut Vec<Change>) -> Result<(), FileError> {
    let mut entries: Vec<_> = fs::read_dir(dir).on("reading", dir, INPUT)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let upper = entry.path();
        let Ok(rel) = upper.strip_prefix(root) else { continue };
        let live = mount_point.join(rel);
        let meta = fs::symlink_metadata(&upper).on("reading", &upper, INPUT)?;
        let live_meta = fs::symlink_metadata(&live).ok();
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            // A whiteout: deleted from the pilot's view.
            out.push(Change {
                path: live.display().to_string(),
                change: "deleted".into(),
                kind: live_meta.as_ref().map(kind_of).unwrap_or("file").into(),
                live_size: live_meta.as_ref().filter(|m| m.is_file()).map(|m| m.len()),
                ..Default::default()
            });
            continue;
        }
        let mut c = Change { path: live.display().to_string(), kind: kind_of(&meta).into(), ..Default::default() };
        c.mode = Some(format!("{:o}", meta.mode() & 0o7777));
        c.owner = Some(format!("{}:{}", meta.uid(), meta.gid()));
        if let Some(lm) = &live_meta {
            c.live_mode = Some(format!("{:o}", lm.mode() & 0o7777));
            c.live_owner = Some(format!("{}:{}", lm.uid(), lm.gid()));
        }
        if ft.is_dir() {
            if let Some(from) = overlay_xattr(&upper, "redirect") {
                c.change = "renamed".into();
                c.from = Some(redirect_source(&from, &live, mount_point));
                out.push(c);
            } else if live_meta.as_ref().is_some_and(|m| m.is_dir()) {
                if overlay_xattr(&upper, "opaque").as_deref() == Some("y") {
                    c.change = "replaced".into();
                    out.push(c);
                } else {
                    c.xattrs = changed_xattrs(&upper, &live);
                    if c.mode != c.live_mode || c.owner != c.live_owner || !c.xattrs.is_empty() {
                        c.change = "metadata".into();
                        out.push(c);
                    }
                }
            } else {
                c.change = "created".into();
                out.push(c);
            }
            walk(root, &upper, mount_point, out)?;
            continue;
        }
        if ft.is_symlink() {
            c.target = fs::read_link(&upper).ok().map(|t| t.display().to_string());
            let live_target = fs::read_link(&live).ok().map(|t| t.display().to_string());
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
        match &live_meta {
            None => c.change = "created".into(),
            Some(lm) => {
                c.live_size = lm.is_file().then(|| lm.len());
                let metacopy = overlay_xattr(&upper, "metacopy").is_some();
                let content = !metacopy && ft.is_file() && !same_content(&upper, &live)?;
                c.content_changed = Some(content);
                if lm.file_type() != ft {
                    c.change = "modified".into();
                    c.content_changed = Some(true);
                } else if content {
                    c.change = "modified".into();
                } else {
                    c.xattrs = changed_xattrs(&upper, &live);
                    if c.mode != c.live_mode || c.owner != c.live_owner || !c.xattrs.is_empty() {
                        c.change = "metadata".into();
                    } else {
                        continue; // copied up, nothing changed (e.g. opened for writing only)
                    }
                }
            }
        }
        out.push(c);
    }
    Ok(())
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

/// `trusted.overlay.NAME` (root mounts) or `user.overlay.NAME` (userxattr mounts).
fn overlay_xattr(path: &Path, name: &str) -> Option<String> {
    for prefix in ["trusted.overlay.", "user.overlay."] {
        if let Some(v) = xattr(path, &format!("{prefix}{name}")) {
            return Some(v);
        }
    }
    None
}

fn xattr(path: &Path, name: &str) -> Option<String> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(String::from_utf8_lossy(&buf).trim_end_matches('\0').to_string())
}

/// Names of extended attributes that differ between the upper copy and the live file
/// (overlayfs's own `*.overlay.*` bookkeeping left out).
fn changed_xattrs(upper: &Path, live: &Path) -> Vec<String> {
    let (a, b) = (xattrs(upper), xattrs(live));
    let mut names: Vec<String> = a.keys().chain(b.keys()).filter(|n| !n.contains(".overlay.")).cloned().collect();
    names.sort();
    names.dedup();
    names.retain(|n| a.get(n) != b.get(n));
    names
}

fn xattrs(path: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(p) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return out };
    let mut buf = vec![0u8; 65536];
    let len = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if len <= 0 {
        return out;
    }
    for name in buf[..len as usize].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let value = xattr(path, &name).unwrap_or_default();
        out.insert(name, value);
    }
    out
}

/// An overlay redirect is absolute within the mount, or relative to the parent directory.
fn redirect_source(redirect: &str, live: &Path, mount_point: &Path) -> String {
    if let Some(abs) = redirect.strip_prefix('/') {
        mount_point.join(abs).display().to_string()
    } else {
        live.parent().unwrap_or(Path::new("/")).join(redirect).display().to_string()
    }
}

fn same_content(a: &Path, b: &Path) -> Result<bool, FileError> {
    let (ma, mb) = (fs::metadata(a).on("reading", a, INPUT)?, fs::metadata(b).on("reading", b, INPUT)?);
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (fs::File::open(a).on("reading", a, INPUT)?, fs::File::open(b).on("reading", b, INPUT)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba).on("reading", a, INPUT)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n]).on("reading", b, INPUT)?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
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
    for (old, new) in renames {
        let Some(gone) = changes.iter().position(|c| &c.path == old && c.change == "deleted") else { continue };
        let Some(arrived) = changes.iter().position(|c| &c.path == new && c.change != "deleted") else { continue };
        changes[arrived].from = Some(old.clone());
        if changes[arrived].change == "created" {
            changes[arrived].change = "renamed".into();
        } else {
            changes[arrived].change = "renamed".into();
            changes[arrived].content_changed = Some(true); // renamed over an existing file
        }
        changes.remove(gone);
    }
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
