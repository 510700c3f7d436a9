//! Answering one user notification: continue it, give it a value or an errno, or install a
//! descriptor in the caller and return it (SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND,
//! Linux 5.14+).
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use libseccomp::{ScmpNotifResp, ScmpNotifRespFlags};

/// What the supervisor tells the kernel about one notification.
#[derive(Debug)]
pub enum Answer {
    /// Let the kernel run the syscall (the sandbox's namespaces and capabilities decide).
    Continue,
    /// The syscall returns this (it never runs).
    Value(i64),
    /// The syscall fails with this errno (positive).
    Errno(i32),
    /// Install this descriptor in the caller (close-on-exec when asked) and return its number.
    Fd { fd: OwnedFd, cloexec: bool },
    /// Already answered (by an `Fd` answer the handler gave itself).
    Done,
}

/// Send `answer` for notification `id`; for `Answer::Fd`, the number the caller got.
pub fn respond(listener: BorrowedFd, id: u64, answer: Answer) -> std::io::Result<Option<i64>> {
    let resp = match answer {
        Answer::Continue => ScmpNotifResp::new_continue(id, ScmpNotifRespFlags::empty()),
        Answer::Value(v) => ScmpNotifResp::new_val(id, v, ScmpNotifRespFlags::empty()),
        Answer::Errno(e) => ScmpNotifResp::new_error(id, -e.abs(), ScmpNotifRespFlags::empty()),
        Answer::Fd { fd, cloexec } => return add_fd_and_send(listener, id, fd.as_fd(), cloexec).map(Some),
        Answer::Done => return Ok(None),
    };
    resp.respond(listener.as_raw_fd()).map_err(std::io::Error::other)?;
    Ok(None)
}

/// struct seccomp_notif_addfd (include/uapi/linux/seccomp.h).
#[repr(C)]
struct AddFd {
    id: u64,
    flags: u32,
    srcfd: u32,
    newfd: u32,
    newfd_flags: u32,
}

const SECCOMP_ADDFD_FLAG_SEND: u32 = 1 << 1;
/// SECCOMP_IOW(3, struct seccomp_notif_addfd) = _IOW('!', 3, 24).
const SECCOMP_IOCTL_NOTIF_ADDFD: libc::c_ulong = 0x4018_2103;

/// libseccomp (2.5, 2.6) has no call for SECCOMP_IOCTL_NOTIF_ADDFD, nor does rustix: the ioctl
/// by hand. Installs `fd` in the notifying process and answers the notification with its
/// number, atomically.
fn add_fd_and_send(listener: BorrowedFd, id: u64, fd: BorrowedFd, cloexec: bool) -> std::io::Result<i64> {
    let req = AddFd {
        id,
        flags: SECCOMP_ADDFD_FLAG_SEND,
        srcfd: fd.as_raw_fd() as u32,
        newfd: 0,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: `req` is a valid seccomp_notif_addfd for the whole call.
    let n = unsafe { libc::ioctl(listener.as_raw_fd(), SECCOMP_IOCTL_NOTIF_ADDFD, &req as *const AddFd) };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as i64) }
}

/// Does this kernel take SECCOMP_ADDFD_FLAG_SEND? Asked on a listener with a notification id
/// that does not exist: ENOENT means the flag was understood (EINVAL: unknown flag).
pub fn add_fd_send_supported(listener: BorrowedFd) -> bool {
    let devnull = match std::fs::File::open("/dev/null") {
        Ok(f) => f,
        Err(_) => return false,
    };
    match add_fd_and_send(listener, u64::MAX, devnull.as_fd(), true) {
        Err(e) => e.raw_os_error() == Some(libc::ENOENT),
        Ok(_) => false,
    }
}

/// Is notification `id` still pending (its caller alive and still waiting)? Checked after
/// reading the caller's memory, so what was read belongs to the caller that asked.
pub fn still_valid(listener: BorrowedFd, id: u64) -> bool {
    libseccomp::notify_id_valid(listener.as_raw_fd(), id).is_ok()
}
