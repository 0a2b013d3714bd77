//! Header parsing for the steering program, written for the verifier: every read is
//! preceded by a bounds check against `data_end`, every variable offset is masked to a
//! small range, and every loop has a constant bound. The exact semantics are those of
//! `docs/steering.md`; `tests/src/reference.rs` implements the same page independently.
//!
//! Two parsers: [`parse_common`] takes the frames most traffic consists of (untagged IPv4
//! without options, untagged IPv6 without extension headers) with one bounds check per
//! header at constant offsets; [`parse_any`] takes everything, checking each field on its
//! own. The first one saves about a nanosecond per TCP/IPv4 packet (`docs/benchmarks.md`);
//! the differential test holds both to the reference.

use aya_ebpf::programs::XdpContext;
use netmit_common::{MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, Malformed, PORT_NONE, PacketProto};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DSTOPTS: u8 = 60;

/// Offsets are masked with this before they are added to the packet pointer, which keeps
/// them in a range the verifier accepts. XDP frames (single buffer) are far shorter, so the
/// mask never changes a real offset.
const OFF_MASK: usize = 0x3fff;

/// [`Packet::vlan`] of an untagged frame.
pub const NO_VLAN: u32 = 0x1_0000;
/// [`Packet::family`] values.
pub const FAMILY_NONE: u32 = 0;
pub const FAMILY_V4: u32 = 4;
pub const FAMILY_V6: u32 = 6;

/// What the rule tables need to know about a packet, as plain integers with sentinel
/// values rather than `Option`s and enums: fewer registers, fewer spills.
#[derive(Clone, Copy)]
pub struct Packet {
    /// [`PacketProto`] as an index.
    pub proto: u32,
    /// Destination port, or [`PORT_NONE`] when the packet has none.
    pub port_slot: u32,
    /// Outer VID, or [`NO_VLAN`].
    pub vlan: u32,
    /// `FAMILY_*`.
    pub family: u32,
    /// Where the destination address is in the frame (4 or 16 bytes by `family`; 0 for
    /// other frames): derived from a header pointer that the parser checked against
    /// `data_end`, so the lookup reads it without another check (the verifier keeps the
    /// pointer's checked range through spills).
    pub dst: usize,
}

/// `data` and `data_end` loaded afresh. Plain loads let LLVM reuse an earlier
/// `data_end - data` scalar for a later bounds check, which the verifier cannot relate to
/// the packet pointer; volatile loads keep every check a pointer comparison.
#[inline(always)]
pub fn bounds(ctx: &XdpContext) -> (usize, usize) {
    // SAFETY: the context is valid for the program's run.
    unsafe {
        (
            core::ptr::read_volatile(&(*ctx.ctx).data) as usize,
            core::ptr::read_volatile(&(*ctx.ctx).data_end) as usize,
        )
    }
}

/// Returns a pointer to `N` bytes at `off`, or `None` if they are not all in the frame.
#[inline(always)]
fn bytes<const N: usize>(ctx: &XdpContext, off: usize) -> Option<*const [u8; N]> {
    let (start, end) = bounds(ctx);
    let off = off & OFF_MASK;
    if start + off + N > end {
        return None;
    }
    Some((start + off) as *const [u8; N])
}

