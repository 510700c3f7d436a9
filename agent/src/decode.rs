//! Ring-buffer bytes to a typed record: the fixed header and the two data slices that follow.
use agent_common::{EventHeader, kind};

const HEADER_LEN: usize = std::mem::size_of::<EventHeader>();

/// One record as the kernel wrote it, borrowing the ring buffer's bytes.
pub struct Record<'a> {
    pub h: EventHeader,
    pub data1: &'a [u8],
    pub data2: &'a [u8],
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
    if !(kind::SYSCALL..=kind::SIGNAL).contains(&h.kind) {
        return Err(DecodeError::UnknownKind(h.kind));
    }
    let data = &bytes[HEADER_LEN..];
    // The kernel writes data2 right after data1, except when data1 was cut at STR_MAX.
    let len1 = (h.len1 as usize).min(agent_common::STR_MAX);
    let len2 = h.len2 as usize;
    if data.len() < len1 + len2 {
        return Err(DecodeError::BadLength { len1: h.len1, len2: h.len2, have: data.len() });
    }
    Ok(Record { h, data1: &data[..len1], data2: &data[len1..len1 + len2] })
}

/// A kernel string without its NUL.
pub fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

pub fn comm(h: &EventHeader) -> String {
    text(&h.comm)
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
        assert_eq!(text(r.data1), "/a");
        assert_eq!(text(r.data2), "/b/c");
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
