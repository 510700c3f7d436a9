//! A probe set: the kernel programs attached once, and the maps every run shares (tracked
//! tasks, aggregated writes, loss counters, the per-run ring buffers and run ids, cgroup
//! targets). In-process a run loads its own set; with the daemon, the daemon loads one for the
//! host and its runs reach the same maps by fd (`handoff.rs`), so untracked processes pay for
//! one set however many runs are active.
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuValues},
    programs::{RawTracePoint, TracePoint},
};

use agent_common::{CGROUP_LEVELS, CgroupTarget, Config, FdKey, MAX_RUNS, TaskInfo, WriteAgg, loss};

use super::{Link, Options, kernel_log, raw, tracefs};
use crate::error::UsageError;

/// The maps a run uses, by their names in the object.
pub const SHARED: [&str; 7] = ["TRACKED", "WRITES", "LOSS", "RUN_RINGS", "RUN_IDS", "CGROUPS", "CGROUP_LEVELS"];

/// The tracepoints the agent attaches to (program, category, event), lifecycle first: a task
/// picked up by its syscalls must already have its fork, exec and exit seen. Program names
/// stay within the kernel's 15 characters, so per-program metrics can tell them apart.
pub const TRACEPOINTS: [(&str, &str, &str); 4] = [
    ("task_newtask", "task", "task_newtask"),
    ("sched_exec", "sched", "sched_process_exec"),
    ("sched_exit", "sched", "sched_process_exit"),
    ("signal_generate", "signal", "signal_generate"),
];
pub const RAW_TRACEPOINTS: [&str; 2] = ["sys_enter", "sys_exit"];

/// The shared maps of a probe set, wherever it was loaded.
pub struct SetMaps {
    pub tracked: Map,
    pub writes: Map,
    pub loss: Map,
    pub rings: Map,
    pub run_ids: Map,
    pub cgroups: Map,
    pub levels: Map,
}

impl SetMaps {
    /// Taken out of a loaded object (the programs hold them; so do we, for the runs).
    pub fn take(ebpf: &mut Ebpf) -> Result<SetMaps> {
        let mut take = |name: &str| ebpf.take_map(name).ok_or_else(|| anyhow!("the probe object has no {name} map"));
        Ok(SetMaps {
            tracked: take("TRACKED")?,
            writes: take("WRITES")?,
            loss: take("LOSS")?,
            rings: take("RUN_RINGS")?,
            run_ids: take("RUN_IDS")?,
            cgroups: take("CGROUPS")?,
            levels: take("CGROUP_LEVELS")?,
        })
    }

