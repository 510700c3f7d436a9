//! Issue 15 (channels): file effects that need no write(2), which the first channel learned to
//! see: shared file mappings (mmap, mprotect, msync), fallocate in every mode, reflink ioctls
//! (FICLONE, FICLONERANGE), file times (utimensat, futimesat, utime, utimes), and the use of
//! io_uring itself (its operations are not syscalls: only the overlay and the sink see them).
use agent_common::syscalls as sc;

use super::{AT_FDCWD, Tracker};
use crate::{
    decode::{Record, Syscall},
    event::{Event, Kind},
};

/// A shared mapping of a file in a traced process: stores to it reach the file.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub start: u64,
    pub len: u64,
    pub path: String,
    pub writable: bool,
}

/// The syscalls this file turns into events.
pub(super) fn handles(nr: u32) -> bool {
    matches!(
        nr,
        sc::MMAP | sc::MPROTECT | sc::MSYNC | sc::FALLOCATE | sc::IOCTL | sc::UTIMENSAT | sc::FUTIMESAT | sc::UTIME | sc::UTIMES
            | sc::IO_URING_SETUP
    )
}

/// fallocate(2) modes (linux/falloc.h).
pub const FALLOC_FL_KEEP_SIZE: u64 = 0x01;
pub const FALLOC_FL_PUNCH_HOLE: u64 = 0x02;
pub const FALLOC_FL_COLLAPSE_RANGE: u64 = 0x08;
pub const FALLOC_FL_ZERO_RANGE: u64 = 0x10;
pub const FALLOC_FL_INSERT_RANGE: u64 = 0x20;
pub const FALLOC_FL_UNSHARE_RANGE: u64 = 0x40;

/// Modes that destroy or move the bytes of a range (as a truncate does): the others allocate.
pub const FALLOC_DESTROYS: u64 = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_INSERT_RANGE;

pub fn fallocate_mode_names(mode: u64) -> String {
    let names: Vec<&str> = [
        (FALLOC_FL_KEEP_SIZE, "FALLOC_FL_KEEP_SIZE"),
        (FALLOC_FL_PUNCH_HOLE, "FALLOC_FL_PUNCH_HOLE"),
        (FALLOC_FL_COLLAPSE_RANGE, "FALLOC_FL_COLLAPSE_RANGE"),
        (FALLOC_FL_ZERO_RANGE, "FALLOC_FL_ZERO_RANGE"),
        (FALLOC_FL_INSERT_RANGE, "FALLOC_FL_INSERT_RANGE"),
        (FALLOC_FL_UNSHARE_RANGE, "FALLOC_FL_UNSHARE_RANGE"),
    ]
    .into_iter()
    .filter(|(bit, _)| mode & bit != 0)
    .map(|(_, n)| n)
    .collect();
    if names.is_empty() { "0 (allocate)".into() } else { names.join("|") }
}

