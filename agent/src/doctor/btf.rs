//! Just enough of the kernel's BTF (/sys/kernel/btf/vmlinux) to find a function's type id,
//! which fentry and LSM programs are loaded against.

const MAGIC: u16 = 0xeb9f;
const KIND_FUNC: u32 = 12;

/// The BTF id of the kernel function `name`, if the blob describes one.
pub fn func_id(blob: &[u8], name: &str) -> Option<u32> {
    let u32_at = |off: usize| blob.get(off..off + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if blob.get(0..2)? != MAGIC.to_le_bytes() {
        return None;
    }
    let hdr_len = u32_at(4)? as usize;
    let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
    let str_off = u32_at(16)? as usize;
    let strings = hdr_len + str_off;
    let name_at = |off: u32| {
        let start = strings + off as usize;
        let end = start + blob.get(start..)?.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&blob[start..end]).ok()
    };
    let (mut at, end) = (hdr_len + type_off, hdr_len + type_off + type_len);
    let mut id = 1;
    while at + 12 <= end {
        let (name_off, info) = (u32_at(at)?, u32_at(at + 4)?);
        let kind = (info >> 24) & 0x1f;
        if kind == KIND_FUNC && name_at(name_off) == Some(name) {
            return Some(id);
        }
        at += 12 + trailing_bytes(kind, info & 0xffff)?;
        id += 1;
    }
    None
}

/// Bytes that follow a type's 12-byte header, by kind (include/uapi/linux/btf.h).
fn trailing_bytes(kind: u32, vlen: u32) -> Option<usize> {
    let vlen = vlen as usize;
    Some(match kind {
        1 | 14 | 17 => 4,           // INT, VAR, DECL_TAG
        3 => 12,                    // ARRAY
        4 | 5 | 15 | 19 => vlen * 12, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => vlen * 8,         // ENUM, FUNC_PROTO
        2 | 7..=12 | 16 | 18 => 0,  // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
        _ => return None,           // a kind newer than this parser: stop rather than misread
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob with an INT, a FUNC_PROTO with one parameter and the FUNC "f" (id 3).
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0f\0".to_vec();
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend_from_slice(&w.to_le_bytes()));
        push(&[1, 1 << 24, 4, 32]); // INT "int", 4 bytes
        push(&[0, (13 << 24) | 1, 1, 0, 1]); // FUNC_PROTO returning int, one param
        push(&[5, 12 << 24, 2]); // FUNC "f"
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn finds_a_function_after_types_with_trailing_data() {
        assert_eq!(func_id(&blob(), "f"), Some(3));
        assert_eq!(func_id(&blob(), "int"), None, "an INT is not a function");
        assert_eq!(func_id(b"nope", "f"), None);
    }
}
