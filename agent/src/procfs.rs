//! What /proc says about a live process. Used for what started before tracing (the root's
//! cwd and inherited fds, `--pid` trees) and as a fallback only: /proc races with the process,
//! the kernel records do not.
use std::{fs, path::PathBuf};

/// Nanoseconds per clock tick in /proc/<pid>/stat (USER_HZ is 100 on Linux).
fn ns_per_tick() -> u64 {
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { 1_000_000_000 / hz as u64 } else { 10_000_000 }
}

/// Fields of /proc/<pid>/stat after the `(comm)`, which may itself hold spaces and parens.
fn stat_fields(pid: u32) -> Option<(String, Vec<String>)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let rest = text[close + 1..].split_whitespace().map(str::to_string).collect();
    Some((comm, rest))
}

/// Start time since boot in ns (tick precision): with the pid, a process's identity.
pub fn start_ns(pid: u32) -> Option<u64> {
    // starttime is field 22; `rest` starts at field 3 (state).
    let (_, rest) = stat_fields(pid)?;
    rest.get(19)?.parse::<u64>().ok().map(|t| t * ns_per_tick())
}

pub fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.1.get(1)?.parse().ok()
}

/// Process group (field 5 of stat).
pub fn pgid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.1.get(2)?.parse().ok()
}

pub fn comm(pid: u32) -> Option<String> {
    Some(stat_fields(pid)?.0)
}

pub fn exists(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

pub fn cwd(pid: u32) -> Option<String> {
    link(&format!("/proc/{pid}/cwd"))
}

pub fn root(pid: u32) -> Option<String> {
    link(&format!("/proc/{pid}/root"))
}

pub fn exe(pid: u32) -> Option<String> {
    link(&format!("/proc/{pid}/exe"))
}

pub fn fd_target(pid: u32, fd: i32) -> Option<String> {
    link(&format!("/proc/{pid}/fd/{fd}"))
}

pub fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| split_nul(&b))
        .unwrap_or_default()
}

/// Open fds and what they point at.
pub fn fds(pid: u32) -> Vec<(i32, String)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let mut out: Vec<(i32, String)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            Some((fd, link(&e.path().to_string_lossy())?))
        })
        .collect();
    out.sort();
    out
}

/// Thread ids of a process.
pub fn threads(pid: u32) -> Vec<u32> {
    numeric_entries(&format!("/proc/{pid}/task"))
}

/// Every pid on the host.
pub fn pids() -> Vec<u32> {
    numeric_entries("/proc")
}

/// `pid` and every live descendant.
pub fn tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = pids().into_iter().filter_map(|p| Some((p, ppid(p)?))).collect();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

pub fn split_nul(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn numeric_entries(dir: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

fn link(path: &str) -> Option<String> {
    fs::read_link(path).ok().map(|p: PathBuf| p.to_string_lossy().into_owned())
}

/// Has the process exited but not been reaped yet?
pub fn is_zombie(pid: u32) -> bool {
    stat_fields(pid).and_then(|(_, rest)| rest.first().cloned()).is_some_and(|s| s == "Z")
}

/// `flags:` (octal open flags) and `pos:` (the file offset) of an fd, from /proc/<pid>/fdinfo.
pub fn fd_flags_pos(pid: u32, fd: i32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
    let flags = u64::from_str_radix(&field("flags:")?, 8).ok()?;
    let pos = field("pos:")?.parse().ok()?;
    Some((flags, pos))
}

/// The signals a signalfd fd reads (`sigmask:` in its fdinfo): they are handled, not acted on.
pub fn signalfd_mask(pid: u32, fd: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let mask = text.lines().find_map(|l| l.strip_prefix("sigmask:"))?;
    u64::from_str_radix(mask.trim(), 16).ok()
}

/// Signal masks of a process from /proc/<pid>/status: (SigCgt caught, SigIgn ignored, SigBlk
/// blocked by its main thread), bit N-1 for signal N.
pub fn signal_masks(pid: u32) -> Option<(u64, u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    Some((mask("SigCgt:")?, mask("SigIgn:")?, mask("SigBlk:")?))
}

/// Files a process maps shared and writable (`rw-s`): data it changes through memory.
pub fn mapped_writable_files(pid: u32) -> Vec<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let perms = f.nth(1)?;
            let path = f.nth(3)?;
            (perms.as_bytes().get(1) == Some(&b'w') && perms.as_bytes().get(3) == Some(&b's') && path.starts_with('/')).then(|| path.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Files a process maps (each once).
pub fn mapped_files(pid: u32) -> Vec<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The local port of a process's socket fd, from /proc/net (for listen after bind to port 0).
pub fn socket_port(pid: u32, fd: i32) -> Option<u16> {
    let target = fd_target(pid, fd)?;
    let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(9) == Some(&inode) {
                let port = f.get(1)?.rsplit(':').next()?;
                return u16::from_str_radix(port, 16).ok();
            }
        }
    }
    None
}

/// This host's name, as the kernel has it (one reader for the graph, the intent and the journal).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}
