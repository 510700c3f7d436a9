//! Logs are not data. A live log is a file live processes only append to: every fd a live
//! process holds on it for writing has O_APPEND, or is write-only and sits at the end of the
//! file (its `pos:` in /proc/<pid>/fdinfo equals the file's size: it only ever grew it), and
//! nobody holds it read-write or maps it writable. A log directory holds only live logs and
//! their rotated siblings (`app.log.1`, `app.log.2.gz`, `app.log-20261201`, `app.1.log`).
//! Rotating a log the standard ways, or deleting old rotated files nobody holds, is routine;
//! the policy still sees deleting, truncating or overwriting a live log itself.
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What a path is, as logs go (graph.json's `log` on file nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogRole {
    /// A file live processes only append to.
    Live,
    /// A rotated sibling of a live log, in its directory, that nobody holds.
    Rotated,
    /// A directory holding only live logs and their rotated siblings.
    LogDir,
}

/// Open flags (fdinfo `flags:`).
const O_ACCMODE: u64 = 3;
const O_WRONLY: u64 = 1;
const O_APPEND: u64 = 0o2000;

/// A directory with more entries than this is not called a log directory (not read whole).
const LOG_DIR_MAX_ENTRIES: usize = 4096;

/// Compression suffixes logrotate and its peers give rotated files.
const COMPRESSED: &[&str] = &[".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".Z", ".zip"];

/// Does an fd opened for writing (`flags`, at offset `pos`) on a file of `size` bytes only
/// append? O_APPEND, or write-only at the end of the file.
pub fn appends(flags: u64, pos: u64, size: u64) -> bool {
    flags & O_APPEND != 0 || (flags & O_ACCMODE == O_WRONLY && pos == size)
}

/// Is `name` a rotated sibling of the log `live` (file names, not paths)?
pub fn is_rotated(name: &str, live: &str) -> bool {
    if name == live || live.is_empty() {
        return false;
    }
    let name = COMPRESSED.iter().find_map(|c| name.strip_suffix(c)).unwrap_or(name);
    // app.log.1, app.log-20261201, app.log_2026-12-01T00:00
    if let Some(id) = name.strip_prefix(live).and_then(|rest| rest.strip_prefix(['.', '-', '_'])) {
        return is_rotation_id(id);
    }
    // app.1.log, app-20261201.log (the id before the extension)
    let before_ext = live.rsplit_once('.').and_then(|(stem, ext)| name.strip_prefix(stem)?.strip_suffix(ext)?.strip_suffix('.'));
    before_ext.and_then(|id| id.strip_prefix(['.', '-', '_'])).is_some_and(is_rotation_id)
}

/// A rotation number or date stamp: digits, with date and time separators.
fn is_rotation_id(id: &str) -> bool {
    id.bytes().any(|b| b.is_ascii_digit()) && id.bytes().all(|b| b.is_ascii_digit() || b"-_.T:".contains(&b))
}

/// Do two file names follow one pattern, numbers aside (`segments_1` and `segments_2`,
/// `000012.sst` and `000013.sst`)? A component that holds one open reads the other kind too.
/// Names that are only a number (pids, counters) carry no pattern.
pub fn same_pattern(held: &str, new: &str) -> bool {
    let shape = |s: &str| {
        let mut out = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !out.ends_with('#') {
                    out.push('#');
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let (a, b) = (shape(held), shape(new));
    held != new && a == b && a.contains('#') && a.chars().filter(|c| *c != '#').count() >= 2
}

/// Does `dir` hold only the live logs `live` (file names) and their rotated siblings?
/// Subdirectories do not count (a data file there makes that directory a data directory).
pub fn is_log_dir(dir: &str, live: &[&str]) -> bool {
    if live.is_empty() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let mut n = 0;
    for entry in entries.flatten() {
        n += 1;
        if n > LOG_DIR_MAX_ENTRIES {
            return false;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !live.iter().any(|l| *l == name || is_rotated(&name, l)) {
            return false;
        }
    }
    true
}

/// The file name of a path.
pub fn file_name(path: &str) -> &str {
    Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_rotated_siblings_the_ways_rotators_do() {
        for n in ["app.log.1", "app.log.2.gz", "app.log-20261201", "app.log-2026-12-01.xz", "app.log-20261201-1764547200", "app.1.log", "app-20261201.log.gz", "app.log.10.zst"] {
            assert!(is_rotated(n, "app.log"), "{n}");
        }
        for n in ["app.log", "app.logger", "app.log.bak", "other.log.1", "app.log.old", "app.db.1", "app.log-final"] {
            assert!(!is_rotated(n, "app.log"), "{n}");
        }
        assert!(is_rotated("messages.3", "messages"));
    }

    #[test]
    fn appending_is_o_append_or_write_only_at_the_end() {
        assert!(appends(0o2001, 10, 999), "O_WRONLY|O_APPEND");
        assert!(appends(0o2002, 10, 999), "O_RDWR|O_APPEND writes only at the end");
        assert!(appends(0o1, 120, 120), "write-only at the end");
        assert!(!appends(0o1, 20, 120), "write-only in the middle: rewriting");
        assert!(!appends(0o2, 120, 120), "read-write: a data file");
    }

    #[test]
    fn patterns_ignore_numbers_but_not_words() {
        assert!(same_pattern("segments_1", "segments_2"));
        assert!(same_pattern("000012.sst", "000013.sst"));
        assert!(!same_pattern("data.db", "data.tgz"));
        assert!(!same_pattern("12345", "67890"), "a bare number is no pattern");
        assert!(!same_pattern("segments_1", "segments_1"));
    }

    #[test]
    fn a_log_dir_holds_only_logs_and_rotated_logs() {
        let d = std::env::temp_dir().join(format!("pilot-logdir-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("archive")).unwrap();
        for f in ["app.log", "app.log.1", "app.log.2.gz"] {
            std::fs::write(d.join(f), "x").unwrap();
        }
        let dir = d.to_str().unwrap();
        assert!(is_log_dir(dir, &["app.log"]));
        std::fs::write(d.join("app.pid"), "1").unwrap();
        assert!(!is_log_dir(dir, &["app.log"]), "a pid file beside the logs");
        assert!(!is_log_dir(dir, &[]));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
