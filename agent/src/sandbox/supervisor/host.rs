//! Changes to the host the sandbox refuses: writes to /proc/sys (read-only in the pilot),
//! /sys and cgroup files (absent or read-only), the clock, swap, kernel modules, mounts. Each
//! is recorded as the effect the live run would have (kind `sysctl`, `sysfs`, `cgroup`,
//! `clock`, `swap`, `module`, `mount`) and the caller is told it succeeded, which is harmless:
//! nothing changed, and the action goes on as it would live. A write-open of a sysctl, /sys
//! or cgroup file gets a private memory file (memfd) in its place; what the action wrote
//! there is the value recorded when the pilot ends. The kernel never runs these calls.
use crate::event::Kind;
use std::os::fd::OwnedFd;

use super::{Call, Ctx, Notice, event, mem::Mem, notify::Answer, pids};

/// A write-open answered with a memfd: its value is read when the pilot ends.
pub struct HeldWrite {
    memfd: OwnedFd,
    call: Call,
    sender: pids::HostProcess,
    kind: Kind,
    path: String,
    /// What the file held when the memfd was filled with it (an O_RDWR open without O_TRUNC).
    prefilled: Option<Vec<u8>>,
}

/// Most held writes kept per run (each holds a memfd); beyond, opens go to the kernel.
const MAX_HELD_WRITES: usize = 4096;
/// Most bytes of a written value recorded.
const VALUE_MAX: usize = 256;
const AT_FDCWD: i64 = -100;

pub fn handle(ctx: &mut Ctx, call: &Call) -> Answer {
    match call.name {
        "open" | "openat" | "creat" | "openat2" => open(ctx, call),
        "clock_settime" | "settimeofday" | "adjtimex" | "clock_adjtime" => clock(ctx, call),
        "swapon" | "swapoff" => swap(ctx, call),
        "init_module" | "finit_module" | "delete_module" => module(ctx, call),
        "mount" | "umount2" => mount(ctx, call),
        _ => Answer::Continue,
    }
}

/// Only a root caller would succeed live; others get what live gives them: EPERM.
fn root_or_eperm(sender: &pids::HostProcess) -> Answer {
    if sender.uids[1] == 0 { Answer::Value(0) } else { Answer::Errno(libc::EPERM) }
}

/// (path, target, value) of a host change.
type Named = (Option<String>, Option<String>, Option<String>);

fn record(ctx: &mut Ctx, call: &Call, sender: &pids::HostProcess, kind: Kind, (path, target, value): Named, answer: &Answer) {
    super::record(ctx, call, sender, kind, super::What { target_pid: None, path, target, value }, answer);
}

/// A path argument of the caller, absolute (relative to its cwd or `dirfd`), normalized.
fn caller_path(call: &Call, mem: &Mem, addr: u64, dirfd: i64) -> Option<String> {
    let raw = mem.string(addr).ok()?;
    let full = if raw.starts_with('/') {
        raw
    } else {
        let base = if dirfd == AT_FDCWD { format!("/proc/{}/cwd", call.tid) } else { format!("/proc/{}/fd/{dirfd}", call.tid) };
        format!("{}/{raw}", std::fs::read_link(base).ok()?.display())
    };
    Some(normalize(&full))
}

/// `/a/./b//c/../d` -> `/a/b/d` (lexically; symlinks are not followed).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// What a write to `path` changes live: a sysctl, a cgroup file, another /sys knob.
pub fn classify(path: &str) -> Option<Kind> {
    if path.starts_with("/proc/sys/") {
        Some(Kind::Sysctl)
    } else if path.starts_with("/sys/fs/cgroup/") {
        Some(Kind::Cgroup)
    } else if path.starts_with("/sys/") {
        Some(Kind::Sysfs)
    } else {
        None
    }
}

/// `vm.swappiness` for /proc/sys/vm/swappiness.
pub fn sysctl_key(path: &str) -> Option<String> {
    path.strip_prefix("/proc/sys/").map(|k| k.replace('/', "."))
}

