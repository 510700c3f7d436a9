//! A snapshot rebuilt from what snapshot.json keeps (components with their holds, filesystems,
//! local addresses): the pid table and the path index are derived, so they are rebuilt here.
use std::net::IpAddr;

use super::{Component, Snapshot, filesystems::Filesystem};

impl Snapshot {
    pub fn from_parts(components: Vec<Component>, filesystems: Vec<Filesystem>, local: Vec<IpAddr>) -> Snapshot {
        let mut snap = Snapshot { components, filesystems, local, ..Default::default() };
        for (i, c) in snap.components.iter().enumerate() {
            for m in &c.processes {
                snap.procs.insert(m.pid, (m.start_ns, i));
            }
        }
        snap.index_paths();
        snap
    }
}
