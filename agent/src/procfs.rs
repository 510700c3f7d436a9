//! What /proc says about a live process. Used for what started before tracing (the root's
//! cwd and inherited fds, `--pid` trees) and as a fallback only: /proc races with the process,
//! the kernel records do not.
//!
//! Files with a format (stat, maps, the /proc/net tables, mountinfo) are parsed by the `procfs`
//! crate. Symlinks (cwd, root, exe, fd/N), directory listings (pids, tasks, fds) and existence
//! are one std call each: `procfs::process::Process` opens /proc/PID first and, for fds, opens
//! and stats every link too (2-4x the syscalls, measured: readlink of fd/N 0.9 us vs 2.1 us;
//! listing every fd on the host 0.85 ms vs 1.3 ms), and would parse nothing we need.
use std::{fs, path::PathBuf};

use procfs::process::{MMapPath, Process};

/// /proc/<pid>/stat, parsed (comm may itself hold spaces and parens).
fn stat(pid: u32) -> Option<procfs::process::Stat> {
    Process::new(pid as i32).ok()?.stat().ok()
}

/// Start time since boot in ns (tick precision): with the pid, a process's identity.
pub fn start_ns(pid: u32) -> Option<u64> {
    let ns_per_tick = 1_000_000_000 / procfs::ticks_per_second().max(1);
    Some(stat(pid)?.starttime * ns_per_tick)
}

pub fn ppid(pid: u32) -> Option<u32> {
    u32::try_from(stat(pid)?.ppid).ok()
}

/// Process group (field 5 of stat).
pub fn pgid(pid: u32) -> Option<u32> {
    u32::try_from(stat(pid)?.pgrp).ok()
}

pub fn comm(pid: u32) -> Option<String> {
    Some(stat(pid)?.comm)
}

/// Has the process exited but not been reaped yet?
pub fn is_zombie(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state == 'Z')
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

/// Does `pid` run a pilot binary (its executable's name starts with `pilot`): a live agent, not
/// a recycled pid.
pub fn runs_pilot(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pilot")))
}

/// What fd `fd` of `pid` points at. On the tracker's path (a dirfd it has not seen): one
/// readlink, see the module comment.
pub fn fd_target(pid: u32, fd: i32) -> Option<String> {
    link(&format!("/proc/{pid}/fd/{fd}"))
}

/// The arguments, lossy: procfs's `Process::cmdline` fails on an argument that is not UTF-8
/// (a file name can be anything), and that process would lose its whole argv.
pub fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| split_nul(&b))
        .unwrap_or_default()
}

/// Open fds and what they point at, as readlink gives them (`socket:[123]`, a path...).
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

/// Every pid on the host. (procfs's `all_processes` opens every /proc/PID: 117 us for 89
/// processes against 35 us for the listing; the daemon lists them 4 times a second.)
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

/// A `key:` field of /proc/<pid>/fdinfo/<fd> (`flags:` in octal, `prog_id:`...), as text.
/// Hand-read: the procfs crate has no fdinfo parser.
pub fn fdinfo_field(pid: u32, fd: i32, key: &str) -> Option<String> {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    info.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string())
}

/// The open flags of an fd (fdinfo `flags:`, octal).
pub fn fd_flags(pid: u32, fd: i32) -> Option<u64> {
    u64::from_str_radix(&fdinfo_field(pid, fd, "flags:")?, 8).ok()
}

