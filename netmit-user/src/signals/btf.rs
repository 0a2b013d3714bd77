//! Struct member offsets from the running kernel's BTF, for `netmit_napi_poll`.
//!
//! A raw tracepoint receives `struct napi_struct *` as a bare number, and the program
//! reads `napi->napi_id` and `napi->dev->ifindex` with `bpf_probe_read_kernel` at byte
//! offsets. Those offsets change with the kernel version and configuration, and aya-ebpf
//! has no CO-RE relocations, so the offsets are looked up here, in the BTF the kernel
//! publishes at `/sys/kernel/btf/vmlinux` (CONFIG_DEBUG_INFO_BTF, readable by every
//! user), and handed to the program as a read-only global ([`NapiOffsets`]).
//!
//! Each member's type is checked as well as its place (a 4-byte integer for `napi_id`
//! and `ifindex`, a pointer for `dev`), so that a kernel that changed a type makes loading
//! fail with a message instead of the program reading the wrong bytes. Members inside
//! anonymous structs and unions are found, with their offsets added up.
//!
//! The BTF reader is a small one of netmit's own (the format is a header, a string table
//! and a flat array of typed records; see the kernel's Documentation/bpf/btf.rst). It
//! decodes every record, since their lengths vary by kind, but keeps only what the
//! lookup needs: names, struct and union members, and the links through typedefs and
//! qualifiers. The `btf-rs` crate does this and more, but is LGPL-2.1-or-later, a poor
//! fit for a statically linked MIT OR Apache-2.0 binary.

use std::path::{Path, PathBuf};

use netmit_common::NapiOffsets;

use super::SignalsError;

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What a member must be for the program to read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// An integer of exactly this many bytes.
    Int(usize),
    /// A pointer.
    Ptr,
}

/// Byte offsets of `napi_struct.napi_id`, `napi_struct.dev` and `net_device.ifindex` in
/// the running kernel.
///
/// # Errors
///
/// [`SignalsError::NoBtf`] when the kernel publishes no BTF,
/// [`SignalsError::BtfParse`] when it cannot be parsed, [`SignalsError::BtfLayout`] when
/// a struct or member is missing or has an unexpected type.
pub fn napi_offsets() -> Result<NapiOffsets, SignalsError> {
    napi_offsets_from(Path::new(VMLINUX_BTF))
}

/// [`napi_offsets`] from the BTF file at `path` (a vmlinux BTF blob, not an ELF file).
pub fn napi_offsets_from(path: &Path) -> Result<NapiOffsets, SignalsError> {
    let bytes = std::fs::read(path).map_err(|source| SignalsError::NoBtf {
        path: path.to_path_buf(),
        source,
    })?;
    napi_offsets_from_bytes(&bytes, path)
}

/// [`napi_offsets`] from a BTF blob; `path` is only used in error messages.
pub fn napi_offsets_from_bytes(bytes: &[u8], path: &Path) -> Result<NapiOffsets, SignalsError> {
    let btf = RawBtf::parse(bytes).map_err(|reason| SignalsError::BtfParse {
        path: path.to_path_buf(),
        source: reason.into(),
    })?;
    let lookup = Lookup { btf: &btf, path };
    Ok(NapiOffsets {
        napi_id: lookup.member("napi_struct", "napi_id", Expect::Int(4))?,
        napi_dev: lookup.member("napi_struct", "dev", Expect::Ptr)?,
        dev_ifindex: lookup.member("net_device", "ifindex", Expect::Int(4))?,
        _pad: 0,
    })
}

/// One decoded BTF record: only the parts the offset lookup uses.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Type {
    /// An integer of this many bytes.
    Int(usize),
    /// A pointer.
    Ptr,
    /// An enum of this many bytes.
    Enum(usize),
    /// A struct or union: size in bytes and members.
    Composite {
        union: bool,
        size: usize,
        members: Vec<Member>,
    },
    /// Typedef, const, volatile, restrict or type tag: the type it refers to.
    Alias(u32),
    /// Anything else (arrays, functions, forward declarations, ...), by kind name.
    Other(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

/// A parsed BTF blob: records by type id (id 0 is `void`) with their names.
struct RawBtf<'a> {
    types: Vec<(u32, Type)>,
    strings: &'a [u8],
}