    /// Each map by its name, for a hand-off.
    pub fn named(&self) -> [(&'static str, BorrowedFd<'_>); 7] {
        fn fd(m: &Map) -> BorrowedFd<'_> {
            map_data(m).fd().as_fd()
        }
        [
            (SHARED[0], fd(&self.tracked)),
            (SHARED[1], fd(&self.writes)),
            (SHARED[2], fd(&self.loss)),
            (SHARED[3], fd(&self.rings)),
            (SHARED[4], fd(&self.run_ids)),
            (SHARED[5], fd(&self.cgroups)),
            (SHARED[6], fd(&self.levels)),
        ]
    }

    pub fn tracked_fd(&self) -> RawFd {
        map_data(&self.tracked).fd().as_fd().as_raw_fd()
    }

    fn tracked_map(&mut self) -> Result<HashMap<&mut MapData, u32, TaskInfo>> {
        Ok(HashMap::try_from(&mut self.tracked)?)
    }

    /// Start tracking a running task for `run`. A task another run tracks stays that run's.
    pub fn track(&mut self, run: u32, tid: u32, start_ns: u64) -> Result<()> {
        let mut map = self.tracked_map()?;
        match map.insert(tid, TaskInfo::new(run, start_ns), libbpf_sys::BPF_NOEXIST as u64) {
            Ok(()) => Ok(()),
            Err(_) => match map.get(&tid, 0) {
                Ok(info) if info.run == run => Ok(()),
                Ok(_) => bail!(UsageError::new(format!("task {tid} is already traced by another pilot run: stop that one first"))),
                Err(e) => Err(e).with_context(|| format!("tracking task {tid}")),
            },
        }
    }

    /// Stop tracking `tid`, if `run` tracks it.
    pub fn untrack(&mut self, run: u32, tid: u32) -> Result<()> {
        let mut map = self.tracked_map()?;
        if map.get(&tid, 0).is_ok_and(|info| info.run == run) {
            let _ = map.remove(&tid);
        }
        Ok(())
    }

    /// Tids `run` tracks now.
    pub fn tracked(&mut self, run: u32) -> Result<Vec<u32>> {
        let map = self.tracked_map()?;
        Ok(map.iter().filter_map(|e| e.ok()).filter(|(_, info)| info.run == run).map(|(tid, _)| tid).collect())
    }

    /// Take the writes the kernel still aggregates for `run` (and `pid`, or every process of
    /// the run). Only for processes that no longer run: a live writer could add to an entry as
    /// we read it.
    pub fn take_writes(&mut self, run: u32, pid: Option<u32>) -> Result<Vec<(FdKey, WriteAgg)>> {
        let mut map: HashMap<&mut MapData, FdKey, WriteAgg> = HashMap::try_from(&mut self.writes)?;
        let entries: Vec<(FdKey, WriteAgg)> = map
            .iter()
            .filter_map(|e| e.ok())
            .filter(|(k, agg)| agg.run == run && pid.is_none_or(|p| k.pid == p))
            .collect();
        for (key, _) in &entries {
            let _ = map.remove(key);
        }
        Ok(entries)
    }

    /// Lost events of `run` per cause, summed over CPUs, in agent_common::loss order.
    pub fn losses(&self, run: u32) -> Result<[u64; loss::COUNT as usize]> {
        let map: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(&self.loss)?;
        let mut out = [0u64; loss::COUNT as usize];
        for (cause, slot) in out.iter_mut().enumerate() {
            *slot = map.get(&loss::index(run, cause as u32), 0)?.iter().sum();
        }
        Ok(out)
    }

    /// Serve `run` from its slot: its loss counters zeroed, then its ring (unless the daemon
    /// installed it there already), then its id (the kernel sends a record only to a slot
    /// whose id is the record's run).
    pub fn register(&mut self, run: u32, ring: Option<RawFd>) -> Result<()> {
        let slot = run % MAX_RUNS;
        if run == 0 {
            bail!("run id 0 is reserved");
        }
        let ids: Array<&MapData, u32> = Array::try_from(&self.run_ids)?;
        if ids.get(&slot, 0).is_ok_and(|id| id != 0) {
            bail!("slot {slot} of the probe set already serves a run");
        }
        let mut loss: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(&mut self.loss)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e).context("counting CPUs")?;
        for cause in 0..loss::COUNT {
            let zeros = PerCpuValues::try_from(vec![0u64; cpus]).context("zeroed loss counters")?;
            loss.set(loss::index(run, cause), zeros, 0)?;
        }
        if let Some(ring) = ring {
            self.install_ring(slot, ring)?;
        }
        let mut ids: Array<&mut MapData, u32> = Array::try_from(&mut self.run_ids)?;
        ids.set(slot, run, 0).context("publishing the run's id")?;
        Ok(())
    }

    /// Stop serving `run`: its slot freed (id first, so the kernel stops sending at once),
    /// then what is left of it in the shared maps: tracked tasks, aggregated writes, its
    /// cgroup target.
    pub fn unregister(&mut self, run: u32) {
        self.free_slot(run);
        self.forget(run);
    }

    /// Free `run`'s slot: the kernel stops sending at once. Its ring stays in the slot until a
    /// fresh one replaces it (the daemon's, or the next run's).
    pub fn free_slot(&mut self, run: u32) {
        let slot = run % MAX_RUNS;
        if let Ok(mut ids) = Array::<&mut MapData, u32>::try_from(&mut self.run_ids)
            && ids.get(&slot, 0).is_ok_and(|id| id == run)
        {
            let _ = ids.set(slot, 0, 0);
        }
    }

    /// Put ring buffer `ring` in `slot`. The kernel waits out an RCU grace period on every
    /// update of an array of maps (so that no program still uses the old one): milliseconds,
    /// which the daemon pays ahead of a run's start.
    pub fn install_ring(&mut self, slot: u32, ring: RawFd) -> Result<()> {
        raw::map_update(map_data(&self.rings).fd().as_fd().as_raw_fd(), &slot, &ring).context("installing a run's ring buffer")?;
        Ok(())
    }

    /// Remove `run`'s tracked tasks, aggregated writes and cgroup targets (a run that ended,
    /// or whose process died before it could clean up).
    pub fn forget(&mut self, run: u32) {
        if let Ok(mut map) = self.tracked_map() {
            let mine: Vec<u32> = map.iter().filter_map(|e| e.ok()).filter(|(_, i)| i.run == run).map(|(t, _)| t).collect();
            for tid in mine {
                let _ = map.remove(&tid);
            }
        }
        let _ = self.take_writes(run, None);
        if let Ok(mut map) = HashMap::<&mut MapData, u64, CgroupTarget>::try_from(&mut self.cgroups) {
            let mine: Vec<u64> = map.iter().filter_map(|e| e.ok()).filter(|(_, t)| t.run == run).map(|(id, _)| id).collect();
            for id in mine {
                let _ = map.remove(&id);
            }
        }
    }

    /// Track every task of cgroup `id` (at `level`) for `run`, except `agent_pid`: the entry
    /// first, then its level's flag, then the flag that any level has one.
    pub fn add_cgroup(&mut self, run: u32, id: u64, level: u32, agent_pid: u32) -> Result<()> {
        if level >= CGROUP_LEVELS {
            bail!(UsageError::new(format!("the cgroup is {level} levels deep: pilot follows cgroups up to {} levels deep", CGROUP_LEVELS - 1)));
        }
        let mut map: HashMap<&mut MapData, u64, CgroupTarget> = HashMap::try_from(&mut self.cgroups)?;
        let target = CgroupTarget { run, level, agent_pid, _pad: 0 };
        if map.insert(id, target, libbpf_sys::BPF_NOEXIST as u64).is_err() {
            bail!(UsageError::new("this cgroup is already traced by another pilot run: stop that one first"));
        }
        let mut levels: Array<&mut MapData, u32> = Array::try_from(&mut self.levels)?;
        levels.set(level, 1, 0)?;
        levels.set(CGROUP_LEVELS, 1, 0)?;
        Ok(())
    }

    /// The level flags again from the cgroup targets left: called by the daemon when no run is
    /// active, so a cgroup trace that ended stops costing every untracked task its level scan.
    pub fn reset_cgroup_levels(&mut self) -> Result<()> {
        let used: Vec<u32> = HashMap::<&MapData, u64, CgroupTarget>::try_from(&self.cgroups)?
            .iter()
            .filter_map(|e| e.ok())
            .map(|(_, t)| t.level)
            .collect();
        let mut levels: Array<&mut MapData, u32> = Array::try_from(&mut self.levels)?;
        for level in 0..=CGROUP_LEVELS {
            let on = if level == CGROUP_LEVELS { !used.is_empty() } else { used.contains(&level) };
            levels.set(level, on as u32, 0)?;
        }
        Ok(())
    }

    /// Runs the set serves now, by slot.
    pub fn runs(&self) -> Result<Vec<u32>> {
        let ids: Array<&MapData, u32> = Array::try_from(&self.run_ids)?;
        Ok((0..MAX_RUNS).filter_map(|slot| ids.get(&slot, 0).ok()).filter(|id| *id != 0).collect())
    }

    /// Records the kernel dropped because their run had ended, by cause.
    pub fn orphans(&self) -> Result<[u64; loss::COUNT as usize]> {
        self.losses(0)
    }
}

