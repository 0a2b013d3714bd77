//! Reading frames from pcap and pcapng files (`netmit classify`).
//!
//! A capture is user input, possibly hostile and often cut short (a `tcpdump` killed
//! mid-write, a file copied while it grew), so the reader is written here rather than
//! taken from a crate: it never panics on any input, never allocates more than the file
//! holds, and like tcpdump it returns every complete record of a truncated capture along
//! with where it was cut ([`Truncation`]), instead of rejecting the whole file (what
//! `pcap-file` 2 did: "Error reading bytes"). A record whose header is inconsistent
//! (a length beyond the file format's limits) is malformed, not truncated: an error
//! naming the record and its offset.
//!
//! Formats: pcap (microsecond and nanosecond magic, either byte order) and pcapng
//! (section, interface description, enhanced and simple packet blocks; several sections;
//! other blocks are skipped). Only Ethernet captures (link type 1) are accepted, since
//! that is what XDP sees.

use std::{fs, path::Path};

/// Link type of Ethernet (`LINKTYPE_ETHERNET`).
const ETHERNET: u32 = 1;
/// The largest record netmit takes (libpcap's `MAXIMUM_SNAPLEN`).
pub const MAX_RECORD: usize = 262_144;

/// Errors reading a capture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file cannot be opened or read.
    #[error("cannot read the capture {path} (check the path and its permissions)")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not a capture at all, or one whose structure is broken (not merely cut short).
    #[error(
        "{path} is not a valid pcap or pcapng file: {reason}; give a capture written by \
         `tcpdump -w FILE` or Wireshark"
    )]
    Format {
        /// The file.
        path: String,
        /// What is wrong, with the record and byte offset where it is.
        reason: String,
    },
    /// Not Ethernet.
    #[error(
        "{path} has link type {link} ({name}); only Ethernet captures (link type 1) can be run \
         through XDP: capture on the interface itself (`tcpdump -i eth1`), not on `any`"
    )]
    LinkType {
        /// The file.
        path: String,
        /// The link type found.
        link: u32,
        /// Its name, if known.
        name: &'static str,
    },
    /// Cut short, and the caller asked for strictness.
    #[error("{path} is truncated: {truncation} (without --strict its complete records are used)")]
    Truncated {
        /// The file.
        path: String,
        /// Where.
        truncation: Truncation,
    },
}

/// Where a capture was cut short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The 1-based number of the incomplete record (frames before it are complete).
    pub record: usize,
    /// Byte offset where the incomplete record starts.
    pub offset: usize,
    /// What is missing.
    pub missing: String,
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {} at byte offset {} is incomplete ({})",
            self.record, self.offset, self.missing
        )
    }
}

/// The frames of a capture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    /// Every complete frame, in file order.
    pub frames: Vec<Vec<u8>>,
    /// Where the file was cut short, if it was.
    pub truncated: Option<Truncation>,
}

/// Reads a capture file; with `strict`, a truncated capture is an error.
///
/// # Errors
///
/// [`CaptureError`] naming the file and what is wrong.
pub fn read(path: &Path, strict: bool) -> Result<Capture, CaptureError> {
    let shown = path.display().to_string();
    let bytes = fs::read(path).map_err(|source| CaptureError::Io {
        path: shown.clone(),
        source,
    })?;
    let capture = parse(&bytes).map_err(|e| e.at(&shown))?;
    if strict && let Some(truncation) = capture.truncated {
        return Err(CaptureError::Truncated {
            path: shown,
            truncation,
        });
    }
    Ok(capture)
}

/// Why bytes are not a capture, before the file name is known.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Structure.
    Format(String),
    /// Link type.
    LinkType(u32),
}

impl ParseError {
    fn at(self, path: &str) -> CaptureError {
        match self {
            ParseError::Format(reason) => CaptureError::Format {
                path: path.into(),
                reason,
            },
            ParseError::LinkType(link) => CaptureError::LinkType {
                path: path.into(),
                link,
                name: link_name(link),
            },
        }
    }
}