/// Is `fd` open for writing (O_WRONLY or O_RDWR in /proc/<pid>/fdinfo)?
pub fn fd_writable(pid: u32, fd: i32) -> bool {
    fd_flags(pid, fd).is_some_and(|flags| flags & 3 != 0)
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
    let Ok(maps) = Process::new(pid as i32).and_then(|p| p.maps()) else { return Vec::new() };
    let mut out: Vec<String> = maps
        .into_iter()
        .filter_map(|m| match m.pathname {
            // The file's name as it was opened; a deleted one is still the file it was.
            MMapPath::Path(p) => Some(p.to_string_lossy().trim_end_matches(" (deleted)").to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What a process maps in [start, end) now: per mapping, its file (None: anonymous, stack...).
/// Empty when nothing is mapped there or /proc cannot say.
pub fn mappings(pid: u32, start: u64, end: u64) -> Vec<Option<String>> {
    let Ok(maps) = Process::new(pid as i32).and_then(|p| p.maps()) else { return Vec::new() };
    maps.into_iter()
        .filter(|m| m.address.0 < end && start < m.address.1)
        .map(|m| match m.pathname {
            MMapPath::Path(p) => Some(p.to_string_lossy().trim_end_matches(" (deleted)").to_string()),
            _ => None,
        })
        .collect()
}

/// The local port of a process's socket fd, from its network namespace's /proc/net tables
/// (for listen after bind to port 0).
pub fn socket_port(pid: u32, fd: i32) -> Option<u16> {
    let target = fd_target(pid, fd)?;
    let inode: u64 = target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()?;
    let process = Process::new(pid as i32).ok()?;
    let tcp = || process.tcp().into_iter().chain(process.tcp6()).flatten().map(|e| (e.inode, e.local_address));
    let udp = || process.udp().into_iter().chain(process.udp6()).flatten().map(|e| (e.inode, e.local_address));
    tcp().chain(udp()).find(|(i, _)| *i == inode).map(|(_, addr)| addr.port())
}

/// A mount of this process's mount namespace, from /proc/self/mountinfo.
pub struct Mount {
    pub mount_point: String,
    pub fstype: String,
    pub read_only: bool,
}

/// The mounts a mountinfo text lists; a line that does not parse is skipped.
pub fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| procfs::process::MountInfo::from_line(line).ok())
        .map(|m| Mount {
            mount_point: unescape_mountinfo(&m.mount_point.to_string_lossy()),
            read_only: m.mount_options.contains_key("ro"),
            fstype: m.fs_type,
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`); procfs leaves them
/// (https://github.com/eminence/procfs/issues/262).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_with_escapes_and_optional_fields() {
        let text = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
29 22 0:25 / /mnt/my\\040data\\134x ro,nosuid master:3 propagate_from:2 - xfs /dev/vdb rw
not a mountinfo line
";
        let m = mounts(text);
        assert_eq!(m.len(), 2, "the bad line is skipped");
        assert_eq!((m[0].mount_point.as_str(), m[0].fstype.as_str(), m[0].read_only), ("/", "ext4", false));
        assert_eq!((m[1].mount_point.as_str(), m[1].fstype.as_str(), m[1].read_only), ("/mnt/my data\\x", "xfs", true));
        assert_eq!(unescape_mountinfo("/a\\04"), "/a\\04", "a truncated escape stays");
    }

    #[test]
    fn this_process_reads_back() {
        let me = std::process::id();
        assert_eq!(ppid(me), Some(std::os::unix::process::parent_id()));
        assert!(start_ns(me).is_some_and(|s| s > 0));
        assert!(comm(me).is_some_and(|c| !c.is_empty()));
        assert!(!is_zombie(me));
        assert!(mapped_files(me).iter().any(|f| f.starts_with('/')));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l);
        assert_eq!(socket_port(me, fd), Some(l.local_addr().unwrap().port()));
        let dir = tempfile::tempdir().unwrap();
        let written = fs::File::create(dir.path().join("w")).unwrap();
        let read = fs::File::open(dir.path().join("w")).unwrap();
        assert!(fd_writable(me, std::os::fd::AsRawFd::as_raw_fd(&written)));
        assert!(!fd_writable(me, std::os::fd::AsRawFd::as_raw_fd(&read)));
    }
}

/// This host's name, as the kernel has it (one reader for the graph, the intent and the journal).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}
