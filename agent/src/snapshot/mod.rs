//! Zero-configuration discovery of the host's components, taken when tracing starts: every live
//! process outside the traced tree joins a component (its systemd unit or container cgroup;
//! else the program it runs, grouped with the children it spawned), and each component owns
//! what its processes hold: listening ports and Unix sockets, open and mapped files, the
//! directories it writes in (its data directories), which of its files are logs (`logs.rs`),
//! and what each process does with each signal (`signals.rs`).
pub mod filesystems;
pub mod logs;
pub mod signals;
pub mod sockets;
mod stored;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

use crate::procfs;
pub use logs::LogRole;
pub use signals::Signals;
pub use sockets::Listener;

/// A live process of a component, identified by (pid, start time).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    pub pid: u32,
    pub start_ns: u64,
    pub argv: Vec<String>,
    /// Its process group: a `kill -- -PGID` reaches it.
    #[serde(default)]
    pub pgid: u32,
    /// What it does with each signal (absent in graphs from before pilot read them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<Signals>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    /// systemd-unit, cgroup, program, or policy (named in a policy file).
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub processes: Vec<Member>,
    /// Merged graphs: the host it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub listens: BTreeSet<Listener>,
    /// Files its processes hold open, and those among them open for writing.
    pub files_open: BTreeSet<String>,
    pub files_written: BTreeSet<String>,
    /// Mapped files outside the system's library and binary directories (data mmaps).
    pub files_mapped: BTreeSet<String>,
    /// Files among `files_written` it only appends to (O_APPEND, or write-only at the end of
    /// the file): logs, when no one writes them otherwise (logs.rs).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub files_appended: BTreeSet<String>,
    /// Directories it holds files open for writing (or maps writable) in: what lies there is
    /// its data, unless the directory is one of `log_dirs`.
    pub data_dirs: BTreeSet<String>,
    /// Its `data_dirs` that hold only live logs and their rotated siblings: log directories,
    /// not data directories.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub log_dirs: BTreeSet<String>,
    /// Working directories of its processes (described, not owned: an operator's shell or
    /// `tail` sits in directories it does not own).
    pub cwds: BTreeSet<String>,
}

/// How a component holds what the pilot touched, strongest first: a path (open for writing,
/// open, mapped, in its data directory), an endpoint it listens on, a filesystem it writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hold {
    OpenForWrite,
    Open,
    Mapped,
    DataDir,
    Listening,
    LiveFs,
    /// A host-wide setting: every live process depends on it.
    Host,
}

impl Hold {
    /// Held open or mapped: destroying it pulls it from under a live process.
    pub fn is_file_hold(self) -> bool {
        matches!(self, Hold::OpenForWrite | Hold::Open | Hold::Mapped)
    }

    /// As graph.json spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Hold::OpenForWrite => "open-for-write",
            Hold::Open => "open",
            Hold::Mapped => "mapped",
            Hold::DataDir => "data-dir",
            Hold::Listening => "listening",
            Hold::LiveFs => "live-fs",
            Hold::Host => "host",
        }
    }

    /// How a violation says it: "db holds open for writing".
    pub fn verb(self) -> &'static str {
        match self {
            Hold::OpenForWrite => "holds open for writing",
            Hold::Open => "holds open",
            Hold::Mapped => "maps",
            Hold::DataDir => "writes in this directory",
            Hold::Listening => "listens here",
            Hold::LiveFs | Hold::Host => "",
        }
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub components: Vec<Component>,
    /// Filesystems components write to, with their free space at the start.
    pub filesystems: Vec<filesystems::Filesystem>,
    /// Live processes outside the traced tree: pid -> (start_ns, component index).
    pub procs: HashMap<u32, (u64, usize)>,
    paths: HashMap<String, (Hold, usize)>,
    /// Directories that contain what a component holds (its data directory or an ancestor):
    /// renaming, removing or chmod-ing one pulls the data from under it.
    containers: HashMap<String, usize>,
    /// Live logs: files live processes only append to (logs.rs).
    logs: HashSet<String>,
    /// Log directories (every component's `log_dirs`).
    log_dirs: HashSet<String>,
    /// Data directories -> the component with that data directory (the first).
    data_dirs: HashMap<String, usize>,
    pub local: Vec<IpAddr>,
    /// When the snapshot was taken: files born after it were made by the traced tree.
    pub taken_at: Option<SystemTime>,
}