#[inline(always)]
fn be16(ctx: &XdpContext, off: usize) -> Option<u16> {
    // SAFETY: `bytes` checked that both bytes lie inside the frame.
    bytes::<2>(ctx, off).map(|p| u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn byte(ctx: &XdpContext, off: usize) -> Option<u8> {
    // SAFETY: `bytes` checked that the byte lies inside the frame.
    bytes::<1>(ctx, off).map(|p| unsafe { (*p)[0] })
}

/// Parses a frame. `Err` names the header that made it malformed.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Malformed> {
    match parse_common(ctx) {
        Some(result) => result,
        None => parse_any(ctx),
    }
}

/// Bytes [`parse_common`] checks at once: Ethernet and IPv6 headers, or Ethernet, IPv4
/// and TCP headers.
const FAST_CHECKED: usize = ETH_HLEN + 40;

/// Reads `N` bytes at `start + off`.
///
/// # Safety
///
/// The caller checked `start + off + N <= data_end`.
#[inline(always)]
unsafe fn at<const N: usize>(start: usize, off: usize) -> [u8; N] {
    // SAFETY: see above.
    unsafe { *((start + off) as *const [u8; N]) }
}

/// The common frames with one bounds check per header instead of one per field:
/// untagged IPv4 without options and untagged IPv6 without extension headers. `None` for
/// every other frame, which [`parse_any`] then parses from the start; for the frames both
/// accept, the results are the same (the same rules, checked in a different order where
/// that cannot change the outcome).
#[inline(always)]
fn parse_common(ctx: &XdpContext) -> Option<Result<Packet, Malformed>> {
    const V4_L4: usize = ETH_HLEN + 20;
    const V6_L4: usize = ETH_HLEN + 40;
    let (start, end) = bounds(ctx);
    if start + FAST_CHECKED > end {
        return None;
    }
    let frame_len = end - start;
    // SAFETY (every `at` below): offsets below FAST_CHECKED, checked above.
    let ethertype = u16::from_be_bytes(unsafe { at::<2>(start, 12) });
    let (family, dst_off, transport) = match ethertype {
        ETH_P_IP => {
            let hdr: [u8; 20] = unsafe { at(start, ETH_HLEN) };
            // Version 4, IHL 5 (no options).
            if hdr[0] != 0x45 {
                return None;
            }
            let tot_len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
            if tot_len < 20 || ETH_HLEN + tot_len > frame_len {
                return Some(Err(Malformed::Ipv4));
            }
            let later_fragment = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff != 0;
            let l3_end = ETH_HLEN + tot_len;
            let transport = transport::<V4_L4>(ctx, start, hdr[9], later_fragment, l3_end)?;
            (FAMILY_V4, ETH_HLEN + 16, transport)
        }
        ETH_P_IPV6 => {
            let hdr: [u8; 8] = unsafe { at(start, ETH_HLEN) };
            if hdr[0] >> 4 != 6
                || matches!(
                    hdr[6],
                    IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_FRAGMENT
                )
            {
                return None;
            }
            let l3_end = V6_L4 + u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
            if l3_end > frame_len {
                return Some(Err(Malformed::Ipv6));
            }
            (
                FAMILY_V6,
                ETH_HLEN + 24,
                transport::<V6_L4>(ctx, start, hdr[6], false, l3_end)?,
            )
        }
        _ => return None,
    };
    Some(transport.map(|(proto, port_slot)| Packet {
        proto,
        port_slot,
        vlan: NO_VLAN,
        family,
        dst: start + dst_off,
    }))
}

/// The transport part of [`parse_common`] for a header at the constant offset `L4`
/// (`start` is the frame start it checked [`FAST_CHECKED`] bytes from):
/// `(PacketProto, port slot)` as [`finish`] computes them. `None` only if the pointer check
/// the verifier needs fails, which it cannot once the header lies before `l3_end` (then
/// [`parse_any`] decides).
#[inline(always)]
fn transport<const L4: usize>(
    ctx: &XdpContext,
    start: usize,
    proto_num: u8,
    later_fragment: bool,
    l3_end: usize,
) -> Option<Result<(u32, u32), Malformed>> {
    let proto = match proto_num {
        IPPROTO_UDP => PacketProto::Udp,
        IPPROTO_TCP => PacketProto::Tcp,
        _ => return Some(Ok((PacketProto::Other as u32, PORT_NONE as u32))),
    };
    if later_fragment {
        return Some(Ok((proto as u32, PORT_NONE as u32)));
    }
    let need = if proto == PacketProto::Udp { 8 } else { 20 };
    if L4 + need > l3_end {
        return Some(Err(Malformed::L4));
    }
    let start = if L4 + 20 <= FAST_CHECKED {
        // IPv4: the whole UDP or TCP header lies inside the bytes `parse_common` checked.
        start
    } else {
        // IPv6: a fresh pointer check. LLVM drops one on the first `start` and `end` as
        // implied by `l3_end <= frame_len`, which the verifier cannot follow (see `bounds`).
        let (start, end) = bounds(ctx);
        if start + L4 + need > end {
            return None;
        }
        start
    };
    if proto == PacketProto::Tcp {
        // SAFETY: inside the 20 bytes checked above.
        let doff = ((unsafe { at::<1>(start, L4 + 12) }[0] >> 4) as usize) * 4;
        if doff < 20 || L4 + doff > l3_end {
            return Some(Err(Malformed::L4));
        }
    }
    // SAFETY: inside the 8 or 20 bytes checked above.
    let port = u16::from_be_bytes(unsafe { at::<2>(start, L4 + 2) });
    Some(Ok((proto as u32, port as u32)))
}

/// The general parser: every header, each read checked on its own.
#[inline(always)]
fn parse_any(ctx: &XdpContext) -> Result<Packet, Malformed> {
    let (start, end) = bounds(ctx);
    let frame_len = end - start;
    let mut ethertype = be16(ctx, 12).ok_or(Malformed::Ethernet)?;
    let mut l3 = ETH_HLEN;
    let mut vlan = NO_VLAN;
    let mut tags = 0;
    while tags < MAX_VLAN_TAGS && (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD) {
        let tag = bytes::<4>(ctx, l3).ok_or(Malformed::Vlan)?;
        // SAFETY: bounds checked by `bytes`.
        let tag = unsafe { *tag };
        if tags == 0 {
            vlan = (u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff) as u32;
        }
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l3 += 4;
        tags += 1;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Err(Malformed::Vlan);
    }
    match ethertype {
        ETH_P_IP => parse_ipv4(ctx, l3, frame_len, vlan),
        ETH_P_IPV6 => parse_ipv6(ctx, l3, frame_len, vlan),
        _ => Ok(Packet {
            proto: PacketProto::Other as u32,
            port_slot: PORT_NONE as u32,
            vlan,
            family: FAMILY_NONE,
            dst: 0,
        }),
    }
}

#[inline(always)]
fn parse_ipv4(
    ctx: &XdpContext,
    l3: usize,
    frame_len: usize,
    vlan: u32,
) -> Result<Packet, Malformed> {
    let hdr = bytes::<20>(ctx, l3).ok_or(Malformed::Ipv4)?;
    // SAFETY: bounds checked by `bytes`.
    let hdr = unsafe { &*hdr };
    if hdr[0] >> 4 != 4 {
        return Err(Malformed::Ipv4);
    }
    let ihl = ((hdr[0] & 0x0f) as usize) * 4;
    let tot_len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    if ihl < 20 || tot_len < ihl || l3 + tot_len > frame_len {
        return Err(Malformed::Ipv4);
    }
    let dst = (FAMILY_V4, hdr.as_ptr() as usize + 16);
    let proto_num = hdr[9];
    let frag_off = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff;
    let l3_end = l3 + tot_len;
    let l4 = l3 + ihl;
    finish(ctx, proto_num, frag_off != 0, l4, l3_end, vlan, dst)
}

#[inline(always)]
fn parse_ipv6(
    ctx: &XdpContext,
    l3: usize,
    frame_len: usize,
    vlan: u32,
) -> Result<Packet, Malformed> {
    let hdr = bytes::<40>(ctx, l3).ok_or(Malformed::Ipv6)?;
    // SAFETY: bounds checked by `bytes`.
    let hdr = unsafe { &*hdr };
    if hdr[0] >> 4 != 6 {
        return Err(Malformed::Ipv6);
    }
    let payload_len = u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
    let l3_end = l3 + 40 + payload_len;
    if l3_end > frame_len {
        return Err(Malformed::Ipv6);
    }
    let dst = (FAMILY_V6, hdr.as_ptr() as usize + 24);
    let mut next = hdr[6];
    let mut off = l3 + 40;
    let mut later_fragment = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                if off + 2 > l3_end {
                    return Err(Malformed::Ipv6Ext);
                }
                let ext = bytes::<2>(ctx, off).ok_or(Malformed::Ipv6Ext)?;
                // SAFETY: bounds checked by `bytes`.
                let ext = unsafe { *ext };
                next = ext[0];
                off += (ext[1] as usize + 1) * 8;
                if off > l3_end {
                    return Err(Malformed::Ipv6Ext);
                }
            }
            IPV6_FRAGMENT => {
                if off + 8 > l3_end {
                    return Err(Malformed::Ipv6Ext);
                }
                let ext = bytes::<4>(ctx, off).ok_or(Malformed::Ipv6Ext)?;
                // SAFETY: bounds checked by `bytes`.
                let ext = unsafe { *ext };
                next = ext[0];
                off += 8;
                if u16::from_be_bytes([ext[2], ext[3]]) >> 3 != 0 {
                    later_fragment = true;
                    break;
                }
            }
            _ => break,
        }
    }
    if !later_fragment
        && matches!(
            next,
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_FRAGMENT
        )
    {
        return Err(Malformed::Ipv6Ext);
    }
    finish(ctx, next, later_fragment, off, l3_end, vlan, dst)
}

