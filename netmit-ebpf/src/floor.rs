//! `netmit_floor`: the least a program that parses and decides can do, the second floor of
//! `cargo xtask bench xdp` (the first is `netmit_pass`, which does nothing).
//!
//! It reads what any classifier must read, as a hand-written filter would: the Ethernet
//! header, at most one 802.1Q tag, the IPv4 header (with options) or the IPv6 fixed
//! header, and the UDP or TCP destination port; then it makes one map lookup (an array
//! indexed by that port, which the verifier inlines: the cheapest lookup there is) and
//! returns what the entry says, `XDP_PASS` unless it asks for a drop. No counters, no
//! validation beyond the bounds the verifier demands, no rule ranking: whatever netmit's
//! program costs above this is the price of its rules and its bookkeeping.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};

use crate::parse;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Value of a [`NETMIT_FLOOR`] entry that drops the port's packets.
const FLOOR_DROP: u32 = 1;

/// Verdict by destination port. One entry in the object, so that loading the object for
/// anything else costs nothing; the benchmark sets 65 536 entries at load time (a port
/// past the map's end reads as a miss).
#[map]
static NETMIT_FLOOR: Array<u32> = Array::with_max_entries(1, 0);

/// `N` bytes at `off` if they lie in the frame (fresh `data`/`data_end`, see
/// [`parse::bounds`]). `off` is masked to 7 bits: every offset here is below 128.
#[inline(always)]
fn at<const N: usize>(ctx: &XdpContext, off: usize) -> Option<[u8; N]> {
    let (start, end) = parse::bounds(ctx);
    let p = start + (off & 0x7f);
    if p + N > end {
        return None;
    }
    // SAFETY: [p, p + N) was checked against `data_end` above.
    Some(unsafe { *(p as *const [u8; N]) })
}

#[xdp]
pub fn netmit_floor(ctx: XdpContext) -> u32 {
    decide(&ctx).unwrap_or(xdp_action::XDP_PASS)
}

#[inline(always)]
fn decide(ctx: &XdpContext) -> Option<u32> {
    let eth: [u8; 14] = at(ctx, 0)?;
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut l3 = 14;
    if ethertype == ETH_P_8021Q {
        let tag: [u8; 4] = at(ctx, 14)?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l3 = 18;
    }
    let (proto, l4) = match ethertype {
        ETH_P_IP => {
            let ip: [u8; 20] = at(ctx, l3)?;
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 {
                return None;
            }
            (ip[9], l3 + ihl)
        }
        ETH_P_IPV6 => {
            let ip: [u8; 8] = at(ctx, l3)?;
            (ip[6], l3 + 40)
        }
        _ => return None,
    };
    if proto != IPPROTO_UDP && proto != IPPROTO_TCP {
        return None;
    }
    let ports: [u8; 4] = at(ctx, l4)?;
    let port = u16::from_be_bytes([ports[2], ports[3]]);
    match NETMIT_FLOOR.get(port as u32) {
        Some(&FLOOR_DROP) => Some(xdp_action::XDP_DROP),
        _ => Some(xdp_action::XDP_PASS),
    }
}
