//! The guest's whole filesystem, packed as one initramfs: busybox-static and its applets, the
//! init script, the kernel modules pilot needs (decompressed), and host files at their host
//! paths (pilot, the test binaries, python3, helpers, the RPC suite's servers) with the shared
//! libraries `ldd` names; symlinks stay symlinks.
//! Host paths stay the same in the guest because the test binaries carry them
//! (CARGO_BIN_EXE_pilot, CARGO_TARGET_TMPDIR).
use std::{
    collections::BTreeSet,
    fs,
    io::BufWriter,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::{cpio::Writer, kernel::Kernel};
use crate::cmd::{command, probe};

const BUSYBOX: &str = "/bin/busybox";
/// Users the tests run servers as: postgres (PostgreSQL refuses root), nobody (dnsmasq drops
/// to it, with Debian's group dip).
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n\
    postgres:x:101:104:PostgreSQL administrator:/var/lib/postgresql:/bin/sh\n";
const GROUP: &str = "root:x:0:\ndip:x:30:\npostgres:x:104:\nnogroup:x:65534:\n";

/// What goes into the image besides busybox and the modules.
pub struct Contents<'a> {
    pub init: &'a str,
    /// Host files (executables get their libraries), copied to the same path.
    pub files: Vec<PathBuf>,
    /// Host directories copied whole (python's standard library, the repo's policies).
    pub trees: Vec<PathBuf>,
    /// Empty directories to create (the tests' scratch directory).
    pub dirs: Vec<PathBuf>,
    pub modules: &'a [&'a str],
}

pub fn build(kernel: &Kernel, contents: &Contents, out: &Path) -> anyhow::Result<u64> {
    if !Path::new(BUSYBOX).is_file() {
        bail!("{BUSYBOX} is missing: apt-get install busybox-static (cargo xtask bootstrap does it)");
    }
    let mut image = Image::default();
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "root", "run", "mnt", "var/lib", "newroot", "vmtest"] {
        image.dir(&format!("/{d}"));
    }
    image.file("/bin/busybox", 0o755, fs::read(BUSYBOX)?);
    let applets = probe(command(BUSYBOX).arg("--list-full")).context("busybox --list-full")?;
    let host_files: BTreeSet<String> = contents.files.iter().map(|p| p.display().to_string()).collect();
    for applet in applets.lines().map(|a| format!("/{a}")) {
        if applet != "/bin/busybox" && !host_files.contains(&applet) {
            image.symlink(&applet, "/bin/busybox");
        }
    }
    image.file("/init", 0o755, contents.init.as_bytes().to_vec());
    image.file("/etc/passwd", 0o644, PASSWD.as_bytes().to_vec());
    image.file("/etc/group", 0o644, GROUP.as_bytes().to_vec());
    image.file("/etc/hosts", 0o644, b"127.0.0.1 localhost\n::1 localhost\n".to_vec());
    image.file("/etc/nsswitch.conf", 0o644, b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec());
    // No resolver: a test that looks names up brings its own (bind-mounted over this file).
    image.file("/etc/resolv.conf", 0o644, b"# tests bring their own resolver\n".to_vec());
    add_modules(&mut image, kernel, contents.modules)?;
    for d in &contents.dirs {
        image.dir(&d.display().to_string());
    }
    for f in &contents.files {
        image.host_file(f)?;
    }
    for t in &contents.trees {
        image.host_tree(t)?;
    }
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = Writer::new(BufWriter::new(file));
    image.write(&mut w)?;
    w.finish()?;
    Ok(fs::metadata(out)?.len())
}

/// The modules, dependencies first, decompressed, and /vmtest/modules listing them in order.
fn add_modules(image: &mut Image, kernel: &Kernel, wanted: &[&str]) -> anyhow::Result<()> {
    let order = super::kernel::modules_with_deps(&kernel.modules, wanted)?;
    let mut list = String::new();
    for rel in &order {
        let src = kernel.modules.join(rel);
        let data = if rel.ends_with(".xz") {
            let out = command("xz").arg("-dc").arg(&src).output().context("running xz -dc (apt-get install xz-utils)")?;
            if !out.status.success() {
                bail!("xz -dc {} failed", src.display());
            }
            out.stdout
        } else {
            fs::read(&src).with_context(|| format!("reading {}", src.display()))?
        };
        let name = rel.rsplit('/').next().unwrap_or(rel).trim_end_matches(".xz").to_string();
        image.file(&format!("/lib/modules/{}/{name}", kernel.release), 0o644, data);
        list += &format!("/lib/modules/{}/{name}\n", kernel.release);
    }
    image.file("/vmtest/modules", 0o644, list.into_bytes());
    Ok(())
}