impl<'a> RawBtf<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let u32_at = |off: usize| -> Result<u32, String> {
            bytes
                .get(off..off + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| format!("truncated at byte {off}"))
        };
        let magic = bytes.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(0xeb9f) {
            return Err("no BTF magic (0xeb9f, little endian) at the start".into());
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let section = |off: usize, len: usize, what: &str| {
            let start = hdr_len
                .checked_add(off)
                .ok_or_else(|| format!("{what} offset overflows"))?;
            bytes
                .get(start..start + len)
                .ok_or_else(|| format!("{what} section lies outside the file"))
        };
        let type_bytes = section(type_off, type_len, "type")?;
        let strings = section(str_off, str_len, "string")?;
        let mut types = vec![(0, Type::Other("void"))];
        let mut pos = 0;
        while pos < type_bytes.len() {
            let word = |i: usize| -> Result<u32, String> {
                type_bytes
                    .get(pos + 4 * i..pos + 4 * i + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(|| format!("type {} is truncated", types.len()))
            };
            let (name_off, info, size_or_type) = (word(0)?, word(1)?, word(2)?);
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let (ty, extra) = match kind {
                1 => (Type::Int(size_or_type as usize), 4),
                2 => (Type::Ptr, 0),
                3 => (Type::Other("array"), 12),
                4 | 5 => {
                    let mut members = Vec::with_capacity(vlen);
                    for m in 0..vlen {
                        let base = 3 + 3 * m;
                        let raw = word(base + 2)?;
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (raw & 0x00ff_ffff, raw >> 24)
                        } else {
                            (raw, 0)
                        };
                        members.push(Member {
                            name_off: word(base)?,
                            type_id: word(base + 1)?,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    (
                        Type::Composite {
                            union: kind == 5,
                            size: size_or_type as usize,
                            members,
                        },
                        12 * vlen,
                    )
                }
                6 => (Type::Enum(size_or_type as usize), 8 * vlen),
                7 => (Type::Other("forward declaration"), 0),
                8..=11 | 18 => (Type::Alias(size_or_type), 0),
                12 => (Type::Other("function"), 0),
                13 => (Type::Other("function prototype"), 8 * vlen),
                14 => (Type::Other("variable"), 4),
                15 => (Type::Other("data section"), 12 * vlen),
                16 => (Type::Other("float"), 0),
                17 => (Type::Other("declaration tag"), 4),
                19 => (Type::Enum(size_or_type as usize), 12 * vlen),
                other => return Err(format!("type {} has unknown kind {other}", types.len())),
            };
            types.push((name_off, ty));
            pos += 12 + extra;
        }
        Ok(Self { types, strings })
    }

    fn name(&self, off: u32) -> &str {
        let tail = self.strings.get(off as usize..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).unwrap_or_default()
    }

    fn get(&self, id: u32) -> Result<&Type, String> {
        self.types
            .get(id as usize)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("type id {id} does not exist"))
    }

    /// The struct (not union, not forward declaration) named `name`.
    fn find_struct(&self, name: &str) -> Option<&Type> {
        self.types.iter().find_map(|(n, t)| {
            matches!(t, Type::Composite { union: false, .. })
                .then_some(t)
                .filter(|_| self.name(*n) == name)
        })
    }
}

struct Lookup<'a> {
    btf: &'a RawBtf<'a>,
    path: &'a Path,
}

