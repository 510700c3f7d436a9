//! The account `pilot trace` prints when it ends: the process tree, then the effects in the
//! order they first happened, repeated effects on one object merged into one line. A big run
//! stays readable: the first [`LINES_PER_GROUP`] lines of each component the effects reach
//! (and of the effects on nothing a component holds) are printed, and a count of the rest;
//! `-v` prints them all. Only the lines that are printed are kept in memory.
use std::fmt::Write as _;

use foldhash::HashMap;

use crate::{
    event::{Event, Kind},
    tracker::Tracker,
};

struct Entry {
    first_ts: u64,
    pid: u32,
    comm: String,
    kind: Kind,
    object: String,
    detail: String,
    count: u64,
    bytes: u64,
    failed: u64,
    error: Option<&'static str>,
}

/// Lines printed per component (the rest are counted), unless `-v`.
pub const LINES_PER_GROUP: usize = 25;

/// Which component an effect reaches (None: nothing a component holds).
pub type Owner = Box<dyn Fn(&Event) -> Option<String> + Send>;

#[derive(Default)]
pub struct Account {
    entries: Vec<Entry>,
    /// (pid, kind, fingerprint of what the line shows) -> its line in `entries`, or NOT_KEPT
    /// for a line only counted: repeated effects find their line without building its text.
    index: HashMap<(u32, Kind, u128), usize>,
    base_ts: Option<u64>,
    /// Lines per group (component name; "" for none), printed or not.
    groups: std::collections::BTreeMap<String, Group>,
    owner: Option<Owner>,
    /// `-v`: keep and print every line.
    all: bool,
}

#[derive(Default)]
struct Group {
    lines: usize,
    kept: usize,
}

const NOT_KEPT: usize = usize::MAX;

impl Account {
    /// Group lines by the component `owner` says each effect reaches; `all`: keep every line.
    pub fn group_by(&mut self, owner: Owner, all: bool) {
        self.owner = Some(owner);
        self.all = all;
    }

    pub fn add(&mut self, e: &Event) {
        if !shown(e) {
            return;
        }
        self.base_ts.get_or_insert(e.ts_ns);
        let key = (e.pid, e.kind, fingerprint(e));
        let calls = e.count.unwrap_or(1);
        let failed = e.failed.unwrap_or(if e.ret < 0 { 1 } else { 0 });
        if let Some(&i) = self.index.get(&key) {
            if let Some(entry) = self.entries.get_mut(i) {
                entry.count += calls;
                entry.bytes += e.bytes.unwrap_or(0);
                entry.failed += failed;
            }
            return;
        }
        let group = self.owner.as_ref().and_then(|owner| owner(e)).unwrap_or_default();
        let g = self.groups.entry(group).or_default();
        g.lines += 1;
        if !self.all && g.kept >= LINES_PER_GROUP {
            self.index.insert(key, NOT_KEPT);
            return;
        }
        g.kept += 1;
        let object = object(e);
        self.index.insert(key, self.entries.len());
        self.entries.push(Entry {
            first_ts: e.first_ts_ns.unwrap_or(e.ts_ns),
            pid: e.pid,
            comm: e.comm.clone(),
            kind: e.kind,
            object,
            detail: detail(e),
            count: calls,
            bytes: e.bytes.unwrap_or(0),
            failed,
            error: e.error,
        });
    }

