//! The traffic generator program's parameters and state, and the incremental UDP
//! checksum both sides compute.

/// How `netmit_gen` varies the frames it sends: a read-only global set at load time.
///
/// Flow `i` (`0 <= i < flows`) is UDP source port `sport_base + i` and destination port
/// `dport_base + i % dports`. Consecutive frames go to consecutive flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficParams {
    /// Offset of the UDP header in the frame: 34 (IPv4) or 54 (IPv6).
    pub udp_off: u32,
    /// Number of flows, at least 1.
    pub flows: u32,
    /// Number of destination ports, at least 1.
    pub dports: u32,
    /// The template's UDP checksum, prepared for [`udp_csum_update`]:
    /// `!check + !sport_base + !dport_base` (one's-complement sum, folded).
    pub csum_seed: u32,
    /// Source port of flow 0 (host order).
    pub sport_base: u16,
    /// Lowest destination port (host order).
    pub dport_base: u16,
    /// 1: write a send stamp ([`STAMP_MAGIC`](crate::load::STAMP_MAGIC) is in the template; the program writes
    /// `bpf_ktime_get_ns()` at UDP payload offset [`STAMP_TS_OFF`](crate::load::STAMP_TS_OFF) and checksums it with
    /// [`udp_csum_update_stamped`](crate::load::udp_csum_update_stamped)); 0: the frames are sent as the template has them.
    pub stamp: u32,
}

/// State of `netmit_gen` (one map entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficState {
    /// Frames sent (the program ran and returned `XDP_TX`).
    pub packets: u64,
    /// Flow of the next frame.
    pub flow: u32,
    /// Destination-port index of the next frame.
    pub dport: u32,
}

/// Folds a 32-bit one's-complement sum to 16 bits.
#[inline(always)]
pub fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The seed for [`udp_csum_update`]: RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, with the
/// old values `m` (the template's ports) moved to the constant side. All values are
/// host-order numbers of the big-endian header fields.
#[inline(always)]
pub fn udp_csum_seed(check: u16, sport: u16, dport: u16) -> u32 {
    csum_fold(!check as u32 + !sport as u32 + !dport as u32) as u32
}

/// The UDP checksum of the template after its ports were replaced by `sport` and
/// `dport` (RFC 1624), in host order. A result of 0 is sent as 0xffff (RFC 768: 0 means
/// "no checksum").
#[inline(always)]
pub fn udp_csum_update(seed: u32, sport: u16, dport: u16) -> u16 {
    let c = !csum_fold(seed + sport as u32 + dport as u32);
    if c == 0 { 0xffff } else { c }
}
