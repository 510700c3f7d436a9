//! Leak suite of `pilot run`: each case makes ONE harmful change as a pilot, then looks at
//! production directly. Production must be unchanged, and the attempt must show in what the
//! pilot recorded (`pilot diff --json` / changes.json, events.jsonl, sink.json). Every case has
//! a control: the same action run without pilot, on a fresh fixture, must really change
//! production, so a case can fail (an action that cannot do harm proves nothing).
//!
//! After every pilot run the suite also checks that the pilot left no overlay mount and no
//! pilot cgroup behind.
//!
//! Cases
//! - files: write, append, truncate, unlink, rename, chmod, chown, setxattr (user.*), hard
//!   link, mmap write, io_uring write (tests/leak/uring_write.c, raw syscalls) in /var/lib;
//!   write and unlink in /, /tmp, /dev/shm and a tmpfs the suite mounts under /mnt.
//! - network: TCP and UDP to live loopback endpoints (IPv4, IPv6, IPv4-mapped from an IPv6
//!   socket, connected UDP); where a mapped destination is redirected to; Unix stream (path
//!   and abstract) and datagram sockets; a port the pilot binds on another loopback address;
//!   binding a live service's port.
//! - processes: signals to a live process, its process group, and through a /proc pidfd; a
//!   double-forked daemon writing after the pilot's command exited.
//! - inherited descriptors: a production file and a connected socket on fd 7/8.
//! - kernel surfaces: /proc/sys (kernel.domainname, fs.lease-break-time), the root block
//!   device, a block device node lying on a live filesystem (a loop device over a scratch
//!   image), /proc/PID/root of host processes, terminals of other sessions (write, resize:
//!   SIGWINCH), root's user keyring.
//!
//! A case that finds a leak fails with a message starting `LEAK:` (or `BUG` when production
//! is safe but the pilot does not behave as it would live).
//!
//! Rules: loopback only; every file, directory, mount, loop device, key and process a case
//! creates is removed (processes killed by PID); sysctls are restored. Cases run in parallel; the ones
//! that touch shared state take a lock (MOUNTS, SYSCTL).
//!
//! The harness is tests/common's: `Pilot::pilot_run` (inherited descriptors, a stdin gate),
//! `Run` and its run-directory readers (common/rundir.rs), `direct` for the controls, `Proc`.
//! This file holds the fixtures (places, file operations, live endpoints, kernel objects) and
//! the cases.
//!
//! Run: `cd /work/main && cargo test --test leak -- --nocapture` (root, a kernel with BTF,
//! overlayfs and cgroup v2; gcc and /usr/bin/python3).
mod common;

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    os::{
        fd::AsRawFd,
        unix::{
            ffi::OsStrExt,
            fs::{FileTypeExt, MetadataExt, PermissionsExt},
            net::{UnixDatagram, UnixListener},
            process::{CommandExt, ExitStatusExt},
        },
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock, RwLock,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use common::{PYTHON, Pilot, Proc, Run, Running, argv, c_helper, direct, direct_ok, py_argv as py, require_python, sh_argv as sh};
use serde_json::Value;

/// How long a live endpoint is watched after a pilot ran, for traffic that must not come.
const QUIET: Duration = Duration::from_millis(1500);
/// A pilot run that takes longer than this is killed (a hang becomes a failure).
const RUN_DEADLINE: Duration = Duration::from_secs(150);

// ---------------------------------------------------------------------------------------------
// Shared state, unique names, the suite's pilot run
// ---------------------------------------------------------------------------------------------

/// Host mount table changes (the tmpfs of `Place::Mnt`) are exclusive with pilot runs, which
/// build their view from the host's mounts while they start (read: a pilot runs; write: a
/// mount or unmount).
static MOUNTS: RwLock<()> = RwLock::new(());
/// Cases that change a sysctl in their control.
static SYSCTL: Mutex<()> = Mutex::new(());

/// `pilot-leak-<pid>-<n>-<nanos>`: unique across parallel tests and test binaries.
fn unique() -> String {
    common::unique("pilot-leak")
}

fn read_lock() -> std::sync::RwLockReadGuard<'static, ()> {
    MOUNTS.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock() -> std::sync::RwLockWriteGuard<'static, ()> {
    MOUNTS.write().unwrap_or_else(|e| e.into_inner())
}

/// tests/leak/uring_write.c, compiled once per test process.
fn uring_helper() -> &'static Path {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    HELPER.get_or_init(|| PathBuf::from(c_helper("tests/leak/uring_write.c", "uring_write", &["-O2", "-Wall"], "PILOT_TEST_URING")))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A pilot of `argv` as every case runs one: `pilot run --timeout 60s` from /, holding
/// MOUNTS (read) until it exited.
fn pilot(argv: &[String]) -> Pilot {
    Pilot::pilot_run().args(["--timeout", "60s", "--"]).args(argv).cwd(Path::new("/")).timeout(RUN_DEADLINE).hold(read_lock())
}

/// Wait for a pilot: it ran (exit 0, 3 or 4, with a verdict) and left no overlay mount and no
/// cgroup behind.
fn finish(p: Running) -> Run {
    let run = p.wait();
    run.assert_ran();
    run.assert_nothing_left_behind();
    run
}

fn run_pilot(argv: &[String]) -> Run {
    finish(pilot(argv).spawn())
}

// ---------------------------------------------------------------------------------------------
// Production fixtures: directories in each kind of place, and their observable state
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    /// A fresh directory at the top of the root filesystem.
    Root,
    /// /var/lib/<unique>.
    Var,
    /// /tmp/<unique>.
    Tmp,
    /// /dev/shm/<unique> (its own tmpfs on most hosts).
    DevShm,
    /// /mnt/<unique>: a tmpfs the suite mounts there (a separately mounted filesystem).
    Mnt,
}

/// A production directory holding `f` ("original\n", 0644, root) and `keep`.
struct Fixture {
    dir: PathBuf,
    mount: Option<PathBuf>,
}

impl Fixture {
    fn new(place: Place) -> Fixture {
        let name = unique();
        let (dir, mount) = match place {
            Place::Root => (PathBuf::from("/").join(&name), None),
            Place::Var => (PathBuf::from("/var/lib").join(&name), None),
            Place::Tmp => (PathBuf::from("/tmp").join(&name), None),
            Place::DevShm => (PathBuf::from("/dev/shm").join(&name), None),
            Place::Mnt => {
                let mp = PathBuf::from("/mnt").join(&name);
                fs::create_dir_all(&mp).unwrap();
                let _w = write_lock();
                mount_tmpfs(&mp);
                (mp.join("data"), Some(mp))
            }
        };
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let fx = Fixture { dir, mount };
        fs::write(fx.f(), "original\n").unwrap();
        fs::set_permissions(fx.f(), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(fx.p("keep"), "keep me\n").unwrap();
        fx
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn f(&self) -> PathBuf {
        self.p("f")
    }

    fn state(&self) -> BTreeMap<String, String> {
        state_of(&self.dir)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(mp) = &self.mount {
            let _w = write_lock();
            let c = std::ffi::CString::new(mp.as_os_str().as_bytes()).unwrap();
            if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
            let _ = fs::remove_dir(mp);
        }
    }
}

fn mount_tmpfs(mp: &Path) {
    let target = std::ffi::CString::new(mp.as_os_str().as_bytes()).unwrap();
    let rc = unsafe {
        libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, c"size=4m,mode=755".as_ptr() as *const libc::c_void)
    };
    assert_eq!(rc, 0, "mounting a tmpfs on {}: {}", mp.display(), std::io::Error::last_os_error());
}

/// Everything observable about a directory tree: per path its type, mode, owner, link count,
/// size, content, symlink target and extended attributes.
fn state_of(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(m) = fs::symlink_metadata(p) else { return };
        let rel = p.strip_prefix(root).map(|r| r.display().to_string()).unwrap_or_default();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_char_device() {
            "char"
        } else {
            "file"
        };
        let mut desc = format!("{kind} mode={:o} owner={}:{}", m.mode() & 0o7777, m.uid(), m.gid());
        if ft.is_file() {
            let content = fs::read(p).unwrap_or_default();
            desc += &format!(" nlink={} size={} content={:?}", m.nlink(), m.len(), String::from_utf8_lossy(&content[..content.len().min(4096)]));
        }
        if ft.is_symlink() {
            desc += &format!(" -> {}", fs::read_link(p).map(|t| s(&t)).unwrap_or_default());
        }
        let x = xattrs(p);
        if !x.is_empty() {
            desc += &format!(" xattrs={x:?}");
        }
        out.insert(if rel.is_empty() { ".".into() } else { rel }, desc);
        if ft.is_dir() {
            let mut entries: Vec<_> = fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).collect();
            entries.sort();
            for e in entries {
                walk(root, &e, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn xattrs(p: &Path) -> BTreeMap<String, String> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr() as *mut libc::c_char, names.len()) };
    let mut out = BTreeMap::new();
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cn = std::ffi::CString::new(name).unwrap();
        let mut val = vec![0u8; 4096];
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr() as *mut libc::c_void, val.len()) };
        let v = if len >= 0 { String::from_utf8_lossy(&val[..len as usize]).into_owned() } else { "?".into() };
        out.insert(String::from_utf8_lossy(name).into_owned(), v);
    }
    out
}

