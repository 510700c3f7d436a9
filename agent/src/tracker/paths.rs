//! Making paths absolute. Lexical only: `..` is applied to the text, not through symlinks,
//! because the trace records what the process asked for, and the target may no longer exist.

/// `raw` (absolute) as seen from a process whose root is `root` (after chroot).
pub fn under_root(root: &str, raw: &str) -> String {
    if root == "/" || root.is_empty() { normalize(raw) } else { normalize(&format!("{root}/{raw}")) }
}

/// `raw` (relative) under directory `base`; empty `raw` (AT_EMPTY_PATH) is `base` itself.
pub fn join(base: &str, raw: &str) -> String {
    if raw.is_empty() { normalize(base) } else { normalize(&format!("{base}/{raw}")) }
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
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if absolute { format!("/{joined}") } else if joined.is_empty() { ".".into() } else { joined }
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
    }
}