    pub fn render(&self, tracker: &Tracker, headline: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{headline}");
        let _ = writeln!(out, "processes");
        render_tree(tracker, &mut out);
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by_key(|e| e.first_ts);
        let _ = writeln!(out, "effects ({} distinct, in order)", self.index.len());
        let base = self.base_ts.unwrap_or(0);
        for e in entries {
            let t = e.first_ts.saturating_sub(base) as f64 / 1e9;
            let mut line = format!("  +{t:7.3}s {:>7} {:<15} {:<16} {}", e.pid, trim(&e.comm, 15), e.kind, e.object);
            if !e.detail.is_empty() {
                let _ = write!(line, "  {}", e.detail);
            }
            if matches!(e.kind, Kind::Write | Kind::Send) {
                let _ = write!(line, "  {} in {} call{}", bytes(e.bytes), e.count, if e.count == 1 { "" } else { "s" });
            } else if e.count > 1 {
                let _ = write!(line, "  x{}", e.count);
            }
            if let Some(err) = e.error {
                let _ = write!(line, "  FAILED {err}");
                if e.failed > 0 && e.failed < e.count {
                    let _ = write!(line, " ({} of {})", e.failed, e.count);
                }
            }
            let _ = writeln!(out, "{line}");
        }
        for (name, g) in self.groups.iter().filter(|(_, g)| g.lines > g.kept) {
            let on = if name.is_empty() { "nothing a component holds".to_string() } else { format!("component {name}") };
            let _ = writeln!(out, "  ... and {} more distinct effects on {on} (`-v` lists every one)", g.lines - g.kept);
        }
        out
    }
}

/// Effects worth a line: everything but bookkeeping (process lifecycle is in the tree, an open
/// without O_CREAT/O_TRUNC changes nothing by itself).
fn shown(e: &Event) -> bool {
    match e.kind {
        Kind::Fork | Kind::Exec | Kind::Exit => false,
        Kind::Open => e.flags.is_some_and(|f| f & 0o1100 != 0),
        _ => true,
    }
}

fn object(e: &Event) -> String {
    match e.kind {
        Kind::Connect | Kind::Bind | Kind::Listen | Kind::Accept | Kind::Send => match (&e.addr, e.port, e.family) {
            (Some(a), Some(p), Some("inet6")) => format!("{} [{a}]:{p}", e.family.unwrap_or("")),
            (Some(a), Some(p), _) => format!("{} {a}:{p}", e.family.unwrap_or("")),
            (Some(a), None, _) => format!("{} {a}", e.family.unwrap_or("")),
            _ => format!("fd {}", e.fd.unwrap_or(-1)),
        },
        // Issue 16: changes to the host and to live processes.
        k if k.is_change() => match (e.target_pid, &e.target, &e.path) {
            (Some(p), _, _) if p < 0 => format!("process group {}", -p),
            (Some(p), _, _) => format!("pid {p}"),
            (None, Some(t), _) => t.clone(),
            (None, None, Some(p)) => p.clone(),
            _ => "?".into(),
        },
        Kind::Signal | Kind::SignalGenerated => format!(
            "{} -> pid {}",
            e.signal_name.unwrap_or("?"),
            e.target_pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
        ),
        _ => match (&e.path, &e.path2) {
            (Some(p), Some(p2)) => format!("{p} -> {p2}"),
            (Some(p), None) => p.clone(),
            _ => format!("fd {}", e.fd.unwrap_or(-1)),
        },
    }
}

/// What `object`, `detail` and the error of `e` say, as 128 bits (two seeded hashes of the
/// same fields: the chance that two different lines share one is nil for any trace).
fn fingerprint(e: &Event) -> u128 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let fields = |h: &mut foldhash::fast::FoldHasher<'_>| {
        match e.kind {
            Kind::Connect | Kind::Bind | Kind::Listen | Kind::Accept | Kind::Send => {
                (e.family, &e.addr, e.port).hash(h);
                if e.addr.is_none() {
                    e.fd.hash(h);
                }
            }
            Kind::Signal | Kind::SignalGenerated => (e.signal_name, e.target_pid).hash(h),
            _ => {
                (&e.path, &e.path2).hash(h);
                if e.path.is_none() {
                    e.fd.hash(h);
                }
            }
        }
        match e.kind {
            Kind::Open | Kind::Rename => e.flag_names.hash(h),
            Kind::Chmod | Kind::Mkdir | Kind::Mknod => e.mode.hash(h),
            Kind::Chown => (e.uid, e.gid).hash(h),
            Kind::Truncate => e.bytes.hash(h),
            _ => {}
        }
        e.error.hash(h);
    };
    let half = |seed: u64| {
        let mut h = foldhash::fast::FixedState::with_seed(seed).build_hasher();
        fields(&mut h);
        h.finish() as u128
    };
    half(0x5eed_0001) << 64 | half(0x5eed_0002)
}

