//! Prometheus text exposition on a localhost address: what the daemon's runs recorded (read
//! from their run directories when they end) and what every pilot's BPF programs cost now
//! (the kernel's BPF statistics, enabled while the daemon runs).
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::Arc,
    time::Duration,
};

use serde_json::Value;

use super::State;

#[derive(Default)]
pub struct Metrics {
    /// By command (run, trace) and outcome (ok, failed).
    runs: BTreeMap<(String, String), u64>,
    verdicts: BTreeMap<String, u64>,
    violations: BTreeMap<String, u64>,
    events: BTreeMap<String, u64>,
    lost: BTreeMap<String, u64>,
    incomplete_runs: u64,
    sink_bytes: u64,
    /// Highest ring-buffer fill of the last run that reported it, as a ratio.
    ringbuf_peak_fill: Option<f64>,
    pub bpf: BpfTotals,
}

impl Metrics {
    /// Count a finished run from what it wrote.
    pub fn add_run(&mut self, command: &str, exit_ok: bool, run_dir: Option<&Path>) {
        let outcome = if exit_ok { "ok" } else { "failed" };
        *self.runs.entry((command.to_string(), outcome.to_string())).or_default() += 1;
        let Some(dir) = run_dir else { return };
        if let Some(s) = read_json(&dir.join("summary.json")) {
            add_counts(&mut self.events, &s["events_by_kind"]);
            add_counts(&mut self.lost, &s["lost_by_cause"]);
            if s["complete"] == false {
                self.incomplete_runs += 1;
            }
            if let (Some(peak), Some(size)) = (s["ringbuf_peak_bytes"].as_u64(), s["ringbuf_bytes"].as_u64()) {
                self.ringbuf_peak_fill = Some(peak as f64 / size.max(1) as f64);
            }
        }
        if let Some(v) = read_json(&dir.join("verdict.json")) {
            if let Some(verdict) = v["verdict"].as_str() {
                *self.verdicts.entry(verdict.to_string()).or_default() += 1;
            }
            for rule in v["violations"].as_array().into_iter().flatten().filter_map(|x| x["rule"].as_str()) {
                *self.violations.entry(rule.to_string()).or_default() += 1;
            }
        }
        if let Some(sink) = read_json(&dir.join("sink.json")) {
            self.sink_bytes += sink.as_array().into_iter().flatten().filter_map(|c| c["bytes"].as_u64()).sum::<u64>();
        }
    }
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn add_counts(into: &mut BTreeMap<String, u64>, counts: &Value) {
    for (k, v) in counts.as_object().into_iter().flatten() {
        *into.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
    }
}

/// The exposition text.
pub fn render(state: &State) -> String {
    let active = state.active_runs();
    let mut m = state.metrics.lock().expect("metrics lock");
    let bpf = m.bpf.refresh();
    let mut out = String::new();
    family(&mut out, "pilot_runs_total", "counter", "Runs the daemon served, by command and outcome.");
    for ((command, outcome), n) in &m.runs {
        let _ = writeln!(out, "pilot_runs_total{{command=\"{command}\",outcome=\"{outcome}\"}} {n}");
    }
    family(&mut out, "pilot_runs_active", "gauge", "Runs in progress.");
    let _ = writeln!(out, "pilot_runs_active {active}");
    labelled(&mut out, "pilot_verdicts_total", "counter", "Verdicts of pilot runs.", "verdict", &m.verdicts);
    labelled(&mut out, "pilot_policy_violations_total", "counter", "Policy violations, by rule.", "rule", &m.violations);
    labelled(&mut out, "pilot_events_total", "counter", "Events recorded, by kind.", "kind", &m.events);
    labelled(&mut out, "pilot_events_lost_total", "counter", "Events the kernel could not deliver, by cause.", "cause", &m.lost);
    family(&mut out, "pilot_incomplete_runs_total", "counter", "Runs that lost events.");
    let _ = writeln!(out, "pilot_incomplete_runs_total {}", m.incomplete_runs);
    family(&mut out, "pilot_sink_bytes_total", "counter", "Bytes pilots sent that the sink caught.");
    let _ = writeln!(out, "pilot_sink_bytes_total {}", m.sink_bytes);
    if let Some(fill) = m.ringbuf_peak_fill {
        family(&mut out, "pilot_ringbuf_peak_fill_ratio", "gauge", "Highest ring-buffer fill of the last finished run (0-1).");
        let _ = writeln!(out, "pilot_ringbuf_peak_fill_ratio {fill:.6}");
    }
    family(&mut out, "pilot_bpf_stats_enabled", "gauge", "1 when the kernel's BPF run-time statistics are on.");
    let _ = writeln!(out, "pilot_bpf_stats_enabled {}", u8::from(state.bpf_stats_enabled));
    family(&mut out, "pilot_bpf_program_run_seconds_total", "counter", "Time pilots' BPF programs ran, by program.");
    for (name, (ns, _)) in &bpf {
        let _ = writeln!(out, "pilot_bpf_program_run_seconds_total{{program=\"{name}\"}} {:.9}", *ns as f64 / 1e9);
    }
    family(&mut out, "pilot_bpf_program_runs_total", "counter", "Times pilots' BPF programs ran, by program.");
    for (name, (_, cnt)) in &bpf {
        let _ = writeln!(out, "pilot_bpf_program_runs_total{{program=\"{name}\"}} {cnt}");
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn labelled(out: &mut String, name: &str, kind: &str, help: &str, label: &str, values: &BTreeMap<String, u64>) {
    family(out, name, kind, help);
    for (k, v) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", k.replace('\\', "\\\\").replace('"', "\\\""));
    }
}

/// Run time and count of every pilot's BPF programs, monotonic across runs: the daemon holds
/// an fd on each program it sees, so a finished run's programs stay readable until their last
/// counts are added to `retired`.
#[derive(Default)]
pub struct BpfTotals {
    held: HashMap<u32, (String, aya::programs::ProgramFd)>,
    retired: BTreeMap<String, (u64, u64)>,
}

impl BpfTotals {
    /// Sample now: by program name, (run time ns, runs).
    pub fn refresh(&mut self) -> BTreeMap<String, (u64, u64)> {
        let live = pilot_program_ids();
        if live.iter().any(|id| !self.held.contains_key(id)) {
            for p in aya::programs::loaded_programs().flatten().filter(|p| live.contains(&p.id())) {
                if let (false, Ok(fd)) = (self.held.contains_key(&p.id()), p.fd()) {
                    self.held.insert(p.id(), (p.name_as_str().unwrap_or("").to_string(), fd));
                }
            }
        }
        let mut current: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut gone = Vec::new();
        for (id, (name, fd)) in &self.held {
            use std::os::fd::{AsFd, AsRawFd};
            let (ns, cnt) = prog_stats(std::process::id(), fd.as_fd().as_raw_fd());
            let into = if live.contains(id) { current.entry(name.clone()).or_default() } else { self.retired.entry(name.clone()).or_default() };
            into.0 += ns;
            into.1 += cnt;
            if !live.contains(id) {
                gone.push(*id);
            }
        }
        for id in gone {
            self.held.remove(&id);
        }
        let mut totals = self.retired.clone();
        for (name, (ns, cnt)) in current {
            let t = totals.entry(name).or_default();
            t.0 += ns;
            t.1 += cnt;
        }
        totals
    }
}

/// Ids of the BPF programs other pilot processes hold.
fn pilot_program_ids() -> std::collections::HashSet<u32> {
    let own = std::process::id();
    let mut out = std::collections::HashSet::new();
    for pid in crate::procfs::pids().into_iter().filter(|p| *p != own && is_pilot(*p)) {
        for (fd, target) in crate::procfs::fds(pid) {
            if target == "anon_inode:bpf-prog"
                && let Some(id) = fdinfo_field(pid, fd, "prog_id:")
            {
                out.insert(id as u32);
            }
        }
    }
    out
}

/// run_time_ns and run_cnt of a program fd, from fdinfo (counted while BPF stats are on).
fn prog_stats(pid: u32, fd: i32) -> (u64, u64) {
    (fdinfo_field(pid, fd, "run_time_ns:").unwrap_or(0), fdinfo_field(pid, fd, "run_cnt:").unwrap_or(0))
}

fn fdinfo_field(pid: u32, fd: i32, key: &str) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    info.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok())
}

fn is_pilot(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pilot")))
}

/// Serve `GET /metrics` until the process exits.
pub fn serve(addr: SocketAddr, state: Arc<State>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| crate::error::UsageError::new(format!("metrics_listen {addr}: {e}: pick a free port in the config")))?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            if let Err(e) = answer(conn, &state) {
                tracing::debug!("metrics request: {e}");
            }
        }
    });
    Ok(())
}

fn answer(mut conn: TcpStream, state: &State) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
        ("200 OK", render(state))
    } else {
        ("404 Not Found", "pilot serves /metrics\n".to_string())
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