fn link_name(link: u32) -> &'static str {
    match link {
        0 => "BSD loopback",
        101 => "raw IP",
        105 => "IEEE 802.11",
        113 => "Linux cooked capture, as `tcpdump -i any` writes",
        127 => "802.11 radiotap",
        228 => "raw IPv4",
        229 => "raw IPv6",
        276 => "Linux cooked capture v2",
        _ => "not Ethernet",
    }
}

/// Parses the bytes of a pcap or pcapng file (pure: the fuzz target).
///
/// # Errors
///
/// [`ParseError`] for anything but a well-formed (possibly truncated) Ethernet capture.
pub fn parse(bytes: &[u8]) -> Result<Capture, ParseError> {
    match bytes.get(..4) {
        None if bytes.is_empty() => Err(ParseError::Format(
            "the file is empty (a capture starts with a pcap or pcapng header)".into(),
        )),
        None => Err(ParseError::Format(format!(
            "{} bytes is too short for any capture header",
            bytes.len()
        ))),
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => pcapng(bytes),
        Some(_) => pcap(bytes),
    }
}

/// A u32 in the capture's byte order.
fn u32_at(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let w: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    })
}

fn pcap(b: &[u8]) -> Result<Capture, ParseError> {
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let big = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => false,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
        _ => {
            return Err(ParseError::Format(format!(
                "unknown magic number {magic:#010x} (pcap starts with a1b2c3d4 or a1b23c4d, \
                 pcapng with 0a0d0d0a)"
            )));
        }
    };
    if b.len() < 24 {
        return Err(ParseError::Format(format!(
            "the pcap file header is 24 bytes, the file has {}",
            b.len()
        )));
    }
    let link = u32_at(b, 20, big).expect("checked length") & 0x0fff_ffff;
    if link != ETHERNET {
        return Err(ParseError::LinkType(link));
    }
    let mut out = Capture::default();
    let mut at = 24;
    while at < b.len() {
        let record = out.frames.len() + 1;
        let cut = |missing: String| Truncation {
            record,
            offset: at,
            missing,
        };
        if b.len() - at < 16 {
            out.truncated = Some(cut(format!(
                "its 16-byte header has only {} bytes",
                b.len() - at
            )));
            break;
        }
        let incl = u32_at(b, at + 8, big).expect("checked length") as usize;
        if incl > MAX_RECORD {
            return Err(ParseError::Format(format!(
                "record {record} at byte offset {at} claims {incl} bytes, more than the \
                 largest pcap record ({MAX_RECORD})"
            )));
        }
        let data = at + 16;
        if b.len() - data < incl {
            out.truncated = Some(cut(format!(
                "{} of its {incl} bytes are in the file",
                b.len() - data
            )));
            break;
        }
        out.frames.push(b[data..data + incl].to_vec());
        at = data + incl;
    }
    Ok(out)
}

/// pcapng block types.
const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const SPB: u32 = 3;
const EPB: u32 = 6;

