//! How the daemon hands a run its part of the resident probe set: the run's id and the fds of
//! the shared maps (and, when the daemon has one ready, of a loaded containment set), inherited
//! by the run's process and named in one environment variable. The run then registers itself
//! (its ring buffer, its root) without loading or attaching anything.
use std::{
    collections::BTreeMap,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use anyhow::{Context, Result, anyhow, bail};
use aya::maps::{Map, MapData};

/// `run=ID NAME=FD...`: set by the daemon for the runs it starts.
pub const ENV: &str = "PILOT_PROBES";

/// What a run was handed.
pub struct Handoff {
    pub run: u32,
    /// The daemon's pid: the programs stay attached while it lives.
    pub daemon: u32,
    /// Size of the ring buffer in `fds["ring"]`, when the daemon made one ahead of time.
    pub ring_bytes: u32,
    /// By name: the shared maps (`TRACKED`...), and a containment set's programs
    /// (`prog:connect4`...) and maps (`map:SINK`...).
    pub fds: BTreeMap<String, OwnedFd>,
}

static TAKEN: std::sync::Mutex<Option<std::ffi::OsString>> = std::sync::Mutex::new(None);

/// Take the variable out of the environment (the run's intent records the client's
/// environment, and the pilot's own children must not believe they have a hand-off). Called
/// by main before any thread starts (`daemon::client::started_by_daemon`).
pub fn take_env() {
    if let Some(text) = std::env::var_os(ENV) {
        // SAFETY: main's first call: no other thread reads or writes the environment yet.
        unsafe { std::env::remove_var(ENV) };
        *TAKEN.lock().expect("hand-off lock") = Some(text);
    }
}

impl Handoff {
    /// The hand-off of this process, if the daemon started it with one (once).
    pub fn from_env() -> Result<Option<Handoff>> {
        let Some(text) = TAKEN.lock().expect("hand-off lock").take() else { return Ok(None) };
        let text = text.to_str().ok_or_else(|| anyhow!("{ENV} is not text"))?;
        parse(text).map(Some).with_context(|| format!("the probe set the daemon handed over ({ENV})"))
    }

    /// Take the map called `name` (a shared map or `map:NAME` of the containment set).
    pub fn map(&mut self, name: &str) -> Result<Map> {
        let fd = self.fds.remove(name).ok_or_else(|| anyhow!("no {name} in the hand-off"))?;
        let data = MapData::from_fd(fd).with_context(|| format!("the {name} map handed over"))?;
        Ok(Map::from_map_data(data)?)
    }
}

/// Parse `run=5 daemon=77 TRACKED=10 ...`; every fd is made close-on-exec again (the daemon
/// cleared it so that they cross the exec).
fn parse(text: &str) -> Result<Handoff> {
    let (mut run, mut daemon, mut ring_bytes, mut fds) = (None, None, 0, BTreeMap::new());
    for item in text.split_whitespace() {
        let (name, value) = item.split_once('=').ok_or_else(|| anyhow!("`{item}` is not NAME=VALUE"))?;
        let n: u32 = value.parse().with_context(|| format!("`{item}`"))?;
        match name {
            "run" => run = Some(n),
            "daemon" => daemon = Some(n),
            "ring_bytes" => ring_bytes = n,
            _ => {
                let fd = n as RawFd;
                if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
                    bail!("fd {fd} ({name}) is not open: {}", std::io::Error::last_os_error());
                }
                fds.insert(name.to_string(), unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(Handoff { run: run.ok_or_else(|| anyhow!("no run id"))?, daemon: daemon.unwrap_or(0), ring_bytes, fds })
}

/// The variable's value for a run: its id, the daemon's pid, the size of the ring buffer made
/// ahead of time (0: none) and each fd by name.
pub fn encode(run: u32, daemon: u32, ring_bytes: u32, fds: &[(String, BorrowedFd<'_>)]) -> String {
    let mut text = format!("run={run} daemon={daemon} ring_bytes={ring_bytes}");
    for (name, fd) in fds {
        text.push_str(&format!(" {name}={}", fd.as_raw_fd()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let dup: OwnedFd = file.as_fd().try_clone_to_owned().unwrap();
        let text = encode(7, 42, 0, &[("TRACKED".into(), dup.as_fd())]);
        assert!(text.starts_with("run=7 daemon=42 ring_bytes=0 TRACKED="), "{text}");
        let raw = dup.as_raw_fd();
        std::mem::forget(dup); // parse takes ownership of the number
        let h = parse(&text).unwrap();
        assert_eq!((h.run, h.daemon), (7, 42));
        assert_eq!(h.fds["TRACKED"].as_raw_fd(), raw);
        assert!(parse("run=x").is_err());
        assert!(parse("daemon=1").is_err(), "a run id is required");
    }
}
