//! When the kernel's BPF run-time statistics are on. They are not free: while the
//! BPF_ENABLE_STATS fd is open, every BPF program run on the host (pilot's `sys_enter` and
//! `sys_exit` run on every syscall of every process) reads the clock twice and updates per-CPU
//! counters (cargo xtask bench measures what that costs: "BPF statistics"). So by default they
//! are on only for a short window now and then (`bpf_stats = "sampled"`: 1 s every 60 s), which
//! is enough for the per-program cost and rate the metrics show, at a sixtieth of the tax;
//! `"on"` keeps them on while the daemon runs, `"off"` never turns them on.
use std::{sync::Arc, time::Duration};

use super::{State, config::BpfStats};

/// Run the statistics as configured, until the daemon stops.
pub async fn run(state: Arc<State>, mode: BpfStats, (window, every): (Duration, Duration)) {
    match mode {
        BpfStats::Off => {}
        BpfStats::On => {
            let Some(_on) = enable(&state) else { return };
            loop {
                // Pick up runs' programs while they are loaded (4 times a second while runs
                // are active, else once a second), so their counts survive them.
                let busy = state.active_runs() > 0;
                tokio::time::sleep(Duration::from_millis(if busy { 250 } else { 1000 })).await;
                refresh(&state).await;
            }
        }
        BpfStats::Sampled => loop {
            tokio::time::sleep(every - window).await;
            let Some(on) = enable(&state) else { return };
            let started = std::time::Instant::now();
            refresh(&state).await;
            tokio::time::sleep(window).await;
            refresh(&state).await;
            drop(on);
            state.metrics.stats_window(started.elapsed());
        },
    }
}

/// Statistics on while the returned fd is open; None (and a warning) when the kernel refuses.
fn enable(state: &State) -> Option<StatsOn<'_>> {
    match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => {
            state.metrics.stats_enabled(true);
            Some(StatsOn { _fd: fd, state })
        }
        Err(e) => {
            tracing::warn!("BPF run-time statistics unavailable ({e}): pilot_bpf_program_* metrics stay at 0");
            None
        }
    }
}

struct StatsOn<'a> {
    _fd: std::os::fd::OwnedFd,
    state: &'a State,
}

impl Drop for StatsOn<'_> {
    fn drop(&mut self) {
        self.state.metrics.stats_enabled(false);
    }
}

/// Read the programs' counters now (/proc scans: on the blocking pool).
async fn refresh(state: &Arc<State>) {
    let state = state.clone();
    let _ = tokio::task::spawn_blocking(move || state.metrics.refresh_bpf()).await;
}
