//! `pilot doctor`: what this kernel has, probed for real (see checks.rs), and what `pilot run`
//! and `pilot trace` can therefore guarantee. `pilot run` goes through the same probes before it
//! starts (`require_run`): it refuses a kernel that cannot contain a pilot, and picks how Unix
//! sockets are contained from what the probe found.
mod checks;

use anyhow::Result;
use serde::Serialize;

use crate::{
    error::{KernelError, UsageError},
    probes::{contain::UnixContainment, raw},
};

/// `pilot doctor` exit statuses (documented in its --help).
pub const EXIT_RUN_UNCONTAINED: i32 = crate::error::EXIT_KERNEL;
pub const EXIT_TRACE_UNAVAILABLE: i32 = crate::error::EXIT_TRACE_UNAVAILABLE;

/// Which commands a feature is needed by.
#[derive(Serialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    RunAndTrace,
    Run,
    /// Run uses it when present and falls back otherwise.
    RunPrefers,
    /// Not used by pilot today.
    Unused,
}

struct Check {
    name: &'static str,
    need: Need,
    used_for: &'static str,
    if_missing: &'static str,
    probe: Box<dyn Fn() -> checks::Outcome>,
}

#[derive(Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub present: bool,
    /// What the probe found, or the kernel's answer when it is missing.
    pub detail: String,
    pub need: Need,
    pub used_for: &'static str,
    pub if_missing: &'static str,
}

#[derive(Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub kernel: String,
    pub features: Vec<Feature>,
    /// `pilot run` can contain a pilot here.
    pub run_contained: bool,
    /// `pilot trace` works here.
    pub trace_available: bool,
    /// How Unix sockets are contained: "cgroup hooks", or before 6.7 `NETNS`.
    pub unix_sockets: &'static str,
}