struct ProcInfo {
    pid: u32,
    ppid: u32,
    start_ns: u64,
    exe: String,
    argv: Vec<String>,
    cgroup: String,
    pgid: u32,
}

impl Snapshot {
    /// Discover the host's components, leaving out `exclude` (the traced tree) and pilot's own
    /// ancestry (the operator's shell, sudo, the terminal).
    pub fn take(exclude: &HashSet<u32>) -> Snapshot {
        Snapshot::take_with(exclude, &sockets::listeners())
    }

    /// `take`, with the host's listening sockets already read (a run reads them once for the
    /// snapshot, the sink's Unix stand-ins and its live ports).
    pub fn take_with(exclude: &HashSet<u32>, listeners: &HashMap<u64, sockets::Listener>) -> Snapshot {
        let mut skip = exclude.clone();
        let mut p = std::process::id();
        while p > 1 {
            skip.insert(p);
            p = procfs::ppid(p).unwrap_or(0);
        }
        let taken_at = Some(SystemTime::now());
        // Other pilots are no production: their sandboxes' writes land in their overlays (a
        // file one holds open there reads as the live path), and their agents and the daemon
        // only observe; concurrent pilots would otherwise block each other as live writers.
        let own_exe = procfs::exe(std::process::id());
        let procs: Vec<ProcInfo> = procfs::pids()
            .into_iter()
            .filter(|p| !skip.contains(p))
            .filter_map(proc_info)
            .filter(|p| !crate::cgroup::is_pilot_sandbox(&p.cgroup) && !is_pilot_agent(&p.exe, own_exe.as_deref()))
            .collect();
        let mut snap = Snapshot { local: sockets::local_addrs(), taken_at, ..Default::default() };
        let keys = group(&procs);
        let mut index: HashMap<String, usize> = HashMap::new();
        for p in &procs {
            let (key, kind, name) = &keys[&p.pid];
            let i = *index.entry(key.clone()).or_insert_with(|| {
                snap.components.push(Component {
                    name: name.clone(),
                    kind: kind.to_string(),
                    cgroup: (kind != &"program").then(|| p.cgroup.clone()),
                    exe: Some(p.exe.clone()),
                    ..Default::default()
                });
                snap.components.len() - 1
            });
            snap.procs.insert(p.pid, (p.start_ns, i));
            let c = &mut snap.components[i];
            // A service started through `sh -c` is named after what the shell runs.
            if kind == &"program" && is_bare_shell(&c.name) {
                let own = program_name(&p.exe, &p.argv);
                if !is_bare_shell(&own) {
                    c.name = own;
                    c.exe = Some(p.exe.clone());
                }
            }
            let signalfd = holdings(p.pid, c, listeners);
            let signals = Signals::read(p.pid, signalfd);
            c.processes.push(Member { pid: p.pid, start_ns: p.start_ns, argv: p.argv.clone(), pgid: p.pgid, signals });
        }
        unique_names(&mut snap.components);
        snap.index_paths();
        snap.find_log_dirs();
        snap.filesystems = filesystems::written_by(&snap.components);
        snap
    }

