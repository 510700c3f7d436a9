//! File effects: opens with write intent, path syscalls, and writes aggregated per (process,
//! fd) in the kernel so a tool writing a million blocks costs one record, not a million.
use agent_common::{
    FdKey, WriteAgg, kind, loss,
    syscalls::{self, Spec},
};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_boot_ns, bpf_probe_read_user},
};

use crate::{
    emit,
    maps::{WRITES, config_field, count_loss},
    syscall,
};

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

/// EXEC_ARGS at execve entry: after a successful exec the old argv is gone.
#[inline(always)]
pub fn exec_args(nr: u32, args: &[u64; 6], spec: &Spec) {
    let Some(buf) = emit::start(kind::EXEC_ARGS) else { return };
    buf.header.nr = nr;
    buf.header.args = *args;
    emit::user_str1(buf, syscall::arg(args, spec.str1));
    buf.header.ret = emit::user_argv(buf, syscall::arg(args, spec.addr_arg)) as i64;
    emit::submit(buf);
}

/// Writes through the fd end here: report what was written to it first.
#[inline(always)]
pub fn flush_on_close(nr: u32, pid: u32, args: &[u64; 6]) {
    if nr == syscalls::CLOSE {
        flush_writes(pid, args[0]);
        return;
    }
    // close_range(first, last): flush a bounded window; later fds are flushed when reused.
    for i in 0..32u64 {
        let fd = args[0] + i;
        if fd > args[1] {
            break;
        }
        flush_writes(pid, fd);
    }
}

pub fn aggregate_write(pid: u32, tid: u32, fd: u64, ret: i64) -> Result<(), i64> {
    let key = FdKey { pid, fd: fd as u32 };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if let Some(agg) = WRITES.get_ptr_mut(&key) {
        let agg = unsafe { &mut *agg };
        add(&mut agg.calls, 1);
        if ret >= 0 {
            add(&mut agg.bytes, ret as u64);
        } else {
            add(&mut agg.failed, 1);
            agg.last_errno = ret;
        }
        agg.last_ns = now;
        if now.wrapping_sub(agg.first_ns) >= config_field!(write_flush_ns) {
            flush_writes(pid, fd);
        }
        return Ok(());
    }
    let agg = WriteAgg {
        calls: 1,
        bytes: if ret >= 0 { ret as u64 } else { 0 },
        failed: (ret < 0) as u64,
        first_ns: now,
        last_ns: now,
        last_errno: if ret < 0 { ret } else { 0 },
        tid,
        _pad: 0,
    };
    if WRITES.insert(&key, &agg, BPF_NOEXIST as u64).is_err() {
        // Full (or another thread raced us to the key): report this write on its own.
        count_loss(loss::WRITE_AGG_FULL);
        emit_write(fd, &agg);
    }
    Ok(())
}

/// Report and forget the writes aggregated for (pid, fd).
#[inline(always)]
pub fn flush_writes(pid: u32, fd: u64) {
    let key = FdKey { pid, fd: fd as u32 };
    let agg = match unsafe { WRITES.get(&key) } {
        Some(agg) => *agg,
        None => return,
    };
    let _ = WRITES.remove(&key);
    emit_write(fd, &agg);
}

#[inline(always)]
fn emit_write(fd: u64, agg: &WriteAgg) {
    let Some(buf) = emit::start(kind::WRITE) else { return };
    buf.header.ts_ns = agg.last_ns;
    buf.header.tid = agg.tid;
    buf.header.args = [fd, agg.calls, agg.bytes, agg.failed, agg.first_ns, agg.last_errno as u64];
    emit::submit(buf);
}

#[inline(always)]
fn add(counter: &mut u64, v: u64) {
    // Threads of one process can write to the same fd on two CPUs at once.
    // Rust exposes no atomic RMW for the BPF target (max_atomic_width 0 there), so say the
    // instruction directly: BPF_ATOMIC | BPF_ADD, valid since the first eBPF ISA.
    unsafe { core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) counter as *mut u64, in(reg) v) };
}

/// pipe/pipe2/socketpair: two new fds; args[4] and args[5] carry them in the record.
pub fn fd_pair(pid: u32, nr: u32, args: &[u64; 6], spec: &Spec, ret: i64) -> Result<(), i64> {
    let mut args = *args;
    if ret == 0 {
        if let Ok(fds) = unsafe { bpf_probe_read_user(syscall::arg(&args, spec.addr_arg) as *const [i32; 2]) } {
            flush_writes(pid, fds[0] as u64);
            flush_writes(pid, fds[1] as u64);
            args[4] = fds[0] as u64;
            args[5] = fds[1] as u64;
        }
    }
    let buf = syscall::start_syscall(nr, &args, ret)?;
    emit::submit(buf);
    Ok(())
}
