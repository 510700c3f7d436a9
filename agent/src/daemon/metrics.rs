//! Prometheus metrics on a localhost address: what the daemon's runs recorded (read from their
//! run directories when they end) and what every pilot's BPF programs cost now (the kernel's
//! BPF statistics, enabled while the daemon runs). prometheus-client holds and encodes them
//! (text format 0.0.4, what the endpoint always served); hyper serves `/metrics`.
use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::{Bytes, Incoming}, header::CONTENT_TYPE, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, prometheus_text},
    metrics::{counter::{ConstCounter, Counter}, family::Family, gauge::{ConstGauge, Gauge}},
    registry::Registry,
};
use crate::rundir::{RunDir, SinkLog, Summary, Verdict};

use super::{State, config::BpfStats, resident::Resident};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    command: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: String,
}

/// The registry and the handles the daemon counts through. Counter names are registered
/// without `_total` (the encoder adds it), help texts without their final period (the registry
/// adds it): the exposition reads as it always did.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    active: Gauge,
    verdicts: Family<VerdictLabel, Counter>,
    violations: Family<RuleLabel, Counter>,
    events: Family<KindLabel, Counter>,
    lost: Family<CauseLabel, Counter>,
    incomplete_runs: Counter,
    sink_bytes: Counter,
    observed: Arc<Observed>,
}

impl Metrics {
    pub fn new(bpf_stats: BpfStats, resident: Option<Arc<Resident>>) -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            runs: Family::default(),
            active: Gauge::default(),
            verdicts: Family::default(),
            violations: Family::default(),
            events: Family::default(),
            lost: Family::default(),
            incomplete_runs: Counter::default(),
            sink_bytes: Counter::default(),
            observed: Arc::new(Observed {
                bpf_stats,
                bpf_stats_enabled: AtomicBool::new(false),
                sampled_ns: AtomicU64::new(0),
                resident,
                ringbuf_peak_fill: Mutex::new(None),
                bpf: Mutex::new(BpfTotals::default()),
            }),
            registry: Registry::default(),
        };
        registry.register("pilot_runs", "Runs the daemon served, by command and outcome", m.runs.clone());
        registry.register("pilot_runs_active", "Runs in progress", m.active.clone());
        registry.register("pilot_verdicts", "Verdicts of pilot runs", m.verdicts.clone());
        registry.register("pilot_policy_violations", "Policy violations, by rule", m.violations.clone());
        registry.register("pilot_events", "Events recorded, by kind", m.events.clone());
        registry.register("pilot_events_lost", "Events the kernel could not deliver, by cause", m.lost.clone());
        registry.register("pilot_incomplete_runs", "Runs that lost events", m.incomplete_runs.clone());
        registry.register("pilot_sink_bytes", "Bytes pilots sent that the sink caught", m.sink_bytes.clone());
        registry.register_collector(Box::new(m.observed.clone()));
        Metrics { registry, ..m }
    }

    pub fn run_started(&self) {
        self.active.inc();
    }

    pub fn run_ended(&self) {
        self.active.dec();
    }

    /// Count a finished run from what it wrote.
    pub fn add_run(&self, command: &str, exit_ok: bool, run_dir: Option<&Path>) {
        let outcome = if exit_ok { "ok" } else { "failed" };
        self.runs.get_or_create(&RunLabels { command: command.into(), outcome: outcome.into() }).inc();
        let Some(dir) = run_dir else { return };
        let dir = RunDir::at(dir);
        // A file a run could not write (or a trace without a sink) just adds nothing.
        let mut unreadable = Vec::new();
        if let Some(s) = dir.read_optional::<Summary>(&mut unreadable) {
            for (kind, n) in s.events_by_kind {
                self.events.get_or_create(&KindLabel { kind }).inc_by(n);
            }
            for (cause, n) in s.lost_by_cause {
                self.lost.get_or_create(&CauseLabel { cause }).inc_by(n);
            }
            if !s.complete {
                self.incomplete_runs.inc();
            }
            *self.observed.ringbuf_peak_fill.lock().expect("fill lock") = Some(s.ringbuf_peak_bytes as f64 / s.ringbuf_bytes.max(1) as f64);
        }
        if let Some(v) = dir.read_optional::<Verdict>(&mut unreadable) {
            self.verdicts.get_or_create(&VerdictLabel { verdict: v.evaluation.verdict.as_str().into() }).inc();
            for x in &v.evaluation.violations {
                self.violations.get_or_create(&RuleLabel { rule: x.rule.clone() }).inc();
            }
        }
        if let Some(sink) = dir.read_optional::<SinkLog>(&mut unreadable) {
            self.sink_bytes.inc_by(sink.iter().map(|c| c.bytes).sum::<u64>());
        }
        for problem in unreadable {
            tracing::warn!("metrics of a finished run: {problem}");
        }
    }

    /// The statistics were turned on or off.
    pub fn stats_enabled(&self, on: bool) {
        self.observed.bpf_stats_enabled.store(on, Ordering::SeqCst);
    }

    /// A sampling window ended, after `length`.
    pub fn stats_window(&self, length: Duration) {
        self.observed.sampled_ns.fetch_add(length.as_nanos() as u64, Ordering::SeqCst);
    }

    /// Sample pilots' BPF programs now (reads /proc: call it off the async threads).
    pub fn refresh_bpf(&self) {
        self.observed.bpf.lock().expect("bpf lock").refresh();
    }

    /// The exposition text (samples BPF programs: call it off the async threads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// What is read, not counted, at each scrape: the last ring-buffer fill (absent until a run