    /// Add what `later` found (processes that appeared while tracing); earlier wins.
    pub fn merge(&mut self, later: Snapshot) {
        for mut c in later.components {
            c.processes.retain(|m| !self.procs.contains_key(&m.pid));
            if c.processes.is_empty() {
                continue;
            }
            let i = match self.components.iter().position(|e| e.name == c.name) {
                Some(i) => {
                    let e = &mut self.components[i];
                    e.processes.extend(c.processes.clone());
                    e.listens.extend(c.listens);
                    e.files_open.extend(c.files_open);
                    e.files_written.extend(c.files_written);
                    e.files_mapped.extend(c.files_mapped);
                    e.files_appended.extend(c.files_appended);
                    e.data_dirs.extend(c.data_dirs);
                    e.log_dirs.extend(c.log_dirs);
                    e.cwds.extend(c.cwds);
                    i
                }
                None => {
                    self.components.push(c.clone());
                    self.components.len() - 1
                }
            };
            for m in &c.processes {
                self.procs.insert(m.pid, (m.start_ns, i));
            }
        }
        for f in later.filesystems {
            match self.filesystems.iter_mut().find(|e| e.mount == f.mount) {
                Some(e) => e.writers.extend(f.writers),
                None => self.filesystems.push(f),
            }
        }
        self.index_paths();
    }

    /// Which data directories are log directories (they hold only live logs and their
    /// rotated siblings): read from the directories themselves.
    fn find_log_dirs(&mut self) {
        for i in 0..self.components.len() {
            let dirs: Vec<String> = self.components[i].data_dirs.iter().cloned().collect();
            for dir in dirs {
                let live: Vec<&str> = self.logs.iter().filter(|l| parent(l) == Some(dir.as_str())).map(|l| logs::file_name(l)).collect();
                if logs::is_log_dir(&dir, &live) {
                    self.components[i].log_dirs.insert(dir.clone());
                    self.log_dirs.insert(dir);
                }
            }
        }
    }

    fn index_paths(&mut self) {
        self.paths.clear();
        self.containers.clear();
        self.logs.clear();
        self.log_dirs.clear();
        // A live log: some process only appends to it, none writes it otherwise or maps it.
        let rewritten: HashSet<&String> = self
            .components
            .iter()
            .flat_map(|c| c.files_written.iter().filter(|f| !c.files_appended.contains(*f)).chain(&c.files_mapped))
            .collect();
        for c in &self.components {
            self.logs.extend(c.files_appended.iter().filter(|f| !rewritten.contains(f)).cloned());
            self.log_dirs.extend(c.log_dirs.iter().cloned());
        }
        self.data_dirs.clear();
        for (i, c) in self.components.iter().enumerate() {
            for d in &c.data_dirs {
                let d = if d.len() > 1 { d.trim_end_matches('/') } else { d.as_str() };
                self.data_dirs.entry(d.to_string()).or_insert(i);
            }
            for held in c.files_written.iter().chain(&c.files_open).chain(&c.files_mapped).chain(&c.data_dirs) {
                let mut dir = held.as_str();
                if !c.data_dirs.contains(held) {
                    dir = parent(dir).unwrap_or("/");
                }
                // Up to, not including, the broad directories (/, /tmp, /var, a home).
                while is_data_dir(dir) {
                    self.containers.entry(dir.to_string()).or_insert(i);
                    dir = parent(dir).unwrap_or("/");
                }
            }
            let holds = c.files_written.iter().map(|f| (f, Hold::OpenForWrite))
                .chain(c.files_open.iter().map(|f| (f, Hold::Open)))
                .chain(c.files_mapped.iter().map(|f| (f, Hold::Mapped)));
            for (path, hold) in holds {
                let e = self.paths.entry(path.clone()).or_insert((hold, i));
                if hold < e.0 {
                    *e = (hold, i);
                }
            }
        }
    }

