//! Locks behave as live. A pilot's flock/fcntl/OFD lock is taken on its overlay's inode, which
//! no live process shares: without help, `flock -n LOCK cmd` succeeds in a pilot where live it
//! fails. Here a lock request is first checked against the locks live processes hold on the
//! live file (the same path on the host: its device and inode, in /proc/locks). A conflict
//! answers as live (EWOULDBLOCK / EAGAIN; F_GETLK describes the live holder); a blocking
//! request waits while the live lock is held (until the pilot ends or the call is
//! interrupted), then goes on to the kernel, which settles it among the pilot's own locks. No
//! lock is ever placed on the production file.
use std::os::fd::{AsFd, OwnedFd};

use super::{Call, Ctx, mem, notify::Answer};

const LOCK_SH: u64 = 1;
const LOCK_EX: u64 = 2;
const LOCK_NB: u64 = 4;
const LOCK_UN: u64 = 8;
const F_GETLK: i64 = 5;
const F_SETLKW: i64 = 7;
const F_OFD_GETLK: i64 = 36;
const F_OFD_SETLKW: i64 = 38;
const F_RDLCK: i16 = 0;
const F_WRLCK: i16 = 1;
const F_UNLCK: i16 = 2;
/// Most pending lock waits kept; beyond that a wait goes on to the kernel at once.
const MAX_WAITING: usize = 1024;

/// What a request wants: a flock, or a byte range of a POSIX/OFD lock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Want {
    Flock { exclusive: bool },
    Range { write: bool, start: u64, end: u64 },
}

/// A live lock from /proc/locks.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    pub flock: bool,
    pub write: bool,
    /// Host pid (POSIX, FLOCK), -1 for OFD locks.
    pub pid: i64,
    pub dev: (u32, u32),
    pub ino: u64,
    pub start: u64,
    pub end: u64,
}

/// A blocking request waiting for a live lock to go.
pub struct Waiting {
    call: Call,
    key: ((u32, u32), u64),
    want: Want,
}

pub fn handle(ctx: &mut Ctx, call: &Call) -> Option<Answer> {
    if call.name == "flock" && (call.args[1] & LOCK_UN != 0 || call.args[1] & (LOCK_SH | LOCK_EX) == 0) {
        return Some(Answer::Continue);
    }
    let Some(file) = ctx.caller_fd(call, call.int(0)) else { return Some(Answer::Continue) };
    let Some(key) = live_key(&file) else { return Some(Answer::Continue) };
    let (want, blocking, getlk) = match call.name {
        "flock" => {
            let op = call.args[1];
            (Want::Flock { exclusive: op & LOCK_EX != 0 }, op & LOCK_NB == 0, None)
        }
        _ => {
            let cmd = call.int(1);
            let Some(mem) = ctx.mem(call) else { return Some(Answer::Continue) };
            let Ok(raw) = mem.read(call.args[2], 32) else { return Some(Answer::Continue) };
            let l_type = mem::u16_at(&raw, 0) as i16;
            if l_type == F_UNLCK || raw.len() < 32 || !ctx.valid(call) {
                return Some(Answer::Continue);
            }
            let Some((start, end)) = range(&file, mem::u16_at(&raw, 2) as i16, mem::i64_at(&raw, 8), mem::i64_at(&raw, 16)) else {
                return Some(Answer::Continue);
            };
            let want = Want::Range { write: l_type == F_WRLCK, start, end };
            let getlk = matches!(cmd, F_GETLK | F_OFD_GETLK).then_some((mem, call.args[2]));
            (want, matches!(cmd, F_SETLKW | F_OFD_SETLKW), getlk)
        }
    };
    let Some(holder) = conflict(&live_locks(), key, want) else { return Some(Answer::Continue) };
    if let Some((mem, addr)) = getlk {
        // F_GETLK: describe the live lock that would block, as the kernel would live.
        let _ = mem.write(addr, &describe(&holder));
        return Some(Answer::Value(0));
    }
    if !blocking {
        return Some(Answer::Errno(libc::EAGAIN));
    }
    if ctx.waiting.len() >= MAX_WAITING {
        return Some(Answer::Continue);
    }
    ctx.waiting.push(Waiting { call: call.clone(), key, want });
    None
}

/// Look at the waiting requests again: the caller gone or interrupted (its call restarts and
/// comes back) drops one; a live lock released lets one go on.
pub fn recheck(ctx: &mut Ctx) {
    if ctx.waiting.is_empty() {
        return;
    }
    let locks = live_locks();
    let waiting = std::mem::take(&mut ctx.waiting);
    for w in waiting {
        if !ctx.valid(&w.call) {
            continue;
        }
        if conflict(&locks, w.key, w.want).is_some() {
            ctx.waiting.push(w);
        } else {
            ctx.answer(&w.call, Answer::Continue);
        }
    }
}

/// The live file's (device, inode): the same path on the host, when it is the live file the
/// pilot opened (not one only its overlay holds).
fn live_key(file: &OwnedFd) -> Option<((u32, u32), u64)> {
    use std::os::fd::AsRawFd;
    let st = rustix::fs::fstat(file.as_fd()).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return None;
    }
    // The path as the pilot sees it (its mount namespace's root is its own): the overlay's
    // paths are the live ones.
    let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    let live = rustix::fs::stat(&path).ok()?;
    Some(((rustix::fs::major(live.st_dev), rustix::fs::minor(live.st_dev)), live.st_ino))
}

