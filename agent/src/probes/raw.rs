//! libbpf's thin bpf(2) wrappers (libbpf-sys), for the few programs aya 0.14 cannot express
//! (cgroup Unix hooks), the TRACKED map update a child does between fork and exec, and
//! `pilot doctor`'s probes: one-instruction programs the kernel loads (or refuses) to tell
//! which program and attach types it has.
use std::{
    ffi::CStr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::Once,
};

use libbpf_sys as sys;

pub use sys::{
    BPF_PROG_TYPE_CGROUP_SOCK as PROG_CGROUP_SOCK, BPF_PROG_TYPE_CGROUP_SOCK_ADDR as PROG_CGROUP_SOCK_ADDR,
    BPF_PROG_TYPE_KPROBE as PROG_KPROBE, BPF_PROG_TYPE_LSM as PROG_LSM, BPF_PROG_TYPE_RAW_TRACEPOINT as PROG_RAW_TRACEPOINT,
    BPF_PROG_TYPE_TRACING as PROG_TRACING,
};

/// `r0 = 0; exit`: allow for LSM hooks, reject (EPERM) for cgroup socket hooks.
pub const RETURN_0: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
/// `r0 = 1; exit`: allow for cgroup socket hooks (the only value getpeername hooks accept).
pub const RETURN_1: [u64; 2] = [0x0000_0001_0000_00b7, 0x0000_0000_0000_0095];

/// What a program is and where it may attach.
#[derive(Clone, Copy, Default)]
pub struct Prog {
    pub prog_type: u32,
    pub attach_type: u32,
    /// BTF id of the kernel function (fentry, LSM), 0 otherwise.
    pub attach_btf_id: u32,
}

/// libbpf prints its own warnings to stderr by default; pilot reports the errno it returns
/// instead, so `pilot doctor` and run output stay pilot's own.
fn quiet() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| unsafe {
        sys::libbpf_set_print(None);
    });
}

/// Load `insns` as `prog`; the fd keeps it loaded.
pub fn load(prog: Prog, insns: &[u64], name: &CStr) -> std::io::Result<OwnedFd> {
    quiet();
    let mut opts = sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<sys::bpf_prog_load_opts>() as _,
        expected_attach_type: prog.attach_type,
        attach_btf_id: prog.attach_btf_id,
        ..Default::default()
    };
    // An instruction is 8 bytes (struct bpf_insn); u64 is at least as aligned.
    let insns_ptr = insns.as_ptr().cast::<sys::bpf_insn>();
    owned(unsafe { sys::bpf_prog_load(prog.prog_type, name.as_ptr(), c"GPL".as_ptr(), insns_ptr, insns.len() as _, &mut opts) })
}

/// Link a cgroup program to a cgroup (BPF_LINK_CREATE): closing the fd detaches it.
pub fn link_cgroup(prog: &OwnedFd, cgroup: &impl AsRawFd, attach_type: u32) -> std::io::Result<OwnedFd> {
    quiet();
    owned(unsafe { sys::bpf_link_create(prog.as_raw_fd(), cgroup.as_raw_fd(), attach_type, std::ptr::null()) })
}

/// Attach a raw tracepoint program to `name`, or a tracing/LSM program to the function it was
/// loaded for (`name` None). Closing the fd detaches it.
pub fn raw_tracepoint_open(prog: &OwnedFd, name: Option<&CStr>) -> std::io::Result<OwnedFd> {
    quiet();
    owned(unsafe { sys::bpf_raw_tracepoint_open(name.map_or(std::ptr::null(), CStr::as_ptr), prog.as_raw_fd()) })
}

/// Create a map (probing a map type).
pub fn create_map(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> std::io::Result<OwnedFd> {
    quiet();
    owned(unsafe { sys::bpf_map_create(map_type, std::ptr::null(), key_size, value_size, max_entries, std::ptr::null()) })
}

/// Insert `key` -> `value` into the map behind `map_fd`. Async-signal-safe and allocation-free
/// (libbpf's bpf_map_update_elem zeroes a `union bpf_attr` on the stack and calls bpf(2)), so a
/// child may call it between fork and exec.
pub fn map_update<K, V>(map_fd: RawFd, key: &K, value: &V) -> std::io::Result<()> {
    let rc = unsafe { sys::bpf_map_update_elem(map_fd, (key as *const K).cast(), (value as *const V).cast(), sys::BPF_ANY as u64) };
    if rc < 0 { Err(std::io::Error::from_raw_os_error(-rc)) } else { Ok(()) }
}

/// Remove `key` from the map behind `map_fd` (an array of maps: clear the slot).
pub fn map_delete<K>(map_fd: RawFd, key: &K) -> std::io::Result<()> {
    let rc = unsafe { sys::bpf_map_delete_elem(map_fd, (key as *const K).cast()) };
    if rc < 0 { Err(std::io::Error::from_raw_os_error(-rc)) } else { Ok(()) }
}

/// libbpf returns a new fd, or -errno.
fn owned(rc: i32) -> std::io::Result<OwnedFd> {
    if rc < 0 { Err(std::io::Error::from_raw_os_error(-rc)) } else { Ok(unsafe { OwnedFd::from_raw_fd(rc) }) }
}
