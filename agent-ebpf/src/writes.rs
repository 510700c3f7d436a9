//! Writes aggregated per (process, fd) in the kernel, so a tool writing a million blocks costs
//! one record, not a million. Flushed (a WRITE record) before anything changes what the fd
//! refers to, and at least every `write_flush_ns` while it stays open.
use agent_common::{FdKey, WriteAgg, arg, kind, loss};
use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_boot_ns};

use crate::{
    emit,
    maps::{WRITES, config_field, count_loss},
};

/// Add one write (`ret` bytes, or an error) of thread (pid, tid) of run `run` to (pid, fd).
/// pid and tid come as one word (`bpf_get_current_pid_tgid`'s): a BPF function takes five
/// arguments at most.
pub fn aggregate(pid_tgid: u64, run: u32, fd: u64, ret: i64) -> Result<(), i64> {
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
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
            flush(pid, fd);
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
        run,
    };
    if WRITES.insert(&key, &agg, BPF_NOEXIST as u64).is_err() {
        // Full (or another thread raced us to the key): report this write on its own.
        count_loss(run, loss::WRITE_AGG_FULL);
        emit_write(fd, &agg);
    }
    Ok(())
}

/// Report and forget the writes aggregated for (pid, fd).
#[inline(always)]
pub fn flush(pid: u32, fd: u64) {
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
    let Some(buf) = emit::start(kind::WRITE, agg.run) else { return };
    buf.header.ts_ns = agg.last_ns;
    buf.header.tid = agg.tid;
    let a = &mut buf.header.args;
    a[arg::WRITE_FD] = fd;
    a[arg::WRITE_CALLS] = agg.calls;
    a[arg::WRITE_BYTES] = agg.bytes;
    a[arg::WRITE_FAILED] = agg.failed;
    a[arg::WRITE_FIRST_NS] = agg.first_ns;
    a[arg::WRITE_ERRNO] = agg.last_errno as u64;
    emit::submit(buf);
}

#[inline(always)]
fn add(counter: &mut u64, v: u64) {
    // Threads of one process can write to the same fd on two CPUs at once.
    // Rust exposes no atomic RMW for the BPF target (max_atomic_width 0 there), so say the
    // instruction directly: BPF_ATOMIC | BPF_ADD, valid since the first eBPF ISA.
    unsafe { core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) counter as *mut u64, in(reg) v) };
}