fn open(ctx: &mut Ctx, call: &Call) -> Answer {
    let Some(mem) = ctx.mem(call) else { return Answer::Continue };
    let (path_arg, dirfd, flags) = match call.name {
        "open" => (call.args[0], AT_FDCWD, call.args[1]),
        "creat" => (call.args[0], AT_FDCWD, 0o1101),
        "openat" => (call.args[1], call.int(0), call.args[2]),
        _ => {
            // openat2(dirfd, path, struct open_how { u64 flags; ... }, size)
            let Ok(how) = mem.read(call.args[2], 8) else { return Answer::Continue };
            (call.args[1], call.int(0), super::mem::u64_at(&how, 0))
        }
    };
    if flags & 0o3 == 0 && flags & 0o1000 == 0 {
        return Answer::Continue; // no write (O_CREAT alone on an existing file writes nothing)
    }
    let Some(path) = caller_path(call, &mem, path_arg, dirfd) else { return Answer::Continue };
    let Some(kind) = classify(&path) else { return Answer::Continue };
    // Live, only root writes these; the live file must be there (a missing sysctl is ENOENT
    // live too: the kernel's answer here, EROFS/ENOENT, is close enough).
    let Some(sender) = pids::host_process(call.tid) else { return Answer::Continue };
    let live_file = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
    if sender.uids[3] != 0 || !live_file || ctx.held_writes.len() >= MAX_HELD_WRITES || !ctx.valid(call) {
        return Answer::Continue;
    }
    let Ok(memfd) = rustix::fs::memfd_create(format!("pilot-held:{path}").as_str(), rustix::fs::MemfdFlags::CLOEXEC) else {
        return Answer::Continue;
    };
    // An O_RDWR open without O_TRUNC reads the value first: give it the live one.
    let prefilled = (flags & 0o3 == 0o2 && flags & 0o1000 == 0).then(|| std::fs::read(&path).unwrap_or_default());
    if let Some(bytes) = &prefilled {
        let _ = rustix::io::pwrite(&memfd, bytes, 0);
    }
    let Ok(ours) = memfd.try_clone() else { return Answer::Continue };
    let cloexec = flags & 0o2000000 != 0;
    let Some(fd) = ctx.answer(call, Answer::Fd { fd: ours, cloexec }) else {
        return Answer::Continue; // could not install it; the call was answered or is gone
    };
    ctx.notice(Notice::Fd { ts_ns: call.ts_ns, pid: sender.tgid, fd, path: path.clone() });
    ctx.stats.held_back += 1;
    ctx.held_writes.push(HeldWrite { memfd, call: call.clone(), sender, kind, path, prefilled });
    // Answered already (the descriptor is the answer).
    Answer::Done
}

/// The pilot ended: every held write becomes an event with the value it wrote.
pub fn finish(ctx: &mut Ctx) {
    for w in std::mem::take(&mut ctx.held_writes) {
        let mut buf = vec![0u8; 4096];
        let n = rustix::io::pread(&w.memfd, &mut buf, 0).unwrap_or(0);
        buf.truncate(n);
        let written = w.prefilled.as_ref().is_none_or(|p| *p != buf);
        let mut value = String::from_utf8_lossy(&buf).trim().to_string();
        if value.len() > VALUE_MAX {
            value.truncate(value.char_indices().take_while(|(i, _)| *i < VALUE_MAX).last().map_or(0, |(i, c)| i + c.len_utf8()));
            value.push('…');
        }
        let mut e = event(&w.call, &w.sender, w.kind, "held back");
        e.target = if w.kind == Kind::Sysctl { sysctl_key(&w.path) } else { Some(w.path.clone()) };
        e.path = Some(w.path);
        e.value = written.then_some(value);
        e.ret = 0;
        ctx.notice(Notice::Event(Box::new(e)));
    }
}

fn clock(ctx: &mut Ctx, call: &Call) -> Answer {
    let Some(mem) = ctx.mem(call) else { return Answer::Continue };
    let Some(sender) = pids::host_process(call.tid) else { return Answer::Continue };
    let (target, value) = match call.name {
        "clock_settime" => {
            // Only CLOCK_REALTIME can be set (CLOCK_TAI follows it).
            if call.args[0] != 0 {
                return Answer::Errno(libc::EINVAL);
            }
            let Ok(ts) = mem.read(call.args[1], 16) else { return Answer::Errno(libc::EFAULT) };
            ("CLOCK_REALTIME".to_string(), time_value(super::mem::i64_at(&ts, 0)))
        }
        "settimeofday" => {
            if call.args[0] != 0 {
                let Ok(tv) = mem.read(call.args[0], 16) else { return Answer::Errno(libc::EFAULT) };
                ("CLOCK_REALTIME".to_string(), time_value(super::mem::i64_at(&tv, 0)))
            } else if call.args[1] != 0 {
                let Ok(tz) = mem.read(call.args[1], 8) else { return Answer::Errno(libc::EFAULT) };
                ("timezone".to_string(), format!("minuteswest {}", super::mem::u32_at(&tz, 0) as i32))
            } else {
                return Answer::Value(0);
            }
        }
        _ => {
            // adjtimex(struct timex *) / clock_adjtime(clock, struct timex *): modes first.
            let addr = if call.name == "adjtimex" { call.args[0] } else { call.args[1] };
            let Ok(tx) = mem.read(addr, 88) else { return Answer::Errno(libc::EFAULT) };
            let modes = super::mem::u32_at(&tx, 0);
            const ADJ_OFFSET_SS_READ: u32 = 0xa001;
            const ADJ_SETOFFSET: u32 = 0x0100;
            if modes == 0 || modes == ADJ_OFFSET_SS_READ {
                return Answer::Continue; // a read: the kernel answers it
            }
            let what = if modes & ADJ_SETOFFSET != 0 {
                format!("step by {}s {}us", super::mem::i64_at(&tx, 72), super::mem::i64_at(&tx, 80))
            } else {
                format!("adjust (modes {modes:#x})")
            };
            ("CLOCK_REALTIME".to_string(), what)
        }
    };
    if !ctx.valid(call) {
        return Answer::Continue;
    }
    let answer = root_or_eperm(&sender);
    record(ctx, call, &sender, Kind::Clock, (None, Some(target), Some(value)), &answer);
    answer
}