    /// The component that owns `path`, and how: held open or mapped, else the longest data
    /// directory containing it (a log directory holds no data), else a directory that contains
    /// its data (as a data directory: removing or renaming it pulls the data from under it).
    pub fn owner_of_path(&self, path: &str) -> Option<(usize, Hold)> {
        if let Some((hold, i)) = self.paths.get(path) {
            return Some((*i, *hold));
        }
        // The longest data directory above it: its ancestors, deepest first (one lookup each,
        // not one per component and data directory: every file of a big run comes here). A
        // data directory that is also a log directory holds no data.
        let mut dir = path;
        while let Some(cut) = dir.rfind('/') {
            dir = if cut == 0 { "/" } else { &dir[..cut] };
            if let Some(i) = self.data_dirs.get(dir) {
                if self.log_dirs.contains(dir) {
                    break;
                }
                return Some((*i, Hold::DataDir));
            }
            if cut == 0 {
                break;
            }
        }
        self.containers.get(path).map(|i| (*i, Hold::DataDir))
    }

    /// The component an event's effect reaches (for the account's groups), from a copy of
    /// this snapshot.
    pub fn owner_of_event(self) -> crate::account::Owner {
        use crate::event::Kind;
        Box::new(move |e: &crate::event::Event| {
            let i = match e.kind {
                Kind::Connect | Kind::Send | Kind::Bind | Kind::Listen | Kind::Accept => {
                    self.owner_of_endpoint(e.family?, e.addr.as_deref()?, e.port)?
                }
                Kind::Signal | Kind::SignalGenerated => self.component_of(e.target_pid? as u32)?,
                _ => self.owner_of_path(e.path.as_deref()?)?.0,
            };
            self.components.get(i).map(|c| c.name.clone())
        })
    }

    /// Is `path` a log: a live log, a rotated sibling of one in its directory that nobody
    /// holds, or a log directory?
    pub fn log_role(&self, path: &str) -> Option<LogRole> {
        if self.logs.contains(path) {
            return Some(LogRole::Live);
        }
        if self.log_dirs.contains(path) {
            return Some(LogRole::LogDir);
        }
        if self.paths.contains_key(path) {
            return None;
        }
        let (dir, name) = (parent(path)?, logs::file_name(path));
        let rotated = self.logs.iter().any(|l| parent(l) == Some(dir) && logs::is_rotated(name, logs::file_name(l)));
        rotated.then_some(LogRole::Rotated)
    }

    /// A file component `i` holds open beside `path` whose name follows the same pattern
    /// (`segments_1` for a new `segments_2`): the component reads files like it.
    pub fn like_held(&self, path: &str, i: usize) -> Option<&str> {
        let (dir, name) = (parent(path)?, logs::file_name(path));
        let c = self.components.get(i)?;
        c.files_open.iter().chain(&c.files_mapped).find(|f| parent(f) == Some(dir) && logs::same_pattern(logs::file_name(f), name)).map(String::as_str)
    }


    /// The component listening where a connection to (family, addr, port) would land.
    pub fn owner_of_endpoint(&self, family: &str, addr: &str, port: Option<u16>) -> Option<usize> {
        self.components.iter().position(|c| c.listens.iter().any(|l| l.serves(family, addr, port, &self.local)))
    }

    /// The component of a live process, if it was seen (pid and start time must match).
    pub fn component_of(&self, pid: u32) -> Option<usize> {
        let (start, i) = self.procs.get(&pid)?;
        (procfs::start_ns(pid).is_none_or(|s| s == *start)).then_some(*i)
    }
}

fn proc_info(pid: u32) -> Option<ProcInfo> {
    let ppid = procfs::ppid(pid)?;
    if pid == 2 || ppid == 2 {
        return None; // kernel threads
    }
    let exe = procfs::exe(pid)?;
    Some(ProcInfo {
        pid,
        ppid,
        start_ns: procfs::start_ns(pid).unwrap_or(0),
        argv: procfs::cmdline(pid),
        cgroup: cgroup_of(pid),
        pgid: procfs::pgid(pid).unwrap_or(0),
        exe,
    })
}