/// Reads the transport header (if the packet has one) and assembles the result.
#[inline(always)]
fn finish(
    ctx: &XdpContext,
    proto_num: u8,
    later_fragment: bool,
    l4: usize,
    l3_end: usize,
    vlan: u32,
    dst: (u32, usize),
) -> Result<Packet, Malformed> {
    let proto = match proto_num {
        IPPROTO_UDP => PacketProto::Udp,
        IPPROTO_TCP => PacketProto::Tcp,
        _ => PacketProto::Other,
    };
    let port_slot = match proto {
        PacketProto::Other => PORT_NONE as u32,
        _ if later_fragment => PORT_NONE as u32,
        PacketProto::Udp => {
            if l4 + 8 > l3_end {
                return Err(Malformed::L4);
            }
            be16(ctx, l4 + 2).ok_or(Malformed::L4)? as u32
        }
        PacketProto::Tcp => {
            if l4 + 20 > l3_end {
                return Err(Malformed::L4);
            }
            let doff = ((byte(ctx, l4 + 12).ok_or(Malformed::L4)? >> 4) as usize) * 4;
            if doff < 20 || l4 + doff > l3_end {
                return Err(Malformed::L4);
            }
            be16(ctx, l4 + 2).ok_or(Malformed::L4)? as u32
        }
    };
    Ok(Packet {
        proto: proto as u32,
        port_slot,
        vlan,
        family: dst.0,
        dst: dst.1,
    })
}
