//! The records shared by the kernel programs and the agent (agent-common) have the same layout
//! in both builds, as Tetragon's alignchecker checks for its own: the eBPF object the agent
//! embeds is read with `object`, its BTF parsed with aya-obj, and every record's size and field
//! offsets are compared with userspace's `size_of` and `offset_of!`. The two sides are built by
//! different toolchains for different targets (nightly for bpfel, stable for x86_64); a record
//! laid out differently would decode as garbage. Needs no root: nothing is loaded.
use std::collections::BTreeMap;

use agent_common::{CgroupTarget, Config, Dest, EventBuf, EventHeader, FdKey, Inflight, SinkConfig, TaskInfo, WriteAgg};
use aya_obj::btf::{Btf, BtfKind};
use object::{Object as _, ObjectSection as _};

/// A record's layout: its size and each field's name, offset and size, in bytes.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    size: usize,
    fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    offset: usize,
    size: usize,
}

/// A userspace record's layout. Every field must be listed: a field the kernel build has and
/// this list lacks is reported too.
macro_rules! layout {
    ($t:ident { $($f:ident),+ $(,)? }) => {{
        let value = std::mem::MaybeUninit::<$t>::uninit();
        let p = value.as_ptr();
        let fields = vec![$(Field {
            name: stringify!($f).to_string(),
            offset: std::mem::offset_of!($t, $f),
            // SAFETY: only the field's address is taken, nothing is read.
            size: pointee_size(unsafe { &raw const (*p).$f }),
        }),+];
        (stringify!($t), Layout { size: size_of::<$t>(), fields })
    }};
}

fn pointee_size<T>(_: *const T) -> usize {
    size_of::<T>()
}

/// Every record of agent-common that crosses between kernel and userspace (records, map keys
/// and values, the loader-written configuration).
fn user_layouts() -> Vec<(&'static str, Layout)> {
    vec![
        layout!(EventHeader { ts_ns, ret, args, pid, tid, nr, kind, flags, len1, len2, run, comm }),
        layout!(EventBuf { header, data }),
        layout!(TaskInfo { start_ns, exit_code, exit_flags, last_signal, run, _pad }),
        layout!(Inflight { args, nr, run }),
        layout!(FdKey { pid, fd }),
        layout!(WriteAgg { calls, bytes, failed, first_ns, last_ns, last_errno, tid, run }),
        layout!(CgroupTarget { run, level, agent_pid, _pad }),
        layout!(Config {
            write_flush_ns,
            wakeup_bytes,
            newtask_pid,
            newtask_clone_flags,
            exec_filename,
            exec_pid,
            exec_old_pid,
            exit_pid,
            exit_group_dead,
            sig_sig,
            sig_code,
            sig_pid,
            sig_group,
            sig_result,
        }),
        layout!(SinkConfig { tcp4_port, udp4_port, tcp6_port, udp6_port }),
        layout!(Dest { family, port, ip }),
    ]
}

/// The `.BTF` section of an eBPF object and where it starts in the file.
fn btf_section(elf: &[u8]) -> Result<(&[u8], usize), String> {
    let file = object::File::parse(elf).map_err(|e| format!("parsing the eBPF object: {e}"))?;
    let section = file
        .section_by_name(".BTF")
        .ok_or("the eBPF object has no .BTF section (agent-ebpf must be built with debug info)")?;
    let (start, _) = section.file_range().ok_or(".BTF has no data in the file")?;
    let data = section.data().map_err(|e| format!("reading .BTF: {e}"))?;
    Ok((data, start as usize))
}

/// The struct named `name` in the object's BTF: its type id and the type table, or None when
/// the BTF has no such struct.
fn find_struct<'a>(btf: &Btf, types: &TypeTable<'a>, name: &str) -> Result<Option<u32>, String> {
    let Ok(id) = btf.id_by_type_name_kind(name, BtfKind::Struct) else { return Ok(None) };
    // aya-obj and the table below number types alike: check they agree.
    let found = types.name(types.get(id)?.name_off)?;
    if found != name {
        return Err(format!("type {id} is {found} in the type table, {name} for aya-obj"));
    }
    Ok(Some(id))
}

/// Each struct of `names` as the kernel build's BTF describes it; a name the BTF lacks is left
/// out (and reported by `differences`).
fn kernel_layouts(elf: &[u8], names: &[&str]) -> Result<BTreeMap<String, Layout>, String> {
    let (data, _) = btf_section(elf)?;
    // aya-obj validates the BTF (header, type and string sections) and resolves names.
    let btf = Btf::parse(data, object::Endianness::Little).map_err(|e| format!("parsing .BTF: {e}"))?;
    let types = TypeTable::read(data)?;
    let mut out = BTreeMap::new();
    for name in names {
        if let Some(id) = find_struct(&btf, &types, name)? {
            out.insert(name.to_string(), types.layout(id)?);
        }
    }
    Ok(out)
}