fn detail(e: &Event) -> String {
    match e.kind {
        Kind::Open => e.flag_names.clone().unwrap_or_default(),
        Kind::Chmod | Kind::Mkdir | Kind::Mknod => e.mode.map(|m| format!("mode {m:o}")).unwrap_or_default(),
        Kind::Chown => format!("uid {} gid {}", e.uid.unwrap_or(-1), e.gid.unwrap_or(-1)),
        Kind::Truncate => e.bytes.map(|b| format!("to {b} bytes")).unwrap_or_default(),
        Kind::Rename => e.flag_names.clone().unwrap_or_default(),
        _ if e.supervisor.is_some() || e.kind.is_change() => {
            let mut d = e.value.clone().unwrap_or_default();
            match e.supervisor {
                Some("held back") => d.push_str("  (HELD BACK: the live run would make this change)"),
                Some("refused") => d.push_str("  (REFUSED by the sandbox: the live run would make this change)"),
                _ => {}
            }
            d.trim().to_string()
        }
        _ => String::new(),
    }
}

fn render_tree(tracker: &Tracker, out: &mut String) {
    let procs: Vec<_> = tracker.processes().collect();
    let known: Vec<u32> = procs.iter().map(|p| p.pid).collect();
    let roots: Vec<_> = procs.iter().filter(|p| p.ppid.is_none_or(|pp| !known.contains(&pp))).collect();
    let mut stack: Vec<(u32, usize)> = roots.iter().rev().map(|p| (p.pid, 0)).collect();
    while let Some((pid, depth)) = stack.pop() {
        let Some(p) = tracker.process(pid) else { continue };
        let name = if p.argv.is_empty() { p.comm.clone() } else { one_line(&p.argv.join(" ")) };
        let status = match (p.alive, p.exit_code, p.exit_signal) {
            (true, _, _) => "still running".to_string(),
            (false, Some(c), _) => format!("exit {c}"),
            (false, None, Some(s)) => format!("killed by {}", crate::event::signal_name(s)),
            (false, None, None) => "exited".to_string(),
        };
        let indent = "  ".repeat(depth);
        let _ = writeln!(out, "  {indent}{pid:<7} {:<60} {status}", trim(&name, 60usize.saturating_sub(indent.len())));
        for child in procs.iter().rev().filter(|c| c.ppid == Some(pid)) {
            stack.push((child.pid, depth + 1));
        }
    }
}

/// One event as a line (for -v).
pub fn line(e: &Event) -> String {
    let mut s = format!("{:>7}/{:<7} {:<15} {:<16} {}", e.pid, e.tid, trim(&e.comm, 15), e.kind, object(e));
    let d = detail(e);
    if !d.is_empty() {
        let _ = write!(s, "  {d}");
    }
    if let Some(argv) = &e.argv {
        let _ = write!(s, "  {argv:?}");
    }
    if let Some(b) = e.bytes {
        let _ = write!(s, "  {}", bytes(b));
    }
    if let Some(c) = e.child_pid {
        let _ = write!(s, "  child {c}{}", if e.thread == Some(true) { " (thread)" } else { "" });
    }
    if let Some(c) = e.exit_code {
        let _ = write!(s, "  code {c}");
    }
    if let Some(err) = e.error {
        let _ = write!(s, "  = {} {err}", e.ret);
    }
    s
}

/// Multi-line scripts (`sh -c '...'`) on one line.
pub fn one_line(s: &str) -> String {
    s.trim().replace('\n', "; ")
}

fn trim(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n.saturating_sub(1)).collect::<String>() + "…" }
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1048576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1048576.0),
    }
}