impl Lookup<'_> {
    fn layout(&self, strukt: &'static str, member: &'static str, reason: String) -> SignalsError {
        SignalsError::BtfLayout {
            path: self.path.to_path_buf(),
            strukt,
            member,
            reason,
        }
    }

    fn parse_err(&self, reason: String) -> SignalsError {
        SignalsError::BtfParse {
            path: PathBuf::from(self.path),
            source: reason.into(),
        }
    }

    /// Byte offset of `strukt.member`, checked against `expect` and the struct's size.
    fn member(
        &self,
        strukt: &'static str,
        member: &'static str,
        expect: Expect,
    ) -> Result<u32, SignalsError> {
        // A name can also denote forward declarations; the definition is the struct.
        let Some(def) = self.btf.find_struct(strukt) else {
            return Err(self.layout(strukt, member, "no struct of that name".into()));
        };
        let Type::Composite { size: def_size, .. } = def else {
            unreachable!("find_struct")
        };
        let def_size = *def_size;
        let Some((bits, ty)) = self.find(def, member, 0)? else {
            return Err(self.layout(strukt, member, "no such member".into()));
        };
        if bits % 8 != 0 {
            return Err(self.layout(
                strukt,
                member,
                format!("bit offset {bits} is not byte aligned"),
            ));
        }
        let offset = bits / 8;
        let size = self
            .check_type(&ty, expect)
            .map_err(|reason| self.layout(strukt, member, reason))?;
        if offset as usize + size > def_size {
            return Err(self.layout(
                strukt,
                member,
                format!(
                    "offset {offset} + {size} bytes lies outside the struct ({def_size} bytes)"
                ),
            ));
        }
        Ok(offset)
    }

    /// Finds `name` among the members of `s`, descending into anonymous struct and union
    /// members; returns its bit offset from the outermost struct and its type.
    fn find(&self, s: &Type, name: &str, base: u32) -> Result<Option<(u32, Type)>, SignalsError> {
        let Type::Composite { members, .. } = s else {
            return Ok(None);
        };
        for m in members {
            let ty = self
                .btf
                .get(m.type_id)
                .map_err(|e| self.parse_err(e))?
                .clone();
            let m_name = self.btf.name(m.name_off);
            if m_name == name {
                if m.bitfield_size != 0 {
                    // A bitfield cannot be read with a plain load.
                    return Ok(None);
                }
                return Ok(Some((base + m.bit_offset, ty)));
            }
            if m_name.is_empty()
                && matches!(ty, Type::Composite { .. })
                && let Some(found) = self.find(&ty, name, base + m.bit_offset)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Checks `ty` (after typedefs and qualifiers) against `expect`; returns its size.
    fn check_type(&self, ty: &Type, expect: Expect) -> Result<usize, String> {
        let mut ty = ty.clone();
        // Typedef chains are short; the bound only guards against a malformed loop.
        for _ in 0..32 {
            let Type::Alias(next) = ty else { break };
            ty = self
                .btf
                .get(next)
                .map_err(|e| format!("resolving its type: {e}"))?
                .clone();
        }
        match (expect, &ty) {
            (Expect::Int(n), Type::Int(size) | Type::Enum(size)) if *size == n => Ok(n),
            (Expect::Ptr, Type::Ptr) => Ok(8),
            (Expect::Int(n), other) => Err(format!(
                "expected a {n}-byte integer, found {}",
                describe(other)
            )),
            (Expect::Ptr, other) => Err(format!("expected a pointer, found {}", describe(other))),
        }
    }
}

fn describe(ty: &Type) -> String {
    match ty {
        Type::Int(size) => format!("a {size}-byte integer"),
        Type::Enum(size) => format!("a {size}-byte enum"),
        Type::Ptr => "a pointer".into(),
        Type::Composite { union: true, .. } => "a union".into(),
        Type::Composite { union: false, .. } => "a struct".into(),
        Type::Alias(_) => "a typedef".into(),
        Type::Other(kind) => format!("a {kind}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds raw BTF (the format of `/sys/kernel/btf/vmlinux`) type by type.
    struct BtfBuilder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    const KIND_INT: u32 = 1;
    const KIND_PTR: u32 = 2;
    const KIND_STRUCT: u32 = 4;
    const KIND_UNION: u32 = 5;
    const KIND_FWD: u32 = 7;
    const KIND_TYPEDEF: u32 = 8;

    impl BtfBuilder {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn header(
            &mut self,
            name: &str,
            kind: u32,
            kind_flag: bool,
            vlen: u32,
            size_or_type: u32,
        ) -> u32 {
            let name = self.string(name);
            let info = (kind << 24) | vlen | if kind_flag { 1 << 31 } else { 0 };
            for w in [name, info, size_or_type] {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        fn int(&mut self, name: &str, bytes: u32) -> u32 {
            let id = self.header(name, KIND_INT, false, 0, bytes);
            self.types.extend_from_slice(&(bytes * 8).to_le_bytes());
            id
        }

        fn ptr(&mut self, to: u32) -> u32 {
            self.header("", KIND_PTR, false, 0, to)
        }

        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.header(name, KIND_TYPEDEF, false, 0, to)
        }

        fn fwd(&mut self, name: &str) -> u32 {
            self.header(name, KIND_FWD, false, 0, 0)
        }

        /// Members are (name, type id, bit offset, bitfield size).
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let bitfields = members.iter().any(|m| m.3 != 0);
            let id = self.header(name, kind, bitfields, members.len() as u32, size);
            for &(m, ty, off, bits) in members {
                let m = self.string(m);
                let off = if bitfields { (bits << 24) | off } else { off };
                for w in [m, ty, off] {
                    self.types.extend_from_slice(&w.to_le_bytes());
                }
            }
            id
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9fu16.to_le_bytes());
            out.push(1); // version
            out.push(0); // flags
            let tl = self.types.len() as u32;
            let sl = self.strings.len() as u32;
            for w in [24u32, 0, tl, tl, sl] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A kernel whose `napi_id` sits in an anonymous union and whose `dev` is reached
    /// through a typedef'd pointer, with a forward declaration of `net_device` first.
    fn kernel_like() -> BtfBuilder {
        let mut b = BtfBuilder::new();
        let u32_t = b.int("unsigned int", 4);
        let int_t = b.int("int", 4);
        let _fwd = b.fwd("net_device");
        let dev = b.composite(
            KIND_STRUCT,
            "net_device",
            256,
            &[("name", u32_t, 0, 0), ("ifindex", int_t, 224 * 8, 0)],
        );
        let dev_ptr = b.ptr(dev);
        let dev_ptr_t = b.typedef("netdev_ptr", dev_ptr);
        let anon = b.composite(
            KIND_UNION,
            "",
            4,
            &[("napi_id", u32_t, 0, 0), ("other", int_t, 0, 0)],
        );
        b.composite(
            KIND_STRUCT,
            "napi_struct",
            400,
            &[
                ("state", u32_t, 0, 0),
                ("dev", dev_ptr_t, 48 * 8, 0),
                ("", anon, 380 * 8, 0),
            ],
        );
        b
    }

    #[test]
    fn offsets_from_synthetic_btf() {
        let off = napi_offsets_from_bytes(&kernel_like().bytes(), Path::new("test")).unwrap();
        assert_eq!((off.napi_id, off.napi_dev, off.dev_ifindex), (380, 48, 224));
    }

    #[test]
    fn wrong_or_missing_members_are_layout_errors() {
        let mut b = BtfBuilder::new();
        let u16_t = b.int("unsigned short", 2);
        let u32_t = b.int("unsigned int", 4);
        b.composite(KIND_STRUCT, "net_device", 8, &[("ifindex", u32_t, 0, 0)]);
        b.composite(
            KIND_STRUCT,
            "napi_struct",
            16,
            &[("napi_id", u16_t, 0, 0), ("dev", u32_t, 64, 0)],
        );
        let err = napi_offsets_from_bytes(&b.bytes(), Path::new("x")).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                SignalsError::BtfLayout {
                    member: "napi_id",
                    ..
                }
            ),
            "{msg}"
        );
        assert!(
            msg.contains("4-byte integer") && msg.contains("2-byte"),
            "{msg}"
        );

        // A bitfield is not found; a pointer member of the wrong type is reported.
        let mut b = BtfBuilder::new();
        let u32_t = b.int("unsigned int", 4);
        b.composite(KIND_STRUCT, "net_device", 8, &[("ifindex", u32_t, 0, 0)]);
        b.composite(
            KIND_STRUCT,
            "napi_struct",
            16,
            &[("napi_id", u32_t, 0, 12), ("dev", u32_t, 64, 0)],
        );
        let err = napi_offsets_from_bytes(&b.bytes(), Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("no such member"), "{err}");

        // No struct at all.
        let mut b = BtfBuilder::new();
        b.int("int", 4);
        let err = napi_offsets_from_bytes(&b.bytes(), Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("no struct of that name"), "{err}");
    }

    #[test]
    fn member_past_the_struct_end_is_rejected() {
        let mut b = BtfBuilder::new();
        let u32_t = b.int("unsigned int", 4);
        b.composite(
            KIND_STRUCT,
            "net_device",
            8,
            &[("ifindex", u32_t, 6 * 8, 0)],
        );
        let p = b.ptr(u32_t);
        b.composite(
            KIND_STRUCT,
            "napi_struct",
            16,
            &[("napi_id", u32_t, 0, 0), ("dev", p, 64, 0)],
        );
        let err = napi_offsets_from_bytes(&b.bytes(), Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("outside the struct"), "{err}");
    }

    #[test]
    fn garbage_and_missing_files_are_reported() {
        let err = napi_offsets_from_bytes(b"not btf", Path::new("/x")).unwrap_err();
        assert!(matches!(err, SignalsError::BtfParse { .. }), "{err}");
        let err = napi_offsets_from(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(matches!(err, SignalsError::NoBtf { .. }), "{err}");
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    /// The running kernel's BTF (when it has one, as every kernel netmit supports does):
    /// the offsets are found and plausible.
    #[test]
    fn offsets_of_the_running_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("SKIP offsets_of_the_running_kernel: no {VMLINUX_BTF}");
            return;
        }
        let off = napi_offsets().unwrap();
        assert!(off.napi_id > 0 && off.napi_id < 4096, "{off:?}");
        assert!(
            off.napi_dev.is_multiple_of(8) && off.napi_dev < 4096,
            "{off:?}"
        );
        assert!(
            off.dev_ifindex > 0 && off.dev_ifindex.is_multiple_of(4),
            "{off:?}"
        );
    }
}