/// `2030-01-02T03:04:05Z (@1893553445)`.
fn time_value(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    format!("{} (@{secs})", humantime::format_rfc3339_seconds(t))
}

fn swap(ctx: &mut Ctx, call: &Call) -> Answer {
    let (Some(mem), Some(sender)) = (ctx.mem(call), pids::host_process(call.tid)) else { return Answer::Continue };
    let Some(path) = caller_path(call, &mem, call.args[0], AT_FDCWD) else { return Answer::Errno(libc::EFAULT) };
    if !ctx.valid(call) {
        return Answer::Continue;
    }
    // Exists as the pilot sees it (a swap file it made lives in its overlay).
    if !in_pilot_view(call, &path) {
        return Answer::Errno(libc::ENOENT);
    }
    let answer = root_or_eperm(&sender);
    let value = if call.name == "swapon" { "on" } else { "off" };
    record(ctx, call, &sender, Kind::Swap, (Some(path.clone()), Some(path), Some(value.into())), &answer);
    answer
}

fn module(ctx: &mut Ctx, call: &Call) -> Answer {
    let (Some(mem), Some(sender)) = (ctx.mem(call), pids::host_process(call.tid)) else { return Answer::Continue };
    let (target, value, path) = match call.name {
        "init_module" => ("(module image)".to_string(), format!("load ({} bytes) {}", call.args[1], mem.string(call.args[2]).unwrap_or_default()), None),
        "finit_module" => {
            let file = std::fs::read_link(format!("/proc/{}/fd/{}", call.tid, call.int(0))).map(|p| p.display().to_string()).unwrap_or_default();
            let name = file.rsplit('/').next().unwrap_or("").split(".ko").next().unwrap_or("").replace('-', "_");
            (name, format!("load {}", mem.string(call.args[1]).unwrap_or_default()).trim().to_string(), Some(file))
        }
        _ => {
            let name = mem.string(call.args[0]).unwrap_or_default();
            if !std::path::Path::new("/sys/module").join(&name).exists() {
                return Answer::Errno(libc::ENOENT);
            }
            (name, "unload".to_string(), None)
        }
    };
    if !ctx.valid(call) {
        return Answer::Continue;
    }
    let answer = root_or_eperm(&sender);
    record(ctx, call, &sender, Kind::Module, (path, Some(target), Some(value)), &answer);
    answer
}

fn mount(ctx: &mut Ctx, call: &Call) -> Answer {
    let (Some(mem), Some(sender)) = (ctx.mem(call), pids::host_process(call.tid)) else { return Answer::Continue };
    let Some(target) = caller_path(call, &mem, if call.name == "mount" { call.args[1] } else { call.args[0] }, AT_FDCWD) else {
        return Answer::Errno(libc::EFAULT);
    };
    let value = if call.name == "mount" {
        let src = mem.string(call.args[0]).unwrap_or_default();
        let fstype = mem.string(call.args[2]).unwrap_or_default();
        format!("mount {src} ({}) flags {:#x}", if fstype.is_empty() { "-" } else { &fstype }, call.args[3])
    } else {
        "unmount".to_string()
    };
    if !ctx.valid(call) {
        return Answer::Continue;
    }
    if !in_pilot_view(call, &target) {
        return Answer::Errno(libc::ENOENT);
    }
    let answer = root_or_eperm(&sender);
    record(ctx, call, &sender, Kind::Mount, (Some(target.clone()), Some(target), Some(value)), &answer);
    answer
}

/// Does `path` exist in the caller's view (its root: the pilot's overlays)?
fn in_pilot_view(call: &Call, path: &str) -> bool {
    std::fs::symlink_metadata(format!("/proc/{}/root{path}", call.tid)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_keys() {
        assert_eq!(normalize("/proc//sys/./vm/../vm/swappiness"), "/proc/sys/vm/swappiness");
        assert_eq!(classify("/proc/sys/vm/drop_caches"), Some(Kind::Sysctl));
        assert_eq!(classify("/sys/fs/cgroup/unified/x/cgroup.procs"), Some(Kind::Cgroup));
        assert_eq!(classify("/sys/block/sda/queue/scheduler"), Some(Kind::Sysfs));
        assert_eq!(classify("/var/lib/x"), None);
        assert_eq!(sysctl_key("/proc/sys/net/ipv4/ip_forward").as_deref(), Some("net.ipv4.ip_forward"));
        assert_eq!(time_value(0), "1970-01-01T00:00:00Z (@0)");
    }
}
