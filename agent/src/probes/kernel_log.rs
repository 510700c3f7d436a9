//! The kernel programs' diagnostics (aya-log records, agent-ebpf/src/diag.rs) as `log` records,
//! which the `tracing-log` bridge turns into ordinary log lines under the target
//! `pilot::kernel`: `RUST_LOG=pilot::kernel=debug`, `pilot=debug` or `debug` shows them.
//!
//! Off unless RUST_LOG asks: the level it enables for that target is written into the
//! programs before load (`AYA_LOG_LEVEL`, read-only there), so the verifier removes every
//! disabled statement; with none enabled the log ring buffer shrinks to one page and no
//! reader runs. aya 0.14 creates every map of the object and the programs reference this one,
//! so it cannot be left out altogether.
use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    thread::JoinHandle,
};

use anyhow::{Context, Result};
use aya::{Ebpf, EbpfLoader};
use aya_log::EbpfLogger;

/// The target of every kernel record (agent-ebpf/src/diag.rs).
pub const TARGET: &str = "pilot::kernel";
/// aya-log's ring buffer in the object (128 KiB there).
const MAP: &str = "AYA_LOGS";
/// Its size when nothing is logged: the smallest ring buffer, one page.
const IDLE_BYTES: u32 = 4096;

/// The most verbose level the installed logger takes for [`TARGET`], as aya-log numbers it
/// (1 error ... 5 trace), or 0 for none.
pub fn level() -> u8 {
    let logger = log::logger();
    let levels = [
        (log::Level::Trace, aya_log::Level::Trace),
        (log::Level::Debug, aya_log::Level::Debug),
        (log::Level::Info, aya_log::Level::Info),
        (log::Level::Warn, aya_log::Level::Warn),
        (log::Level::Error, aya_log::Level::Error),
    ];
    levels
        .into_iter()
        .find(|(level, _)| {
            *level <= log::max_level() && logger.enabled(&log::Metadata::builder().target(TARGET).level(*level).build())
        })
        .map_or(0, |(_, level)| level as u8)
}

/// Set the programs' log level (from [`level`]) before they are loaded.
pub fn configure<'a>(loader: &mut EbpfLoader<'a>, level: &'a u8) {
    loader.override_global(aya_log::LEVEL, level, true);
    if *level == 0 {
        loader.map_max_entries(MAP, IDLE_BYTES);
    }
}

/// Forwards kernel records to `log` on a thread of its own, which sleeps in poll(2) until the
/// ring buffer has data: the session's poll loop needs no change, and a thread blocked in
/// poll costs nothing. Dropping it wakes the thread (eventfd), drains the ring and joins.
pub struct Reader {
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

/// Start forwarding when `level` enables anything. A reader that cannot start is a warning,
/// not a failed run.
pub fn start(ebpf: &mut Ebpf, level: u8) -> Option<Reader> {
    if level == 0 {
        return None;
    }
    match try_start(ebpf) {
        Ok(reader) => Some(reader),
        Err(err) => {
            tracing::warn!("kernel logs will not be shown: {err:#}");
            None
        }
    }
}

/// The logger takes the map's fd out of `Ebpf`, and programs loaded later (the containment
/// hooks) still name that fd: from then on it must stay open until `Reader` drops. So the
/// thread is started first and handed the logger only once it runs, and it never lets go of
/// the logger before it is told to stop.
fn try_start(ebpf: &mut Ebpf) -> Result<Reader> {
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("eventfd for the kernel log reader");
    }
    let wake = unsafe { OwnedFd::from_raw_fd(fd) };
    let stop = wake.as_raw_fd();
    let (give, take) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("pilot-klog".into())
        .spawn(move || {
            if let Ok(mut logger) = take.recv() {
                forward(&mut logger, stop);
            }
        })
        .context("starting the kernel log reader")?;
    let reader = Reader { wake, thread: Some(thread) };
    match EbpfLogger::init(ebpf) {
        Ok(logger) => {
            let _ = give.send(logger); // the thread waits for it
            Ok(reader)
        }
        Err(err) => {
            drop(give); // ends the thread's wait before `reader` joins it
            Err(err).context("reading the kernel programs' log buffer")
        }
    }
}

/// Flush records whenever the ring buffer is readable, until `stop` is.
fn forward<T: log::Log>(logger: &mut EbpfLogger<T>, stop: RawFd) {
    loop {
        let mut fds = [
            libc::pollfd { fd: logger.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: stop, events: libc::POLLIN, revents: 0 },
        ];
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("kernel logs stop here: poll: {err}");
            // Keep the logger (and the map's fd) until told to stop.
            let mut buf = 0u64;
            unsafe { libc::read(stop, &mut buf as *mut u64 as *mut libc::c_void, 8) };
            return;
        }
        logger.flush();
        if fds[1].revents != 0 {
            return;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let one = 1u64;
        // The eventfd outlives the thread (joined below), so the fd it polls stays valid.
        unsafe { libc::write(self.wake.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