/// reported one) and the BPF statistics.
#[derive(Debug)]
struct Observed {
    bpf_stats: BpfStats,
    bpf_stats_enabled: AtomicBool,
    /// Time the statistics were on in sampled windows.
    sampled_ns: AtomicU64,
    /// The resident probe set: how many runs it serves, and what reached none.
    resident: Option<Arc<Resident>>,
    /// Highest ring-buffer fill of the last run that reported it, as a ratio.
    ringbuf_peak_fill: Mutex<Option<f64>>,
    bpf: Mutex<BpfTotals>,
}

impl Collector for Observed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(fill) = *self.ringbuf_peak_fill.lock().expect("fill lock") {
            let g = ConstGauge::new(fill);
            g.encode(encoder.encode_descriptor("pilot_ringbuf_peak_fill_ratio", "Highest ring-buffer fill of the last finished run (0-1).", None, g.metric_type())?)?;
        }
        let g = ConstGauge::new(i64::from(self.bpf_stats_enabled.load(Ordering::SeqCst)));
        g.encode(encoder.encode_descriptor("pilot_bpf_stats_enabled", "1 when the kernel's BPF run-time statistics are on.", None, g.metric_type())?)?;
        let g = ConstGauge::new(1i64);
        let mut mode = encoder.encode_descriptor("pilot_bpf_stats_mode", "How the daemon runs BPF statistics (off, sampled, on), as a label.", None, g.metric_type())?;
        g.encode(mode.encode_family(&[("mode", self.bpf_stats.as_str())])?)?;
        let c = ConstCounter::new(self.sampled_ns.load(Ordering::SeqCst) as f64 / 1e9);
        c.encode(encoder.encode_descriptor(
            "pilot_bpf_stats_sampled_seconds",
            "Time the statistics were on in sampled windows (divide run-time rates by its rate).",
            None,
            c.metric_type(),
        )?)?;
        if let Some(r) = &self.resident {
            let g = ConstGauge::new(r.active() as i64);
            g.encode(encoder.encode_descriptor("pilot_probe_set_runs", "Runs the resident probe set serves now.", None, g.metric_type())?)?;
            let c = ConstCounter::new(r.orphans());
            c.encode(encoder.encode_descriptor(
                "pilot_probe_set_orphaned_records",
                "Records of tasks whose run had ended, dropped in the kernel (reaching no run).",
                None,
                c.metric_type(),
            )?)?;
        }
        let bpf = self.bpf.lock().expect("bpf lock").refresh();
        let kind = ConstCounter::new(0u64).metric_type();
        let mut seconds = encoder.encode_descriptor("pilot_bpf_program_run_seconds", "Time pilots' BPF programs ran, by program.", None, kind)?;
        for (name, (ns, _)) in &bpf {
            ConstCounter::new(*ns as f64 / 1e9).encode(seconds.encode_family(&[("program", name.as_str())])?)?;
        }
        let mut runs = encoder.encode_descriptor("pilot_bpf_program_runs", "Times pilots' BPF programs ran, by program.", None, kind)?;
        for (name, (_, cnt)) in &bpf {
            ConstCounter::new(*cnt).encode(runs.encode_family(&[("program", name.as_str())])?)?;
        }
        Ok(())
    }
}

/// Run time and count of every pilot's BPF programs, monotonic across runs: the daemon holds
/// an fd on each program it sees, so a finished run's programs stay readable until their last
/// counts are added to `retired`.
#[derive(Debug, Default)]
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

/// Ids of the BPF programs pilot processes hold: the daemon's resident set and runs' own
/// (containment hooks, or a whole set when a run loads its own).
fn pilot_program_ids() -> std::collections::HashSet<u32> {
    let mut out = std::collections::HashSet::new();
    for pid in crate::procfs::pids().into_iter().filter(|p| crate::procfs::runs_pilot(*p)) {
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
    crate::procfs::fdinfo_field(pid, fd, key)?.parse().ok()
}

/// Serve `/metrics` (HTTP/1.1) until the runtime stops.
pub fn serve(addr: SocketAddr, state: Arc<State>) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| crate::error::UsageError::new(format!("metrics_listen {addr}: {e}: pick a free port in the config")))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    tracing::debug!("metrics accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(request, state.clone()));
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!("metrics request: {e}");
                }
            });
        }
    });
    Ok(())
}