fn checks() -> Vec<Check> {
    use Need::*;
    let mut list = vec![
        check("btf", RunAndTrace, "the probes are relocated against this kernel's types", "nothing loads: run and trace refuse", checks::btf),
        check("ringbuf", RunAndTrace, "events reach the agent through a BPF ring buffer", "nothing is delivered: run and trace refuse", checks::ringbuf),
        check("tracepoints", RunAndTrace, "fork, exec, exit and signals of the traced tree (offsets read from tracefs)", "the process tree cannot be followed: run and trace refuse", checks::tracepoints),
        check("raw_tracepoints", RunAndTrace, "every syscall's arguments and result (sys_enter, sys_exit)", "no file, socket or signal effects: run and trace refuse", checks::raw_tracepoints),
        check("cgroup2", Run, "the pilot's processes form one cgroup the network hooks attach to", "run refuses; trace --cgroup is unavailable", checks::cgroup2),
    ];
    use libbpf_sys as sys;
    const SOCK_ADDR: u32 = raw::PROG_CGROUP_SOCK_ADDR;
    for (name, prog_type, attach_type, used_for) in [
        ("cgroup/connect4", SOCK_ADDR, sys::BPF_CGROUP_INET4_CONNECT, "TCP/UDP connects (IPv4) are redirected to the sink"),
        ("cgroup/connect6", SOCK_ADDR, sys::BPF_CGROUP_INET6_CONNECT, "TCP/UDP connects (IPv6) are redirected to the sink"),
        ("cgroup/sendmsg4", SOCK_ADDR, sys::BPF_CGROUP_UDP4_SENDMSG, "UDP datagrams with a destination (IPv4) go to the sink"),
        ("cgroup/sendmsg6", SOCK_ADDR, sys::BPF_CGROUP_UDP6_SENDMSG, "UDP datagrams with a destination (IPv6) go to the sink"),
        ("cgroup/getpeername4", SOCK_ADDR, sys::BPF_CGROUP_INET4_GETPEERNAME, "a redirected socket shows its original peer (IPv4)"),
        ("cgroup/getpeername6", SOCK_ADDR, sys::BPF_CGROUP_INET6_GETPEERNAME, "a redirected socket shows its original peer (IPv6)"),
        ("cgroup/bind4", SOCK_ADDR, sys::BPF_CGROUP_INET4_BIND, "binding a port a live service listens on is refused (IPv4)"),
        ("cgroup/bind6", SOCK_ADDR, sys::BPF_CGROUP_INET6_BIND, "binding a port a live service listens on is refused (IPv6)"),
        ("cgroup/post_bind4", raw::PROG_CGROUP_SOCK, sys::BPF_CGROUP_INET4_POST_BIND, "the ports the pilot binds are recorded (IPv4)"),
        ("cgroup/post_bind6", raw::PROG_CGROUP_SOCK, sys::BPF_CGROUP_INET6_POST_BIND, "the ports the pilot binds are recorded (IPv6)"),
    ] {
        let if_missing = "run refuses: the pilot's traffic could reach production";
        list.push(Check { name, need: Run, used_for, if_missing, probe: Box::new(move || checks::cgroup_hook(prog_type, attach_type)) });
    }
    list.extend([
        check("cgroup/connect_unix+sendmsg_unix", RunPrefers, "connects and datagrams to Unix sockets are refused in the kernel (6.7+)",
            "fallback: the pilot gets a network namespace of its own, where no host abstract socket is (seccomp refuses AF_UNIX sockets if none can be made)", checks::unix_hooks),
        check("seccomp", Run, "refuses ptrace, modules, bpf, keyring... (and AF_UNIX without the Unix hooks)", "run refuses", checks::seccomp),
        check("overlayfs", Run, "every writable filesystem is an overlay: writes land in the run directory", "run refuses: writes would reach production", checks::overlayfs),
        check("overlay redirect_dir+metacopy", RunPrefers, "a pilot renames live directories as live (not EXDEV) and chmods live files without copying their data",
            "fallback: each run mounts what its filesystem takes; without redirect_dir, mv of a live directory copies it", checks::overlay_features),
        check("seccomp user notification", RunPrefers,
            "the supervisor: live processes answer probes as live, signals to them and refused host changes are held back and judged, live locks conflict",
            "fallback: probes of live processes fail with ESRCH, live locks do not conflict, refused changes are still judged from the trace", checks::seccomp_notify),
        check("namespaces", Run, "mount, PID, IPC, UTS and user namespaces of the sandbox", "run refuses: signals and /proc/PID/root would reach host processes", checks::namespaces),
        check("kprobes", Unused, "not used: tracepoints and raw tracepoints cover what pilot traces", "nothing", checks::kprobes),
        check("fentry", Unused, "not used: raw tracepoints cover what pilot traces", "nothing", checks::fentry),
        check("bpf_lsm", Unused,
            "not used yet: LSM hooks (task_kill, file_open, socket_connect) could refuse signals, writes and connects in the kernel as a second layer under the namespaces",
            "nothing: containment rests on namespaces, overlays, seccomp and cgroup hooks", checks::bpf_lsm),
    ]);
    list
}

fn check(name: &'static str, need: Need, used_for: &'static str, if_missing: &'static str, probe: fn() -> checks::Outcome) -> Check {
    Check { name, need, used_for, if_missing, probe: Box::new(probe) }
}

impl Report {
    /// Probe the features `wanted` selects.
    fn probe(wanted: impl Fn(Need) -> bool) -> Report {
        let features: Vec<Feature> = checks()
            .into_iter()
            .filter(|c| wanted(c.need))
            .map(|c| {
                let outcome = (c.probe)();
                Feature { name: c.name, present: outcome.is_ok(), detail: outcome.unwrap_or_else(|e| e), need: c.need, used_for: c.used_for, if_missing: c.if_missing }
            })
            .collect();
        let all = |needs: &[Need]| features.iter().filter(|f| needs.contains(&f.need)).all(|f| f.present);
        let unix_hooks = features.iter().any(|f| f.name == "cgroup/connect_unix+sendmsg_unix" && f.present);
        Report {
            schema: "pilot.doctor/v1",
            kernel: kernel_release(),
            run_contained: all(&[Need::RunAndTrace, Need::Run]),
            trace_available: all(&[Need::RunAndTrace]),
            unix_sockets: if unix_hooks { "cgroup hooks" } else { NETNS },
            features,
        }
    }

    fn missing(&self, needs: &[Need]) -> Vec<&Feature> {
        self.features.iter().filter(|f| needs.contains(&f.need) && !f.present).collect()
    }