/// A pilot agent or daemon: the binary we run (daemon-started agents are `/proc/self/exe`,
/// comm `exe`), or another installed `pilot`.
fn is_pilot_agent(exe: &str, own: Option<&str>) -> bool {
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
    Some(exe) == own.map(|o| o.strip_suffix(" (deleted)").unwrap_or(o)) || std::path::Path::new(exe).file_name().is_some_and(|n| n == "pilot")
}

/// The process's cgroup path: the v2 (unified) one, else the systemd named hierarchy.
fn cgroup_of(pid: u32) -> String {
    let groups = ::procfs::process::Process::new(pid as i32).and_then(|p| p.cgroups()).map(|g| g.0).unwrap_or_default();
    let path = |found: Option<&::procfs::ProcessCGroup>| found.map(|g| g.pathname.clone());
    match path(groups.iter().find(|g| g.hierarchy == 0 && g.controllers.is_empty())) {
        Some(p) if p != "/" => p,
        _ => path(groups.iter().find(|g| g.controllers.iter().any(|c| c == "name=systemd"))).unwrap_or_else(|| "/".into()),
    }
}

/// Component key, kind and name for every process.
fn group(procs: &[ProcInfo]) -> HashMap<u32, (String, &'static str, String)> {
    let by_pid: HashMap<u32, &ProcInfo> = procs.iter().map(|p| (p.pid, p)).collect();
    let mut out = HashMap::new();
    for p in procs {
        if let Some((key, kind, name)) = by_cgroup(&p.cgroup) {
            out.insert(p.pid, (key, kind, name));
            continue;
        }
        // A program's children that stay in its cgroup belong to it: climb to the top.
        let mut top = p;
        while let Some(parent) = by_pid.get(&top.ppid) {
            if parent.pid <= 1 || parent.cgroup != top.cgroup || by_cgroup(&parent.cgroup).is_some() {
                break;
            }
            top = parent;
        }
        out.insert(p.pid, (format!("proc:{}", top.pid), "program", program_name(&top.exe, &top.argv)));
    }
    out
}

/// Service units and containers group by cgroup; user sessions and the root do not.
fn by_cgroup(cgroup: &str) -> Option<(String, &'static str, String)> {
    let last = cgroup.rsplit('/').next().unwrap_or("");
    if cgroup.starts_with("/system.slice/") && last.ends_with(".service") {
        return Some((format!("unit:{last}"), "systemd-unit", last.to_string()));
    }
    for marker in ["/docker/", "/kubepods", "/machine.slice/", "/lxc/", "/libpod-", "/containerd/"] {
        if cgroup.contains(marker) {
            return Some((format!("cgroup:{cgroup}"), "cgroup", last.to_string()));
        }
    }
    None
}

/// What an SRE calls a program: a JVM by its main class or jar, a script by its file, else
/// the executable's name.
pub fn program_name(exe: &str, argv: &[String]) -> String {
    let base = basename(exe.trim_end_matches(" (deleted)"));
    if base == "java" {
        return jvm_main(argv).map(|m| format!("java {m}")).unwrap_or_else(|| base.to_string());
    }
    let interpreter = ["python", "perl", "ruby", "node", "sh", "bash", "dash", "zsh", "php"]
        .iter()
        .any(|i| base == *i || (base.starts_with(i) && base[i.len()..].chars().all(|c| c.is_ascii_digit() || c == '.')));
    if interpreter {
        if let Some(script) = argv.iter().skip(1).find(|a| !a.starts_with('-')) {
            if !argv.iter().skip(1).any(|a| a == "-c" || a == "-e") {
                return format!("{base} {}", basename(script));
            }
        }
        return base.to_string();
    }
    // A multi-call binary (Debian's redis-server is redis-check-rdb) or a server that set its
    // process title (`redis-server 127.0.0.1:6380`): what its command line calls it.
    if let Some(first) = argv.first() {
        let title = basename(first.split_whitespace().next().unwrap_or("")).trim_end_matches(':');
        if !title.is_empty() && title != base && !title.starts_with('-') {
            return if argv.len() == 1 { format!("{title}{}", &first[first.find(' ').unwrap_or(first.len())..]).trim().to_string() } else { title.to_string() };
        }
    }
    base.to_string()
}

