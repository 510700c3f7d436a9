//! The host's one probe set, loaded when the daemon starts and attached until it stops. Each
//! run the daemon starts is leased a run id (a free slot of the set) and the fds of the set's
//! maps, plus a containment set loaded ahead of time, so the run loads, verifies and attaches
//! nothing but its own pilot cgroup's hooks. When the run's process exits its slot is freed and
//! whatever it left in the shared maps (a run killed before it could clean up) is removed.
use std::{
    collections::BTreeSet,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
    sync::{Arc, Mutex},
};

use anyhow::Result;

use agent_common::MAX_RUNS;

use crate::probes::{self, ProbeSet, contain::ContainSet, handoff};

/// Containment sets kept loaded for the next runs: two, so a second run starting at once does
/// not wait for the first one's replacement.
const SPARE_CONTAIN: usize = 2;

pub struct Resident {
    set: Mutex<ProbeSet>,
    /// Run ids leased and not yet released.
    active: Mutex<BTreeSet<u32>>,
    next: Mutex<u32>,
    spare: Mutex<Vec<ContainSet>>,
    /// A refill is under way (one at a time).
    refilling: Mutex<bool>,
}

/// What one run is handed: its id, and fds its process inherits (named in `env`).
pub struct Lease {
    pub run: u32,
    /// Copies of the fds for the child; closed here once it has been started.
    pub fds: Vec<OwnedFd>,
    /// The value of [`handoff::ENV`].
    pub env: String,
}

impl Lease {
    /// The fd numbers the child must inherit.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.fds.iter().map(|f| f.as_raw_fd()).collect()
    }
}

impl std::fmt::Debug for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident").field("active", &self.active()).finish()
    }
}

impl Resident {
    pub fn load() -> Result<Arc<Resident>> {
        let set = ProbeSet::load(&probes::Options::default())?;
        let r = Arc::new(Resident {
            set: Mutex::new(set),
            active: Mutex::new(BTreeSet::new()),
            next: Mutex::new(1),
            spare: Mutex::new(Vec::new()),
            refilling: Mutex::new(false),
        });
        r.refill();
        Ok(r)
    }

    /// Lease a run id and the fds for a run's process; None when every slot is taken (the run
    /// then loads a probe set of its own).
    pub fn lease(self: &Arc<Self>) -> Result<Option<Lease>> {
        let run = {
            let mut active = self.active.lock().expect("active lock");
            if active.len() as u32 >= MAX_RUNS {
                return Ok(None);
            }
            let mut next = self.next.lock().expect("next lock");
            // Ids only grow, and a slot is taken again only after every other slot: a task left
            // over from an old run (its slot's id no longer its own) reaches no later run.
            let run = loop {
                let id = *next;
                *next = if id == u32::MAX { 1 } else { id + 1 };
                let slot_busy = active.iter().any(|a| a % MAX_RUNS == id % MAX_RUNS);
                if id != 0 && !slot_busy {
                    break id;
                }
            };
            active.insert(run);
            run
        };
        let mut fds: Vec<(String, OwnedFd)> = Vec::new();
        {
            let set = self.set.lock().expect("set lock");
            for (name, fd) in set.maps.named() {
                fds.push((name.to_string(), fd.try_clone_to_owned()?));
            }
        }
        let contain = self.spare.lock().expect("spare lock").pop();
        if let Some(c) = &contain {
            for (name, fd) in c.named_fds() {
                fds.push((name, fd.try_clone_to_owned()?));
            }
        }
        drop(contain); // the child holds the programs and maps now (our copies are in `fds`)
        self.refill();
        let named: Vec<(String, std::os::fd::BorrowedFd<'_>)> = fds.iter().map(|(n, f)| (n.clone(), f.as_fd())).collect();
        let env = handoff::encode(run, std::process::id(), &named);
        Ok(Some(Lease { run, fds: fds.into_iter().map(|(_, f)| f).collect(), env }))
    }

    /// The run's process has exited: free its slot and remove what it left behind. With no run
    /// left, the cgroup level flags are recomputed (a cgroup trace that ended stops costing
    /// untracked tasks the level scan).
    pub fn release(&self, run: u32) {
        let mut set = self.set.lock().expect("set lock");
        set.maps.unregister(run);
        let mut active = self.active.lock().expect("active lock");
        active.remove(&run);
        if active.is_empty()
            && let Err(e) = set.maps.reset_cgroup_levels()
        {
            tracing::warn!("resetting the cgroup level flags: {e:#}");
        }
    }

    /// Runs holding a lease now.
    pub fn active(&self) -> usize {
        self.active.lock().expect("active lock").len()
    }

    /// Records the kernel dropped because their run had ended (tasks a run left behind).
    pub fn orphans(&self) -> u64 {
        self.set.lock().expect("set lock").maps.orphans().map(|o| o.iter().sum()).unwrap_or(0)
    }

    /// Load containment sets up to SPARE_CONTAIN, on a thread of their own (each load parses
    /// the kernel's BTF and verifies ten programs: tens of milliseconds).
    fn refill(self: &Arc<Self>) {
        {
            let mut busy = self.refilling.lock().expect("refill lock");
            if *busy {
                return;
            }
            *busy = true;
        }
        let me = self.clone();
        std::thread::spawn(move || {
            while me.spare.lock().expect("spare lock").len() < SPARE_CONTAIN {
                match ContainSet::load() {
                    Ok(set) => me.spare.lock().expect("spare lock").push(set),
                    Err(e) => {
                        tracing::warn!("loading a containment set ahead of time: {e:#} (runs load their own)");
                        break;
                    }
                }
            }
            *me.refilling.lock().expect("refill lock") = false;
        });
    }
}
