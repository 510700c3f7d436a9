//! Building a record in the per-CPU scratch buffer and copying it to its run's ring buffer.
use agent_common::{
    DATA_MAX, EventBuf, EventHeader, MAX_RUNS, STR_MAX, flags, kind, loss,
    syscalls::{self, Spec},
};
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns,
        generated::{
            bpf_get_current_comm, bpf_probe_read_kernel_str, bpf_probe_read_user_str, bpf_ringbuf_output,
            bpf_ringbuf_query,
        },
    },
};

use crate::{
    args::arg,
    maps::{RUN_IDS, RUN_RINGS, SCRATCH, config_field, count_loss},
};

const HEADER_LEN: usize = core::mem::size_of::<EventHeader>();

/// The scratch record, with its header filled for the current task of run `run`.
#[inline(always)]
pub fn start(kind: u16, run: u32) -> Option<&'static mut EventBuf> {
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    let pid_tgid = bpf_get_current_pid_tgid();
    let h = &mut buf.header;
    h.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.ret = 0;
    h.args = [0; 6];
    h.pid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.nr = 0;
    h.kind = kind;
    h.flags = 0;
    h.len1 = 0;
    h.len2 = 0;
    h.run = run;
    unsafe { bpf_get_current_comm(h.comm.as_mut_ptr() as *mut c_void, 16) };
    Some(buf)
}

/// The scratch record of a SYSCALL: number, raw arguments, return value.
#[inline(always)]
pub fn start_syscall(nr: u32, args: &[u64; 6], ret: i64, run: u32) -> Result<&'static mut EventBuf, i64> {
    let buf = start(kind::SYSCALL, run).ok_or(0)?;
    buf.header.nr = nr;
    buf.header.args = *args;
    buf.header.ret = ret;
    Ok(buf)
}

/// A SYSCALL record with the syscall's string arguments.
#[inline(always)]
pub fn record(nr: u32, args: &[u64; 6], spec: &Spec, ret: i64, run: u32) -> Result<(), i64> {
    let buf = start_syscall(nr, args, ret, run)?;
    if spec.str1 != syscalls::NONE {
        user_str1(buf, arg(args, spec.str1));
    }
    if spec.str2 != syscalls::NONE {
        user_str2(buf, arg(args, spec.str2));
    }
    submit(buf);
    Ok(())
}

/// Where data2 starts: right after data1, which is at most STR_MAX long.
#[inline(always)]
fn data2_offset(buf: &EventBuf) -> usize {
    let len1 = buf.header.len1 as usize;
    if len1 > STR_MAX { STR_MAX } else { len1 }
}

/// Copy a NUL-terminated string from the traced process into data1.
#[inline(always)]
pub fn user_str1(buf: &mut EventBuf, src: u64) {
    let n = unsafe {
        bpf_probe_read_user_str(buf.data.as_mut_ptr() as *mut c_void, STR_MAX as u32, src as *const c_void)
    };
    set_len(buf, n, true);
}

/// Copy a NUL-terminated string from the traced process into data2.
#[inline(always)]
pub fn user_str2(buf: &mut EventBuf, src: u64) {
    let off = data2_offset(buf);
    let n = unsafe {
        bpf_probe_read_user_str(buf.data.as_mut_ptr().add(off) as *mut c_void, STR_MAX as u32, src as *const c_void)
    };
    set_len(buf, n, false);
}

/// Copy a NUL-terminated kernel string (tracepoint data) into data1.
#[inline(always)]
pub fn kernel_str1(buf: &mut EventBuf, src: *const u8) {
    let n = unsafe {
        bpf_probe_read_kernel_str(buf.data.as_mut_ptr() as *mut c_void, STR_MAX as u32, src as *const c_void)
    };
    set_len(buf, n, true);
}

/// Copy `len` raw bytes (a socket address) from the traced process into data1.
#[inline(always)]
pub fn user_bytes1(buf: &mut EventBuf, src: u64, len: u64) {
    let len = if len > agent_common::SOCKADDR_MAX as u64 { agent_common::SOCKADDR_MAX as u64 } else { len };
    if src == 0 || len == 0 {
        return;
    }
    let n = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            buf.data.as_mut_ptr() as *mut c_void,
            len as u32,
            src as *const c_void,
        )
    };
    if n < 0 {
        buf.header.flags |= flags::FAULT1;
    } else {
        buf.header.len1 = len as u16;
    }
}

#[inline(always)]
fn set_len(buf: &mut EventBuf, n: i64, first: bool) {
    let (trunc, fault) = if first { (flags::TRUNC1, flags::FAULT1) } else { (flags::TRUNC2, flags::FAULT2) };
    if n < 0 {
        buf.header.flags |= fault;
        return;
    }
    if n as usize >= STR_MAX {
        buf.header.flags |= trunc;
    }
    if first {
        buf.header.len1 = n as u16;
    } else {
        buf.header.len2 = n as u16;
    }
}

/// Append argv strings (NUL-separated) after data1, starting at user array `argv`.
/// Returns how many arguments were seen (more than copied when truncated).
#[inline(always)]
pub fn user_argv(buf: &mut EventBuf, argv: u64) -> u64 {
    let mut off = data2_offset(buf);
    let start = off;
    let mut argc = 0u64;
    if argv == 0 {
        return 0;
    }
    for i in 0..agent_common::ARGV_MAX as u64 {
        let ptr: u64 = match unsafe { aya_ebpf::helpers::bpf_probe_read_user((argv + i * 8) as *const u64) } {
            Ok(p) => p,
            Err(_) => break,
        };
        if ptr == 0 {
            return argc;
        }
        argc += 1;
        if off > DATA_MAX - STR_MAX {
            buf.header.flags |= flags::TRUNC2;
            break;
        }
        let n = unsafe {
            bpf_probe_read_user_str(buf.data.as_mut_ptr().add(off) as *mut c_void, STR_MAX as u32, ptr as *const c_void)
        };
        if n <= 0 {
            buf.header.flags |= flags::FAULT2;
            break;
        }
        off += n as usize;
        buf.header.len2 = (off - start) as u16;
    }
    if argc == agent_common::ARGV_MAX as u64 {
        buf.header.flags |= flags::TRUNC2;
    }
    argc
}

/// Copy `header + data1 + data2` to the ring buffer of the record's run. Wakes the reader only
/// once enough bytes wait, so a busy tracee does not pay a wakeup per event; the reader also
/// polls on a timer. A record of a run whose slot no longer serves it is counted lost in the
/// orphans' row: it reaches no other run.
#[inline(always)]
pub fn submit(buf: &EventBuf) {
    let total = HEADER_LEN + data2_offset(buf) + buf.header.len2 as usize;
    if total > core::mem::size_of::<EventBuf>() {
        return;
    }
    let run = buf.header.run;
    let slot = run % MAX_RUNS;
    if RUN_IDS.get(slot).is_none_or(|id| *id != run) {
        count_loss(0, loss::RINGBUF_FULL);
        return;
    }
    let Some(ring) = RUN_RINGS.get(slot) else {
        count_loss(0, loss::RINGBUF_FULL);
        return;
    };
    let ring = ring as *const _ as *mut c_void;
    let wake = if unsafe { bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA as u64) } >= config_field!(wakeup_bytes) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    let data = buf as *const EventBuf as *mut c_void;
    if unsafe { bpf_ringbuf_output(ring, data, total as u64, wake as u64) } < 0 {
        count_loss(run, loss::RINGBUF_FULL);
    }
}
