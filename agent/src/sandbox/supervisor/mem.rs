//! Reading and writing a pilot process's memory through /proc/<tid>/mem (the agent is root in
//! the initial user namespace: ptrace access to the pilot's processes). Only ever the memory
//! of the process that made the notified call: arguments it passed by pointer, results it
//! asked for.
use std::{fs::File, io, os::unix::fs::FileExt};

pub struct Mem {
    file: File,
}

/// Longest string argument read (PATH_MAX).
pub const PATH_MAX: usize = 4096;

impl Mem {
    pub fn open(tid: u32) -> io::Result<Mem> {
        Ok(Mem { file: std::fs::OpenOptions::new().read(true).write(true).open(format!("/proc/{tid}/mem"))? })
    }

    /// `len` bytes at `addr` (fewer when the mapping ends).
    pub fn read(&self, addr: u64, len: usize) -> io::Result<Vec<u8>> {
        if addr == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match self.file.read_at(&mut buf[done..], addr + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// A NUL-terminated string at `addr`, read in chunks that never cross a page boundary
    /// (a string may end right before an unmapped page).
    pub fn string(&self, addr: u64) -> io::Result<String> {
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < PATH_MAX {
            let chunk = (256 - (at % 256)) as usize;
            let b = self.read(at, chunk)?;
            if b.is_empty() {
                break;
            }
            if let Some(end) = b.iter().position(|c| *c == 0) {
                out.extend_from_slice(&b[..end]);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            out.extend_from_slice(&b);
            at += b.len() as u64;
        }
        Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG))
    }

    pub fn u32_at(&self, addr: u64) -> io::Result<u32> {
        let b = self.read(addr, 4)?;
        b.try_into().map(u32::from_ne_bytes).map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))
    }

    pub fn write(&self, addr: u64, bytes: &[u8]) -> io::Result<()> {
        if addr == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        self.file.write_all_at(bytes, addr)
    }
}

pub fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map(|s| u64::from_ne_bytes(s.try_into().expect("8 bytes"))).unwrap_or(0)
}

pub fn i64_at(b: &[u8], off: usize) -> i64 {
    u64_at(b, off) as i64
}

pub fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map(|s| u32::from_ne_bytes(s.try_into().expect("4 bytes"))).unwrap_or(0)
}

pub fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2).map(|s| u16::from_ne_bytes(s.try_into().expect("2 bytes"))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_strings_and_values() {
        let text = c"/proc/sys/vm/swappiness";
        let value: u64 = 0x1122_3344_5566_7788;
        let mem = Mem::open(std::process::id()).unwrap();
        assert_eq!(mem.string(text.as_ptr() as u64).unwrap(), "/proc/sys/vm/swappiness");
        let b = mem.read(&value as *const u64 as u64, 8).unwrap();
        assert_eq!(u64_at(&b, 0), value);
        assert!(mem.string(0).is_err());
    }
}
