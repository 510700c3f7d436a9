//! The pilot's supervisor: a thread of the agent (host PID namespace, initial user namespace)
//! that answers the syscalls the pilot's seccomp filter sends it (SECCOMP_RET_USER_NOTIF), so
//! the pilot takes the path it would take live:
//!
//! - `signals`: liveness probes of live processes (kill/tgkill/tkill with signal 0,
//!   pidfd_open) answer as live; a real signal to a live process is held back (the PID
//!   namespace keeps it from being delivered anyway) and recorded, and the sender sees what it
//!   would see live (0, or EPERM where live it would be refused).
//! - `locks`: flock/fcntl locks conflict with live processes' locks on the live file (from
//!   /proc/locks, by the live file's device and inode); blocking requests wait while the live
//!   lock is held. No lock is ever placed on a production file.
//! - `tune`: priority, affinity and limits of live processes: queries answered from the live
//!   process, changes held back and recorded.
//! - `host`: changes to the host the sandbox refuses (sysctl and /sys writes, the clock,
//!   swap, modules, mounts, network configuration): recorded as the live run's effect; where
//!   faking success is harmless the caller is told it succeeded.
//!
//! Everything else goes on to the kernel (SECCOMP_USER_NOTIF_FLAG_CONTINUE), where the
//! namespaces and dropped capabilities still decide: the supervisor never makes a call succeed
//! that would change the host. A handler that fails or panics answers "continue". The agent
//! dying closes the listener (pending calls fail with ENOSYS) and PDEATHSIG ends the pilot.
pub mod handover;
mod host;
mod locks;
mod mem;
mod netconf;
pub mod notify;
pub mod pids;
mod signals;
mod tune;

use crate::event::Kind;
use std::{
    collections::HashMap,
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use libseccomp::{ScmpNotifReq, ScmpSyscall};

use crate::event::Event;
use notify::Answer;

/// What the supervisor tells the agent's main loop (in the order it happened).
#[derive(Debug)]
pub enum Notice {
    /// An effect or answer the supervisor made instead of the kernel (pid/tid are host ids;
    /// the tracker fills in the process's start time).
    Event(Box<Event>),
    /// The supervisor installed `fd` in process `pid`; writes to it are writes to `path`.
    Fd { ts_ns: u64, pid: u32, fd: i64, path: String },
    /// Pid `ns` of the pilot's namespace is host pid `host` (a signal the kernel delivers
    /// names its target by the namespace pid).
    NsPid { ts_ns: u64, ns: i64, host: u32 },
}

impl Notice {
    /// When the supervisor got the call (boot clock, as the kernel's records).
    pub fn ts_ns(&self) -> u64 {
        match self {
            Notice::Event(e) => e.ts_ns,
            Notice::Fd { ts_ns, .. } | Notice::NsPid { ts_ns, .. } => *ts_ns,
        }
    }
}

/// Per-run counts and the time spent answering, for the log and `cargo xtask bench`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub calls: u64,
    pub continued: u64,
    pub answered: u64,
    pub held_back: u64,
    pub nanos: u64,
    pub max_nanos: u64,
}

/// Before the sandbox starts: the socket pair the listener will come through.
pub struct Prepared {
    agent_end: OwnedFd,
    sandbox_end: OwnedFd,
}

impl Prepared {
    /// A supervisor where the kernel delivers seccomp user notifications; None elsewhere
    /// (the sandbox then refuses what it would hold back).
    pub fn for_this_kernel() -> Option<Prepared> {
        if !crate::sandbox::seccomp::notify_supported() {
            return None;
        }
        Prepared::new().map_err(|e| tracing::warn!("no supervisor: {e}")).ok()
    }

    pub fn new() -> std::io::Result<Prepared> {
        let (agent_end, sandbox_end) = handover::pair()?;
        Ok(Prepared { agent_end, sandbox_end })
    }

    /// The sandbox's end (its number is the same in the child; FD_CLOEXEC is cleared there).
    pub fn sandbox_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.sandbox_end.as_raw_fd()
    }

    /// After the sandbox started: drop our copy of its end and serve in a thread. `tracked_fd`
    /// is the TRACKED map (kept open by the caller while the supervisor runs): W is added to it
    /// when it hands its listener over, for `run`.
    pub fn start(self, cgroup: PathBuf, tracked_fd: std::os::fd::RawFd, run: u32) -> Supervisor {
        drop(self.sandbox_end);
        let stop = Arc::new(Stop::new());
        let (tx, rx) = mpsc::channel();
        let flag = stop.clone();
        let socket = self.agent_end;
        let thread = std::thread::Builder::new()
            .name("pilot-supervisor".into())
            .spawn(move || serve(socket, cgroup, tx, flag, (tracked_fd, run)))
            .ok();
        Supervisor { stop, rx, thread }
    }
}

