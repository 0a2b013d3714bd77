//! `netmit_load`: the load client's receive side (`netmit load`, `netmit_lab::load`),
//! attached natively to the client's interface.
//!
//! For each reply to our requests (see [`LoadParams`]: UDP from the server's port to one
//! of our flows' ports, payload starting with [`STAMP_MAGIC`]) it records
//! `now - send time` in a per-CPU log-linear histogram ([`latency_bucket`]) and per-CPU
//! counters. Open loop: the reply is dropped. Closed loop: the reply becomes the flow's
//! next request in place (MACs, addresses and ports swapped, a fresh send time, the UDP
//! checksum computed over the frame) and goes back out of the interface it came in on,
//! unless user space has set the control map to drain. Everything else is passed to the
//! kernel untouched.
//!
//! The request goes back out with `bpf_redirect` to the receiving interface
//! (`XDP_REDIRECT`), not with `XDP_TX`. Both transmit on the same device, but on a veth
//! an `XDP_TX` batch only wakes the peer's NAPI when the peer has an XDP program of its
//! own (`veth_xdp_flush()`): a server end with GRO on (and no program) would leave the
//! requests in its ring until something else scheduled its NAPI, ~100 ms later in a
//! closed loop (the next re-seed). A redirect is flushed with `XDP_XMIT_FLUSH`, which
//! always schedules the peer's NAPI (the generator's live frames take the same path).
//!
//! Also [`write_stamp`], which `netmit_gen` calls to stamp the requests it sends.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_ns, bpf_redirect},
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use netmit_common::{
    LAT_BUCKETS, LOAD_CTL_DRAIN, LOAD_MODE_CLOSED, LOAD_MODE_OPEN, LatencyHist, LoadCounters,
    LoadParams, STAMP_LEN, STAMP_MAGIC, STAMP_TS_OFF, csum_fold, latency_bucket,
};

use crate::parse;

const ETH_HLEN: usize = 14;
const IPV4_UDP: usize = ETH_HLEN + 20;
const IPV6_UDP: usize = ETH_HLEN + 40;
const IPPROTO_UDP: u8 = 17;
/// Iterations of the checksum loop, 8 bytes each: a whole 1500-byte frame.
const CSUM_CHUNKS: usize = 1500 / 8;

/// Set by the load client's loader (rodata, so the verifier prunes the mode not taken).
#[unsafe(no_mangle)]
static NETMIT_LOAD_PARAMS: LoadParams = LoadParams {
    server_port: 0,
    sport_base: 0,
    flows: 1,
    mode: LOAD_MODE_OPEN,
    _pad: 0,
};

#[map]
static NETMIT_LOAD_HIST: PerCpuArray<LatencyHist> = PerCpuArray::with_max_entries(1, 0);
#[map]
static NETMIT_LOAD_COUNTERS: PerCpuArray<LoadCounters> = PerCpuArray::with_max_entries(1, 0);
/// Closed loop: the send time of each slot's newest request (sized to the window at
/// load time). Written here for every request the program sends, and by user space
/// before it re-seeds a slot, so a late reply to the lost-looking request is stale.
/// Open loop: entry 0 is the start of the measured window, so that a warmup request's
/// reply arriving after it is stale rather than counted in the window.
#[map]
static NETMIT_LOAD_SLOTS: Array<u64> = Array::with_max_entries(1, 0);
#[map]
static NETMIT_LOAD_CTL: Array<u32> = Array::with_max_entries(1, 0);

#[xdp]
pub fn netmit_load(ctx: XdpContext) -> u32 {
    let (start, end) = parse::bounds(&ctx);
    if start + ETH_HLEN > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the 14-byte Ethernet header was checked against `data_end`.
    let ethertype = unsafe { u16::from_be_bytes(*((start + 12) as *const [u8; 2])) };
    match ethertype {
        0x0800 => reply::<IPV4_UDP, false>(&ctx),
        0x86dd => reply::<IPV6_UDP, true>(&ctx),
        _ => xdp_action::XDP_PASS,
    }
}

