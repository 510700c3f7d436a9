//! Making paths absolute. Lexical only: `..` is applied to the text, not through symlinks,
//! because the trace records what the process asked for, and the target may no longer exist.

/// `raw` (absolute) as seen from a process whose root is `root` (after chroot).
pub fn under_root(root: &str, raw: &str) -> String {
    if root == "/" || root.is_empty() { normalize(raw) } else { normalize_parts(&[root, raw]) }
}

/// `raw` (relative) under directory `base`; empty `raw` (AT_EMPTY_PATH) is `base` itself.
pub fn join(base: &str, raw: &str) -> String {
    if raw.is_empty() { normalize(base) } else { normalize_parts(&[base, raw]) }
}

/// `/proc/self/fd/N[/rest]` (or `/proc/<pid>/fd/N`, `/proc/thread-self/fd/N`) -> (N, rest).
pub fn proc_self_fd(raw: &str, pid: u32) -> Option<(i64, &str)> {
    let rest = raw.strip_prefix("/proc/")?;
    let (who, rest) = rest.split_once('/')?;
    if who != "self" && who != "thread-self" && who != pid.to_string() {
        return None;
    }
    let rest = rest.strip_prefix("fd/")?;
    let (num, tail) = rest.split_once('/').unwrap_or((rest, ""));
    Some((num.parse().ok()?, tail))
}

/// Collapse `//`, `.` and `..`; keep a leading `/` and never climb above it.
pub fn normalize(path: &str) -> String {
    normalize_parts(&[path])
}

/// `normalize` of the parts joined with `/`, built in one string (every path of every event
/// comes through here: no intermediate strings or vectors).
fn normalize_parts(parts: &[&str]) -> String {
    let absolute = parts.first().is_some_and(|p| p.starts_with('/'));
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    // Components of `out` that are `..` (a relative path climbing), which a later `..` keeps.
    let mut climbs = 0usize;
    for part in parts.iter().flat_map(|p| p.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                let depth = out.matches('/').count() + usize::from(!absolute && !out.is_empty());
                if depth > climbs {
                    let cut = out.rfind('/').unwrap_or(0);
                    out.truncate(cut);
                } else if !absolute {
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str("..");
                    climbs += 1;
                }
            }
            p => {
                if absolute || !out.is_empty() {
                    out.push('/');
                }
                out.push_str(p);
            }
        }
    }
    if absolute && out.is_empty() {
        out.push('/');
    } else if out.is_empty() {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_the_kernel_would_lexically() {
        assert_eq!(join("/var/lib", "db/../wal//0001"), "/var/lib/wal/0001");
        assert_eq!(join("/", "../../etc"), "/etc");
        assert_eq!(join("/srv", ""), "/srv");
        assert_eq!(under_root("/jail", "/etc/passwd"), "/jail/etc/passwd");
        assert_eq!(under_root("/", "/a/./b/"), "/a/b");
        assert_eq!(normalize("a/../../b"), "../b");
        assert_eq!(proc_self_fd("/proc/self/fd/5", 9), Some((5, "")));
        assert_eq!(proc_self_fd("/proc/9/fd/5/x", 9), Some((5, "x")));
        assert_eq!(proc_self_fd("/proc/8/fd/5", 9), None);
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("//a//b/./c/.."), "/a/b");
        assert_eq!(normalize("/a/../.."), "/");
        assert_eq!(normalize("a/.."), ".");
        assert_eq!(normalize("../../x"), "../../x");
        assert_eq!(normalize("a/b/../../../c"), "../c");
        assert_eq!(normalize("./"), ".");
        assert_eq!(join("/x", "../y/./z"), "/y/z");
    }
}