    pub fn unix(&self) -> UnixContainment {
        if self.unix_sockets == "cgroup hooks" { UnixContainment::Denied } else { UnixContainment::Netns }
    }
}

/// Unix containment without the cgroup Unix hooks (before 6.7): the pilot's own network
/// namespace, where no host abstract socket exists; paths lead to the sink's sockets.
pub const NETNS: &str = "network namespace (abstract names isolated; paths to the sink)";

/// `pilot doctor [--json]`.
pub fn run(json: bool) -> Result<i32> {
    require_root()?;
    let _ = crate::probes::ensure_mounted(); // as run and trace would; the probe reports failure
    let report = Report::probe(|_| true);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if !report.trace_available {
        EXIT_TRACE_UNAVAILABLE
    } else if !report.run_contained {
        EXIT_RUN_UNCONTAINED
    } else {
        0
    })
}

/// What `pilot run` needs, probed before anything starts: a kernel that cannot contain a pilot
/// is refused (exit 5), never run uncontained. Returns how Unix sockets will be contained.
pub fn require_run() -> Result<UnixContainment> {
    require_root()?;
    // A run the daemon started: the daemon probed this kernel once when it started (the
    // features of a running kernel do not come and go) and says what it found.
    match crate::daemon::client::kernel_vouched() {
        Some(Ok(unix)) => return Ok(unix),
        Some(Err(refused)) => return Err(KernelError(refused).into()),
        None => {}
    }
    probe_run()
}

/// `require_run` without asking the daemon: the probes of every feature a run needs (4 ms).
pub fn probe_run() -> Result<UnixContainment> {
    crate::probes::ensure_mounted()?;
    let report = Report::probe(|need| need != Need::Unused);
    let missing = report.missing(&[Need::RunAndTrace, Need::Run]);
    if let Some(first) = missing.first() {
        let names: Vec<&str> = missing.iter().map(|f| f.name).collect();
        return Err(KernelError(format!(
            "this kernel cannot contain a pilot, refusing to run uncontained: missing {} ({}); `pilot doctor` shows what this kernel has",
            names.join(", "),
            first.detail
        ))
        .into());
    }
    Ok(report.unix())
}

fn require_root() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        return Err(UsageError::new("pilot needs root to load BPF programs: run it with sudo").into());
    }
    Ok(())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

fn need_label(need: Need) -> &'static str {
    match need {
        Need::RunAndTrace => "run, trace",
        Need::Run => "run",
        Need::RunPrefers => "run (has a fallback)",
        Need::Unused => "-",
    }
}

pub fn render(report: &Report) -> String {
    let mut out = format!("pilot doctor: kernel {}\n\n", report.kernel);
    out += &format!("{:<34} {:<5} {:<21} {}\n", "feature", "here", "needed by", "used for / if missing");
    for f in &report.features {
        let here = if f.present { "yes" } else { "NO" };
        out += &format!("{:<34} {:<5} {:<21} {}\n", f.name, here, need_label(f.need), f.used_for);
        let pad = " ".repeat(63);
        if f.present {
            out += &format!("{pad}found: {}\n", f.detail);
        } else {
            out += &format!("{pad}missing: {}\n{pad}consequence: {}\n", f.detail, f.if_missing);
        }
    }
    out += "\n";
    let names = |needs: &[Need]| report.missing(needs).iter().map(|f| f.name).collect::<Vec<_>>().join(", ");
    out += &if report.trace_available {
        "pilot trace: available\n".to_string()
    } else {
        format!("pilot trace: UNAVAILABLE (missing {})\n", names(&[Need::RunAndTrace]))
    };
    out += &if report.run_contained {
        format!("pilot run:   contained (Unix sockets: {})\n", report.unix_sockets)
    } else {
        format!("pilot run:   REFUSES, cannot be contained (missing {})\n", names(&[Need::RunAndTrace, Need::Run]))
    };
    if report.features.iter().any(|f| f.name == "bpf_lsm" && f.present) {
        out += "BPF LSM:     loads on this kernel; pilot does not use it yet (containment above does not depend on it)\n";
    }
    out
}
