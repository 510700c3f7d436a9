//! Socket effects: connect, bind, accept with their addresses; sendto/sendmsg with an explicit
//! destination are recorded one by one, without one they count as writes to the fd.
use agent_common::syscalls::{self, Spec};
use aya_ebpf::helpers::bpf_probe_read_user;

use crate::{args::arg, emit, writes};

/// connect/bind (address in args) and accept/accept4 (peer written back to the user buffer).
pub fn with_address(pid: u32, run: u32, nr: u32, args: &[u64; 6], spec: &Spec, ret: i64) -> Result<(), i64> {
    let addr = arg(args, spec.addr_arg);
    let mut len = arg(args, spec.addr_len_arg);
    if spec.returns_fd {
        if ret < 0 {
            return emit::record(nr, args, spec, ret, run);
        }
        writes::flush(pid, ret as u64);
        // accept: addrlen is a pointer to the length the kernel wrote back.
        len = if len == 0 { 0 } else { unsafe { bpf_probe_read_user(len as *const u32) }.unwrap_or(0) as u64 };
    }
    let buf = emit::start_syscall(nr, args, ret, run)?;
    emit::user_bytes1(buf, addr, len);
    emit::submit(buf);
    Ok(())
}

/// sendto/sendmsg: destination given -> a record with it; none -> a write to the fd.
pub fn send(pid: u32, tid: u32, run: u32, nr: u32, args: &[u64; 6], spec: &Spec, ret: i64) -> Result<(), i64> {
    let (addr, len) = if nr == syscalls::SENDTO {
        (args[4], args[5])
    } else {
        // struct msghdr { void *msg_name; int msg_namelen; ... }
        match unsafe { bpf_probe_read_user(args[1] as *const [u64; 2]) } {
            Ok(hdr) => (hdr[0], hdr[1] & 0xffff_ffff),
            Err(_) => (0, 0),
        }
    };
    if addr == 0 {
        return writes::aggregate(((pid as u64) << 32) | tid as u64, run, arg(args, spec.fd_arg), ret);
    }
    let buf = emit::start_syscall(nr, args, ret, run)?;
    emit::user_bytes1(buf, addr, len);
    emit::submit(buf);
    Ok(())
}

/// sendmmsg(fd, msgvec, vlen, flags): the bytes of the messages it sent (the kernel wrote
/// each one's `msg_len` back), aggregated as writes to the fd: its peer is the destination.
/// Destinations inside the messages (unconnected sockets) are not read: the sink's record
/// names them, and its reconciliation counts what no traced send explains.
pub fn sendmmsg(pid: u32, tid: u32, run: u32, args: &[u64; 6], ret: i64) -> Result<(), i64> {
    if ret <= 0 {
        return writes::aggregate(((pid as u64) << 32) | tid as u64, run, args[0], ret);
    }
    // struct mmsghdr { struct msghdr msg_hdr (56 bytes); unsigned int msg_len; }: 64 bytes.
    let mut bytes = 0u64;
    for i in 0..MMSG_MAX {
        if i >= ret as u64 {
            break;
        }
        let at = args[1] + i * 64 + 56;
        bytes += unsafe { bpf_probe_read_user(at as *const u32) }.unwrap_or(0) as u64;
    }
    writes::aggregate(((pid as u64) << 32) | tid as u64, run, args[0], bytes as i64)
}

/// Messages of one sendmmsg whose bytes are counted (glibc's resolver sends 2).
const MMSG_MAX: u64 = 16;
