//! Ring-buffer bytes to one typed record: the header's fields named, and what each kind's
//! positional `args` and data slices mean (agent-common's `kind` and `arg` docs) decoded here
//! and nowhere else.
use agent_common::{EventHeader, WriteAgg, arg, kind};

const HEADER_LEN: usize = std::mem::size_of::<EventHeader>();

/// One record as the kernel wrote it, borrowing the ring buffer's bytes.
pub struct Record<'a> {
    /// bpf_ktime_get_boot_ns() when the record was made.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// The run whose task made it.
    pub run: u32,
    pub comm: [u8; 16],
    /// TRUNC*/FAULT* bits: a string was cut or unreadable.
    pub flags: u16,
    pub body: Body<'a>,
}

pub enum Body<'a> {
    /// A syscall of a tracked task, at its exit: raw arguments, return value, strings or a
    /// socket address.
    Syscall(Syscall<'a>),
    /// An exec about to run: the filename as passed and the argv (NUL-separated).
    ExecArgs { nr: u32, args: [u64; 6], filename: &'a [u8], argv: &'a [u8] },
    /// The exec succeeded: the file the kernel opened, the tid before it, and the start time
    /// the kernel's tracked set has for the process (0: unknown).
    Exec { filename: &'a [u8], old_tid: u32, start_ns: u64 },
    Fork { child: u32, clone_flags: u64, child_start_ns: u64 },
    Exit(Exit),
    Writes(Writes),
    /// A signal the kernel generated for a task, sent by a tracked task.
    Signal { target: i64, signal: i64, result: i64 },
}

pub struct Syscall<'a> {
    pub nr: u32,
    pub args: [u64; 6],
    /// >= 0 success, < 0 minus the errno.
    pub ret: i64,
    pub data1: &'a [u8],
    pub data2: &'a [u8],
}

#[derive(Clone, Copy)]
pub struct Exit {
    /// What the task passed to exit/exit_group (valid when `called_exit`).
    pub code: i64,
    pub called_exit: bool,
    pub last_signal: i64,
    pub group_dead: GroupDead,
}

/// Whether an exiting task was the last of its process.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum GroupDead {
    Yes,
    No,
    /// The kernel's tracepoint does not say (before 6.x): the tracker decides.
    Unknown,
}

/// Writes the kernel aggregated for one (process, fd).
#[derive(Clone, Copy)]
pub struct Writes {
    pub fd: i64,
    pub calls: u64,
    pub bytes: u64,
    pub failed: u64,
    pub first_ns: u64,
    pub last_errno: i64,
}

impl Writes {
    /// An aggregate still in the kernel's WRITES map.
    pub fn of(fd: u32, agg: &WriteAgg) -> Writes {
        Writes { fd: fd as i32 as i64, calls: agg.calls, bytes: agg.bytes, failed: agg.failed, first_ns: agg.first_ns, last_errno: agg.last_errno }
    }
}