fn diff_states(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let mut lines = Vec::new();
    for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => lines.push(format!("  {k}: {} => {}", x.map_or("(absent)", |v| v), y.map_or("(absent)", |v| v))),
        }
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// File cases: one operation in one place; control on one fixture, pilot on a fresh one
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Write,
    Append,
    Truncate,
    Unlink,
    Rename,
    Chmod,
    Chown,
    Setxattr,
    HardLink,
    MmapWrite,
    IoUringWrite,
}

const MMAP_PY: &str = r#"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:6] = b"MAPPED"
m.flush()
m.close()
os.close(fd)
print("mmap write done")
"#;

const SETXATTR_PY: &str = r#"
import os, sys
os.setxattr(sys.argv[1], "user.pilot_leak", b"set-by-the-action")
print("setxattr done")
"#;

impl Op {
    fn argv(self, fx: &Fixture) -> Vec<String> {
        let f = s(&fx.f());
        match self {
            Op::Write => sh(r#"printf 'overwritten\n' > "$1""#, &[&f]),
            Op::Append => sh(r#"echo appended >> "$1""#, &[&f]),
            Op::Truncate => argv(&["truncate", "-s", "0", &f]),
            Op::Unlink => argv(&["rm", &f]),
            Op::Rename => argv(&["mv", &f, &s(&fx.p("g"))]),
            Op::Chmod => argv(&["chmod", "600", &f]),
            Op::Chown => argv(&["chown", "65534:65534", &f]),
            Op::Setxattr => {
                require_python();
                py(SETXATTR_PY, &[&f])
            }
            Op::HardLink => argv(&["ln", &f, &s(&fx.p("h"))]),
            Op::MmapWrite => {
                require_python();
                py(MMAP_PY, &[&f])
            }
            Op::IoUringWrite => vec![s(uring_helper()), f, "URING".into()],
        }
    }

    /// The attempt, as the pilot recorded it.
    fn visible(self, run: &Run, fx: &Fixture) -> Result<(), String> {
        let f = fx.f();
        let fs_ = s(&f);
        let change = |path: &Path, kind: &str| -> Result<Value, String> {
            match run.change(path) {
                Some(c) if c["change"] == kind => Ok(c),
                Some(c) => Err(format!("changes.json has {} as {} (want {kind}): {c}", path.display(), c["change"])),
                None => Err(format!("changes.json has no entry for {} (want {kind})", path.display())),
            }
        };
        let event = |kind: &str, path: &str| -> Result<Value, String> {
            run.event_json(|e| e["kind"] == kind && e["path"] == path && e["ret"].as_i64().is_some_and(|r| r >= 0))
                .ok_or_else(|| format!("no successful `{kind}` event on {path} in events.jsonl"))
        };
        match self {
            Op::Write => {
                change(&f, "modified")?;
                let upper = run.upper_of(&f);
                let got = fs::read_to_string(&upper).map_err(|e| format!("{}: {e}", upper.display()))?;
                if got != "overwritten\n" {
                    return Err(format!("{} holds {got:?}, not the pilot's write", upper.display()));
                }
                event("open", &fs_)?;
            }
            Op::Append | Op::MmapWrite | Op::IoUringWrite => {
                change(&f, "modified")?;
            }
            Op::Truncate => {
                let c = change(&f, "modified")?;
                if c["size"] != 0 {
                    return Err(format!("truncate: upper size {} (want 0)", c["size"]));
                }
                event("truncate", &fs_)?;
            }
            Op::Unlink => {
                change(&f, "deleted")?;
                event("unlink", &fs_)?;
            }
            Op::Rename => {
                let g = fx.p("g");
                let c = change(&g, "renamed")?;
                if c["from"] != fs_.as_str() {
                    return Err(format!("rename recorded from {} (want {fs_})", c["from"]));
                }
                run.event_json(|e| e["kind"] == "rename" && e["path"] == fs_.as_str() && e["path2"] == s(&g).as_str() && e["ret"] == 0)
                    .ok_or("no successful rename event f -> g")?;
            }
            Op::Chmod => {
                let c = change(&f, "metadata")?;
                if c["mode"] != "600" {
                    return Err(format!("chmod recorded mode {} (want 600)", c["mode"]));
                }
                event("chmod", &fs_)?;
            }
            Op::Chown => {
                let c = change(&f, "metadata")?;
                if c["owner"] != "65534:65534" {
                    return Err(format!("chown recorded owner {} (want 65534:65534)", c["owner"]));
                }
                event("chown", &fs_)?;
            }
            Op::Setxattr => {
                // changes.json compares content, mode and owner only: an xattr change shows in
                // the trace.
                event("xattr", &fs_)?;
            }
            Op::HardLink => {
                change(&fx.p("h"), "created")?;
                event("link", &fs_)?;
            }
        }
        Ok(())
    }
}

fn file_case(op: Op, place: Place) {
    let name = format!("{op:?} in {place:?}");
    // Control: without pilot the action changes production.
    {
        let fx = Fixture::new(place);
        let before = fx.state();
        let d = direct(&op.argv(&fx), &[]);
        if op == Op::IoUringWrite && d.status.code() == Some(77) {
            eprintln!("SKIP {name}: {}", d.stdout.trim());
            return;
        }
        assert!(d.status.success(), "control of {name} failed: {:?}\n{}{}", d.status, d.stdout, d.stderr);
        let after = fx.state();
        assert_ne!(before, after, "control of {name}: the action changed nothing in production, the case proves nothing");
    }
    // Pilot: production unchanged, the attempt recorded.
    let fx = Fixture::new(place);
    let before = fx.state();
    let run = run_pilot(&op.argv(&fx));
    let after = fx.state();
    assert!(
        before == after,
        "LEAK: {name}: the pilot changed production in {}:\n{}\n{}",
        fx.dir.display(),
        diff_states(&before, &after),
        run.dump()
    );
    run.assert_command_ok();
    if let Err(e) = op.visible(&run, &fx) {
        panic!("{name}: production is unchanged but the attempt is not visible: {e}\n{}", run.dump());
    }
    eprintln!("ok {name}: control changed production; pilot left it unchanged and recorded it");
}

macro_rules! file_cases {
    ($($test:ident: $op:ident in $place:ident;)*) => {
        $(
            #[test]
            fn $test() {
                file_case(Op::$op, Place::$place);
            }
        )*
    };
}

file_cases! {
    file_write_var: Write in Var;
    file_append_var: Append in Var;
    file_truncate_var: Truncate in Var;
    file_unlink_var: Unlink in Var;
    file_rename_var: Rename in Var;
    file_chmod_var: Chmod in Var;
    file_chown_var: Chown in Var;
    file_setxattr_var: Setxattr in Var;
    file_hard_link_var: HardLink in Var;
    file_mmap_write_var: MmapWrite in Var;
    file_io_uring_write_var: IoUringWrite in Var;
    file_write_root: Write in Root;
    file_unlink_root: Unlink in Root;
    file_write_tmp: Write in Tmp;
    file_unlink_tmp: Unlink in Tmp;
    file_write_dev_shm: Write in DevShm;
    file_unlink_dev_shm: Unlink in DevShm;
    file_write_mounted_fs: Write in Mnt;
    file_unlink_mounted_fs: Unlink in Mnt;
    file_setxattr_mounted_fs: Setxattr in Mnt;
    file_io_uring_write_mounted_fs: IoUringWrite in Mnt;
}

// ---------------------------------------------------------------------------------------------
// Live endpoints the tests start outside pilot
// ---------------------------------------------------------------------------------------------

/// What a live listener received: one entry per accepted connection or datagram.
#[derive(Clone, Debug)]
struct Got {
    from: String,
    bytes: Vec<u8>,
}

/// A live loopback endpoint (TCP, UDP, Unix) served by a thread of the test.
struct Endpoint {
    addr: String,
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Endpoint {
    fn tcp(bind: &str) -> Option<Endpoint> {
        let l = TcpListener::bind(bind).ok()?;
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        Some(Endpoint::serve(bind, port, move |stop, got| {
            let mut conns = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, peer)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
                        conns.push(pump(c, peer.to_string(), &got, &stop));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            conns.into_iter().for_each(|c| drop(c.join()));
        }))
    }

    fn udp(bind: &str) -> Option<Endpoint> {
        let u = UdpSocket::bind(bind).ok()?;
        let port = u.local_addr().unwrap().port();
        u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        Some(Endpoint::serve(bind, port, move |stop, got| {
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((n, from)) = u.recv_from(&mut buf) {
                    got.lock().unwrap().push(Got { from: from.to_string(), bytes: buf[..n].to_vec() });
                }
            }
        }))
    }

    fn unix_stream(l: UnixListener, name: &str) -> Endpoint {
        l.set_nonblocking(true).unwrap();
        Endpoint::serve(name, 0, move |stop, got| {
            let mut conns = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
                        conns.push(pump(c, "unix".into(), &got, &stop));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            conns.into_iter().for_each(|c| drop(c.join()));
        })
    }

    fn unix_dgram(u: UnixDatagram, name: &str) -> Endpoint {
        u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        Endpoint::serve(name, 0, move |stop, got| {
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                if let Ok(n) = u.recv(&mut buf) {
                    got.lock().unwrap().push(Got { from: "unix".into(), bytes: buf[..n].to_vec() });
                }
            }
        })
    }

