//! Capabilities a pilot runs without. Together with the namespaces they are what contains
//! process control: no ptrace, no module loading, no reboot, no clock changes, no raw or
//! admin networking, no mknod, no way back through /proc/<pid>/root (CAP_SYS_PTRACE), no
//! open_by_handle_at escape (CAP_DAC_READ_SEARCH), no BPF. Dropped from the bounding set too,
//! so a setuid-root binary cannot bring them back. Through the `caps` crate.
use std::io;

use caps::{CapSet, Capability};

/// Each dropped capability and its name (verdict.json lists the names).
pub const DROPPED: &[(Capability, &str)] = &[
    (Capability::CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
    (Capability::CAP_KILL, "CAP_KILL"),
    (Capability::CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    (Capability::CAP_NET_RAW, "CAP_NET_RAW"),
    (Capability::CAP_SYS_MODULE, "CAP_SYS_MODULE"),
    (Capability::CAP_SYS_RAWIO, "CAP_SYS_RAWIO"),
    (Capability::CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
    (Capability::CAP_SYS_PACCT, "CAP_SYS_PACCT"),
    (Capability::CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    (Capability::CAP_SYS_BOOT, "CAP_SYS_BOOT"),
    (Capability::CAP_SYS_NICE, "CAP_SYS_NICE"),
    (Capability::CAP_SYS_TIME, "CAP_SYS_TIME"),
    (Capability::CAP_SYS_TTY_CONFIG, "CAP_SYS_TTY_CONFIG"),
    (Capability::CAP_MKNOD, "CAP_MKNOD"),
    (Capability::CAP_AUDIT_WRITE, "CAP_AUDIT_WRITE"),
    (Capability::CAP_AUDIT_CONTROL, "CAP_AUDIT_CONTROL"),
    (Capability::CAP_MAC_OVERRIDE, "CAP_MAC_OVERRIDE"),
    (Capability::CAP_MAC_ADMIN, "CAP_MAC_ADMIN"),
    (Capability::CAP_SYSLOG, "CAP_SYSLOG"),
    (Capability::CAP_WAKE_ALARM, "CAP_WAKE_ALARM"),
    (Capability::CAP_BLOCK_SUSPEND, "CAP_BLOCK_SUSPEND"),
    (Capability::CAP_AUDIT_READ, "CAP_AUDIT_READ"),
    (Capability::CAP_PERFMON, "CAP_PERFMON"),
    (Capability::CAP_BPF, "CAP_BPF"),
    (Capability::CAP_CHECKPOINT_RESTORE, "CAP_CHECKPOINT_RESTORE"),
    // Last: dropping from the bounding set needs it.
    (Capability::CAP_SETPCAP, "CAP_SETPCAP"),
];

pub fn drop_dangerous() -> io::Result<()> {
    // A capability this kernel does not know has nothing to drop (and the bounding-set drop
    // would fail with EINVAL).
    let known = caps::runtime::thread_all_supported();
    for (cap, _) in DROPPED.iter().filter(|(c, _)| known.contains(c)) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(io::Error::other)?;
    }
    caps::clear(None, CapSet::Ambient).map_err(io::Error::other)?;
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        let mut have = caps::read(None, set).map_err(io::Error::other)?;
        for (cap, _) in DROPPED {
            have.remove(cap);
        }
        caps::set(None, set, &have).map_err(io::Error::other)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_crate() {
        for (cap, name) in DROPPED {
            assert_eq!(cap.to_string(), *name);
        }
    }
}
