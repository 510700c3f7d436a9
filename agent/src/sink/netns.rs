//! Unix sockets before Linux 6.7: the pilot's own network namespace, loopback up, the sink
//! listening inside it.
//!
//! Without the cgroup Unix hooks (6.7+) nothing in the kernel refuses a pilot's connect to an
//! abstract Unix address of the host, and abstract names belong to the network namespace. So on
//! those kernels the sandbox joins a network namespace the agent made (`create`) instead of
//! refusing `socket(AF_UNIX)` with seccomp. The containment argument:
//!
//! - **abstract addresses**: resolved in the socket's network namespace, fixed when the socket
//!   is created; every socket the pilot can create (socket(2), socketpair, io_uring's
//!   IORING_OP_SOCKET) is created in its namespace, where only the pilot's own abstract
//!   sockets exist. No host abstract socket is reachable: kernel-enforced, whatever the
//!   tracing saw. (setns(2) is refused by the seccomp filter and needs CAP_SYS_ADMIN, dropped.)
//! - **paths**: resolved in the mount view as on every kernel (the sink's sockets bind-mounted
//!   over the live listeners' paths, every other live socket behind an overlay inode no server
//!   bound: sink/README.md).
//! - **TCP/UDP**: the cgroup connect/sendmsg hooks rewrite every destination to the sink's
//!   ports on 127.0.0.1/::1 before the route lookup, so a fresh namespace's missing routes
//!   never show (no ENETUNREACH): the destination is the namespace's loopback, where the sink
//!   has listeners on the same ports (`listen`), made here from the agent. The sink's own
//!   connections to the live servers leave from the agent's namespace. `--allow`ed
//!   destinations are not reachable from the namespace: the hooks send them to the sink too,
//!   which forwards everything for them (`Options::allow`).
//!
//! What differs from live for the pilot: it sees only `lo` (its interfaces and local
//! addresses: `getsockname` of a connected socket shows 127.0.0.1).
use std::{
    io,
    net::{SocketAddr, TcpListener, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

/// A network namespace of the pilot's, held open by an fd.
#[derive(Debug)]
pub struct PilotNetns {
    fd: OwnedFd,
}

impl PilotNetns {
    /// A fresh network namespace with loopback up, made in a thread of its own (unshare and
    /// setns change only the calling thread's namespace).
    pub fn create() -> io::Result<PilotNetns> {
        let fd = std::thread::spawn(|| -> io::Result<OwnedFd> {
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            loopback_up()?;
            let fd = unsafe { libc::open(c"/proc/thread-self/ns/net".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .join()
        .map_err(|_| io::Error::other("the network namespace thread panicked"))??;
        Ok(PilotNetns { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Run `f` inside the namespace (on a thread of its own).
    pub fn within<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        let fd = self.fd.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                f()
            })
            .join()
            .map_err(|_| io::Error::other("the network namespace thread panicked"))?
        })
    }

    /// The sink's listeners inside the namespace, on the ports the host-side ones have (the
    /// hooks' destinations): TCP and UDP on 127.0.0.1 and, when the namespace has it, ::1.
    pub fn listen(&self, tcp: &[SocketAddr], udp: &[SocketAddr]) -> io::Result<(Vec<TcpListener>, Vec<UdpSocket>)> {
        self.within(|| {
            let mut t = Vec::new();
            let mut u = Vec::new();
            for a in tcp {
                match TcpListener::bind(a) {
                    Ok(l) => t.push(l),
                    Err(e) if a.is_ipv6() => tracing::warn!("no IPv6 loopback in the pilot's network namespace ({e}): its IPv6 connects fail"),
                    Err(e) => return Err(e),
                }
            }
            for a in udp {
                match UdpSocket::bind(a) {
                    Ok(s) => u.push(s),
                    Err(_) if a.is_ipv6() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((t, u))
        })
    }
}

/// What `pilot run` uses on this kernel: with the cgroup Unix hooks, nothing here; without
/// them, a namespace (seccomp's refusal of AF_UNIX sockets when none can be made).
pub fn for_run(unix: crate::probes::contain::UnixContainment) -> (crate::probes::contain::UnixContainment, Option<std::sync::Arc<PilotNetns>>) {
    use crate::probes::contain::UnixContainment;
    // PILOT_UNIX_NETNS=1: this containment even where the hooks exist (tests of it on any kernel).
    let forced = std::env::var_os("PILOT_UNIX_NETNS").is_some_and(|v| v == "1");
    if unix != UnixContainment::Netns && !forced {
        return (unix, None);
    }
    match PilotNetns::create() {
        Ok(ns) => (UnixContainment::Netns, Some(std::sync::Arc::new(ns))),
        Err(e) => {
            tracing::warn!("no network namespace for the pilot ({e}): Unix sockets refused instead (seccomp)");
            (UnixContainment::Unavailable, None)
        }
    }
}

/// SIOCSIFFLAGS IFF_UP on `lo` (the caller holds CAP_NET_ADMIN over the new namespace).
fn loopback_up() -> io::Result<()> {
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, c) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *c as libc::c_char;
    }
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The sandbox (C, before its other namespaces): join the pilot's network namespace.
pub fn join(fd: RawFd) -> io::Result<()> {
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("joining the pilot's network namespace: {e}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_of_its_own_with_loopback_and_no_host_abstract_names() {
        let Ok(ns) = PilotNetns::create() else {
            eprintln!("SKIP: cannot make a network namespace here (not root?)");
            return;
        };
        use std::os::linux::net::SocketAddrExt;
        // A host abstract socket is not there from inside.
        let name = format!("pilot-netns-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _host = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        assert!(std::os::unix::net::UnixStream::connect_addr(&addr).is_ok(), "control: reachable from the host's namespace");
        let inside = ns.within(|| Ok(std::os::unix::net::UnixStream::connect_addr(&addr).map(|_| ()).map_err(|e| e.kind())));
        assert_eq!(inside.unwrap(), Err(io::ErrorKind::ConnectionRefused));
        // Loopback is up: a listener on the host's sink port binds there and is reachable there.
        let host = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = host.local_addr().unwrap();
        let (tcp, _) = ns.listen(&[port], &[]).unwrap();
        assert_eq!(tcp.len(), 1);
        let reached = ns.within(|| std::net::TcpStream::connect(port).map(|_| ()));
        assert!(reached.is_ok(), "{reached:?}");
    }
}