    fn serve(addr: &str, port: u16, body: impl FnOnce(Arc<AtomicBool>, Arc<Mutex<Vec<Got>>>) + Send + 'static) -> Endpoint {
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (st, g) = (stop.clone(), got.clone());
        let thread = Some(thread::spawn(move || body(st, g)));
        let host = addr.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or(addr).to_string();
        Endpoint { addr: host, port, got, stop, thread }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Wait until something containing `needle` arrived.
    fn wait_for(&self, needle: &[u8], within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.got().iter().any(|g| contains(&g.bytes, needle)) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Nothing at all arrives for `QUIET` (the pilot already ended).
    fn assert_quiet(&self, what: &str, run: &Run) {
        thread::sleep(QUIET);
        let got = self.got();
        assert!(
            got.is_empty(),
            "LEAK: {what}: the live endpoint {}:{} received {} connection(s)/datagram(s) from the pilot: {:?}\n{}",
            self.addr,
            self.port,
            got.len(),
            got.iter().map(|g| format!("{} {:?}", g.from, String::from_utf8_lossy(&g.bytes))).collect::<Vec<_>>(),
            run.dump()
        );
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Record an accepted connection at once, then its bytes as they arrive, until EOF or stop
/// (the stream has a short read timeout).
fn pump<S: Read + Send + 'static>(mut c: S, from: String, got: &Arc<Mutex<Vec<Got>>>, stop: &Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let i = {
        let mut g = got.lock().unwrap();
        g.push(Got { from, bytes: Vec::new() });
        g.len() - 1
    };
    let (got, stop) = (got.clone(), stop.clone());
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.lock().unwrap()[i].bytes.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len().max(1)).any(|w| w == needle)
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// Network cases
// ---------------------------------------------------------------------------------------------

const TCP_SEND_PY: &str = r#"
import socket, sys
host, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
c = socket.socket(fam, socket.SOCK_STREAM)
c.connect((host, port))
peer = c.getpeername()
print("peer", peer[0], peer[1], flush=True)
c.sendall(payload)
c.close()
print("sent", flush=True)
"#;

const UDP_SEND_PY: &str = r#"
import socket, sys
host, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
u = socket.socket(fam, socket.SOCK_DGRAM)
if sys.argv[4:] == ["connected"]:
    u.connect((host, port))
    n = u.send(payload)
else:
    n = u.sendto(payload, (host, port))
print("sent", n, flush=True)
"#;

fn tcp_case(bind: &str) {
    tcp_case_to(bind, None)
}

/// TCP to a live listener bound at `bind`, addressed as `via` (default: its own address).
fn tcp_case_to(bind: &str, via: Option<&str>) {
    require_python();
    let Some(ctl) = Endpoint::tcp(bind) else {
        eprintln!("SKIP tcp {bind}: cannot listen there (no IPv6 loopback?)");
        return;
    };
    let payload = format!("{}-control", unique());
    direct_ok(&py(TCP_SEND_PY, &[via.unwrap_or(&ctl.addr), &ctl.port.to_string(), &payload]), &[]);
    assert!(ctl.wait_for(payload.as_bytes(), Duration::from_secs(5)), "control: the listener never got the bytes");
    drop(ctl);

    let live = Endpoint::tcp(bind).unwrap();
    let payload = format!("{}-pilot", unique());
    let addr = via.unwrap_or(&live.addr).to_string();
    let run = run_pilot(&py(TCP_SEND_PY, &[&addr, &live.port.to_string(), &payload]));
    live.assert_quiet(&format!("TCP to {addr}:{}", live.port), &run);
    assert_eq!(
        run.command_exit(),
        0,
        "BUG (contained, but not as live): the pilot's TCP connect to {addr}:{} failed where it succeeds without pilot (it must land in the sink)\n{}",
        live.port,
        run.dump()
    );
    // The pilot's connect succeeded and getpeername gave the real destination back.
    let want_peer = format!("peer {addr} {}", live.port);
    assert!(run.stdout.contains(&want_peer) && run.stdout.contains("sent"), "pilot output lacks `{want_peer}`\n{}", run.dump());
    let caught = run.sink();
    assert!(
        caught.iter().any(|c| c["proto"] == "tcp" && c["bytes"].as_u64() == Some(payload.len() as u64) && c["head"].as_str().is_some_and(|h| h.contains(&payload))),
        "sink.json does not hold the {} bytes sent\n{}",
        payload.len(),
        run.dump()
    );
    run.event_json(|e| e["kind"] == "connect" && e["addr"] == addr.as_str() && e["port"] == live.port && e["ret"] == 0)
        .unwrap_or_else(|| panic!("no connect event to {addr}:{}\n{}", live.port, run.dump()));
    eprintln!("ok TCP {addr}:{}: control delivered; pilot's bytes went to the sink only", live.port);
}

#[test]
fn tcp_ipv4_loopback_listener() {
    tcp_case("127.0.0.1:0");
}

#[test]
fn tcp_ipv6_loopback_listener() {
    tcp_case("[::1]:0");
}

/// An IPv4 listener reached from a dual-stack IPv6 socket as ::ffff:127.0.0.1.
#[test]
fn tcp_ipv4_mapped_address_from_an_ipv6_socket() {
    tcp_case_to("127.0.0.1:0", Some("::ffff:127.0.0.1"));
}

fn udp_case(bind: &str) {
    udp_case_mode(bind, "sendto")
}

/// `mode`: "sendto" (a destination per datagram) or "connected" (connect, then send).
fn udp_case_mode(bind: &str, mode: &str) {
    require_python();
    let Some(ctl) = Endpoint::udp(bind) else {
        eprintln!("SKIP udp {bind}: cannot bind there (no IPv6 loopback?)");
        return;
    };
    let payload = format!("{}-control", unique());
    direct_ok(&py(UDP_SEND_PY, &[&ctl.addr, &ctl.port.to_string(), &payload, mode]), &[]);
    assert!(ctl.wait_for(payload.as_bytes(), Duration::from_secs(5)), "control: the receiver never got the datagram");
    drop(ctl);

    let live = Endpoint::udp(bind).unwrap();
    let payload = format!("{}-pilot", unique());
    let run = run_pilot(&py(UDP_SEND_PY, &[&live.addr, &live.port.to_string(), &payload, mode]));
    live.assert_quiet(&format!("UDP to {}:{}", live.addr, live.port), &run);
    run.assert_command_ok();
    let caught = run.sink();
    assert!(
        caught.iter().any(|c| c["proto"] == "udp" && c["head"].as_str().is_some_and(|h| h.contains(&payload))),
        "sink.json does not hold the datagram\n{}",
        run.dump()
    );
    let kind = if mode == "connected" { "connect" } else { "send" };
    run.event_json(|e| e["kind"] == kind && e["addr"] == live.addr.as_str() && e["port"] == live.port && e["ret"].as_i64().is_some_and(|r| r >= 0))
        .unwrap_or_else(|| panic!("no {kind} event to {}:{}\n{}", live.addr, live.port, run.dump()));
    eprintln!("ok UDP {bind} ({mode}): control delivered; pilot's datagram went to the sink only");
}

#[test]
fn udp_ipv4_loopback_receiver() {
    udp_case("127.0.0.1:0");
}

#[test]
fn udp_ipv6_loopback_receiver() {
    udp_case("[::1]:0");
}

const GATED_SEND6_PY: &str = r#"
import socket, sys
host, port, payload, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4]
print("waiting", flush=True)
sys.stdin.readline()
try:
    if proto == "tcp":
        c = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        c.connect((host, port))
        c.sendall(payload)
        c.close()
    else:
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        u.sendto(payload, (host, port))
    print("sent", flush=True)
except OSError as e:
    print("send failed", e.errno, flush=True)
"#;

/// Ports of the sockets `pid` listens on (TCP state 0A) or has bound (UDP state 07) at
/// `hex_addr` (/proc/net/{tcp6,udp6} notation).
fn listening_ports(pid: u32, table: &str, hex_addr: &str) -> Vec<u16> {
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|t| t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
        .collect();
    fs::read_to_string(table)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            (matches!(f.get(3), Some(&"0A") | Some(&"07")) && addr == hex_addr && inodes.iter().any(|i| Some(&i.as_str()) == f.get(9)))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

/// A dual-stack IPv6 socket sending to an IPv4-mapped address is redirected to the IPv4 sink
/// address but with the IPv6 sink's port: whatever live service listens on
/// 127.0.0.1:<that port> gets the pilot's traffic. The test plays that service: while the
/// pilot waits at its gate, it looks up the port of the agent's [::1] sink, listens on
/// 127.0.0.1 at the same port, then lets the pilot send to ::ffff:127.0.0.1:<a live target>.
/// Control: without pilot the same send reaches the target.
fn mapped_redirect_case(proto: &str) {
    require_python();
    let endpoint = |bind: &str| if proto == "tcp" { Endpoint::tcp(bind) } else { Endpoint::udp(bind) };
    let script = |port: u16, payload: &str| py(GATED_SEND6_PY, &["::ffff:127.0.0.1", &port.to_string(), payload, proto]);
    {
        let target = endpoint("127.0.0.1:0").unwrap();
        let payload = format!("{}-control", unique());
        let mut cmd = Command::new(PYTHON);
        cmd.args(&script(target.port, &payload)[1..]).stdin(Stdio::piped()).stdout(Stdio::null());
        let mut c = cmd.spawn().unwrap();
        c.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert!(c.wait().unwrap().success());
        assert!(target.wait_for(payload.as_bytes(), Duration::from_secs(5)), "control: the target got nothing");
    }
    let target = endpoint("127.0.0.1:0").unwrap();
    let payload = format!("{}-pilot", unique());
    let mut p = pilot(&script(target.port, &payload)).stdin_pipe().spawn();
    assert!(p.wait_for_line("waiting", Duration::from_secs(60)).is_some(), "the pilot never got ready");
    let table = if proto == "tcp" { "/proc/net/tcp6" } else { "/proc/net/udp6" };
    let sink6 = listening_ports(p.pid(), table, "00000000000000000000000001000000");
    let bystander = sink6.first().and_then(|port| endpoint(&format!("127.0.0.1:{port}")));
    let _ = p.write_stdin(b"go\n");
    let run = finish(p);
    let Some(bystander) = bystander else {
        eprintln!("SKIP mapped-address redirect ({proto}): no [::1] sink port found, or 127.0.0.1 at that port is taken ({sink6:?})");
        return;
    };
    target.assert_quiet(&format!("{proto} to ::ffff:127.0.0.1:{}", target.port), &run);
    bystander.assert_quiet(
        &format!(
            "{proto} to ::ffff:127.0.0.1:{} was redirected to 127.0.0.1:{} (the port of the [::1] sink), where a live service listens",
            target.port, bystander.port
        ),
        &run,
    );
    eprintln!("ok mapped-address redirect ({proto}): nothing reached 127.0.0.1:{}", bystander.port);
}

#[test]
fn tcp_ipv4_mapped_connect_lands_on_127_0_0_1_at_the_ipv6_sink_port() {
    mapped_redirect_case("tcp");
}

#[test]
fn udp_ipv4_mapped_send_lands_on_127_0_0_1_at_the_ipv6_sink_port() {
    mapped_redirect_case("udp");
}

#[test]
fn udp_ipv4_connected_socket() {
    udp_case_mode("127.0.0.1:0", "connected");
}

const UNIX_STREAM_PY: &str = r#"
import socket, sys
addr, payload = sys.argv[1], sys.argv[2].encode()
if addr.startswith("@"):
    addr = "\0" + addr[1:]
try:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
except OSError as e:
    print("socket failed", e.errno, flush=True)
    sys.exit(0)
try:
    c.connect(addr)
except OSError as e:
    print("connect failed", e.errno, flush=True)
    sys.exit(0)
c.sendall(payload)
c.close()
print("sent", flush=True)
"#;

const UNIX_DGRAM_PY: &str = r#"
import socket, sys
addr, payload = sys.argv[1], sys.argv[2].encode()
try:
    u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
except OSError as e:
    print("socket failed", e.errno, flush=True)
    sys.exit(0)
try:
    u.sendto(payload, addr)
except OSError as e:
    print("sendto failed", e.errno, flush=True)
    sys.exit(0)
print("sent", flush=True)
"#;

/// A live Unix server at a path (or an abstract name `@...`).
fn unix_server(kind: &str, where_: &Path, abstract_name: Option<&str>) -> Endpoint {
    use std::os::linux::net::SocketAddrExt;
    match (kind, abstract_name) {
        ("stream", Some(n)) => {
            let a = std::os::unix::net::SocketAddr::from_abstract_name(n.as_bytes()).unwrap();
            Endpoint::unix_stream(UnixListener::bind_addr(&a).unwrap(), n)
        }
        ("stream", None) => Endpoint::unix_stream(UnixListener::bind(where_).unwrap(), &s(where_)),
        _ => Endpoint::unix_dgram(UnixDatagram::bind(where_).unwrap(), &s(where_)),
    }
}

fn unix_case(kind: &str, abstract_: bool) {
    require_python();
    let code = if kind == "stream" { UNIX_STREAM_PY } else { UNIX_DGRAM_PY };
    let attempt = |fx: &Fixture| -> (Endpoint, String) {
        let sock = fx.p("sock");
        if abstract_ {
            let name = unique();
            (unix_server(kind, &sock, Some(&name)), format!("@{name}"))
        } else {
            (unix_server(kind, &sock, None), s(&sock))
        }
    };
    let what = format!("Unix {kind}{}", if abstract_ { " (abstract)" } else { "" });
    {
        let fx = Fixture::new(Place::Tmp);
        let (ctl, addr) = attempt(&fx);
        let payload = format!("{}-control", unique());
        let d = direct_ok(&py(code, &[&addr, &payload]), &[]);
        assert!(d.stdout.contains("sent"), "control {what}: {}", d.stdout);
        assert!(ctl.wait_for(payload.as_bytes(), Duration::from_secs(5)), "control {what}: the server never got the bytes");
    }
    let fx = Fixture::new(Place::Tmp);
    let (live, addr) = attempt(&fx);
    let payload = format!("{}-pilot", unique());
    let run = run_pilot(&py(code, &[&addr, &payload]));
    live.assert_quiet(&format!("{what} to {addr}"), &run);
    run.assert_command_ok();
    // Before Linux 6.7 (no cgroup Unix hooks; `pilot doctor` says which) the seccomp filter
    // refuses the socket itself: there is no destination to record yet.
    let unix = run.verdict()["contained_by"]["unix_sockets"].as_str().unwrap_or_default().to_string();
    if unix.contains("seccomp") {
        assert!(run.stdout.contains("socket failed 1"), "{what}: socket(AF_UNIX) was not refused with EPERM\n{}", run.dump());
        eprintln!("ok {what}: control delivered; pilot's socket(AF_UNIX) refused (seccomp)");
        return;
    }
    if kind == "stream" && !abstract_ {
        // A live listener's path leads to the sink's socket bind-mounted over it: the connect
        // succeeds as live, the bytes are recorded against the path, the server gets nothing.
        assert!(run.stdout.contains("sent"), "BUG {what}: the pilot's connect to a live listener failed where live it succeeds\n{}", run.dump());
        let to = format!("unix:{addr}");
        assert!(
            run.sink().iter().any(|c| c["proto"] == "unix" && c["to"] == to.as_str() && c["head"].as_str().is_some_and(|h| h.contains(&payload))),
            "{what}: sink.json does not hold the bytes sent to {to}\n{}",
            run.dump()
        );
        eprintln!("ok {what}: control delivered; pilot's bytes went to the sink's socket at {addr} only");
        return;
    }
    // Abstract: refused by the cgroup hook (EPERM), or before 6.7 not there in the pilot's own
    // network namespace (ECONNREFUSED). A datagram receiver's path: the sink has no socket
    // there, and through the overlay the path is not the receiver's: refused.
    let errno = if abstract_ && !unix.contains("network namespace") { "1" } else { "111" };
    assert!(run.stdout.contains(&format!("failed {errno}")), "{what}: the pilot's attempt did not fail with errno {errno}\n{}", run.dump());
    let kind_ev = if kind == "stream" { "connect" } else { "send" };
    run.event_json(|e| e["kind"] == kind_ev && e["family"] == "unix" && e["ret"].as_i64().is_some_and(|r| r < 0))
        .unwrap_or_else(|| panic!("{what}: no failed `{kind_ev}` event with family unix\n{}", run.dump()));
    eprintln!("ok {what}: control delivered; pilot refused (errno {errno}) and recorded");
}

/// A live Unix listener that appears after the pilot started (the sink has no socket for
/// it): through the overlay its path reaches no listener, on every kernel.
#[test]
fn unix_listener_started_during_the_run_is_not_reached() {
    require_python();
    let fx = Fixture::new(Place::Tmp);
    let sock = fx.p("late.sock");
    let payload = format!("{}-pilot", unique());
    let script = format!("import sys; print('waiting', flush=True); sys.stdin.readline()\n{UNIX_STREAM_PY}");
    let mut p = pilot(&py(&script, &[&s(&sock), &payload])).stdin_pipe().spawn();
    assert!(p.wait_for_line("waiting", Duration::from_secs(60)).is_some(), "the pilot never got ready");
    let live = unix_server("stream", &sock, None);
    let _ = p.write_stdin(b"go\n");
    let run = finish(p);
    live.assert_quiet("Unix stream to a listener bound after the pilot started", &run);
    let unix = run.verdict()["contained_by"]["unix_sockets"].as_str().unwrap_or_default().to_string();
    if unix.contains("seccomp") {
        assert!(run.stdout.contains("socket failed 1"), "{}", run.dump());
        return;
    }
    assert!(run.stdout.contains("connect failed 111"), "the connect was not refused (ECONNREFUSED)\n{}", run.dump());
    // Control: the same connect without pilot reaches it.
    let d = direct_ok(&py(UNIX_STREAM_PY, &[&s(&sock), "control"]), &[]);
    assert!(d.stdout.contains("sent") && live.wait_for(b"control", Duration::from_secs(5)), "control: {}", d.stdout);
}

#[test]
fn unix_stream_server_by_path() {
    unix_case("stream", false);
}

#[test]
fn unix_stream_server_abstract() {
    unix_case("stream", true);
}

#[test]
fn unix_datagram_receiver_by_path() {
    unix_case("dgram", false);
}

const BIND_THEN_CONNECT_PY: &str = r#"
import socket, sys, time
port, payload = int(sys.argv[1]), sys.argv[2].encode()
b = socket.socket()
b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    b.bind(("127.0.0.2", port))
    b.listen()
    print("bound", flush=True)
except OSError as e:
    print("bound: refused", e.errno, flush=True)
end = time.time() + 15
while time.time() < end:
    c = socket.socket()
    c.settimeout(5)
    try:
        c.connect(("127.0.0.1", port))
    except OSError:
        c.close()
        time.sleep(0.05)
        continue
    c.sendall(payload)
    c.close()
    print("sent", flush=True)
    break
"#;

/// The pilot binds 127.0.0.2:P (P: no live listener when it starts), then connects to
/// 127.0.0.1:P: its own port, so the connect is let through. `late`: the live listener on
/// 127.0.0.1:P starts after the pilot's bind (a service (re)starting during the run);
/// otherwise it is held by the test process itself, an ancestor of pilot (pilot leaves its
/// ancestry out of the live-ports list).
fn bind_then_connect_case(late: bool) {
    require_python();
    let what = if late { "listener started during the run" } else { "listener of pilot's ancestry" };
    // Control: without pilot the same script reaches the listener.
    {
        let port = free_port();
        let payload = format!("{}-control", unique());
        let mut early = if late { None } else { Endpoint::tcp(&format!("127.0.0.1:{port}")) };
        let mut child = Command::new(PYTHON)
            .args(py(BIND_THEN_CONNECT_PY, &[&port.to_string(), &payload])[1..].iter())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        assert!(first.starts_with("bound"), "control: {first}");
        if late {
            early = Endpoint::tcp(&format!("127.0.0.1:{port}"));
        }
        let live = early.expect("listening on 127.0.0.1");
        assert!(child.wait().unwrap().success());
        assert!(live.wait_for(payload.as_bytes(), Duration::from_secs(5)), "control ({what}): the listener got nothing");
    }
    let port = free_port();
    let payload = format!("{}-pilot", unique());
    let mut live = if late { None } else { Endpoint::tcp(&format!("127.0.0.1:{port}")) };
    let mut p = pilot(&py(BIND_THEN_CONNECT_PY, &[&port.to_string(), &payload])).spawn();
    let bound = p.wait_for_line("bound", Duration::from_secs(60));
    if late {
        live = Endpoint::tcp(&format!("127.0.0.1:{port}"));
    }
    let live = live.expect("listening on 127.0.0.1");
    let run = finish(p);
    eprintln!("bind-then-connect ({what}): pilot printed {bound:?}");
    live.assert_quiet(&format!("TCP to 127.0.0.1:{port} after binding 127.0.0.2:{port} ({what})"), &run);
    run.assert_command_ok();
    eprintln!("ok bind then connect ({what}): nothing reached the live listener");
}

#[test]
fn tcp_port_bound_on_other_loopback_addr_reaches_listener_started_during_run() {
    bind_then_connect_case(true);
}

#[test]
fn tcp_port_bound_on_other_loopback_addr_reaches_listener_of_ancestry() {
    bind_then_connect_case(false);
}

/// A live service that is NOT in pilot's ancestry (a process the test starts): binding its
/// port is refused and its listener gets nothing.
#[test]
fn tcp_bind_of_a_live_services_port_is_refused() {
    require_python();
    const SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
s.settimeout(float(sys.argv[1]))
try:
    c, a = s.accept()
    print("ACCEPTED", a, c.recv(100), flush=True)
except OSError:
    print("nothing", flush=True)
"#;
    let start = || {
        let mut server = Proc::spawn(Command::new(PYTHON).args(["-c", SERVER, "60"]).stdout(Stdio::piped()));
        let mut out = BufReader::new(server.child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().expect("server port");
        (server, out, port)
    };
    {
        // Control: without pilot the script's connect reaches the service.
        let (_server, mut out, port) = start();
        let payload = format!("{}-control", unique());
        direct_ok(&py(BIND_THEN_CONNECT_PY, &[&port.to_string(), &payload]), &[]);
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("ACCEPTED") && line.contains(&payload), "control: {line}");
    }
    let (mut server, mut out, port) = start();
    let payload = format!("{}-pilot", unique());
    let run = run_pilot(&py(BIND_THEN_CONNECT_PY, &[&port.to_string(), &payload]));
    run.assert_command_ok();
    assert!(run.stdout.contains("bound: refused 1"), "binding a live service's port was not refused\n{}", run.dump());
    thread::sleep(QUIET);
    server.kill();
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    assert!(!rest.contains("ACCEPTED"), "LEAK: the live service accepted the pilot's connection: {rest}\n{}", run.dump());
    run.event_json(|e| e["kind"] == "bind" && e["port"] == port && e["ret"].as_i64().is_some_and(|r| r < 0))
        .unwrap_or_else(|| panic!("no failed bind event on port {port}\n{}", run.dump()));
    eprintln!("ok bind of a live service's port refused");
}

// ---------------------------------------------------------------------------------------------
// Processes: signals, daemons
// ---------------------------------------------------------------------------------------------

/// `sleep 120` in process group `group` (None: a group of its own, led by it).
fn sleeper(group: Option<i32>) -> Proc {
    let mut cmd = Command::new("sleep");
    cmd.arg("120").stdin(Stdio::null()).process_group(group.unwrap_or(0));
    Proc::spawn(&mut cmd)
}

fn signal_case(script: fn(leader: u32) -> Vec<String>, what: &str, group: bool) {
    let start = || {
        let leader = sleeper(None);
        let member = group.then(|| sleeper(Some(leader.pid() as i32)));
        (leader, member)
    };
    {
        let (mut leader, mut member) = start();
        direct(&script(leader.pid()), &[]);
        let st = leader.ended(Duration::from_secs(5)).expect("control: the target survived the signal");
        assert_eq!(st.signal(), Some(libc::SIGTERM), "control: {st:?}");
        if let Some(m) = member.as_mut() {
            assert_eq!(m.ended(Duration::from_secs(5)).and_then(|s| s.signal()), Some(libc::SIGTERM), "control: group member survived");
        }
    }
    let (mut leader, mut member) = start();
    let run = run_pilot(&script(leader.pid()));
    thread::sleep(Duration::from_millis(300));
    assert!(leader.alive(), "LEAK: {what}: the pilot's signal killed live process {}\n{}", leader.pid(), run.dump());
    if let Some(m) = member.as_mut() {
        assert!(m.alive(), "LEAK: {what}: the pilot's signal killed group member {}\n{}", m.pid(), run.dump());
    }
    let target = if group { -(leader.pid() as i64) } else { leader.pid() as i64 };
    // Held back by the sandbox's supervisor (the sender saw 0, as live), or, without one,
    // failed in the PID namespace.
    run.event_json(|e| {
        e["kind"] == "signal"
            && (e["supervisor"] == "held back" || e["ret"].as_i64().is_some_and(|r| r < 0))
            && (e["target_pid"] == target || e["syscall"] == "pidfd_send_signal")
    })
    .unwrap_or_else(|| panic!("{what}: no held-back or failed signal event (target {target})\n{}", run.dump()));
    assert_eq!(run.code, Some(3), "{what}: a signal to a live process blocks\n{}", run.dump());
    eprintln!("ok {what}: control killed; pilot's signal was held back and recorded");
}

#[test]
fn signal_to_a_live_process() {
    signal_case(|pid| sh(r#"kill -TERM "$1"; echo "kill rc=$?""#, &[&pid.to_string()]), "kill -TERM PID", false);
}

#[test]
fn signal_to_a_live_process_group() {
    signal_case(|pid| sh(r#"kill -TERM -"$1"; echo "kill rc=$?""#, &[&pid.to_string()]), "kill -TERM -PGID", true);
}

#[test]
fn signal_through_a_proc_pidfd() {
    require_python();
    const CODE: &str = r#"
import os, signal, sys
try:
    fd = os.open("/proc/" + sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
    signal.pidfd_send_signal(fd, signal.SIGTERM)
    print("signalled", flush=True)
except OSError as e:
    print("failed", e.errno, flush=True)
"#;
    signal_case(|pid| py(CODE, &[&pid.to_string()]), "pidfd_send_signal(/proc/PID)", false);
}

#[test]
fn double_forked_daemon_writing_after_the_command_exited() {
    let script = r#"( sleep 0.5; echo late >> "$1" ) > /dev/null 2>&1 & exit 0"#;
    {
        let fx = Fixture::new(Place::Var);
        direct_ok(&[argv(&["setsid", "sh", "-c", script, "sh"]), vec![s(&fx.f())]].concat(), &[]);
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end && !fs::read_to_string(fx.f()).unwrap().contains("late") {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(fs::read_to_string(fx.f()).unwrap().contains("late"), "control: the daemon never wrote");
    }
    let fx = Fixture::new(Place::Var);
    let before = fx.state();
    let run = run_pilot(&[argv(&["setsid", "sh", "-c", script, "sh"]), vec![s(&fx.f())]].concat());
    thread::sleep(Duration::from_millis(1000)); // a daemon pilot did not wait for would write now
    let after = fx.state();
    assert!(before == after, "LEAK: the daemon wrote to production:\n{}\n{}", diff_states(&before, &after), run.dump());
    run.assert_command_ok();
    assert!(run.elapsed >= Duration::from_millis(500), "pilot returned after {:?}: it did not wait for the daemon", run.elapsed);
    let upper = run.upper_of(&fx.f());
    let got = fs::read_to_string(&upper).unwrap_or_default();
    assert!(got.ends_with("late\n"), "the daemon's write is not in {} ({got:?})\n{}", upper.display(), run.dump());
    let c = run.change(&fx.f()).unwrap_or_else(|| panic!("no change for the daemon's write\n{}", run.dump()));
    assert_eq!(c["change"], "modified", "{c}");
    eprintln!("ok double-forked daemon: pilot waited for it ({:?}); its write is in upper/", run.elapsed);
}

// ---------------------------------------------------------------------------------------------
// Inherited descriptors
// ---------------------------------------------------------------------------------------------

#[test]
fn write_through_an_inherited_file_descriptor() {
    let open_prod = |fx: &Fixture| fs::OpenOptions::new().append(true).open(fx.f()).unwrap();
    let script = sh(r#"echo leaked-through-fd7 >&7"#, &[]);
    {
        let fx = Fixture::new(Place::Var);
        let prod = open_prod(&fx);
        direct_ok(&script, &[(prod.as_raw_fd(), 7)]);
        assert!(fs::read_to_string(fx.f()).unwrap().contains("leaked-through-fd7"), "control: nothing written through fd 7");
    }
    let fx = Fixture::new(Place::Var);
    let before = fx.state();
    let prod = open_prod(&fx);
    let run = finish(pilot(&script).inherit(prod.as_raw_fd(), 7).spawn());
    let after = fx.state();
    assert!(
        before == after,
        "LEAK: a write through fd 7 (a production file the caller had open) reached production:\n{}\n{}",
        diff_states(&before, &after),
        run.dump()
    );
    eprintln!("ok inherited fd 7: production unchanged (pilot exit {})", run.command_exit());
}

#[test]
fn send_through_an_inherited_socket() {
    let script = sh(r#"echo leaked-through-fd8 >&8"#, &[]);
    {
        let live = Endpoint::tcp("127.0.0.1:0").unwrap();
        let conn = TcpStream::connect(("127.0.0.1", live.port)).unwrap();
        direct_ok(&script, &[(conn.as_raw_fd(), 8)]);
        drop(conn);
        assert!(live.wait_for(b"leaked-through-fd8", Duration::from_secs(5)), "control: nothing arrived through fd 8");
    }
    let live = Endpoint::tcp("127.0.0.1:0").unwrap();
    let conn = TcpStream::connect(("127.0.0.1", live.port)).unwrap();
    let run = finish(pilot(&script).inherit(conn.as_raw_fd(), 8).spawn());
    drop(conn); // the live listener's read ends here
    thread::sleep(QUIET);
    let got = live.got();
    assert!(
        !got.iter().any(|g| contains(&g.bytes, b"leaked-through-fd8")),
        "LEAK: bytes written to an inherited connected socket (fd 8) reached the live listener: {:?}\n{}",
        got.iter().map(|g| String::from_utf8_lossy(&g.bytes).into_owned()).collect::<Vec<_>>(),
        run.dump()
    );
    eprintln!("ok inherited socket fd 8: nothing reached the listener");
}

// ---------------------------------------------------------------------------------------------
// Kernel surfaces: /proc/sys, block devices, /proc/PID/root
// ---------------------------------------------------------------------------------------------

/// Restores a sysctl on drop.
struct Sysctl {
    path: PathBuf,
    original: String,
}

impl Sysctl {
    fn read(&self) -> String {
        fs::read_to_string(&self.path).unwrap().trim().to_string()
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if self.read() != self.original {
            fs::write(&self.path, format!("{}\n", self.original)).expect("restoring the sysctl");
        }
    }
}

fn sysctl_case(name: &str, new_value: impl Fn(&str) -> String) {
    let _g = SYSCTL.lock().unwrap_or_else(|e| e.into_inner());
    let path = PathBuf::from("/proc/sys").join(name.replace('.', "/"));
    let sysctl = Sysctl { original: fs::read_to_string(&path).unwrap().trim().to_string(), path: path.clone() };
    let value = new_value(&sysctl.original);
    let script = sh(r#"echo "$2" > "$1"; echo "write rc=$?""#, &[&s(&path), &value]);
    direct(&script, &[]);
    assert_eq!(sysctl.read(), value, "control: writing {} did not change it", path.display());
    fs::write(&path, format!("{}\n", sysctl.original)).unwrap();
    assert_eq!(sysctl.read(), sysctl.original);

    let run = run_pilot(&script);
    assert_eq!(sysctl.read(), sysctl.original, "LEAK: the pilot changed {name} to {:?}\n{}", sysctl.read(), run.dump());
    let p = s(&path);
    // Held back by the sandbox's supervisor (a private file took the write: the value is
    // recorded), or, without one, refused by the read-only /proc.
    run.event_json(|e| {
        (e["kind"] == "sysctl" && e["path"] == p.as_str() && e["supervisor"] == "held back" && e["value"] == value.as_str())
            || (e["kind"] == "open" && e["path"] == p.as_str() && e["ret"].as_i64().is_some_and(|r| r < 0))
    })
    .unwrap_or_else(|| panic!("no held-back sysctl or failed open of {p} in events.jsonl\n{}", run.dump()));
    assert_eq!(run.code, Some(3), "a sysctl write blocks\n{}", run.dump());
    eprintln!("ok sysctl {name}: control changed it (restored); pilot's write was held back and recorded");
}

/// UTS-namespaced (the pilot's own UTS namespace would hide a write too).
#[test]
fn sysctl_kernel_domainname() {
    sysctl_case("kernel.domainname", |_| unique());
}

/// Not namespaced: only /proc being read-only keeps this from production.
#[test]
fn sysctl_fs_lease_break_time() {
    sysctl_case("fs.lease-break-time", |v| (v.parse::<u64>().unwrap_or(45) + 1).to_string());
}

/// The block device holding /, from the host's mountinfo.
fn root_device() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in text.lines() {
        let (left, right) = line.split_once(" - ")?;
        if left.split(' ').nth(4) == Some("/") {
            let src = right.split(' ').nth(1)?;
            if src.starts_with("/dev/") {
                return Some(PathBuf::from(src));
            }
        }
    }
    None
}

#[test]
fn root_block_device_cannot_be_opened_for_writing() {
    require_python();
    let Some(dev) = root_device() else {
        eprintln!("SKIP root block device: / is not on a /dev block device here");
        return;
    };
    let meta = fs::metadata(&dev).unwrap();
    assert!(meta.file_type().is_block_device(), "{} is not a block device", dev.display());
    // Control: the device is there and openable outside pilot (read-only: never written).
    // Some hosts (a device cgroup, an LSM) refuse even that to root: then the pilot part
    // still must fail, but proves less (block_device_node_on_a_live_filesystem covers it).
    if let Err(e) = fs::File::open(&dev) {
        eprintln!("NOTE root block device: {} cannot be opened read-only even outside pilot here ({e})", dev.display());
    }
    let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
    const CODE: &str = r#"
import os, sys
dev, major, minor = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    fd = os.open(dev, os.O_WRONLY)
    print("OPENED", dev, flush=True)   # never written
    os.close(fd)
except OSError as e:
    print("open failed", e.errno, flush=True)
node = "/tmp/pilot-leak-blk-%d" % os.getpid()
try:
    os.mknod(node, 0o600 | 0o060000, os.makedev(major, minor))
    print("MKNOD OK", flush=True)
    fd = os.open(node, os.O_WRONLY)
    print("OPENED", node, flush=True)   # never written
    os.close(fd)
except OSError as e:
    print("mknod/open failed", e.errno, flush=True)
"#;
    let run = run_pilot(&py(CODE, &[&s(&dev), &major.to_string(), &minor.to_string()]));
    run.assert_command_ok();
    assert!(!run.stdout.contains("OPENED"), "LEAK: the pilot opened the root block device for writing\n{}", run.dump());
    assert!(!run.stdout.contains("MKNOD OK"), "the pilot could mknod a block device node\n{}", run.dump());
    let d = s(&dev);
    run.event_json(|e| e["kind"] == "open" && e["path"] == d.as_str() && e["ret"].as_i64().is_some_and(|r| r < 0))
        .unwrap_or_else(|| panic!("no failed open of {d} in events.jsonl\n{}", run.dump()));
    eprintln!("ok root block device {d}: pilot could not open it for writing nor mknod it");
}

/// A loop device over a scratch image, attached for one case and detached on drop.
struct Loop {
    dev: PathBuf,
}

impl Loop {
    fn attach(image: &Path) -> Option<Loop> {
        let out = Command::new("losetup").args(["-f", "--show"]).arg(image).output().ok()?;
        if !out.status.success() {
            eprintln!("losetup: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(Loop { dev: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()) })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// A block device node that lies on a live filesystem (a container or chroot tree, an old
/// /dev copy): the pilot writes the device through it. The device here is a loop device over
/// a scratch image, so the write lands in the image, never on a real disk.
#[test]
fn block_device_node_on_a_live_filesystem() {
    require_python();
    const CODE: &str = r#"
import os, sys
try:
    fd = os.open(sys.argv[1], os.O_WRONLY)
    os.write(fd, b"PILOT-LEAK-BLOCK")
    os.fsync(fd)
    os.close(fd)
    print("written", flush=True)
except OSError as e:
    print("failed", e.errno, flush=True)
"#;
    let setup = || -> Option<(Fixture, Loop, PathBuf, PathBuf)> {
        let fx = Fixture::new(Place::Var);
        let image = fx.p("disk.img");
        fs::write(&image, vec![0u8; 1 << 20]).unwrap();
        let lo = Loop::attach(&image)?;
        let rdev = fs::metadata(&lo.dev).unwrap().rdev();
        let node = fx.p("blk");
        let c = std::ffi::CString::new(node.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o600, rdev) }, 0, "mknod");
        Some((fx, lo, image, node))
    };
    let head = |image: &Path| fs::read(image).unwrap()[..16].to_vec();
    {
        let Some((_fx, _lo, image, node)) = setup() else {
            eprintln!("SKIP block device node: no loop device (losetup failed)");
            return;
        };
        let d = direct_ok(&py(CODE, &[&s(&node)]), &[]);
        assert!(d.stdout.contains("written"), "control: {}", d.stdout);
        assert_eq!(head(&image), b"PILOT-LEAK-BLOCK", "control: the write did not reach the device");
    }
    let (fx, lo, image, node) = setup().unwrap();
    let run = run_pilot(&py(CODE, &[&s(&node)]));
    assert_eq!(
        head(&image),
        vec![0u8; 16],
        "LEAK: the pilot wrote block device {} through the node {} (found on the live filesystem)\n{}",
        lo.dev.display(),
        node.display(),
        run.dump()
    );
    run.assert_command_ok();
    drop(fx);
    eprintln!("ok block device node: nothing reached the device");
}

/// /proc is the host's: /proc/PID/root of a host process is the host's real root. Reaching
/// it needs ptrace access to the process, which a pilot gets (1) by setuid to the process's
/// user (CAP_SETUID is kept), or (2) for a root process whose capabilities are a subset of
/// the pilot's.
fn proc_root_case(uid: Option<u32>) {
    let what = if uid.is_some() { "via setuid to a host process's user" } else { "of a low-capability root process" };
    let target = |fx: &Fixture| -> Proc {
        let mut cmd = Command::new("setpriv");
        match uid {
            Some(u) => {
                let (uarg, garg) = (format!("--reuid={u}"), format!("--regid={u}"));
                cmd.args([uarg.as_str(), garg.as_str(), "--clear-groups", "sleep", "120"]);
                std::os::unix::fs::chown(&fx.dir, Some(u), Some(u)).unwrap();
                std::os::unix::fs::chown(fx.f(), Some(u), Some(u)).unwrap();
            }
            None => {
                cmd.args(["--bounding-set=-all", "--inh-caps=-all", "sleep", "120"]);
            }
        }
        let p = Proc::spawn(cmd.stdin(Stdio::null()));
        // setpriv execs sleep: wait until it has.
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end && fs::read_to_string(format!("/proc/{}/comm", p.pid())).unwrap_or_default().trim() != "sleep" {
            thread::sleep(Duration::from_millis(10));
        }
        p
    };
    let action = |p: &Proc, fx: &Fixture| -> Vec<String> {
        let via = format!("/proc/{}/root{}", p.pid(), s(&fx.f()));
        let mut v = match uid {
            Some(u) => argv(&["setpriv", &format!("--reuid={u}"), &format!("--regid={u}"), "--clear-groups"]),
            None => vec![],
        };
        v.extend(sh(r#"echo leaked-via-proc-root >> "$1"; echo "rc=$?""#, &[&via]));
        v
    };
    {
        let fx = Fixture::new(Place::Var);
        let p = target(&fx);
        direct_ok(&action(&p, &fx), &[]);
        assert!(fs::read_to_string(fx.f()).unwrap().contains("leaked-via-proc-root"), "control ({what}): no write");
    }
    let fx = Fixture::new(Place::Var);
    let p = target(&fx);
    let before = fx.state();
    let run = run_pilot(&action(&p, &fx));
    let after = fx.state();
    assert!(
        before == after,
        "LEAK: /proc/{}/root {what}: the pilot wrote production {}:\n{}\n{}",
        p.pid(),
        fx.f().display(),
        diff_states(&before, &after),
        run.dump()
    );
    eprintln!("ok /proc/PID/root {what}: production unchanged");
}

#[test]
fn proc_pid_root_of_a_host_process_via_setuid() {
    proc_root_case(Some(65534));
}

#[test]
fn proc_pid_root_of_a_low_capability_root_process() {
    proc_root_case(None);
}

// ---------------------------------------------------------------------------------------------
// Shared kernel state the namespaces do not cover: terminals, keyrings
// ---------------------------------------------------------------------------------------------

/// A pseudo-terminal of "another session" on the host: the test holds the master (what the
/// session's terminal emulator or sshd reads) and keeps the slave open.
struct Pty {
    master: std::os::fd::OwnedFd,
    _slave: std::os::fd::OwnedFd,
    name: String,
}

impl Pty {
    fn open() -> Pty {
        use std::os::fd::FromRawFd;
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let mut buf = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()), 0);
            let name = std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
            let c = std::ffi::CString::new(name.clone()).unwrap();
            let sl = libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
            assert!(sl >= 0, "opening {name}: {}", std::io::Error::last_os_error());
            Pty { master: std::os::fd::OwnedFd::from_raw_fd(m), _slave: std::os::fd::OwnedFd::from_raw_fd(sl), name }
        }
    }

    /// What the session's terminal shows (read from the master) within `within`.
    fn output(&self, within: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        let end = Instant::now() + within;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let mut pfd = libc::pollfd { fd: self.master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            if unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) } <= 0 {
                break;
            }
            let mut buf = [0u8; 4096];
            let n = unsafe { libc::read(self.master.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        out
    }

    fn winsize(&self) -> (u16, u16) {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        (ws.ws_row, ws.ws_col)
    }
}

#[test]
fn terminal_of_another_session_written() {
    let script = |pty: &Pty| sh(r#"echo PILOT-LEAK-ON-YOUR-TERMINAL > "$1"; echo "rc=$?""#, &[&pty.name]);
    {
        let pty = Pty::open();
        direct_ok(&script(&pty), &[]);
        assert!(contains(&pty.output(Duration::from_secs(2)), b"PILOT-LEAK-ON-YOUR-TERMINAL"), "control: nothing on the terminal");
    }
    let pty = Pty::open();
    let run = run_pilot(&script(&pty));
    let shown = pty.output(QUIET);
    assert!(
        !contains(&shown, b"PILOT-LEAK-ON-YOUR-TERMINAL"),
        "LEAK: the pilot wrote onto a live terminal of another session ({}): {:?}\n{}",
        pty.name,
        String::from_utf8_lossy(&shown),
        run.dump()
    );
    eprintln!("ok terminal write: nothing reached {}", pty.name);
}

const WINCH_TARGET_PY: &str = r#"
import fcntl, os, signal, sys, termios, time
os.setsid()
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
signal.signal(signal.SIGWINCH, lambda *a: print("GOT-SIGWINCH", flush=True))
print("ready", flush=True)
time.sleep(120)
"#;

const RESIZE_PY: &str = r#"
import fcntl, os, struct, sys, termios
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 42, 99, 0, 0))
print("resized", flush=True)
"#;

/// Resizing a live terminal makes the kernel send SIGWINCH to its foreground process group:
/// a signal to a host process outside the pilot's PID namespace (and the terminal's state
/// changes).
#[test]
fn terminal_resize_signals_a_live_process() {
    require_python();
    let start = || {
        let pty = Pty::open();
        let mut p = Proc::spawn(Command::new(PYTHON).args(["-c", WINCH_TARGET_PY, &pty.name]).stdin(Stdio::null()).stdout(Stdio::piped()));
        let (tx, rx) = mpsc::channel();
        let out = p.child.stdout.take().unwrap();
        thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).ok().as_deref(), Some("ready"));
        (pty, p, rx)
    };
    {
        let (pty, _p, rx) = start();
        direct_ok(&py(RESIZE_PY, &[&pty.name]), &[]);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).ok().as_deref(), Some("GOT-SIGWINCH"), "control: no SIGWINCH");
        assert_eq!(pty.winsize(), (42, 99), "control: size unchanged");
    }
    let (pty, _p, rx) = start();
    let before = pty.winsize();
    let run = run_pilot(&py(RESIZE_PY, &[&pty.name]));
    let got = rx.recv_timeout(QUIET).ok();
    assert!(
        got.is_none() && pty.winsize() == before,
        "LEAK: the pilot resized live terminal {} ({:?} -> {:?}) and the kernel signalled its foreground process (outside the pilot): {got:?}\n{}",
        pty.name,
        before,
        pty.winsize(),
        run.dump()
    );
    eprintln!("ok terminal resize: no signal, no change");
}

const KEY_SPEC_USER_KEYRING: i32 = -4;
const KEYCTL_UPDATE: i32 = 2;
const KEYCTL_READ: i32 = 11;
const KEYCTL_INVALIDATE: i32 = 21;

/// A key in root's user keyring (a credential a production service keeps there: CIFS/NFS,
/// Kerberos KEYRING ccaches...); invalidated on drop.
struct Key {
    serial: i32,
}

impl Key {
    fn add(payload: &str) -> Key {
        let name = std::ffi::CString::new(unique()).unwrap();
        let serial = unsafe {
            libc::syscall(libc::SYS_add_key, c"user".as_ptr(), name.as_ptr(), payload.as_ptr(), payload.len(), KEY_SPEC_USER_KEYRING)
        };
        assert!(serial > 0, "add_key: {}", std::io::Error::last_os_error());
        Key { serial: serial as i32 }
    }

    fn read(&self) -> String {
        let mut buf = [0u8; 256];
        let n = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_READ, self.serial, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            return format!("(unreadable: {})", std::io::Error::last_os_error());
        }
        String::from_utf8_lossy(&buf[..(n as usize).min(buf.len())]).into_owned()
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, self.serial) };
    }
}

#[test]
fn kernel_keyring_credential_overwritten() {
    require_python();
    const UPDATE_PY: &str = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
new = b"overwritten-by-the-action"
r = libc.syscall(250, 2, int(sys.argv[1]), new, len(new))   # keyctl(KEYCTL_UPDATE, serial, ...)
print("keyctl update", r, ctypes.get_errno(), flush=True)
"#;
    assert_eq!(KEYCTL_UPDATE, 2);
    {
        let key = Key::add("production-secret");
        direct_ok(&py(UPDATE_PY, &[&key.serial.to_string()]), &[]);
        assert_eq!(key.read(), "overwritten-by-the-action", "control: the key is unchanged");
    }
    let key = Key::add("production-secret");
    let run = run_pilot(&py(UPDATE_PY, &[&key.serial.to_string()]));
    assert_eq!(
        key.read(),
        "production-secret",
        "LEAK: the pilot overwrote key {} in root's user keyring (keyrings are not namespaced)\n{}",
        key.serial,
        run.dump()
    );
    eprintln!("ok keyring: production key unchanged");
}
