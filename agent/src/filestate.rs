//! The state of one path on the host, as the drift check and rollback compare it: what it is,
//! its content hash, size, mode, owner, extended attributes, symlink target, and the identity
//! facts (inode, device, mtime, ctime) that show it was replaced or touched.
use std::{
    collections::BTreeMap,
    fs,
    io::Read,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::Path,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Regular files up to this size get a content hash in the drift check's fingerprints; bigger
/// ones are compared by size, mtime and inode (a multi-GB data file would stall every pilot).
pub const HASH_LIMIT: u64 = 64 << 20;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct FileState {
    /// absent, file, dir, symlink, fifo, socket, char-device, block-device.
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Permission bits (with setuid, setgid, sticky).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mode: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
    /// Regular files: SHA-256 of the content (None when over the size limit asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlinks: where it points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Extended attributes (security.*, system.* ACLs, user.*, trusted.*), values as hex.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtime_ns: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ctime_ns: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ino: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dev: u64,
    /// Device nodes: the device.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

pub const ABSENT: &str = "absent";

impl FileState {
    pub fn absent() -> FileState {
        FileState { kind: ABSENT.into(), ..Default::default() }
    }

    pub fn exists(&self) -> bool {
        self.kind != ABSENT
    }

    /// Read `path` (not following a final symlink); content hashed up to `hash_limit` bytes.
    pub fn capture(path: &Path, hash_limit: u64) -> std::io::Result<FileState> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::absent()),
            Err(e) => return Err(e),
        };
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            "file"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_char_device() {
            "char-device"
        } else {
            "block-device"
        };
        let sha256 = if ft.is_file() && meta.len() <= hash_limit { Some(sha256_file(path)?) } else { None };
        Ok(FileState {
            kind: kind.into(),
            size: if ft.is_file() || ft.is_symlink() { meta.len() } else { 0 },
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            sha256,
            target: ft.is_symlink().then(|| fs::read_link(path).map(|t| t.display().to_string())).transpose()?,
            xattrs: xattrs(path),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
            dev: meta.dev(),
            rdev: if ft.is_char_device() || ft.is_block_device() { meta.rdev() } else { 0 },
        })
    }

    /// What differs from `then` in the facts the drift check watches (content hash, size,
    /// mtime, inode, kind, mode, owner, symlink target); empty when none does.
    pub fn drifted_from(&self, then: &FileState) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != then.kind {
            out.push(format!("{} then, {} now", then.kind, self.kind));
            return out;
        }
        if !self.exists() {
            return out;
        }
        if self.sha256 != then.sha256 && self.sha256.is_some() && then.sha256.is_some() {
            out.push("content changed".into());
        }
        if self.size != then.size {
            out.push(format!("size {} then, {} now", then.size, self.size));
        }
        if self.ino != then.ino || self.dev != then.dev {
            out.push("replaced (another inode)".into());
        }
        if self.mtime_ns != then.mtime_ns && self.kind != "dir" {
            out.push("modified (mtime)".into());
        }
        if (self.mode, self.uid, self.gid) != (then.mode, then.uid, then.gid) {
            out.push(format!("mode/owner {:o} {}:{} then, {:o} {}:{} now", then.mode, then.uid, then.gid, self.mode, self.uid, self.gid));
        }
        if self.target != then.target {
            out.push("points elsewhere".into());
        }
        out
    }

    /// Same content and metadata as `other` (what rollback compares: a restored file has
    /// another inode and its own ctime, so identity facts do not count).
    pub fn same_as(&self, other: &FileState) -> bool {
        let content = match self.kind.as_str() {
            "file" => self.sha256 == other.sha256 && self.size == other.size,
            "symlink" => self.target == other.target,
            "char-device" | "block-device" => self.rdev == other.rdev,
            _ => true,
        };
        let meta = |s: &FileState| (s.mode, s.uid, s.gid, s.xattrs.clone());
        self.kind == other.kind && (!self.exists() || (content && meta(self) == meta(other)))
    }

    /// One line: `file 12 B 644 0:0`.
    pub fn describe(&self) -> String {
        match self.kind.as_str() {
            ABSENT => "absent".into(),
            "symlink" => format!("symlink -> {}", self.target.as_deref().unwrap_or("?")),
            "file" => format!("file {} B mode {:o} owner {}:{}", self.size, self.mode, self.uid, self.gid),
            k => format!("{k} mode {:o} owner {}:{}", self.mode, self.uid, self.gid),
        }
    }
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let meta = fs::metadata(path)?;
    if let Some(sha) = remembered_sha256(&meta) {
        return Ok(sha);
    }
    let sha = hash_contents(path)?;
    remember_sha256(&meta, sha.clone());
    Ok(sha)
}

/// The SHA-256 of files this process wrote or hashed, by (device, inode), with the size and
/// modification time (ns) it was taken at. The run directory's big files (events.jsonl,
/// graph.json) are hashed for the decision and again for the journal, and reading 50 MB back
/// to hash it was a tenth of a 20,000-file run's post-processing (issue 19): `Hashed` hashes
/// them as they are written.
static HASHES: std::sync::Mutex<Option<std::collections::HashMap<(u64, u64), ((u64, i64), String)>>> = std::sync::Mutex::new(None);

