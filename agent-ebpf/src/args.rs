//! Syscall arguments: read at sys_enter, kept in `Inflight::args`, picked by `Spec` index.
use aya_ebpf::{bindings::pt_regs, helpers::bpf_probe_read_kernel};

/// The six syscall arguments (rdi, rsi, rdx, r10, r8, r9) in one read: in pt_regs they all lie
/// in the 64 bytes from r10 to rdi.
#[inline(always)]
pub fn read(regs: *const pt_regs) -> Result<[u64; 6], i64> {
    let r: [u64; 8] = unsafe { bpf_probe_read_kernel(&raw const (*regs).r10 as *const [u64; 8]) }
        .map_err(|e| e as i64)?;
    // r10, r9, r8, rax, rcx, rdx, rsi, rdi
    Ok([r[7], r[6], r[5], r[0], r[2], r[1]])
}

/// Argument `i` (a `Spec` index), 0 when absent. No slice indexing: a bounds-check panic path
/// would leave a call at the end of the program, which the verifier rejects.
#[inline(always)]
pub fn arg(args: &[u64; 6], i: u8) -> u64 {
    match i {
        0 => args[0],
        1 => args[1],
        2 => args[2],
        3 => args[3],
        4 => args[4],
        5 => args[5],
        _ => 0,
    }
}