#[derive(Debug, PartialEq)]
pub enum DecodeError {
    Short(usize),
    BadLength { len1: u16, len2: u16, have: usize },
    UnknownKind(u16),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short(n) => write!(f, "record of {n} bytes is shorter than its header"),
            DecodeError::BadLength { len1, len2, have } => {
                write!(f, "record says {len1}+{len2} data bytes but carries {have}")
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Short(bytes.len()));
    }
    let h: EventHeader = bytemuck::pod_read_unaligned(&bytes[..HEADER_LEN]);
    let data = &bytes[HEADER_LEN..];
    // The kernel writes data2 right after data1, except when data1 was cut at STR_MAX.
    let len1 = (h.len1 as usize).min(agent_common::STR_MAX);
    let len2 = h.len2 as usize;
    if !(kind::SYSCALL..=kind::SIGNAL).contains(&h.kind) {
        return Err(DecodeError::UnknownKind(h.kind));
    }
    if data.len() < len1 + len2 {
        return Err(DecodeError::BadLength { len1: h.len1, len2: h.len2, have: data.len() });
    }
    let (data1, data2) = (&data[..len1], &data[len1..len1 + len2]);
    let a = h.args;
    let body = match h.kind {
        kind::SYSCALL => Body::Syscall(Syscall { nr: h.nr, args: a, ret: h.ret, data1, data2 }),
        kind::EXEC_ARGS => Body::ExecArgs { nr: h.nr, args: a, filename: data1, argv: data2 },
        kind::EXEC => Body::Exec { filename: data1, old_tid: a[arg::EXEC_OLD_TID] as u32, start_ns: a[arg::EXEC_START_NS] },
        kind::FORK => Body::Fork { child: a[arg::FORK_CHILD] as u32, clone_flags: a[arg::FORK_FLAGS], child_start_ns: a[arg::FORK_START] },
        kind::EXIT => Body::Exit(Exit {
            code: a[arg::EXIT_CODE] as i64,
            called_exit: a[arg::EXIT_FLAGS] & agent_common::exit_flags::CALLED_EXIT != 0,
            last_signal: a[arg::EXIT_SIGNAL] as i64,
            group_dead: match a[arg::EXIT_GROUP_DEAD] {
                1 => GroupDead::Yes,
                2 => GroupDead::Unknown,
                _ => GroupDead::No,
            },
        }),
        kind::WRITE => Body::Writes(Writes {
            fd: a[arg::WRITE_FD] as i32 as i64,
            calls: a[arg::WRITE_CALLS],
            bytes: a[arg::WRITE_BYTES],
            failed: a[arg::WRITE_FAILED],
            first_ns: a[arg::WRITE_FIRST_NS],
            last_errno: a[arg::WRITE_ERRNO] as i64,
        }),
        _ => Body::Signal {
            target: a[arg::SIGNAL_TARGET] as i32 as i64,
            signal: a[arg::SIGNAL_SIG] as i64,
            result: a[arg::SIGNAL_RESULT] as i64,
        },
    };
    Ok(Record { ts_ns: h.ts_ns, pid: h.pid, tid: h.tid, run: h.run, comm: h.comm, flags: h.flags, body })
}

/// A kernel string without its NUL.
pub fn text(bytes: &[u8]) -> String {
    text_ref(bytes).into_owned()
}

/// A kernel string without its NUL, borrowed when it is UTF-8.
pub fn text_ref(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u16, d1: &[u8], d2: &[u8]) -> Vec<u8> {
        let mut h: EventHeader = bytemuck::Zeroable::zeroed();
        h.kind = kind;
        h.len1 = d1.len() as u16;
        h.len2 = d2.len() as u16;
        let mut out = bytemuck::bytes_of(&h).to_vec();
        out.extend_from_slice(d1);
        out.extend_from_slice(d2);
        out
    }

    #[test]
    fn splits_two_strings() {
        let bytes = record(kind::SYSCALL, b"/a\0", b"/b/c\0");
        let r = decode(&bytes).unwrap();
        let Body::Syscall(s) = r.body else { panic!("a syscall") };
        assert_eq!(text(s.data1), "/a");
        assert_eq!(text(s.data2), "/b/c");
    }

    #[test]
    fn names_the_fields_of_each_kind() {
        let mut h: EventHeader = bytemuck::Zeroable::zeroed();
        h.kind = kind::EXIT;
        h.args = [3, agent_common::exit_flags::CALLED_EXIT, 9, 1, 0, 0];
        let bytes = bytemuck::bytes_of(&h).to_vec();
        let Body::Exit(x) = decode(&bytes).unwrap().body else { panic!("an exit") };
        assert!(x.called_exit && x.code == 3 && x.last_signal == 9 && x.group_dead == GroupDead::Yes);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode(&[0u8; 10]).err(), Some(DecodeError::Short(10)));
        let mut bytes = record(kind::SYSCALL, b"/a\0", b"");
        bytes.truncate(bytes.len() - 1);
        assert!(matches!(decode(&bytes), Err(DecodeError::BadLength { .. })));
        assert_eq!(decode(&record(99, b"", b"")).err(), Some(DecodeError::UnknownKind(99)));
    }
}
