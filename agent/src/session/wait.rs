//! Waiting: for records, for the root to exit (a pidfd), for ^C and SIGTERM, and reaping.
use std::{
    os::fd::{BorrowedFd, OwnedFd},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use rustix::{
    event::{PollFd, PollFlags, poll},
    process::{Pid, PidfdFlags, WaitOptions, pidfd_open, wait},
};

/// ^C and SIGTERM seen so far.
pub static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Count ^C and SIGTERM instead of dying of them: a run acts on them once its pilot is set up.
/// (A handler that only bumps an atomic: signal-hook would add a thread for nothing here.)
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub fn interrupts() -> u32 {
    SIGNALS.load(Ordering::SeqCst)
}

/// CLOCK_BOOTTIME, the clock of the kernel's event timestamps (bpf_ktime_get_boot_ns).
pub fn boottime_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleep until the ring buffer has records, `also` (a pidfd) is readable, or `timeout`.
pub fn wait_readable(ring: BorrowedFd<'_>, also: Option<BorrowedFd<'_>>, timeout: Duration) {
    let mut fds = vec![PollFd::new(&ring, PollFlags::IN)];
    if let Some(fd) = &also {
        fds.push(PollFd::new(fd, PollFlags::IN));
    }
    let _ = poll(&mut fds, rustix::time::Timespec::try_from(timeout).ok().as_ref());
}

/// A pidfd for `pid` (readable once it exits); None on kernels before 5.3.
pub fn pidfd(pid: u32) -> Option<OwnedFd> {
    pidfd_open(Pid::from_raw(pid as i32)?, PidfdFlags::empty()).ok()
}

/// Reap every exited child (we are a subreaper); remember the root's status.
pub fn reap(root: Option<u32>, root_status: &mut Option<i32>) {
    while let Ok(Some((pid, status))) = wait(WaitOptions::NOHANG) {
        if Some(pid.as_raw_nonzero().get() as u32) == root {
            *root_status = Some(exit_status(status));
        }
    }
}

/// A wait status as a shell shows it: the exit code, or 128 + the signal that killed it.
pub fn exit_status(status: rustix::process::WaitStatus) -> i32 {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => code as i32,
        (None, Some(sig)) => 128 + sig as i32,
        (None, None) => 128,
    }
}
