//! The host's one probe set, loaded when the daemon starts and attached until it stops. Each
//! run the daemon starts is leased a run id (a slot of the set) and the fds of the set's maps,
//! with, when ready, a ring buffer already in its slot and a containment set loaded ahead of
//! time: the run then loads, verifies and attaches nothing but its own pilot cgroup's hooks.
//! When the run's process exits its slot is freed and whatever it left in the shared maps (a
//! run killed before it could clean up) is removed.
use std::{
    collections::BTreeSet,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
    sync::{Arc, Mutex},
};

use anyhow::Result;

use agent_common::MAX_RUNS;

use crate::probes::{self, ProbeSet, contain::ContainSet, handoff};

/// Slots with a fresh ring buffer, and containment sets, kept ready for the next runs: two, so
/// a second run starting at once does not wait for the first one's replacements.
const SPARE: usize = 2;
/// The ring buffer size runs use unless they ask for another (`--ringbuf-kib`).
const RING_BYTES: u32 = 16 << 20;

pub struct Resident {
    set: Mutex<ProbeSet>,
    slots: Mutex<Slots>,
    spare: Mutex<Vec<ContainSet>>,
    /// A refill is under way (one at a time).
    refilling: Mutex<bool>,
}

/// Which slots serve a run, and which hold a fresh ring buffer for the next. A ring buffer is
/// put in its slot ahead of time because the kernel waits out an RCU grace period on every
/// update of the ring array (milliseconds on a busy host), and allocating 16 MiB is not free.
#[derive(Default)]
struct Slots {
    /// Run ids leased and not yet released.
    busy: BTreeSet<u32>,
    /// Free slots whose ring buffer is fresh (no run has used it), with that ring.
    ready: Vec<(u32, OwnedFd)>,
    /// Slots a refill is putting a ring into.
    reserved: BTreeSet<u32>,
    next: u32,
}

impl Slots {
    fn busy_slot(&self, slot: u32) -> bool {
        self.busy.iter().any(|run| run % MAX_RUNS == slot)
    }

    /// The next run id of `slot`: ids only grow, so a task left over from an old run (its slot
    /// then names another id) reaches no later run.
    fn id_for(&mut self, slot: u32) -> u32 {
        let mut id = self.next.max(1);
        while id % MAX_RUNS != slot {
            id += 1;
        }
        self.next = id + 1;
        id
    }

    /// A slot for a run with no ring ready: free, and not being refilled.
    fn idle_slot(&self) -> Option<u32> {
        let start = self.next % MAX_RUNS;
        (0..MAX_RUNS).map(|k| (start + k) % MAX_RUNS).find(|s| {
            !self.busy_slot(*s) && !self.reserved.contains(s) && !self.ready.iter().any(|(r, _)| r == s)
        })
    }
}

impl std::fmt::Debug for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident").field("active", &self.active()).finish()
    }
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

impl Resident {
    pub fn load() -> Result<Arc<Resident>> {
        let set = ProbeSet::load(&probes::Options::default())?;
        let r = Arc::new(Resident {
            set: Mutex::new(set),
            slots: Mutex::new(Slots { next: 1, ..Default::default() }),
            spare: Mutex::new(Vec::new()),
            refilling: Mutex::new(false),
        });
        r.refill();
        Ok(r)
    }

    /// Lease a run id and the fds for a run's process; None when every slot is taken (the run
    /// then loads a probe set of its own).
    pub fn lease(self: &Arc<Self>) -> Result<Option<Lease>> {
        let (run, ring) = {
            let mut slots = self.slots.lock().expect("slots lock");
            let (slot, ring) = match slots.ready.pop() {
                Some((slot, ring)) => (slot, Some(ring)),
                None => match slots.idle_slot() {
                    Some(slot) => (slot, None),
                    None => return Ok(None),
                },
            };
            let run = slots.id_for(slot);
            slots.busy.insert(run);
            (run, ring)
        };
        let mut fds: Vec<(String, OwnedFd)> = Vec::new();
        {
            let set = self.set.lock().expect("set lock");
            for (name, fd) in set.maps.named() {
                fds.push((name.to_string(), fd.try_clone_to_owned()?));
            }
        }
        let ring_bytes = if ring.is_some() { RING_BYTES } else { 0 };
        if let Some(ring) = ring {
            fds.push(("ring".into(), ring));
        }
        if let Some(c) = self.spare.lock().expect("spare lock").pop() {
            for (name, fd) in c.named_fds() {
                fds.push((name, fd.try_clone_to_owned()?));
            }
        } // dropped: the child holds the programs and maps now (our copies are in `fds`)
        self.refill();
        let named: Vec<(String, std::os::fd::BorrowedFd<'_>)> = fds.iter().map(|(n, f)| (n.clone(), f.as_fd())).collect();
        let env = handoff::encode(run, std::process::id(), ring_bytes, &named);
        Ok(Some(Lease { run, fds: fds.into_iter().map(|(_, f)| f).collect(), env }))
    }

    /// The run's process has exited: free its slot and remove what it left behind. With no run
    /// left, the cgroup level flags are recomputed (a cgroup trace that ended stops costing
    /// untracked tasks the level scan).
    pub fn release(self: &Arc<Self>, run: u32) {
        let mut set = self.set.lock().expect("set lock");
        set.maps.unregister(run);
        let mut slots = self.slots.lock().expect("slots lock");
        slots.busy.remove(&run);
        if slots.busy.is_empty()
            && let Err(e) = set.maps.reset_cgroup_levels()
        {
            tracing::warn!("resetting the cgroup level flags: {e:#}");
        }
        drop((slots, set));
        self.refill();
    }

    /// Runs holding a lease now.
    pub fn active(&self) -> usize {
        self.slots.lock().expect("slots lock").busy.len()
    }

    /// Records the kernel dropped because their run had ended (tasks a run left behind).
    pub fn orphans(&self) -> u64 {
        self.set.lock().expect("set lock").maps.orphans().map(|o| o.iter().sum()).unwrap_or(0)
    }

    /// Ready slots and containment sets up to SPARE, on a thread of their own (a containment
    /// set parses the kernel's BTF and verifies ten programs: tens of milliseconds).
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
            while let Some(slot) = me.slot_to_fill() {
                let filled = probes::new_ring(RING_BYTES).and_then(|ring| {
                    me.set.lock().expect("set lock").maps.install_ring(slot, ring.as_raw_fd())?;
                    Ok(ring)
                });
                let mut slots = me.slots.lock().expect("slots lock");
                slots.reserved.remove(&slot);
                match filled {
                    Ok(ring) => slots.ready.push((slot, ring)),
                    Err(e) => {
                        tracing::warn!("making a ring buffer ahead of time: {e:#}");
                        break;
                    }
                }
            }
            while me.spare.lock().expect("spare lock").len() < SPARE {
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

    /// A free slot to put a fresh ring in, reserved; None once SPARE are ready.
    fn slot_to_fill(&self) -> Option<u32> {
        let mut slots = self.slots.lock().expect("slots lock");
        if slots.ready.len() + slots.reserved.len() >= SPARE {
            return None;
        }
        let slot = slots.idle_slot()?;
        slots.reserved.insert(slot);
        Some(slot)
    }
}
