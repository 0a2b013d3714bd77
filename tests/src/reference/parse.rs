//! The reference parser: a frame to the fields rules look at, or why it is malformed,
//! with bounds-checked slicing only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Transport protocol of a parsed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketProto {
    /// IP protocol 17.
    Udp,
    /// IP protocol 6.
    Tcp,
    /// Anything else, including non-IP frames.
    Other,
}

/// The fields of a well-formed frame that rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParsedPacket {
    /// Transport protocol (a non-first UDP fragment is still UDP).
    pub proto: PacketProto,
    /// Destination port, when the packet has ports.
    pub dport: Option<u16>,
    /// Destination address, for IPv4/IPv6.
    pub dst: Option<IpAddr>,
    /// VID of the outer VLAN tag, if tagged.
    pub vlan: Option<u16>,
}

/// Why a frame is malformed (for diagnostics only; all reasons are the same verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Malformed(pub &'static str);

fn be16(frame: &[u8], off: usize) -> Option<u16> {
    let b = frame.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn is_vlan_tpid(ethertype: u16) -> bool {
    ethertype == 0x8100 || ethertype == 0x88a8
}

fn is_ipv6_ext(next_header: u8) -> bool {
    matches!(next_header, 0 | 43 | 44 | 60)
}

/// Parse a frame per `docs/steering.md` ("Parsing"), steps 1–6.
pub fn parse(frame: &[u8]) -> Result<ParsedPacket, Malformed> {
    // 1. Ethernet.
    if frame.len() < 14 {
        return Err(Malformed("frame shorter than the 14-byte Ethernet header"));
    }
    let mut ethertype = be16(frame, 12).ok_or(Malformed("ethertype"))?;
    let mut off = 14usize;

    // 2. VLAN: at most two tags.
    let mut vlan = None;
    let mut tags = 0;
    while is_vlan_tpid(ethertype) && tags < 2 {
        let tci = be16(frame, off).ok_or(Malformed("truncated VLAN tag"))?;
        let inner = be16(frame, off + 2).ok_or(Malformed("truncated VLAN tag"))?;
        if tags == 0 {
            vlan = Some(tci & 0x0fff);
        }
        ethertype = inner;
        off += 4;
        tags += 1;
    }
    if is_vlan_tpid(ethertype) {
        return Err(Malformed("more than two VLAN tags"));
    }

    // 3. EtherType.
    match ethertype {
        0x0800 => parse_ipv4(frame, off, vlan),
        0x86dd => parse_ipv6(frame, off, vlan),
        _ => Ok(ParsedPacket {
            proto: PacketProto::Other,
            dport: None,
            dst: None,
            vlan,
        }),
    }
}

/// Step 4: IPv4 at offset `l3`.
fn parse_ipv4(frame: &[u8], l3: usize, vlan: Option<u16>) -> Result<ParsedPacket, Malformed> {
    let hdr = frame
        .get(l3..l3 + 20)
        .ok_or(Malformed("IPv4 header shorter than 20 bytes"))?;
    if hdr[0] >> 4 != 4 {
        return Err(Malformed("IPv4 version is not 4"));
    }
    let ihl = usize::from(hdr[0] & 0x0f);
    if ihl < 5 {
        return Err(Malformed("IPv4 IHL < 5"));
    }
    let header_len = ihl * 4;
    if frame.get(l3..l3 + header_len).is_none() {
        return Err(Malformed("IPv4 header (IHL*4) beyond the frame"));
    }
    let total_len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if total_len < header_len {
        return Err(Malformed("IPv4 total length < IHL*4"));
    }
    if l3 + total_len > frame.len() {
        return Err(Malformed("IPv4 total length beyond the frame"));
    }
    let protocol = hdr[9];
    let dst = IpAddr::V4(Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19]));
    let frag_offset = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff;
    let has_ports = frag_offset == 0;
    transport(
        frame,
        protocol,
        has_ports,
        l3 + header_len,
        l3 + total_len,
        Some(dst),
        vlan,
    )
}

/// Step 5: IPv6 at offset `l3`.
fn parse_ipv6(frame: &[u8], l3: usize, vlan: Option<u16>) -> Result<ParsedPacket, Malformed> {
    let hdr = frame
        .get(l3..l3 + 40)
        .ok_or(Malformed("IPv6 header shorter than 40 bytes"))?;
    if hdr[0] >> 4 != 6 {
        return Err(Malformed("IPv6 version is not 6"));
    }
    let payload_len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    let end = l3 + 40 + payload_len;
    if end > frame.len() {
        return Err(Malformed("IPv6 payload length beyond the frame"));
    }
    let mut dst_bytes = [0u8; 16];
    dst_bytes.copy_from_slice(&hdr[24..40]);
    let dst = IpAddr::V6(Ipv6Addr::from(dst_bytes));

    let mut next_header = hdr[6];
    let mut off = l3 + 40;
    let mut has_ports = true;
    let mut count = 0;
    while is_ipv6_ext(next_header) {
        if count == 6 {
            return Err(Malformed("still an extension header after 6"));
        }
        count += 1;
        if next_header == 44 {
            if off + 8 > end {
                return Err(Malformed("fragment header beyond the payload end"));
            }
            let frag_offset = be16(frame, off + 2).ok_or(Malformed("fragment header"))? >> 3;
            next_header = frame[off];
            off += 8;
            if frag_offset != 0 {
                has_ports = false;
                break;
            }
        } else {
            if off + 2 > end {
                return Err(Malformed("extension header beyond the payload end"));
            }
            let len = (usize::from(frame[off + 1]) + 1) * 8;
            if off + len > end {
                return Err(Malformed("extension header length beyond the payload end"));
            }
            next_header = frame[off];
            off += len;
        }
    }
    transport(frame, next_header, has_ports, off, end, Some(dst), vlan)
}

/// Step 6: transport header from `l4` to the L3 end `l3_end`.
fn transport(
    frame: &[u8],
    protocol: u8,
    has_ports: bool,
    l4: usize,
    l3_end: usize,
    dst: Option<IpAddr>,
    vlan: Option<u16>,
) -> Result<ParsedPacket, Malformed> {
    let proto = match protocol {
        17 => PacketProto::Udp,
        6 => PacketProto::Tcp,
        _ => PacketProto::Other,
    };
    let mut dport = None;
    if has_ports && proto == PacketProto::Udp {
        if l4 + 8 > l3_end {
            return Err(Malformed("UDP header shorter than 8 bytes"));
        }
        dport = Some(be16(frame, l4 + 2).ok_or(Malformed("UDP header"))?);
    }
    if has_ports && proto == PacketProto::Tcp {
        if l4 + 20 > l3_end {
            return Err(Malformed("TCP header shorter than 20 bytes"));
        }
        let data_offset = usize::from(*frame.get(l4 + 12).ok_or(Malformed("TCP header"))? >> 4);
        if data_offset < 5 {
            return Err(Malformed("TCP data offset < 5"));
        }
        if l4 + data_offset * 4 > l3_end {
            return Err(Malformed("TCP header (data offset) beyond the L3 end"));
        }
        dport = Some(be16(frame, l4 + 2).ok_or(Malformed("TCP header"))?);
    }
    Ok(ParsedPacket {
        proto,
        dport,
        dst,
        vlan,
    })
}
