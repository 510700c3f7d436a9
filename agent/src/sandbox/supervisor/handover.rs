//! W hands its seccomp listener to the agent over a Unix socket pair the agent made before
//! starting the sandbox: W names it (its pid and fd number), the agent takes a copy with
//! pidfd_getfd(2) and acknowledges. The pair exists before the sandbox's seccomp filter, so
//! the filter's AF_UNIX refusal (kernels without cgroup Unix hooks) does not stop it.
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, OwnedFd},
    time::Duration,
};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// A connected pair: (the agent's end, the sandbox's end). Both close on exec; the agent
/// clears FD_CLOEXEC on the sandbox's end in the child before exec.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

/// W: offer `fd` to the agent and wait until it has taken a copy. Only read(2) and write(2):
/// W's seccomp filter is already loaded, and it sends sendmsg(2) to the supervisor that is
/// waiting for this very descriptor. The agent takes it with pidfd_getfd(2).
pub fn send(socket: BorrowedFd, fd: BorrowedFd, global_pid: u32) -> io::Result<()> {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&global_pid.to_ne_bytes());
    msg[4..].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    rustix::io::write(socket, &msg)?;
    let mut ack = [0u8; 1];
    if rustix::io::read(socket, &mut ack)? != 1 {
        return Err(io::Error::other("the agent did not take the listener"));
    }
    Ok(())
}

/// The agent: take the descriptor W offers on `socket`, waiting up to `timeout`, and call
/// `before_ack` with W's pid before acknowledging (the supervisor tracks W there: W's next
/// recorded syscall is its exec). None: the other end closed or offered nothing in time (the
/// sandbox failed before that).
pub fn receive(socket: BorrowedFd, timeout: Duration, before_ack: impl FnOnce(u32) -> io::Result<()>) -> io::Result<Option<OwnedFd>> {
    let mut pfd = [rustix::event::PollFd::new(&socket, rustix::event::PollFlags::IN)];
    if rustix::event::poll(&mut pfd, rustix::time::Timespec::try_from(timeout).ok().as_ref())? == 0 {
        return Ok(None);
    }
    let mut msg = [0u8; 8];
    if rustix::io::read(socket, &mut msg)? != 8 {
        return Ok(None);
    }
    let pid = u32::from_ne_bytes(msg[..4].try_into().expect("4 bytes"));
    let fd = u32::from_ne_bytes(msg[4..].try_into().expect("4 bytes"));
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("bad pid"))?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    let got = rustix::process::pidfd_getfd(&pidfd, fd as i32, rustix::process::PidfdGetfdFlags::empty())?;
    before_ack(pid.as_raw_nonzero().get() as u32)?;
    rustix::io::write(socket, b"k")?;
    Ok(Some(got))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::fd::AsFd;

    #[test]
    fn a_descriptor_crosses_the_pair() {
        let (a, b) = pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        let taker = std::thread::spawn(move || receive(a.as_fd(), Duration::from_secs(5), |_| Ok(())).map(|f| (f, a)));
        send(b.as_fd(), file.as_fd(), std::process::id()).unwrap();
        let (got, a) = taker.join().unwrap().unwrap();
        let got = got.expect("an fd");
        let (m1, m2) = (rustix::fs::fstat(&file).unwrap(), rustix::fs::fstat(&got).unwrap());
        assert_eq!((m1.st_dev, m1.st_ino), (m2.st_dev, m2.st_ino));
        drop(b);
        assert!(receive(a.as_fd(), Duration::from_secs(5), |_| Ok(())).unwrap().is_none());
    }
}