/// Every difference between the kernel build's layouts and userspace's, one line each.
fn differences(kernel: &BTreeMap<String, Layout>, user: &[(&str, Layout)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, u) in user {
        let Some(k) = kernel.get(*name) else {
            out.push(format!("{name}: not in the kernel build's BTF (name it in agent-ebpf/src/layout.rs)"));
            continue;
        };
        if k.size != u.size {
            out.push(format!("{name}: {} bytes in the kernel build, {} in userspace", k.size, u.size));
        }
        for uf in &u.fields {
            let Some(kf) = k.fields.iter().find(|f| f.name == uf.name) else {
                out.push(format!("{name}.{}: not in the kernel build", uf.name));
                continue;
            };
            if kf.offset != uf.offset {
                out.push(format!("{name}.{}: at offset {} in the kernel build, {} in userspace", uf.name, kf.offset, uf.offset));
            }
            if kf.size != uf.size {
                out.push(format!("{name}.{}: {} bytes in the kernel build, {} in userspace", uf.name, kf.size, uf.size));
            }
        }
        for kf in &k.fields {
            if !u.fields.iter().any(|f| f.name == kf.name) {
                out.push(format!("{name}.{}: in the kernel build only (list it in tests/layout.rs)", kf.name));
            }
        }
    }
    out
}

fn names() -> Vec<&'static str> {
    user_layouts().iter().map(|(name, _)| *name).collect()
}

#[test]
fn shared_records_have_the_same_layout_in_the_kernel_build() {
    let kernel = kernel_layouts(pilot::probes::probes_elf(), &names()).unwrap();
    let diffs = differences(&kernel, &user_layouts());
    assert!(diffs.is_empty(), "kernel and userspace disagree on the shared records:\n{}", diffs.join("\n"));
    // Not vacuous: every record was found and compared field by field.
    assert_eq!(kernel.len(), user_layouts().len());
    assert_eq!(kernel["EventHeader"].fields.len(), 12);
    assert_eq!(kernel["Config"].size, 40);
}

#[test]
fn a_doctored_layout_is_reported() {
    let user = user_layouts();
    let mut kernel: BTreeMap<String, Layout> = user.iter().map(|(n, l)| (n.to_string(), l.clone())).collect();
    assert!(differences(&kernel, &user).is_empty());

    let header = kernel.get_mut("EventHeader").unwrap();
    header.fields.iter_mut().find(|f| f.name == "pid").unwrap().offset += 4;
    let agg = kernel.get_mut("WriteAgg").unwrap();
    agg.size += 8;
    agg.fields.push(Field { name: "extra".into(), offset: 56, size: 8 });
    kernel.get_mut("FdKey").unwrap().fields.iter_mut().find(|f| f.name == "fd").unwrap().size = 8;
    kernel.remove("Dest");
    assert_eq!(
        differences(&kernel, &user),
        [
            "EventHeader.pid: at offset 68 in the kernel build, 64 in userspace",
            "FdKey.fd: 8 bytes in the kernel build, 4 in userspace",
            "WriteAgg: 64 bytes in the kernel build, 56 in userspace",
            "WriteAgg.extra: in the kernel build only (list it in tests/layout.rs)",
            "Dest: not in the kernel build's BTF (name it in agent-ebpf/src/layout.rs)",
        ]
    );
}

/// The whole path, object bytes to verdict: move a field in the object's BTF and the check
/// must fail on it.
#[test]
fn a_field_moved_in_the_object_is_reported() {
    let elf = pilot::probes::probes_elf();
    let (data, btf_start) = btf_section(elf).unwrap();
    let btf = Btf::parse(data, object::Endianness::Little).unwrap();
    let types = TypeTable::read(data).unwrap();
    let id = find_struct(&btf, &types, "EventHeader").unwrap().unwrap();
    let at = btf_start + types.member_offset_position(data, id, "tid").unwrap();

    let mut doctored = AlignedCopy::new(elf);
    doctored.bytes_mut()[at..at + 4].copy_from_slice(&(76u32 * 8).to_le_bytes());
    let kernel = kernel_layouts(doctored.bytes(), &names()).unwrap();
    assert_eq!(
        differences(&kernel, &user_layouts()),
        ["EventHeader.tid: at offset 76 in the kernel build, 68 in userspace"]
    );
}

/// A copy of the object aligned like the embedded one (object parses ELF headers in place).
struct AlignedCopy {
    words: Vec<u64>,
    len: usize,
}

impl AlignedCopy {
    fn new(bytes: &[u8]) -> AlignedCopy {
        let mut copy = AlignedCopy { words: vec![0; bytes.len().div_ceil(8)], len: bytes.len() };
        copy.bytes_mut().copy_from_slice(bytes);
        copy
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: u64s are plain bytes; `len` is within the allocation.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, self.len) }
    }
}

/// The BTF type table read from the raw `.BTF` bytes, indexed by type id (0 is void).
/// Hand-written because aya-obj 0.3 parses and validates these bytes (above) but keeps a
/// type's members crate-private, and the BTF crate that exposes them (btf-rs) is LGPL.
struct TypeTable<'a> {
    strings: &'a [u8],
    types: Vec<RawType<'a>>,
}