/// Main class or `-jar` file of a java command line.
fn jvm_main(argv: &[String]) -> Option<String> {
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-jar" => return args.next().map(|j| basename(j).to_string()),
            "-m" | "--module" => return args.next().cloned(),
            "-cp" | "-classpath" | "--class-path" | "-p" | "--module-path" | "--add-modules" => {
                args.next();
            }
            s if s.starts_with('-') => {}
            class => return Some(class.to_string()),
        }
    }
    None
}

/// A shell running an inline script (`sh -c '...'`): a wrapper, not what the component is.
fn is_bare_shell(name: &str) -> bool {
    let first = name.split_whitespace().next().unwrap_or("");
    // Wrappers that start the service as another user or under limits: named after it too.
    if matches!(first, "runuser" | "su" | "sudo" | "setpriv" | "env" | "nohup" | "timeout" | "nice" | "ionice" | "taskset" | "chroot" | "tini" | "dumb-init") {
        return true;
    }
    matches!(first, "sh" | "bash" | "dash" | "zsh" | "ksh") && (name == first || !name.contains('.'))
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Two components with the same name get their first pid appended.
/// Two components of one name (two PostgreSQL clusters, two JVMs of one tool) are told apart
/// as an SRE tells them apart: by where they listen, else by their first process.
fn unique_names(components: &mut [Component]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in components.iter() {
        *seen.entry(c.name.clone()).or_default() += 1;
    }
    for c in components.iter_mut() {
        if seen[&c.name] > 1 {
            c.name = match c.listens.iter().find(|l| l.port.is_some()) {
                Some(l) => format!("{} {}", c.name, l.display()),
                None => format!("{} [{}]", c.name, c.processes[0].pid),
            };
        }
    }
}

/// Ports, sockets, files and directories process `pid` holds, added to its component.
/// Returns the signals its signalfds read.
fn holdings(pid: u32, c: &mut Component, listeners: &HashMap<u64, Listener>) -> u64 {
    let mut signalfd = 0;
    for (fd, target) in procfs::fds(pid) {
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
            if let Some(l) = inode.parse().ok().and_then(|i: u64| listeners.get(&i)) {
                c.listens.insert(l.clone());
            }
            continue;
        }
        if target == "anon_inode:[signalfd]" {
            signalfd |= procfs::signalfd_mask(pid, fd).unwrap_or(0);
            continue;
        }
        let path = target.trim_end_matches(" (deleted)");
        if !is_data_path(path) {
            continue;
        }
        c.files_open.insert(path.to_string());
        let Some((flags, pos)) = procfs::fd_flags_pos(pid, fd) else { continue };
        if flags & 3 != 0 {
            c.files_written.insert(path.to_string());
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
            if logs::appends(flags, pos, size) {
                c.files_appended.insert(path.to_string());
            }
            add_data_dir(c, path);
        }
    }
    for path in procfs::mapped_files(pid) {
        if is_data_path(&path) && !is_system_path(&path) {
            c.files_mapped.insert(path);
        }
    }
    // Changed through memory: its directory holds data as much as one written with write(2).
    for path in procfs::mapped_writable_files(pid) {
        if is_data_path(&path) && !is_system_path(&path) {
            add_data_dir(c, &path);
        }
    }
    if let Some(cwd) = procfs::cwd(pid) {
        c.cwds.insert(cwd);
    }
    signalfd
}

fn add_data_dir(c: &mut Component, path: &str) {
    if let Some(dir) = parent(path) {
        if is_data_dir(dir) {
            c.data_dirs.insert(dir.to_string());
        }
    }
}

