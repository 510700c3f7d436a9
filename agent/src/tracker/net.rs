//! Sockets: connect, bind, listen, accept and addressed sends, each with its address (Unix
//! paths made absolute); the fd table keeps each socket's ends for later writes.
use agent_common::syscalls as sc;

use super::{Fd, Target, Tracker, paths};
use crate::{
    decode::{Record, Syscall},
    event::{self, Event, Kind},
    procfs,
};

const EINPROGRESS: i64 = -115;

impl Tracker {
    pub(super) fn socket(&mut self, rec: &Record, s: &Syscall, out: &mut Vec<Event>) {
        let fd = s.args[0] as i32 as i64;
        let kind = match s.nr {
            sc::CONNECT => Kind::Connect,
            sc::BIND => Kind::Bind,
            sc::LISTEN => Kind::Listen,
            sc::ACCEPT | sc::ACCEPT4 => Kind::Accept,
            _ => Kind::Send,
        };
        let mut e = self.base(rec, kind);
        e.fd = Some(fd);
        let mut addr = event::parse_sockaddr(s.data1);
        if let Some(a) = addr.as_mut().filter(|a| a.family == "unix" && !a.addr.is_empty() && !a.addr.starts_with(['/', '@'])) {
            let cwd = self.procs.get(&rec.pid).map(|p| p.cwd.clone()).unwrap_or_else(|| "/".into());
            a.addr = paths::join(&cwd, &a.addr);
        }
        let ok = s.ret >= 0 || (s.nr == sc::CONNECT && s.ret == EINPROGRESS);
        let p = self.proc_mut(rec.pid, rec.tid);
        match s.nr {
            sc::CONNECT if ok => p.fds.set_peer(fd, addr.clone()),
            sc::BIND if ok => p.fds.set_local(fd, addr.clone()),
            sc::ACCEPT | sc::ACCEPT4 if ok => {
                let family = p.fds.socket_family(fd);
                p.fds.set(s.ret, Fd { target: Target::Socket { family, local: p.fds.local_of(fd), peer: addr.clone() }, cloexec: false, closed: false });
                e.fd = Some(s.ret);
            }
            _ => {}
        }
        let shown = if s.nr == sc::LISTEN {
            // Bound to port 0: the kernel picked the port; ask /proc which.
            match p.fds.local_of(fd) {
                Some(mut l) if l.port == Some(0) => {
                    l.port = procfs::socket_port(rec.pid, fd as i32).or(l.port);
                    p.fds.set_local(fd, Some(l.clone()));
                    Some(l)
                }
                other => other,
            }
        } else {
            addr
        };
        if let Some(a) = shown {
            e.family = Some(a.family);
            e.addr = Some(a.addr);
            e.port = a.port;
        }
        if matches!(s.nr, sc::SENDTO | sc::SENDMSG) && s.ret >= 0 {
            e.bytes = Some(s.ret as u64);
            e.count = Some(1);
        }
        out.push(e);
    }
}