fn pcapng(b: &[u8]) -> Result<Capture, ParseError> {
    let mut out = Capture::default();
    // Per section: byte order and the link type and snap length of each interface.
    let mut big = false;
    let mut interfaces: Vec<(u32, u32)> = Vec::new();
    let mut at = 0;
    let mut block_no = 0;
    while at < b.len() {
        block_no += 1;
        let record = out.frames.len() + 1;
        let cut = |missing: String| Truncation {
            record,
            offset: at,
            missing,
        };
        if b.len() - at < 12 {
            out.truncated = Some(cut(format!(
                "block {block_no} has {} of the 12 bytes a block needs at least",
                b.len() - at
            )));
            break;
        }
        let kind = u32_at(b, at, big).expect("checked length");
        if kind == SHB || at == 0 {
            if kind != SHB {
                return Err(ParseError::Format("no section header block first".into()));
            }
            big = match u32_at(b, at + 8, false).expect("checked length") {
                0x1a2b_3c4d => false,
                0x4d3c_2b1a => true,
                m => {
                    return Err(ParseError::Format(format!(
                        "section header at byte offset {at}: unknown byte-order magic {m:#010x}"
                    )));
                }
            };
            interfaces.clear();
        }
        let len = u32_at(b, at + 4, big).expect("checked length") as usize;
        if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD + 64 && kind != SHB && kind != IDB
        {
            return Err(ParseError::Format(format!(
                "block {block_no} at byte offset {at} has length {len} (a block is at least 12 \
                 bytes, a multiple of 4, and holds at most one record of {MAX_RECORD} bytes)"
            )));
        }
        if b.len() - at < len {
            out.truncated = Some(cut(format!(
                "block {block_no} needs {len} bytes, {} are in the file",
                b.len() - at
            )));
            break;
        }
        let body = &b[at + 8..at + len - 4];
        if u32_at(b, at + len - 4, big) != Some(len as u32) {
            return Err(ParseError::Format(format!(
                "block {block_no} at byte offset {at}: the trailing length does not match \
                 the leading one ({len})"
            )));
        }
        let bad = |what: &str| {
            ParseError::Format(format!("block {block_no} at byte offset {at}: {what}"))
        };
        match kind {
            IDB => {
                let link = body
                    .get(..2)
                    .map(|w| {
                        let w = [w[0], w[1]];
                        u32::from(if big {
                            u16::from_be_bytes(w)
                        } else {
                            u16::from_le_bytes(w)
                        })
                    })
                    .ok_or_else(|| bad("short interface block"))?;
                let snaplen = u32_at(body, 4, big).ok_or_else(|| bad("short interface block"))?;
                interfaces.push((link, snaplen));
            }
            EPB => {
                let iface = u32_at(body, 0, big).ok_or_else(|| bad("short packet block"))?;
                let caplen =
                    u32_at(body, 12, big).ok_or_else(|| bad("short packet block"))? as usize;
                let data = body.get(20..20 + caplen).ok_or_else(|| {
                    bad(&format!(
                        "the packet claims {caplen} bytes, the block holds fewer"
                    ))
                })?;
                let (link, _) = interfaces.get(iface as usize).copied().ok_or_else(|| {
                    bad(&format!(
                        "packet of interface {iface}, which is not described"
                    ))
                })?;
                if link != ETHERNET {
                    return Err(ParseError::LinkType(link));
                }
                out.frames.push(data.to_vec());
            }
            SPB => {
                let (link, snaplen) = interfaces
                    .first()
                    .copied()
                    .ok_or_else(|| bad("simple packet block before any interface"))?;
                if link != ETHERNET {
                    return Err(ParseError::LinkType(link));
                }
                let orig = u32_at(body, 0, big).ok_or_else(|| bad("short simple packet block"))?;
                let room = body.len() - 4;
                let caplen = (orig as usize).min(room).min(if snaplen == 0 {
                    usize::MAX
                } else {
                    snaplen as usize
                });
                out.frames.push(body[4..4 + caplen].to_vec());
            }
            _ => {}
        }
        at += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_file(big: bool, link: u32, frames: &[&[u8]]) -> Vec<u8> {
        let w = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = Vec::new();
        f.extend(w(0xa1b2_c3d4));
        f.extend(if big {
            2u16.to_be_bytes()
        } else {
            2u16.to_le_bytes()
        });
        f.extend(if big {
            4u16.to_be_bytes()
        } else {
            4u16.to_le_bytes()
        });
        f.extend([0; 8]);
        f.extend(w(65535));
        f.extend(w(link));
        for fr in frames {
            f.extend(w(1));
            f.extend(w(2));
            f.extend(w(fr.len() as u32));
            f.extend(w(fr.len() as u32));
            f.extend(*fr);
        }
        f
    }

    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = 12 + body.len().div_ceil(4) * 4;
        let mut b = Vec::new();
        b.extend(kind.to_le_bytes());
        b.extend((len as u32).to_le_bytes());
        b.extend(body);
        b.resize(len - 4, 0);
        b.extend((len as u32).to_le_bytes());
        b
    }

    fn pcapng_file(frames: &[&[u8]]) -> Vec<u8> {
        let mut shb = Vec::new();
        shb.extend(0x1a2b_3c4du32.to_le_bytes());
        shb.extend(1u16.to_le_bytes());
        shb.extend(0u16.to_le_bytes());
        shb.extend((-1i64).to_le_bytes());
        let mut f = block(SHB, &shb);
        let mut idb = Vec::new();
        idb.extend(1u16.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(0u32.to_le_bytes());
        f.extend(block(IDB, &idb));
        for fr in frames {
            let mut epb = Vec::new();
            epb.extend(0u32.to_le_bytes());
            epb.extend([0; 8]);
            epb.extend((fr.len() as u32).to_le_bytes());
            epb.extend((fr.len() as u32).to_le_bytes());
            epb.extend(*fr);
            f.extend(block(EPB, &epb));
        }
        f
    }

    #[test]
    fn pcap_both_byte_orders() {
        for big in [false, true] {
            let f = pcap_file(big, 1, &[&[1, 2, 3], &[4; 60]]);
            let c = parse(&f).unwrap();
            assert_eq!(c.frames, vec![vec![1, 2, 3], vec![4; 60]]);
            assert_eq!(c.truncated, None);
        }
    }

    #[test]
    fn truncated_pcap_keeps_the_complete_records() {
        let f = pcap_file(false, 1, &[&[1; 64], &[2; 64], &[3; 64]]);
        for cut in [f.len() - 1, f.len() - 64, f.len() - 70, f.len() - 79] {
            let c = parse(&f[..cut]).unwrap();
            assert_eq!(c.frames, vec![vec![1; 64], vec![2; 64]], "cut at {cut}");
            let t = c.truncated.expect("truncated");
            assert_eq!((t.record, t.offset), (3, 24 + 2 * 80));
        }
        // Cut exactly between records: nothing is missing.
        let two = parse(&f[..f.len() - 80]).unwrap();
        assert_eq!((two.frames.len(), two.truncated), (2, None));
        assert_eq!(parse(&f[..24]).unwrap(), Capture::default());
    }

    #[test]
    fn pcapng_and_its_truncation() {
        let f = pcapng_file(&[&[9; 61], &[8; 14]]);
        let c = parse(&f).unwrap();
        assert_eq!(c.frames, vec![vec![9; 61], vec![8; 14]]);
        let c = parse(&f[..f.len() - 3]).unwrap();
        assert_eq!(c.frames, vec![vec![9; 61]]);
        assert_eq!(c.truncated.unwrap().record, 2);
    }

    #[test]
    fn bad_input_is_an_error_that_says_why() {
        let say = |b: &[u8]| match parse(b) {
            Err(ParseError::Format(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(say(&[]).contains("empty"));
        assert!(say(&[1, 2]).contains("too short"));
        assert!(say(b"GIF89a........................").contains("unknown magic"));
        assert!(say(&pcap_file(false, 1, &[])[..20]).contains("24 bytes"));
        let mut huge = pcap_file(false, 1, &[&[0; 4]]);
        huge[24 + 8..24 + 12].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(say(&huge).contains("claims 1073741824 bytes"));
        assert_eq!(
            parse(&pcap_file(false, 113, &[])),
            Err(ParseError::LinkType(113))
        );
        let mut ng = pcapng_file(&[&[1; 4]]);
        let n = ng.len();
        ng[n - 4] ^= 1;
        assert!(say(&ng).contains("trailing length"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic sweep of mutations of valid files (the fuzzer does more).
        let seeds = [
            pcap_file(false, 1, &[&[1; 64], &[2; 3]]),
            pcap_file(true, 1, &[&[7; 20]]),
            pcapng_file(&[&[5; 33], &[6; 1]]),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for seed in &seeds {
            for _ in 0..3000 {
                let mut f = seed.clone();
                for _ in 0..1 + (x % 4) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x as usize) % f.len();
                    f[i] = (x >> 32) as u8;
                }
                let cut = (x as usize >> 8) % (f.len() + 1);
                let _ = parse(&f[..cut]);
            }
        }
    }
}