fn stamp(meta: &fs::Metadata) -> (u64, i64) {
    (meta.len(), meta.mtime() * 1_000_000_000 + meta.mtime_nsec())
}

fn remembered_sha256(meta: &fs::Metadata) -> Option<String> {
    let map = HASHES.lock().ok()?;
    let (taken, sha) = map.as_ref()?.get(&(meta.dev(), meta.ino()))?;
    (*taken == stamp(meta)).then(|| sha.clone())
}

fn remember_sha256(meta: &fs::Metadata, sha: String) {
    if let Ok(mut map) = HASHES.lock() {
        map.get_or_insert_with(Default::default).insert((meta.dev(), meta.ino()), (stamp(meta), sha));
    }
}

/// A file written through a SHA-256 of the bytes that reached it, for `sha256_file` to take
/// instead of reading the file back. Put it under the BufWriter, so only what was written counts.
pub struct Hashed {
    file: fs::File,
    sha: Sha256,
}

impl Hashed {
    pub fn new(file: fs::File) -> Hashed {
        Hashed { file, sha: Sha256::new() }
    }

    /// Tell `sha256_file` what the file holds now (after the last write: a later one changes
    /// its stamp, and the file is read again).
    pub fn remember(&self) -> std::io::Result<()> {
        remember_sha256(&self.file.metadata()?, hex::encode(self.sha.clone().finalize()));
        Ok(())
    }
}

impl std::io::Write for Hashed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn hash_contents(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// SHA-256 of the first `len` bytes of `path` (what a file that only grew hashed to before).
pub fn prefix_sha256(path: &Path, len: u64) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?.take(len);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut read = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        read += n as u64;
    }
    if read < len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file is shorter now"));
    }
    Ok(hex::encode(h.finalize()))
}

/// Every extended attribute of `path` (not following a final symlink), values as hex.
pub fn xattrs(path: &Path) -> BTreeMap<String, String> {
    xattr_values(path).into_iter().map(|(name, value)| (name, hex::encode(value))).collect()
}

/// Every extended attribute of `path` (not following a final symlink), values as they are.
pub fn xattr_values(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Some(names) = sized(|buf| rustix::fs::llistxattr(path, buf)) else { return out };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if let Some(value) = sized(|buf| rustix::fs::lgetxattr(path, name.as_str(), buf)) {
            out.insert(name, value);
        }
    }
    out
}

/// What `call` writes into a buffer: a small one first, the 64 KiB the kernel allows if it
/// says that is too small (ERANGE). Most files have no attributes or short ones, and a 64 KiB
/// buffer per file and per name was a memset each (20,000 overlay entries in a big run's diff).
fn sized(mut call: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>) -> Option<Vec<u8>> {
    for size in [1 << 10, 64 << 10] {
        let mut buf = vec![0u8; size];
        match call(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Some(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn a_file_hashed_as_written_hashes_as_read_and_a_later_change_is_read_again() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big.json");
        let mut w = std::io::BufWriter::new(Hashed::new(fs::File::create(&p).unwrap()));
        for i in 0..10_000 {
            writeln!(w, "line {i}").unwrap();
        }
        w.flush().unwrap();
        w.get_ref().remember().unwrap();
        assert_eq!(sha256_file(&p).unwrap(), hash_contents(&p).unwrap());
        // Another writer: a new size and mtime, so the remembered hash is not taken.
        fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"more\n").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), hash_contents(&p).unwrap());
    }

    #[test]
    fn xattr_values_reads_empty_and_long_values() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        fs::write(&p, "x").unwrap();
        assert!(xattr_values(&p).is_empty());
        rustix::fs::lsetxattr(&p, "user.empty", b"", rustix::fs::XattrFlags::empty()).unwrap();
        rustix::fs::lsetxattr(&p, "user.long", &[7u8; 3000][..], rustix::fs::XattrFlags::empty()).unwrap();
        let v = xattr_values(&p);
        assert_eq!(v.get("user.empty").map(Vec::len), Some(0), "{v:?}");
        assert_eq!(v.get("user.long").map(Vec::len), Some(3000));
    }

    #[test]
    fn captures_and_compares_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        assert!(!FileState::capture(&p, HASH_LIMIT).unwrap().exists());
        fs::write(&p, "one").unwrap();
        let one = FileState::capture(&p, HASH_LIMIT).unwrap();
        assert_eq!((one.kind.as_str(), one.size), ("file", 3));
        assert!(one.drifted_from(&one).is_empty());
        fs::write(&p, "two").unwrap();
        let two = FileState::capture(&p, HASH_LIMIT).unwrap();
        assert!(two.drifted_from(&one).iter().any(|d| d == "content changed"), "{:?}", two.drifted_from(&one));
        assert!(!two.same_as(&one));
        fs::write(&p, "one").unwrap();
        assert!(FileState::capture(&p, HASH_LIMIT).unwrap().same_as(&one), "same content and metadata");
        std::os::unix::fs::symlink("elsewhere", d.path().join("l")).unwrap();
        let l = FileState::capture(&d.path().join("l"), HASH_LIMIT).unwrap();
        assert_eq!(l.target.as_deref(), Some("elsewhere"));
    }
}