pub struct Supervisor {
    stop: Arc<Stop>,
    rx: mpsc::Receiver<Notice>,
    thread: Option<JoinHandle<Stats>>,
}

impl Supervisor {
    /// Notices so far.
    pub fn drain(&self) -> Vec<Notice> {
        self.rx.try_iter().collect()
    }

    /// The pilot has ended: finish (held writes get their values) and return the last notices.
    pub fn stop(mut self) -> (Vec<Notice>, Stats) {
        self.stop.set();
        let stats = self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default();
        (self.rx.try_iter().collect(), stats)
    }
}

pub use host::{classify as host_kind_of_path, sysctl_key};

/// Queue the supervisor's notices for the session, which merges them into the ring buffer's
/// records by time (`Session::pump`).
pub fn deliver(notices: Option<Vec<Notice>>, session: &mut crate::session::Session) {
    let mut all: Vec<Notice> = session.supervised.drain(..).chain(notices.into_iter().flatten()).collect();
    all.sort_by_key(Notice::ts_ns);
    session.supervised.extend(all);
}

/// verdict.json's `contained_by.signals`.
pub fn containment(stats: Option<&Stats>) -> String {
    match stats {
        Some(s) => format!(
            "PID namespace; supervisor (seccomp user notification): live processes answer as live, signals to them and refused changes held back ({} calls, {} held back)",
            s.calls, s.held_back
        ),
        None => "PID namespace (no seccomp user notification: probes of live processes fail with ESRCH, host changes with EPERM)".into(),
    }
}

/// How often pending lock waits look at /proc/locks again.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// The agent's stop: a flag, and an eventfd that wakes the serving thread's poll at once (a
/// poll timeout alone added up to 100 ms to the end of every pilot).
struct Stop {
    flag: AtomicBool,
    wake: Option<OwnedFd>,
}

