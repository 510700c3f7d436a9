//! bpf(2) by hand, for the few programs aya 0.14 cannot express (cgroup Unix hooks) and for
//! `pilot doctor`'s probes: one-instruction programs the kernel loads (or refuses) to tell
//! which program and attach types it has.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const PROG_KPROBE: u32 = 2;
pub const PROG_CGROUP_SOCK: u32 = 9;
pub const PROG_RAW_TRACEPOINT: u32 = 17;
pub const PROG_CGROUP_SOCK_ADDR: u32 = 18;
pub const PROG_TRACING: u32 = 26;
pub const PROG_LSM: u32 = 29;

/// `r0 = 0; exit`: allow for LSM hooks, reject (EPERM) for cgroup socket hooks.
pub const RETURN_0: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
/// `r0 = 1; exit`: allow for cgroup socket hooks (the only value getpeername hooks accept).
pub const RETURN_1: [u64; 2] = [0x0000_0001_0000_00b7, 0x0000_0000_0000_0095];

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_LINK_CREATE: libc::c_long = 28;

/// What a program is and where it may attach.
#[derive(Clone, Copy, Default)]
pub struct Prog {
    pub prog_type: u32,
    pub attach_type: u32,
    /// BTF id of the kernel function (fentry, LSM), 0 otherwise.
    pub attach_btf_id: u32,
}

/// Load `insns` as `prog`; the fd keeps it loaded.
pub fn load(prog: Prog, insns: &[u64], name: &str) -> std::io::Result<OwnedFd> {
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
        prog_btf_fd: u32,
        func_info_rec_size: u32,
        func_info: u64,
        func_info_cnt: u32,
        line_info_rec_size: u32,
        line_info: u64,
        line_info_cnt: u32,
        attach_btf_id: u32,
    }
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let attr = ProgLoad {
        prog_type: prog.prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        prog_name,
        expected_attach_type: prog.attach_type,
        attach_btf_id: prog.attach_btf_id,
        ..Default::default()
    };
    owned(bpf(BPF_PROG_LOAD, &attr))
}

/// Link a cgroup program to a cgroup (BPF_LINK_CREATE): closing the fd detaches it.
pub fn link_cgroup(prog: &OwnedFd, cgroup: &impl AsRawFd, attach_type: u32) -> std::io::Result<OwnedFd> {
    #[repr(C)]
    #[derive(Default)]
    struct LinkCreate {
        prog_fd: u32,
        target_fd: u32,
        attach_type: u32,
        flags: u32,
        _rest: [u64; 4],
    }
    let attr = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    owned(bpf(BPF_LINK_CREATE, &attr))
}

/// Attach a raw tracepoint program to `name`, or a tracing/LSM program to the function it was
/// loaded for (`name` None). Closing the fd detaches it.
pub fn raw_tracepoint_open(prog: &OwnedFd, name: Option<&std::ffi::CStr>) -> std::io::Result<OwnedFd> {
    #[repr(C)]
    struct Open {
        name: u64,
        prog_fd: u32,
        _pad: u32,
    }
    let attr = Open { name: name.map_or(0, |n| n.as_ptr() as u64), prog_fd: prog.as_raw_fd() as u32, _pad: 0 };
    owned(bpf(BPF_RAW_TRACEPOINT_OPEN, &attr))
}

/// Create a map (probing a map type).
pub fn create_map(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> std::io::Result<OwnedFd> {
    #[repr(C)]
    #[derive(Default)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        _rest: [u32; 11],
    }
    let attr = MapCreate { map_type, key_size, value_size, max_entries, ..Default::default() };
    owned(bpf(BPF_MAP_CREATE, &attr))
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<i32> {
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, std::mem::size_of::<T>()) };
    if fd < 0 { Err(std::io::Error::last_os_error()) } else { Ok(fd as i32) }
}

fn owned(fd: std::io::Result<i32>) -> std::io::Result<OwnedFd> {
    fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}
