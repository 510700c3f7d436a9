//! Every record shared with userspace, named once here so that its type is in the object's
//! BTF, where tests/layout.rs compares each size and field offset with the agent's build (as
//! Tetragon's alignchecker does). Without this most would be missing: aya-ebpf's map
//! definitions name their key and value types only as type parameters, which BTF drops.
use agent_common::{CgroupTarget, Config, Dest, EventBuf, EventHeader, FdKey, Inflight, SinkConfig, TaskInfo, WriteAgg};

/// Zero-length arrays: the full types reach the BTF (a pointer would only bring a forward
/// declaration) and take no room. `present` keeps the global from being empty, which the
/// kernel refuses in a BTF data section.
#[repr(C)]
pub struct Layout {
    event_header: [EventHeader; 0],
    event_buf: [EventBuf; 0],
    task_info: [TaskInfo; 0],
    inflight: [Inflight; 0],
    fd_key: [FdKey; 0],
    write_agg: [WriteAgg; 0],
    cgroup_target: [CgroupTarget; 0],
    config: [Config; 0],
    sink_config: [SinkConfig; 0],
    dest: [Dest; 0],
    present: u8,
}

/// Never read; 8 bytes of `.rodata`.
#[unsafe(no_mangle)]
static PILOT_LAYOUT: Layout = Layout {
    event_header: [],
    event_buf: [],
    task_info: [],
    inflight: [],
    fd_key: [],
    write_agg: [],
    cgroup_target: [],
    config: [],
    sink_config: [],
    dest: [],
    present: 1,
};