impl Stop {
    fn new() -> Stop {
        let wake = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK).ok();
        Stop { flag: AtomicBool::new(false), wake }
    }

    fn set(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(fd) = &self.wake {
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

fn serve(socket: OwnedFd, cgroup: PathBuf, tx: mpsc::Sender<Notice>, stop: Arc<Stop>, (tracked_fd, run): (std::os::fd::RawFd, u32)) -> Stats {
    // The sandbox takes a while to build its root before W installs the filter.
    let listener = loop {
        if stop.is_set() {
            return Stats::default();
        }
        let track = |pid: u32| crate::probes::track_pid_since(tracked_fd, pid, run, crate::procfs::start_ns(pid).unwrap_or(0));
        match handover::receive(socket.as_fd(), Duration::from_millis(100), track) {
            Ok(Some(fd)) => break fd,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("supervisor: no seccomp listener from the sandbox: {e}");
                return Stats::default();
            }
        }
    };
    drop(socket);
    let mut ctx = Ctx::new(listener, cgroup, tx);
    let mut hung_up = false;
    while !stop.is_set() {
        use rustix::event::{PollFd, PollFlags};
        let timeout = if ctx.waiting.is_empty() { Duration::from_millis(100) } else { LOCK_POLL };
        let ts = rustix::time::Timespec::try_from(timeout).ok();
        // POLLHUP on the listener: no process uses the filter any more; only the stop is
        // waited for then.
        let mut pfd = Vec::with_capacity(2);
        if !hung_up {
            pfd.push(PollFd::new(&ctx.listener, PollFlags::IN));
        }
        if let Some(wake) = &stop.wake {
            pfd.push(PollFd::new(wake, PollFlags::IN));
        }
        let ready = rustix::event::poll(&mut pfd, ts.as_ref()).unwrap_or(0);
        let listener = if hung_up { PollFlags::empty() } else { pfd[0].revents() };
        drop(pfd);
        if ready > 0 && listener.contains(PollFlags::IN) {
            ctx.one();
        } else if listener.intersects(PollFlags::HUP | PollFlags::ERR) {
            hung_up = true; // from now on the poll waits for the stop alone (or sleeps)
        }
        locks::recheck(&mut ctx);
    }
    host::finish(&mut ctx);
    tracing::info!(
        "supervisor: {} calls ({} continued, {} answered, {} held back), {:.1} µs mean, {:.1} µs max",
        ctx.stats.calls,
        ctx.stats.continued,
        ctx.stats.answered,
        ctx.stats.held_back,
        ctx.stats.nanos as f64 / ctx.stats.calls.max(1) as f64 / 1e3,
        ctx.stats.max_nanos as f64 / 1e3
    );
    ctx.stats
}

/// One notified syscall.
#[derive(Clone, Debug)]
pub struct Call {
    pub id: u64,
    /// Host tid of the caller.
    pub tid: u32,
    pub name: &'static str,
    pub args: [u64; 6],
    pub ts_ns: u64,
}

impl Call {
    /// Argument `i` as the C `int` it is.
    pub fn int(&self, i: usize) -> i64 {
        self.args[i] as i32 as i64
    }
}

pub struct Ctx {
    pub listener: OwnedFd,
    pub cgroup: PathBuf,
    tx: mpsc::Sender<Notice>,
    names: HashMap<i32, &'static str>,
    /// pidfds of the pilot's processes (by host tgid), for pidfd_getfd.
    pidfds: HashMap<u32, OwnedFd>,
    pub waiting: Vec<locks::Waiting>,
    pub held_writes: Vec<host::HeldWrite>,
    /// Changes held back on live processes, so later queries see them as live would:
    /// (host pid, what, resource) -> the value set.
    pub tuned: HashMap<(u32, &'static str, u64), Vec<u8>>,
    pilot_cache: Option<(String, std::rc::Rc<pids::Pilot>)>,
    pub stats: Stats,
}

impl Ctx {
    fn new(listener: OwnedFd, cgroup: PathBuf, tx: mpsc::Sender<Notice>) -> Ctx {
        let mut names = HashMap::new();
        for name in crate::sandbox::seccomp::SUPERVISED.iter().map(|(n, _)| *n).chain(crate::sandbox::seccomp::HELD.iter().copied()) {
            if let Ok(nr) = ScmpSyscall::from_name(name) {
                names.insert(nr.as_raw_syscall(), name);
            }
        }
        Ctx { listener, cgroup, tx, names, pidfds: HashMap::new(), waiting: Vec::new(), held_writes: Vec::new(), tuned: HashMap::new(), pilot_cache: None, stats: Stats::default() }
    }

    /// Receive one notification and answer it.
    fn one(&mut self) {
        let Ok(req) = ScmpNotifReq::receive(std::os::fd::AsRawFd::as_raw_fd(&self.listener)) else { return };
        let started = Instant::now();
        let call = Call {
            id: req.id,
            tid: req.pid,
            name: self.names.get(&req.data.syscall.as_raw_syscall()).copied().unwrap_or("unknown"),
            args: req.data.args,
            ts_ns: crate::session::boottime_ns(),
        };
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(&call))).unwrap_or_else(|_| {
            tracing::warn!("supervisor: answering {} panicked; the kernel decides", call.name);
            Some(Answer::Continue)
        });
        let Some(answer) = answer else {
            return; // a lock wait: answered later
        };
        self.answer(&call, answer);
        let ns = started.elapsed().as_nanos() as u64;
        self.stats.calls += 1;
        self.stats.nanos += ns;
        self.stats.max_nanos = self.stats.max_nanos.max(ns);
    }

    pub fn answer(&mut self, call: &Call, answer: Answer) -> Option<i64> {
        match &answer {
            Answer::Done => return None,
            Answer::Continue => self.stats.continued += 1,
            _ => self.stats.answered += 1,
        }
        match notify::respond(self.listener.as_fd(), call.id, answer) {
            Ok(fd) => fd,
            // ENOENT: the caller is gone or was interrupted (its call restarts).
            Err(e) => {
                tracing::debug!("supervisor: answering {}: {e}", call.name);
                None
            }
        }
    }

    /// None: the call waits (a blocking lock) and is answered later.
    fn handle(&mut self, call: &Call) -> Option<Answer> {
        Some(match call.name {
            "kill" | "tkill" | "tgkill" | "rt_sigqueueinfo" | "rt_tgsigqueueinfo" | "pidfd_send_signal" | "pidfd_open" => {
                signals::handle(self, call)
            }
            "flock" | "fcntl" => return locks::handle(self, call),
            "getpriority" | "setpriority" | "ioprio_get" | "ioprio_set" | "sched_getaffinity" | "sched_setaffinity"
            | "sched_getscheduler" | "sched_getparam" | "sched_getattr" | "sched_setscheduler" | "sched_setparam"
            | "sched_setattr" | "prlimit64" => tune::handle(self, call),
            "ioctl" | "sendmsg" | "sendmmsg" | "sendto" => netconf::handle(self, call),
            _ => host::handle(self, call),
        })
    }

    pub fn notice(&self, n: Notice) {
        let _ = self.tx.send(n);
    }

    /// Record an effect (counted as held back when it is one).
    pub fn event(&mut self, e: Event) {
        if matches!(e.supervisor, Some("held back" | "refused")) {
            self.stats.held_back += 1;
        }
        self.notice(Notice::Event(Box::new(e)));
    }

    /// The pilot's processes right now (re-read only when the cgroup's thread list changed:
    /// a thread's pids never change).
    pub fn pilot(&mut self) -> std::rc::Rc<pids::Pilot> {
        pids::Pilot::scan_cached(&self.cgroup, &mut self.pilot_cache)
    }

    /// A dup of fd `fd` of the caller (pidfd_getfd). None: not reachable.
    pub fn caller_fd(&mut self, call: &Call, fd: i64) -> Option<OwnedFd> {
        let sender = pids::host_process(call.tid)?;
        let pidfd = match self.pidfds.get(&sender.tgid) {
            Some(p) => p,
            None => {
                let p = rustix::process::pidfd_open(rustix::process::Pid::from_raw(sender.tgid as i32)?, rustix::process::PidfdFlags::empty()).ok()?;
                if self.pidfds.len() > 256 {
                    self.pidfds.clear();
                }
                self.pidfds.entry(sender.tgid).or_insert(p)
            }
        };
        match rustix::process::pidfd_getfd(pidfd, fd as i32, rustix::process::PidfdGetfdFlags::empty()) {
            Ok(f) => Some(f),
            Err(_) => {
                // The cached pidfd may be of a process that has exited (its pid reused).
                self.pidfds.remove(&sender.tgid);
                None
            }
        }
    }

    /// The caller's memory.
    pub fn mem(&self, call: &Call) -> Option<mem::Mem> {
        mem::Mem::open(call.tid).ok()
    }

    /// Notification still pending (after reading the caller's memory).
    pub fn valid(&self, call: &Call) -> bool {
        notify::still_valid(self.listener.as_fd(), call.id)
    }
}