/// [start, end] of a POSIX lock request (`whence`, `start`, `len` of struct flock).
fn range(file: &OwnedFd, whence: i16, start: i64, len: i64) -> Option<(u64, u64)> {
    let base = match whence {
        0 => 0,
        // The dup shares the caller's open file description, and so its offset.
        1 => rustix::fs::seek(file, rustix::fs::SeekFrom::Current(0)).ok()? as i64,
        2 => rustix::fs::fstat(file).ok()?.st_size,
        _ => return None,
    };
    let s = base.checked_add(start)?;
    let (lo, hi) = match len {
        0 => (s, i64::MAX),
        l if l > 0 => (s, s.checked_add(l - 1)?),
        l => (s.checked_add(l)?, s - 1),
    };
    (lo >= 0 && hi >= lo).then_some((lo as u64, hi as u64))
}

/// Every lock in /proc/locks (blocked waiters, `->` lines, left out).
pub fn live_locks() -> Vec<Held> {
    parse_locks(&std::fs::read_to_string("/proc/locks").unwrap_or_default())
}

fn parse_locks(text: &str) -> Vec<Held> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // "1: FLOCK  ADVISORY  WRITE 1234 08:01:1311 0 EOF"
            if f.get(1) == Some(&"->") || f.len() < 8 {
                return None;
            }
            let flock = match f[1] {
                "FLOCK" => true,
                "POSIX" | "OFDLCK" => false,
                _ => return None, // leases, delegations
            };
            let mut id = f[5].split(':');
            let major = u32::from_str_radix(id.next()?, 16).ok()?;
            let minor = u32::from_str_radix(id.next()?, 16).ok()?;
            let ino = id.next()?.parse().ok()?;
            Some(Held {
                flock,
                write: f[3] == "WRITE",
                pid: f[4].parse().unwrap_or(-1),
                dev: (major, minor),
                ino,
                start: f[6].parse().unwrap_or(0),
                end: if f[7] == "EOF" { i64::MAX as u64 } else { f[7].parse().unwrap_or(i64::MAX as u64) },
            })
        })
        .collect()
}

/// The first live lock on `key` that would refuse `want` (flock and POSIX locks do not
/// conflict with each other on Linux; POSIX and OFD locks do).
fn conflict(locks: &[Held], key: ((u32, u32), u64), want: Want) -> Option<Held> {
    locks
        .iter()
        .filter(|h| (h.dev, h.ino) == key)
        .find(|h| match want {
            Want::Flock { exclusive } => h.flock && (exclusive || h.write),
            Want::Range { write, start, end } => !h.flock && (write || h.write) && h.start <= end && start <= h.end,
        })
        .cloned()
}

/// struct flock for F_GETLK describing `h`.
fn describe(h: &Held) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..2].copy_from_slice(&(if h.write { F_WRLCK } else { F_RDLCK }).to_ne_bytes());
    b[2..4].copy_from_slice(&0i16.to_ne_bytes()); // SEEK_SET
    b[8..16].copy_from_slice(&(h.start as i64).to_ne_bytes());
    let len = if h.end >= i64::MAX as u64 { 0 } else { (h.end - h.start + 1) as i64 };
    b[16..24].copy_from_slice(&len.to_ne_bytes());
    b[24..28].copy_from_slice(&(h.pid as i32).to_ne_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKS: &str = "\
1: FLOCK  ADVISORY  WRITE 1234 08:01:1311 0 EOF
1: -> FLOCK  ADVISORY  WRITE 99 08:01:1311 0 EOF
2: POSIX  ADVISORY  READ 5678 fd:00:42 100 199
3: OFDLCK ADVISORY  WRITE -1 fd:00:42 1073741824 1073741824
4: LEASE  ACTIVE    READ 77 08:01:9 0 EOF
";

    #[test]
    fn parses_proc_locks() {
        let l = parse_locks(LOCKS);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0], Held { flock: true, write: true, pid: 1234, dev: (8, 1), ino: 1311, start: 0, end: i64::MAX as u64 });
        assert_eq!(l[1].dev, (0xfd, 0));
        assert_eq!((l[2].pid, l[2].start, l[2].end), (-1, 1 << 30, 1 << 30));
    }

    #[test]
    fn conflicts_follow_the_kernel() {
        let l = parse_locks(LOCKS);
        let flock_file = ((8, 1), 1311);
        assert!(conflict(&l, flock_file, Want::Flock { exclusive: false }).is_some(), "a shared flock waits for a live exclusive one");
        assert!(conflict(&l, flock_file, Want::Range { write: true, start: 0, end: 10 }).is_none(), "POSIX locks ignore flocks");
        let posix_file = ((0xfd, 0), 42);
        assert!(conflict(&l, posix_file, Want::Range { write: false, start: 150, end: 160 }).is_none(), "two read locks share");
        assert!(conflict(&l, posix_file, Want::Range { write: true, start: 150, end: 160 }).is_some());
        assert!(conflict(&l, posix_file, Want::Range { write: true, start: 200, end: 300 }).is_none(), "no overlap");
        assert!(conflict(&l, posix_file, Want::Range { write: false, start: 1 << 30, end: 1 << 30 }).is_some(), "an OFD write lock");
    }

    #[test]
    fn getlk_describes_the_holder() {
        let h = Held { flock: false, write: true, pid: 42, dev: (0, 0), ino: 0, start: 10, end: 19 };
        let b = describe(&h);
        assert_eq!(mem::u16_at(&b, 0) as i16, F_WRLCK);
        assert_eq!(mem::i64_at(&b, 16), 10);
        assert_eq!(mem::u32_at(&b, 24), 42);
    }
}