/// Entries by path; parents are added as directories. BTree: written in path order, so every
/// directory comes before what it holds.
#[derive(Default)]
struct Image {
    entries: std::collections::BTreeMap<String, Entry>,
}

enum Entry {
    Dir,
    File(u32, Vec<u8>),
    Symlink(String),
}

impl Image {
    fn parents(&mut self, path: &str) {
        let mut p = Path::new(path).parent();
        while let Some(dir) = p.filter(|d| d != &Path::new("/")) {
            self.entries.entry(dir.display().to_string()).or_insert(Entry::Dir);
            p = dir.parent();
        }
    }

    fn dir(&mut self, path: &str) {
        self.parents(path);
        self.entries.insert(path.to_string(), Entry::Dir);
    }

    fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.parents(path);
        self.entries.insert(path.to_string(), Entry::File(mode, data));
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entries.insert(path.to_string(), Entry::Symlink(target.to_string()));
    }

    /// A host file at its own path, and for an ELF file the libraries and loader `ldd` lists.
    /// A symlink stays one, its target added too (a link to a directory alone): the JVM finds
    /// its home from the real path of /usr/bin/java, Redis's tools are links to one binary.
    fn host_file(&mut self, path: &Path) -> anyhow::Result<()> {
        self.host_path(path, 0)
    }

    fn host_path(&mut self, path: &Path, links: u32) -> anyhow::Result<()> {
        let key = path.display().to_string();
        if matches!(self.entries.get(&key), Some(Entry::File(..))) {
            return Ok(());
        }
        let meta = fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
        if meta.file_type().is_symlink() {
            // 40: the kernel's limit on links followed in one lookup (ELOOP).
            if links >= 40 {
                bail!("{}: too many levels of symbolic links", path.display());
            }
            let target = fs::read_link(path)?;
            self.symlink(&key, &target.display().to_string());
            let resolved = normalize(&path.parent().unwrap_or(Path::new("/")).join(&target));
            return if resolved.is_dir() { Ok(()) } else { self.host_path(&resolved, links + 1) };
        }
        let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mode = fs::metadata(path)?.permissions().mode() & 0o7777;
        let elf = data.starts_with(b"\x7fELF");
        self.file(&key, mode, data);
        if elf {
            for lib in shared_libraries(path) {
                self.host_file(&lib)?;
            }
        }
        Ok(())
    }

    fn host_tree(&mut self, dir: &Path) -> anyhow::Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if ["__pycache__", "test", "idlelib", "tkinter", "ensurepip", "turtledemo"].contains(&name.as_str()) {
                continue;
            }
            let ty = entry.file_type()?;
            if ty.is_dir() {
                self.host_tree(&path)?;
            } else if ty.is_symlink() {
                self.symlink(&path.display().to_string(), &fs::read_link(&path)?.display().to_string());
            } else if ty.is_file() {
                self.host_file(&path)?;
            }
        }
        Ok(())
    }

    fn write<W: std::io::Write>(&self, w: &mut Writer<W>) -> std::io::Result<()> {
        for (path, entry) in &self.entries {
            match entry {
                Entry::Dir => w.dir(path, 0o755)?,
                Entry::File(mode, data) => w.file(path, *mode, data)?,
                Entry::Symlink(target) => w.symlink(path, target)?,
            }
        }
        Ok(())
    }
}

/// `path` without `.` and `..` components, resolved lexically as the guest resolves a
/// relative link (its directories are real where the host's may be links).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Absolute paths in `ldd FILE` (nothing for a static binary).
fn shared_libraries(file: &Path) -> Vec<PathBuf> {
    let out = probe(command("ldd").arg(file)).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_resolve_lexically() {
        assert_eq!(normalize(Path::new("/usr/lib/jvm/x/../../../share/doc")), PathBuf::from("/usr/share/doc"));
        assert_eq!(normalize(Path::new("/usr/bin/./redis-check-rdb")), PathBuf::from("/usr/bin/redis-check-rdb"));
        assert_eq!(normalize(Path::new("/../etc")), PathBuf::from("/etc"));
    }
}