/// An event made by the supervisor for `call` (the tracker fills in start_ns).
pub fn event(call: &Call, sender: &pids::HostProcess, kind: Kind, supervisor: &'static str) -> Event {
    Event {
        ts_ns: call.ts_ns,
        pid: sender.tgid,
        tid: call.tid,
        comm: sender.comm.clone(),
        kind,
        syscall: Some(call.name),
        supervisor: Some(supervisor),
        ..Default::default()
    }
}

/// What a held-back change names and sets (the fields of its event).
#[derive(Default)]
pub struct What {
    pub target_pid: Option<i64>,
    pub path: Option<String>,
    pub target: Option<String>,
    pub value: Option<String>,
}

/// Record a change the supervisor answered: held back when the caller was told it
/// succeeded, answered otherwise (live would refuse it too).
pub fn record(ctx: &mut Ctx, call: &Call, sender: &pids::HostProcess, kind: Kind, what: What, answer: &Answer) {
    let held = matches!(answer, Answer::Value(0));
    let mut e = event(call, sender, kind, if held { "held back" } else { "answered" });
    e.target_pid = what.target_pid;
    e.path = what.path;
    e.target = what.target;
    e.value = what.value;
    set_result(&mut e, answer);
    ctx.event(e);
}

/// The result the caller sees, on an event.
pub fn set_result(e: &mut Event, answer: &Answer) {
    match answer {
        Answer::Value(v) => e.ret = *v,
        Answer::Errno(n) => {
            e.ret = -(*n as i64);
            e.error = Some(crate::event::errno_name(*n as i64));
        }
        _ => {}
    }
}