/// `struct btf_type` and the kind-specific data after it.
#[derive(Clone, Copy)]
struct RawType<'a> {
    name_off: u32,
    info: u32,
    /// `size` for INT, ENUM, STRUCT, UNION, DATASEC, FLOAT; `type` for the others.
    size_or_type: u32,
    extra: &'a [u8],
}

// BTF kinds (linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, String> {
    let b = bytes.get(at..at + 4).ok_or("BTF ends in the middle of a field")?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl RawType<'_> {
    fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }

    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }

    fn kind_flag(&self) -> bool {
        self.info >> 31 == 1
    }
}

impl<'a> TypeTable<'a> {
    fn read(data: &'a [u8]) -> Result<TypeTable<'a>, String> {
        // struct btf_header: magic u16, version u8, flags u8, hdr_len, type_off, type_len,
        // str_off, str_len (u32 each).
        if data.get(..2) != Some(&0xeb9fu16.to_le_bytes()[..]) {
            return Err("not little-endian BTF".into());
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let section = |off: usize, len: usize| -> Result<&'a [u8], String> {
            let start = hdr_len + u32_at(data, off)? as usize;
            data.get(start..start + u32_at(data, len)? as usize).ok_or_else(|| "BTF section out of bounds".to_string())
        };
        let (mut rest, strings) = (section(8, 12)?, section(16, 20)?);
        let mut types = vec![RawType { name_off: 0, info: 0, size_or_type: 0, extra: &[] }];
        while !rest.is_empty() {
            let (name_off, info, size_or_type) = (u32_at(rest, 0)?, u32_at(rest, 4)?, u32_at(rest, 8)?);
            let head = RawType { name_off, info, size_or_type, extra: &[] };
            let extra = match head.kind() {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * head.vlen(),
                KIND_ENUM | KIND_FUNC_PROTO => 8 * head.vlen(),
                _ => 0,
            };
            let extra = rest.get(12..12 + extra).ok_or("BTF type table ends in the middle of a type")?;
            types.push(RawType { extra, ..head });
            rest = &rest[12 + extra.len()..];
        }
        Ok(TypeTable { strings, types })
    }

    fn get(&self, id: u32) -> Result<&RawType<'a>, String> {
        self.types.get(id as usize).ok_or_else(|| format!("no BTF type {id}"))
    }

    fn name(&self, off: u32) -> Result<&'a str, String> {
        let bytes = self.strings.get(off as usize..).ok_or("BTF name out of bounds")?;
        let end = bytes.iter().position(|&b| b == 0).ok_or("BTF name without its NUL")?;
        std::str::from_utf8(&bytes[..end]).map_err(|e| format!("BTF name: {e}"))
    }

    /// Bytes a value of type `id` takes.
    fn size(&self, id: u32) -> Result<usize, String> {
        let mut id = id;
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind() {
                KIND_INT | KIND_ENUM | KIND_ENUM64 | KIND_STRUCT | KIND_UNION | KIND_FLOAT => {
                    return Ok(t.size_or_type as usize);
                }
                KIND_PTR => return Ok(8),
                KIND_ARRAY => return Ok(u32_at(t.extra, 8)? as usize * self.size(u32_at(t.extra, 0)?)?),
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => id = t.size_or_type,
                kind => return Err(format!("BTF type {id} (kind {kind}) has no size")),
            }
        }
        Err(format!("BTF type {id}: too many qualifiers"))
    }

    /// Struct `id`'s members: `(name, type, bit offset, bitfield size)`.
    fn members(&self, id: u32) -> Result<Vec<(&'a str, u32, u32, u32)>, String> {
        let t = self.get(id)?;
        if t.kind() != KIND_STRUCT {
            return Err(format!("BTF type {id} is not a struct"));
        }
        (0..t.vlen())
            .map(|i| {
                let (name, ty, offset) = (u32_at(t.extra, 12 * i)?, u32_at(t.extra, 12 * i + 4)?, u32_at(t.extra, 12 * i + 8)?);
                // With kind_flag, the offset word also holds the bitfield size (top 8 bits).
                let (bits, bitfield) = if t.kind_flag() { (offset & 0xff_ffff, offset >> 24) } else { (offset, 0) };
                Ok((self.name(name)?, ty, bits, bitfield))
            })
            .collect()
    }

    fn layout(&self, id: u32) -> Result<Layout, String> {
        let mut fields = Vec::new();
        for (name, ty, bits, bitfield) in self.members(id)? {
            if bitfield != 0 || bits % 8 != 0 {
                return Err(format!("{name}: a bitfield, which no shared record has"));
            }
            fields.push(Field { name: name.to_string(), offset: bits as usize / 8, size: self.size(ty)? });
        }
        Ok(Layout { size: self.get(id)?.size_or_type as usize, fields })
    }

    /// Where, in `data`, the offset word of member `member` of struct `id` is.
    fn member_offset_position(&self, data: &[u8], id: u32, member: &str) -> Result<usize, String> {
        let i = self.members(id)?.iter().position(|m| m.0 == member).ok_or_else(|| format!("no member {member}"))?;
        Ok(self.get(id)?.extra.as_ptr() as usize - data.as_ptr() as usize + 12 * i + 8)
    }
}
