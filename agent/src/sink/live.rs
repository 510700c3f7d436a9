//! The sink of `pilot commit`'s live run: a recording pass-through proxy. The live command runs
//! in a cgroup of its own with the same connect hooks as a pilot, every TCP/UDP destination
//! rewritten to the sink, which forwards everything (`Mode::PassThrough`) and records each
//! request as the pilot's sink did, so fidelity compares the pilot's rpc effects with the live
//! ones operation by operation. Nothing is refused: no Unix hooks, no port-bind refusals, and
//! `getpeername` shows the original destination as in a pilot. Unix-socket traffic is not
//! proxied in a commit (no mount namespace): its rpc effects appear only in the pilot.
use std::{
    fs::{self, File},
    os::fd::{AsRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
};

// A commit that fails half-way leaves the group `commit-<pid>`: `pilot gc` removes it.

use anyhow::{Context, Result};

use super::{Mode, Options, Sink};
use crate::{cgroup::PilotCgroup, graph::Graph, probes::{Probes, contain::UnixContainment}, snapshot::Snapshot};

pub struct LiveProxy {
    sink: Sink,
    cgroup: PilotCgroup,
    /// The group's cgroup.procs, open: the live command writes itself there before exec.
    procs: File,
    /// Where the agent itself runs (what is left in the group goes back there at the end).
    home: Option<PathBuf>,
    _links: Vec<OwnedFd>,
}

impl LiveProxy {
    /// The sink in pass-through mode and a cgroup whose connects lead to it.
    pub fn start(probes: &mut Probes, snapshot: &Snapshot) -> Result<LiveProxy> {
        let sink = Sink::start_with(Options { mode: Mode::PassThrough, ..Default::default() })?;
        sink.set_hints(super::hints(snapshot));
        let cgroup = PilotCgroup::create(&format!("commit-{}", std::process::id()))?;
        let (_, links) = probes.contain(UnixContainment::Unavailable, &cgroup.dir_fd()?, sink.config(), &[], &[])?;
        sink.ctx().origins.attach(probes.take_origins()?, cgroup.path.clone());
        let procs = fs::OpenOptions::new().write(true).open(cgroup.path.join("cgroup.procs")).with_context(|| format!("opening {}/cgroup.procs", cgroup.path.display()))?;
        Ok(LiveProxy { sink, cgroup, procs, home: own_cgroup(), _links: links })
    }

    /// The fd a child writes "0" to (between fork and exec) to join the group.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// Stop the sink, write its sink.json into `out`, add its rpc edges to the live graph, and
    /// remove the group (processes the live run left behind go back to the agent's group).
    pub fn finish(self, out: &crate::output::Output, snapshot: &Snapshot, graph: &mut Graph) -> Result<()> {
        let mut caught = self.sink.stop();
        super::attribute(&mut caught, snapshot);
        out.write_file(crate::rundir::SINK, &crate::rundir::pretty(&caught))?;
        crate::graph::rpc::add(graph, &caught);
        if let Some(home) = &self.home {
            for pid in crate::cgroup::pids(&self.cgroup.path) {
                let _ = fs::write(home.join("cgroup.procs"), pid.to_string());
            }
        }
        self.cgroup.remove();
        Ok(())
    }
}

/// The agent's own cgroup v2 directory (/proc/self/cgroup's `0::` line).
fn own_cgroup() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let root = crate::cgroup::ROOTS.iter().find(|r| Path::new(r).join("cgroup.procs").exists())?;
    Some(Path::new(root).join(rel.trim_start_matches('/')))
}

/// In the child between fork and exec: join the group (cgroup.procs takes "0" as "me").
///
/// # Safety
/// Async-signal-safe: one write(2).
pub unsafe fn join(procs_fd: RawFd) -> std::io::Result<()> {
    if unsafe { libc::write(procs_fd, b"0".as_ptr().cast(), 1) } != 1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