async fn answer(request: Request<Incoming>, state: Arc<State>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = if request.uri().path() == "/metrics" {
        let text = tokio::task::spawn_blocking(move || state.metrics.render()).await.unwrap_or_default();
        (StatusCode::OK, text)
    } else {
        (StatusCode::NOT_FOUND, "pilot serves /metrics\n".to_string())
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(prometheus_text::CONTENT_TYPE));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_keeps_its_names_types_and_help() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path());
        let summary = serde_json::json!({
            "schema": "pilot.trace-summary/v1", "target": "t", "started_unix_ms": 0, "duration_ms": 0, "processes": 1,
            "events": 3, "records": 3, "decode_errors": 0, "lost_events": 3,
            "events_by_kind": {"unlink": 2, "exec": 1}, "lost_by_cause": {"ringbuf_full": 3},
            "complete": false, "ringbuf_peak_bytes": 1024, "ringbuf_bytes": 4096,
        });
        run.write::<Summary>(&serde_json::from_value(summary).unwrap()).unwrap();
        let violation = serde_json::json!({
            "rule": "live-file-destroyed", "action": "block", "severity": 0.9, "target": "x", "target_id": "file:/x",
            "effects": ["unlink"], "count": 1, "bytes": 0, "why": "", "edges": [], "events": [],
        });
        let verdict = serde_json::json!({
            "schema": "pilot.verdict/v1", "pilot_exit": 0, "verdict": "block", "risk": 0.9, "containment": 1.0,
            "affected_components": [], "components": 1, "complete": false, "violations": [violation], "gate_failures": [],
            "gate": {"max_risk": 0.5, "min_containment": 0.0, "max_fidelity_error": 0.25, "require_complete": true},
            "policies": [], "lost_events": 3, "timed_out": false, "command": ["x"], "cwd": "/",
            "contained_by": {"files": "", "network": "", "unix_sockets": "", "signals": "", "capabilities_dropped": []},
        });
        run.write::<Verdict>(&serde_json::from_value(verdict).unwrap()).unwrap();
        let caught = |bytes| crate::rundir::Caught { bytes, ..Default::default() };
        run.write::<SinkLog>(&vec![caught(10), caught(5)]).unwrap();
        let m = Metrics::new(BpfStats::On, None);
        m.stats_enabled(true);
        let before = m.render();
        assert!(!before.contains("pilot_ringbuf_peak_fill_ratio"), "no fill before a run reported one:\n{before}");
        m.run_started();
        m.add_run("run", false, Some(dir.path()));
        let text = m.render();
        for line in [
            "# HELP pilot_runs_total Runs the daemon served, by command and outcome.",
            "# TYPE pilot_runs_total counter",
            "pilot_runs_total{command=\"run\",outcome=\"failed\"} 1",
            "# HELP pilot_runs_active Runs in progress.",
            "# TYPE pilot_runs_active gauge",
            "pilot_runs_active 1",
            "# TYPE pilot_verdicts_total counter",
            "pilot_verdicts_total{verdict=\"block\"} 1",
            "pilot_policy_violations_total{rule=\"live-file-destroyed\"} 1",
            "pilot_events_total{kind=\"unlink\"} 2",
            "pilot_events_total{kind=\"exec\"} 1",
            "# HELP pilot_events_lost_total Events the kernel could not deliver, by cause.",
            "pilot_events_lost_total{cause=\"ringbuf_full\"} 3",
            "# TYPE pilot_incomplete_runs_total counter",
            "pilot_incomplete_runs_total 1",
            "# HELP pilot_sink_bytes_total Bytes pilots sent that the sink caught.",
            "pilot_sink_bytes_total 15",
            "# HELP pilot_ringbuf_peak_fill_ratio Highest ring-buffer fill of the last finished run (0-1).",
            "# TYPE pilot_ringbuf_peak_fill_ratio gauge",
            "pilot_ringbuf_peak_fill_ratio 0.25",
            "# HELP pilot_bpf_stats_enabled 1 when the kernel's BPF run-time statistics are on.",
            "pilot_bpf_stats_enabled 1",
            "pilot_bpf_stats_mode{mode=\"on\"} 1",
            "# TYPE pilot_bpf_stats_sampled_seconds_total counter",
            "# HELP pilot_bpf_program_run_seconds_total Time pilots' BPF programs ran, by program.",
            "# TYPE pilot_bpf_program_run_seconds_total counter",
            "# HELP pilot_bpf_program_runs_total Times pilots' BPF programs ran, by program.",
            "# TYPE pilot_bpf_program_runs_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "the 0.0.4 text format has no EOF marker");
        m.run_ended();
        assert!(m.render().lines().any(|l| l == "pilot_runs_active 0"));
    }
}