/// One frame whose UDP header (if it has one) is at the constant offset `UDP`.
#[inline(always)]
fn reply<const UDP: usize, const V6: bool>(ctx: &XdpContext) -> u32 {
    // SAFETY: a plain read of a rodata global.
    let p = unsafe { core::ptr::read_volatile(&NETMIT_LOAD_PARAMS) };
    let (start, end) = parse::bounds(ctx);
    if start + UDP + 8 > end {
        return xdp_action::XDP_PASS;
    }
    let ip = start + ETH_HLEN;
    // SAFETY: the IP header lies before the UDP header, checked above.
    let ours_ip = unsafe {
        if V6 {
            *(ip as *const u8) >> 4 == 6 && *((ip + 6) as *const u8) == IPPROTO_UDP
        } else {
            let frag = u16::from_be_bytes(*((ip + 6) as *const [u8; 2]));
            *(ip as *const u8) == 0x45
                && *((ip + 9) as *const u8) == IPPROTO_UDP
                && frag & 0x3fff == 0
        }
    };
    if !ours_ip {
        return xdp_action::XDP_PASS;
    }
    let udp = start + UDP;
    // SAFETY: [udp, udp + 8) was checked against `data_end` above.
    let (sport, dport) = unsafe {
        (
            u16::from_be_bytes(*(udp as *const [u8; 2])),
            u16::from_be_bytes(*((udp + 2) as *const [u8; 2])),
        )
    };
    if sport != p.server_port {
        return xdp_action::XDP_PASS;
    }
    let Some(counters) = NETMIT_LOAD_COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's value; XDP does not nest on one CPU.
    let counters = unsafe { &mut *counters };
    let slot = dport.wrapping_sub(p.sport_base) as u32;
    let (start, end) = parse::bounds(ctx);
    if slot >= p.flows || start + UDP + 8 + STAMP_LEN > end {
        counters.passed += 1;
        return xdp_action::XDP_PASS;
    }
    let payload = start + UDP + 8;
    // SAFETY: [payload, payload + STAMP_LEN) was checked against `data_end` above.
    let (magic, sent) = unsafe {
        (
            u32::from_be_bytes(*(payload as *const [u8; 4])),
            u64::from_be_bytes(*((payload + STAMP_TS_OFF) as *const [u8; 8])),
        )
    };
    if magic != STAMP_MAGIC {
        counters.passed += 1;
        return xdp_action::XDP_PASS;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if sent > now {
        counters.bad_stamp += 1;
        return xdp_action::XDP_DROP;
    }
    let closed = p.mode == LOAD_MODE_CLOSED;
    // Closed loop: the flow's slot; open loop: entry 0, the start of the measured window.
    let Some(slot_ts) = NETMIT_LOAD_SLOTS.get_ptr_mut(if closed { slot } else { 0 }) else {
        counters.passed += 1;
        return xdp_action::XDP_PASS;
    };
    // SAFETY: an array map value, valid while the program runs.
    if sent < unsafe { *slot_ts } {
        counters.stale += 1;
        return xdp_action::XDP_DROP;
    }

    let latency = now - sent;
    counters.replies += 1;
    counters.bytes += (end - start) as u64;
    counters.latency_sum_ns += latency;
    if let Some(hist) = NETMIT_LOAD_HIST.get_ptr_mut(0) {
        // LLVM knows the bucket is below LAT_BUCKETS and would drop a plain mask; the
        // verifier does not, so launder the value and keep the mask.
        let b = latency_bucket(latency);
        // SAFETY: reads a local; the value is masked into the array below.
        let b = unsafe { core::ptr::read_volatile(&b) } & (LAT_BUCKETS - 1);
        // SAFETY: this CPU's value, as above.
        unsafe { (*hist).buckets[b] += 1 };
    }
    if !closed {
        return xdp_action::XDP_DROP;
    }
    if let Some(ctl) = NETMIT_LOAD_CTL.get(0)
        && *ctl == LOAD_CTL_DRAIN
    {
        return xdp_action::XDP_DROP;
    }
    match reflect::<UDP, V6>(ctx) {
        Some(ts) => {
            // SAFETY: the slot's array value, from the map lookup above.
            unsafe { *slot_ts = ts };
            counters.reflected += 1;
            // SAFETY: the context pointer is valid for the program's run.
            let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
            // SAFETY: a helper taking plain values; it returns the action.
            unsafe { bpf_redirect(ifindex, 0) as u32 }
        }
        None => {
            counters.unreflected += 1;
            xdp_action::XDP_DROP
        }
    }
}

/// Turns the reply into the next request of its flow, in place: swaps MACs, addresses
/// and ports, writes a fresh send time and the UDP checksum. Returns the send time, or
/// `None` when the frame is not exactly the UDP datagram (trailing bytes).
///
/// The UDP checksum is computed over the pseudo-header and the whole datagram: a reply
/// the server's kernel sent through a veth may carry only the partial (pseudo-header)
/// sum that a NIC would complete (CHECKSUM_PARTIAL), so nothing in it can be updated
/// incrementally. Swapping does not change the IPv4 header checksum or the
/// pseudo-header sum.
#[inline(always)]
fn reflect<const UDP: usize, const V6: bool>(ctx: &XdpContext) -> Option<u64> {
    let (start, end) = parse::bounds(ctx);
    if start + UDP + 8 + STAMP_LEN > end {
        return None;
    }
    let udp = start + UDP;
    // SAFETY: the UDP header was checked against `data_end`.
    let udp_len = unsafe { u16::from_be_bytes(*((udp + 4) as *const [u8; 2])) } as usize;
    if UDP + udp_len != end - start {
        return None;
    }
    let ip = start + ETH_HLEN;
    // SAFETY: every range below lies before `udp + 8 + STAMP_LEN`, checked above.
    unsafe {
        swap::<6>(start, start + 6);
        if V6 {
            swap::<16>(ip + 8, ip + 24);
        } else {
            swap::<4>(ip + 12, ip + 16);
        }
        swap::<2>(udp, udp + 2);
        *((udp + 6) as *mut [u8; 2]) = [0, 0];
    }
    // SAFETY: a helper without arguments.
    let ts = unsafe { bpf_ktime_get_ns() };
    // SAFETY: as above.
    unsafe { *((udp + 8 + STAMP_TS_OFF) as *mut [u8; 8]) = ts.to_be_bytes() };

    // Pseudo-header: addresses, protocol, UDP length.
    let mut sum: u64 = IPPROTO_UDP as u64 + udp_len as u64;
    let (addrs, words) = if V6 { (ip + 8, 8) } else { (ip + 12, 2) };
    let mut i = 0;
    while i < 8 {
        if i >= words {
            break;
        }
        // SAFETY: the addresses lie before the UDP header.
        sum += unsafe { be32(addrs + 4 * i) } as u64;
        i += 1;
    }
    // The datagram (it ends the frame, checked above), 8 bytes at a time, then the tail.
    // Only pointer comparisons against `data_end`, reloaded each time (see
    // `parse::bounds`), so that the verifier follows every read.
    let mut off = 0;
    let mut n = 0;
    while n < CSUM_CHUNKS {
        let (_, end) = parse::bounds(ctx);
        if udp + off + 8 > end {
            break;
        }
        // SAFETY: [udp + off, udp + off + 8) was checked against `data_end`.
        sum += unsafe { be32(udp + off) as u64 + be32(udp + off + 4) as u64 };
        off += 8;
        n += 1;
    }
    let (_, end) = parse::bounds(ctx);
    if udp + off + 4 <= end {
        // SAFETY: checked against `data_end`.
        sum += unsafe { be32(udp + off) } as u64;
        off += 4;
    }
    let (_, end) = parse::bounds(ctx);
    if udp + off + 2 <= end {
        // SAFETY: checked against `data_end`.
        sum += unsafe { u16::from_be_bytes(*((udp + off) as *const [u8; 2])) } as u64;
        off += 2;
    }
    let (_, end) = parse::bounds(ctx);
    if udp + off < end {
        // SAFETY: checked against `data_end`.
        sum += (unsafe { *((udp + off) as *const u8) } as u64) << 8;
    }
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let c = !csum_fold(sum as u32);
    let c = if c == 0 { 0xffff } else { c };
    let (start, end) = parse::bounds(ctx);
    if start + UDP + 8 > end {
        return None;
    }
    // SAFETY: checked against `data_end`.
    unsafe { *((start + UDP + 6) as *mut [u8; 2]) = c.to_be_bytes() };
    Some(ts)
}

/// Swaps `N` bytes at `a` and `b`.
///
/// # Safety
///
/// Both ranges must lie inside the frame.
#[inline(always)]
unsafe fn swap<const N: usize>(a: usize, b: usize) {
    // SAFETY: the caller's promise.
    unsafe {
        let x = *(a as *const [u8; N]);
        *(a as *mut [u8; N]) = *(b as *const [u8; N]);
        *(b as *mut [u8; N]) = x;
    }
}

/// A big-endian 32-bit word at `p`.
///
/// # Safety
///
/// `[p, p + 4)` must lie inside the frame.
#[inline(always)]
unsafe fn be32(p: usize) -> u32 {
    // SAFETY: the caller's promise.
    u32::from_be_bytes(unsafe { *(p as *const [u8; 4]) })
}

/// Writes the send time (`bpf_ktime_get_ns()`) into the stamp of the frame's UDP
/// datagram (IPv6 or IPv4 without options) and returns it; `None` (nothing written) when
/// the frame ends before the stamp. The magic is in the template already.
#[inline(always)]
pub fn write_stamp(ctx: &XdpContext, v6: bool) -> Option<u64> {
    let (start, end) = parse::bounds(ctx);
    let at = start + if v6 { IPV6_UDP } else { IPV4_UDP } + 8 + STAMP_TS_OFF;
    if at + 8 > end {
        return None;
    }
    // SAFETY: a helper without arguments.
    let ts = unsafe { bpf_ktime_get_ns() };
    // SAFETY: [at, at + 8) was checked against `data_end` above.
    unsafe { *(at as *mut [u8; 8]) = ts.to_be_bytes() };
    Some(ts)
}
