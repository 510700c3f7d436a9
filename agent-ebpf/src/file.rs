//! File effects: opens with write intent, path syscalls (recorded by the dispatcher as plain
//! SYSCALL records), and the fd bookkeeping around aggregated writes (`writes`): flush before
//! close and before an fd number is reused.
use agent_common::syscalls::{self, Spec};
use aya_ebpf::helpers::bpf_probe_read_user;

use crate::{args::arg, emit, writes};

/// The open's flags. Normalizes openat2 so args[2] is the flags, args[3] the mode.
#[inline(always)]
pub fn open_flags(nr: u32, args: &mut [u64; 6]) -> u64 {
    let flags = match nr {
        syscalls::OPEN => args[1],
        syscalls::OPENAT => args[2],
        syscalls::CREAT => syscalls::O_CREAT | syscalls::O_WRONLY | syscalls::O_TRUNC,
        syscalls::OPENAT2 => {
            let how: [u64; 2] = match unsafe { bpf_probe_read_user(args[2] as *const [u64; 2]) } {
                Ok(how) => how,
                Err(_) => return syscalls::WRITE_INTENT, // unreadable: record it rather than guess
            };
            args[2] = how[0];
            args[3] = how[1];
            how[0]
        }
        _ => 0,
    };
    flags
}

/// Record this open? Every successful one (the fd table needs it); a failed one only with
/// write intent (a failed read changes nothing).
#[inline(always)]
pub fn open_wanted(nr: u32, args: &[u64; 6], ret: i64) -> bool {
    if ret >= 0 {
        return true;
    }
    let flags = match nr {
        syscalls::OPEN => args[1],
        syscalls::CREAT => syscalls::WRITE_INTENT,
        _ => args[2],
    };
    syscalls::open_recorded(flags)
}

/// Writes through the fd end here: report what was written to it first.
#[inline(always)]
pub fn flush_on_close(nr: u32, pid: u32, args: &[u64; 6]) {
    if nr == syscalls::CLOSE {
        writes::flush(pid, args[0]);
        return;
    }
    // close_range(first, last): flush a bounded window; later fds are flushed when reused.
    for i in 0..32u64 {
        let fd = args[0] + i;
        if fd > args[1] {
            break;
        }
        writes::flush(pid, fd);
    }
}

/// pipe/pipe2/socketpair: two new fds; args[4] and args[5] carry them in the record.
pub fn fd_pair(pid: u32, run: u32, nr: u32, args: &[u64; 6], spec: &Spec, ret: i64) -> Result<(), i64> {
    let mut args = *args;
    if ret == 0 {
        if let Ok(fds) = unsafe { bpf_probe_read_user(arg(&args, spec.addr_arg) as *const [i32; 2]) } {
            writes::flush(pid, fds[0] as u64);
            writes::flush(pid, fds[1] as u64);
            args[4] = fds[0] as u64;
            args[5] = fds[1] as u64;
        }
    }
    let buf = emit::start_syscall(nr, &args, ret, run)?;
    emit::submit(buf);
    Ok(())
}

/// FICLONERANGE names its source in a struct (`file_clone_range`: src_fd, src_offset,
/// src_length, dest_offset): copied into the free argument slots 3..6 at entry.
#[inline(always)]
pub fn clone_range_args(args: &mut [u64; 6]) {
    if args[1] & 0xffff_ffff != syscalls::FICLONERANGE {
        return;
    }
    if let Ok(r) = unsafe { bpf_probe_read_user(args[2] as *const [u64; 4]) } {
        args[3] = r[0];
        args[4] = r[2];
        args[5] = r[3];
    }
}