fn parent(path: &str) -> Option<&str> {
    let i = path.rfind('/')?;
    Some(if i == 0 { "/" } else { &path[..i] })
}

/// Files worth owning: not devices, pseudo files or anonymous memory; not a JVM's performance
/// counters (every JVM maps its own file in /tmp/hsperfdata_USER: another JVM adding its own
/// there harms none).
fn is_data_path(p: &str) -> bool {
    p.starts_with('/')
        && !["/dev/", "/proc/", "/sys/", "/memfd:", "/anon_hugepage", "/tmp/hsperfdata_"].iter().any(|x| p.starts_with(x))
}

/// Libraries and binaries every process maps: not a component's data.
fn is_system_path(p: &str) -> bool {
    ["/usr/", "/lib", "/bin/", "/sbin/", "/etc/ld.so", "/opt/java", "/snap/"].iter().any(|x| p.starts_with(x))
        || p.contains("/jvm/")
}

/// Directories too broad to count as one component's data (everyone's cwd, shared temp).
fn is_data_dir(d: &str) -> bool {
    let broad = matches!(d, "/" | "/tmp" | "/var/tmp" | "/root" | "/home" | "/dev/shm" | "/run" | "/var" | "/var/log");
    let home = d.starts_with("/home/") && d.matches('/').count() == 2;
    !broad && !home && is_data_path(&format!("{d}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn names_programs_like_an_sre() {
        assert_eq!(program_name("/usr/lib/jvm/bin/java", &argv("java -Xmx1g -cp a.jar:b.jar org.apache.Broker cfg")), "java org.apache.Broker");
        assert_eq!(program_name("/usr/bin/java", &argv("java -jar /opt/zk/zookeeper.jar")), "java zookeeper.jar");
        assert_eq!(program_name("/usr/bin/python3.11", &argv("python3 -u /srv/svc_a.py --port 1")), "python3.11 svc_a.py");
        assert_eq!(program_name("/usr/bin/dash", &argv("sh -c sleep")), "dash");
        assert_eq!(program_name("/usr/sbin/nginx", &argv("nginx: master process")), "nginx");
        // Debian's redis-server is the multi-call redis-check-rdb; it sets its title.
        assert_eq!(program_name("/usr/bin/redis-check-rdb", &["redis-server 127.0.0.1:6380".to_string()]), "redis-server 127.0.0.1:6380");
        assert_eq!(program_name("/usr/bin/busybox", &argv("sh -c true")), "sh");
    }

    #[test]
    fn groups_services_by_unit_and_containers_by_cgroup() {
        assert_eq!(by_cgroup("/system.slice/kafka.service").unwrap().2, "kafka.service");
        assert!(by_cgroup("/user.slice/user-0.slice/session-3.scope").is_none());
        assert_eq!(by_cgroup("/system.slice/docker/abc123").unwrap().1, "cgroup");
    }

    #[test]
    fn owns_by_open_file_then_data_dir() {
        let mut snap = Snapshot::default();
        let mut c = Component { name: "db".into(), ..Default::default() };
        c.files_written.insert("/srv/db/wal/0001".into());
        c.data_dirs.insert("/srv/db/wal".into());
        snap.components.push(c);
        snap.index_paths();
        assert_eq!(snap.owner_of_path("/srv/db/wal/0001"), Some((0, Hold::OpenForWrite)));
        assert_eq!(snap.owner_of_path("/srv/db/wal/0002"), Some((0, Hold::DataDir)));
        assert_eq!(snap.owner_of_path("/srv/db/walrus"), None);
        assert_eq!(snap.owner_of_path("/srv/other"), None);
    }

    #[test]
    fn broad_directories_are_not_data_dirs() {
        assert!(!is_data_dir("/"));
        assert!(!is_data_dir("/tmp"));
        assert!(is_data_dir("/tmp/svc-a"));
        assert!(is_data_dir("/var/lib/postgresql/15/main"));
    }
}