fn prot_names(prot: u64) -> String {
    let mut names: Vec<&str> = [(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")].into_iter().filter(|(b, _)| prot & b != 0).map(|(_, n)| n).collect();
    if names.is_empty() {
        names.push("PROT_NONE");
    }
    names.join("|")
}

/// mmap returns an address; its errors are -4095..-1.
fn mmap_failed(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

impl Tracker {
    pub(super) fn mapped_syscall(&mut self, rec: &Record, s: &Syscall, out: &mut Vec<Event>) {
        let (pid, a, ret) = (rec.pid, s.args, s.ret);
        match s.nr {
            sc::MMAP => {
                let fd = a[4] as i32 as i64;
                let mut e = self.base(rec, Kind::Mmap);
                if !mmap_failed(ret) {
                    // An address, not a result code.
                    e.error = None;
                }
                e.fd = Some(fd);
                e.path = self.fd_path(pid, fd, &mut e);
                let writable = a[2] & sc::PROT_WRITE != 0;
                if let (false, Some(path)) = (mmap_failed(ret), e.path.clone()) {
                    let m = Mapping { start: ret as u64, len: a[1], path, writable };
                    let maps = &mut self.proc_mut(pid, rec.tid).maps;
                    // A new mapping replaces what was at its addresses (munmap is not traced).
                    maps.retain(|o| !(o.start < m.start + m.len && m.start < o.start + o.len));
                    maps.push(m);
                }
                // Shared mappings of anonymous fds (an io_uring's rings, a memfd) change no file.
                if writable && e.path.is_some() {
                    e.flags = Some(a[2]);
                    e.flag_names = Some(format!("{}, MAP_SHARED", prot_names(a[2])));
                    e.offset = Some(a[5]);
                    e.bytes = Some(a[1]);
                    out.push(e);
                }
            }
            sc::MPROTECT => {
                let (start, end) = (a[0], a[0].saturating_add(a[1]));
                forget_unmapped(self.proc_mut(pid, rec.tid), start, end);
                let hits: Vec<(String, u64)> = {
                    let p = self.proc_mut(pid, rec.tid);
                    let mut hits = Vec::new();
                    for m in p.maps.iter_mut().filter(|m| m.start < end && start < m.start + m.len && !m.writable) {
                        if ret == 0 {
                            m.writable = true;
                        }
                        hits.push((m.path.clone(), end.min(m.start + m.len) - start.max(m.start)));
                    }
                    hits
                };
                for (path, len) in hits {
                    let mut e = self.base(rec, Kind::Mmap);
                    e.path = Some(path);
                    e.flags = Some(a[2]);
                    e.flag_names = Some(format!("{}, MAP_SHARED", prot_names(a[2])));
                    e.bytes = Some(len);
                    out.push(e);
                }
            }
            sc::MSYNC => {
                let (start, end) = (a[0], a[0].saturating_add(a[1]));
                forget_unmapped(self.proc_mut(pid, rec.tid), start, end);
                let paths: Vec<String> = self
                    .procs
                    .get(&pid)
                    .map(|p| p.maps.iter().filter(|m| m.start < end && start < m.start + m.len).map(|m| m.path.clone()).collect())
                    .unwrap_or_default();
                for path in paths {
                    let mut e = self.base(rec, Kind::Msync);
                    e.path = Some(path);
                    e.flags = Some(a[2]);
                    e.bytes = Some(a[1]);
                    out.push(e);
                }
            }
            sc::FALLOCATE => {
                let mut e = self.base(rec, Kind::Fallocate);
                let fd = a[0] as i32 as i64;
                e.fd = Some(fd);
                e.path = self.fd_path(pid, fd, &mut e);
                e.flags = Some(a[1]);
                e.flag_names = Some(fallocate_mode_names(a[1]));
                e.offset = Some(a[2]);
                e.bytes = Some(a[3]);
                out.push(e);
            }
            sc::IOCTL => {
                let mut e = self.base(rec, Kind::Reflink);
                let fd = a[0] as i32 as i64;
                e.fd = Some(fd);
                e.path = self.fd_path(pid, fd, &mut e);
                let src = if a[1] & 0xffff_ffff == sc::FICLONE { a[2] } else { a[3] } as i32 as i64;
                e.path2 = self.fd_path(pid, src, &mut e);
                if a[1] & 0xffff_ffff == sc::FICLONERANGE {
                    e.flag_names = Some("FICLONERANGE".into());
                    e.offset = Some(a[5]);
                    e.bytes = Some(a[4]);
                } else {
                    e.flag_names = Some("FICLONE".into());
                }
                out.push(e);
            }
            sc::UTIMENSAT | sc::FUTIMESAT => {
                let mut e = self.base(rec, Kind::Utime);
                let dirfd = a[0] as i32 as i64;
                if a[1] == 0 {
                    // utimensat(fd, NULL, ...): futimens(fd).
                    e.unreadable = None;
                    e.fd = Some(dirfd);
                    e.path = self.fd_path(pid, dirfd, &mut e);
                } else {
                    e.path = Some(self.resolve(pid, dirfd, s.data1, &mut e));
                }
                if s.nr == sc::UTIMENSAT && a[3] != 0 {
                    e.flags = Some(a[3]);
                }
                out.push(e);
            }
            sc::UTIME | sc::UTIMES => {
                let mut e = self.base(rec, Kind::Utime);
                e.path = Some(self.resolve(pid, AT_FDCWD, s.data1, &mut e));
                out.push(e);
            }
            sc::IO_URING_SETUP => {
                self.proc_mut(pid, rec.tid).fds.apply(s.nr, &a, ret);
                let mut e = self.base(rec, Kind::IoUring);
                if ret >= 0 {
                    e.fd = Some(ret);
                }
                out.push(e);
            }
            _ => {}
        }
    }
}

/// munmap is not traced (malloc calls it all the time): before an address range is taken for
/// a file's mapping, ask /proc what is mapped there now. When something else is (the range
/// was unmapped and reused, e.g. by malloc's anonymous arenas), forget the old entry. Nothing
/// mapped there (unmapped since, after the stores), the process gone or /proc unreadable: keep
/// it, better a write intent too many than one missed.
fn forget_unmapped(p: &mut super::Process, start: u64, end: u64) {
    let hit = |m: &Mapping| m.start < end && start < m.start + m.len;
    if !p.maps.iter().any(hit) {
        return;
    }
    let now = crate::procfs::mappings(p.pid, start, end);
    if now.is_empty() {
        return;
    }
    // Paths in /proc/PID/maps are as the reader sees them (the sandbox's root may differ):
    // compare the end of the path.
    p.maps.retain(|m| !hit(m) || now.iter().any(|f| f.as_deref().is_some_and(|f| f.ends_with(m.path.as_str()) || m.path.ends_with(f))));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fallocate_modes() {
        assert_eq!(fallocate_mode_names(0), "0 (allocate)");
        assert_eq!(fallocate_mode_names(3), "FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE");
        assert!(mmap_failed(-9) && !mmap_failed(0x7f00_0000_0000));
    }
}