pub fn map_data(m: &Map) -> &MapData {
    match m {
        Map::Array(d)
        | Map::ArrayOfMaps(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::RingBuf(d)
        | Map::HashOfMaps(d) => d,
        _ => unreachable!("the probe set has no map of this type"),
    }
}

/// The programs of a probe set, attached; dropping it detaches them.
pub struct ProbeSet {
    pub ebpf: Ebpf,
    pub maps: SetMaps,
    links: Vec<Link>,
    /// Forwards the programs' diagnostics when RUST_LOG asks for them.
    _kernel_log: Option<kernel_log::Reader>,
}

impl ProbeSet {
    /// Load the programs, write their configuration, attach them.
    pub fn load(opts: &Options) -> Result<ProbeSet> {
        let _phase = tracing::debug_span!("phase", name = "probes load").entered();
        let config = build_config(opts)?;
        let mut loader = EbpfLoader::new();
        let log_level = kernel_log::level();
        kernel_log::configure(&mut loader, &log_level);
        let mut ebpf = loader.override_global("CONFIG", &config, true).load(super::PROBES_ELF).context("loading the BPF programs")?;
        let _kernel_log = kernel_log::start(&mut ebpf, log_level);
        let links = attach(&mut ebpf)?;
        tracing::debug!("probes loaded and attached: {} links", links.len());
        let maps = SetMaps::take(&mut ebpf)?;
        Ok(ProbeSet { ebpf, maps, links, _kernel_log })
    }

}

impl Drop for ProbeSet {
    fn drop(&mut self) {
        let t0 = std::time::Instant::now();
        super::detach_all(std::mem::take(&mut self.links));
        tracing::debug!("probes detached in {:?}", t0.elapsed());
    }
}

fn attach(ebpf: &mut Ebpf) -> Result<Vec<Link>> {
    let mut links = Vec::new();
    for (name, category, event) in TRACEPOINTS {
        links.extend(attach_tracepoint(ebpf, name, &[(category, event)])?);
    }
    for name in RAW_TRACEPOINTS {
        links.extend(attach_raw(ebpf, name, &[name])?);
    }
    Ok(links)
}

/// Load program `name` and attach it to each (category, event).
pub fn attach_tracepoint(ebpf: &mut Ebpf, name: &str, events: &[(&str, &str)]) -> Result<Vec<Link>> {
    let prog: &mut TracePoint = ebpf.program_mut(name).ok_or_else(|| anyhow!("no {name}"))?.try_into()?;
    prog.load().with_context(|| format!("loading {name}"))?;
    let mut links: Vec<Link> = Vec::new();
    for (category, event) in events {
        let id = prog.attach(category, event).with_context(|| format!("attaching tracepoint {category}:{event}"))?;
        links.push(Box::new(prog.take_link(id)?));
    }
    Ok(links)
}

/// Load raw tracepoint program `name` and attach it to each event.
pub fn attach_raw(ebpf: &mut Ebpf, name: &str, events: &[&str]) -> Result<Vec<Link>> {
    let prog: &mut RawTracePoint = ebpf.program_mut(name).ok_or_else(|| anyhow!("no {name}"))?.try_into()?;
    prog.load().with_context(|| format!("loading {name}"))?;
    let mut links: Vec<Link> = Vec::new();
    for event in events {
        let id = prog.attach(event).with_context(|| format!("attaching raw tracepoint {event}"))?;
        links.push(Box::new(prog.take_link(id)?));
    }
    Ok(links)
}

fn build_config(opts: &Options) -> Result<Config> {
    let newtask = tracefs::Format::read("task", "task_newtask")?;
    let exec = tracefs::Format::read("sched", "sched_process_exec")?;
    let exit = tracefs::Format::read("sched", "sched_process_exit")?;
    let sig = tracefs::Format::read("signal", "signal_generate")?;
    Ok(Config {
        write_flush_ns: opts.write_flush_ns,
        wakeup_bytes: opts.wakeup_bytes,
        newtask_pid: newtask.require("pid")?,
        newtask_clone_flags: newtask.offset("clone_flags"),
        exec_filename: exec.require("filename")?,
        exec_pid: exec.require("pid")?,
        exec_old_pid: exec.offset("old_pid"),
        exit_pid: exit.require("pid")?,
        exit_group_dead: exit.offset("group_dead"),
        sig_sig: sig.require("sig")?,
        sig_code: sig.require("code")?,
        sig_pid: sig.require("pid")?,
        sig_group: sig.offset("group"),
        sig_result: sig.offset("result"),
    })
}
