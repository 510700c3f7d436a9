//! A seccomp filter for the pilot: syscalls that reach state no namespace covers (the kernel
//! keyring, other processes' memory, the kernel itself) fail with EPERM. Most are also refused
//! by the dropped capabilities; the filter makes that independent of them. 32-bit (ia32 and
//! x32) syscalls are refused outright: their numbers differ and the probes do not decode them.
use std::io;

/// (number, name): x86_64 syscalls a pilot may not make.
pub const DENIED: &[(u32, &str)] = &[
    (101, "ptrace"),
    (103, "syslog"),
    (159, "adjtimex"),
    (163, "acct"),
    (164, "settimeofday"),
    (167, "swapon"),
    (168, "swapoff"),
    (169, "reboot"),
    (172, "iopl"),
    (173, "ioperm"),
    (175, "init_module"),
    (176, "delete_module"),
    (179, "quotactl"),
    (227, "clock_settime"),
    (246, "kexec_load"),
    (248, "add_key"),
    (249, "request_key"),
    (250, "keyctl"),
    (298, "perf_event_open"),
    (304, "open_by_handle_at"),
    (305, "clock_adjtime"),
    (308, "setns"),
    (310, "process_vm_readv"),
    (311, "process_vm_writev"),
    (313, "finit_module"),
    (320, "kexec_file_load"),
    (321, "bpf"),
];

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET: u16 = 0x06; // BPF_RET | BPF_K

/// `deny_unix`: also refuse socket(AF_UNIX, ...), where the kernel has no cgroup hooks for
/// Unix sockets (before 6.7): no path to a live Unix server then.
fn program(deny_unix: bool) -> Vec<Insn> {
    let n = DENIED.len() as u8;
    let extra: u8 = if deny_unix { 3 } else { 0 };
    let mut p = vec![
        Insn { code: LD_ABS, jt: 0, jf: 0, k: 4 }, // seccomp_data.arch
        Insn { code: JEQ, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
        Insn { code: RET, jt: 0, jf: 0, k: RET_EPERM },
        Insn { code: LD_ABS, jt: 0, jf: 0, k: 0 }, // seccomp_data.nr
        Insn { code: JGE, jt: n + 1 + extra, jf: 0, k: X32_SYSCALL_BIT },
    ];
    for (i, (nr, _)) in DENIED.iter().enumerate() {
        // Match: jump to the EPERM return at the end; else fall through.
        p.push(Insn { code: JEQ, jt: n - i as u8 + extra, jf: 0, k: *nr });
    }
    if deny_unix {
        const SOCKET: u32 = 41;
        const AF_UNIX: u32 = 1;
        p.push(Insn { code: JEQ, jt: 0, jf: 2, k: SOCKET });
        p.push(Insn { code: LD_ABS, jt: 0, jf: 0, k: 16 }); // args[0], low 32 bits
        p.push(Insn { code: JEQ, jt: 1, jf: 0, k: AF_UNIX });
    }
    p.push(Insn { code: RET, jt: 0, jf: 0, k: RET_ALLOW });
    p.push(Insn { code: RET, jt: 0, jf: 0, k: RET_EPERM });
    p
}

pub fn install(deny_unix: bool) -> io::Result<()> {
    let prog = program(deny_unix);
    #[repr(C)]
    struct Fprog {
        len: u16,
        filter: *const Insn,
    }
    let fprog = Fprog { len: prog.len() as u16, filter: prog.as_ptr() };
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
    if unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog as *const Fprog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_on_a_return() {
        for deny_unix in [false, true] {
            check(deny_unix);
        }
    }

    fn check(deny_unix: bool) {
        let p = program(deny_unix);
        for (i, insn) in p.iter().enumerate() {
            if insn.code == JEQ || insn.code == JGE {
                for target in [i + 1 + insn.jt as usize, i + 1 + insn.jf as usize] {
                    assert!(target < p.len(), "insn {i} jumps out of the program");
                }
            }
        }
        let deny_at = p.len() - 1;
        for (i, insn) in p.iter().enumerate().skip(5).take(DENIED.len()) {
            assert_eq!(i + 1 + insn.jt as usize, deny_at, "a denied syscall returns EPERM");
        }
        assert_eq!(p[4].jt as usize + 5, deny_at, "x32 syscalls are refused");
    }
}
