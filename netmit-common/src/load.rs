//! What the load client (`netmit load`) and its XDP program `netmit_load` share: the send
//! stamp in the UDP payload, the log-linear latency buckets, the program's parameters
//! and counters.
//!
//! # The send stamp
//!
//! A request carries, at UDP payload offset 0, [`STAMP_MAGIC`] (4 bytes, big-endian) and
//! then the send time, `bpf_ktime_get_ns()` (CLOCK_MONOTONIC nanoseconds, 8 bytes,
//! big-endian): [`STAMP_LEN`] bytes. An echo server returns the payload unchanged, so the
//! reply brings the send time back and the client's XDP program computes the latency
//! with the same clock, on the same machine, without keeping any per-request state.
//!
//! # The latency buckets
//!
//! An HDR-style log-linear histogram of [`LAT_BUCKETS`] buckets: values below
//! [`LAT_EXACT`] ns have a bucket each; above, every power of two `[2^k, 2^(k+1))` is
//! split into [`LAT_SUB`] equal sub-buckets of width `2^(k-6)`, so a bucket is never wider
//! than 1/64 (1.6 %) of the values in it, and its midpoint is within 0.8 % of each. The
//! last bucket starts at 127 * 2^30 ns (136 s) and takes everything above. [`latency_bucket`] is
//! the one definition, used by the XDP program and by user space alike.

use crate::csum_fold;

/// First four payload bytes of a stamped request ("NMTS", big-endian).
pub const STAMP_MAGIC: u32 = 0x4e4d_5453;
/// Offset of the send time in the UDP payload (after the magic).
pub const STAMP_TS_OFF: usize = 4;
/// Bytes of the stamp at the start of the UDP payload: magic and send time.
pub const STAMP_LEN: usize = 12;

/// The sum of the four 16-bit words of `v` (not folded): what `v` adds to a one's
/// complement sum when it is stored as 8 big-endian bytes at an even offset.
#[inline(always)]
pub fn csum_words_u64(v: u64) -> u32 {
    ((v >> 48) as u32)
        + ((v >> 32) as u32 & 0xffff)
        + ((v >> 16) as u32 & 0xffff)
        + (v as u32 & 0xffff)
}

/// [`crate::udp_csum_update`] for a stamped template: the template's send time is zero,
/// so its words contribute nothing to the template's checksum, and RFC 1624's
/// `~m + m'` for them is just `m'`. Never returns 0 (sent as 0xffff).
#[inline(always)]
pub fn udp_csum_update_stamped(seed: u32, sport: u16, dport: u16, ts: u64) -> u16 {
    let c = !csum_fold(seed + sport as u32 + dport as u32 + csum_words_u64(ts));
    if c == 0 { 0xffff } else { c }
}

/// Buckets of [`LatencyHist`].
pub const LAT_BUCKETS: usize = 2048;
/// Values below this have a bucket each (bucket `v` holds `v` ns).
pub const LAT_EXACT: u64 = 128;
/// log2 of [`LAT_SUB`].
pub const LAT_SUB_BITS: u32 = 6;
/// Sub-buckets per power of two above [`LAT_EXACT`].
pub const LAT_SUB: u64 = 1 << LAT_SUB_BITS;

/// `floor(log2(v))` for `v > 0`, by binary search: no loop, no lookup table, no
/// count-leading-zeros instruction (the BPF target has none).
#[inline(always)]
pub const fn log2_floor(mut v: u64) -> u32 {
    let mut n = 0;
    if v >> 32 != 0 {
        n += 32;
        v >>= 32;
    }
    if v >> 16 != 0 {
        n += 16;
        v >>= 16;
    }
    if v >> 8 != 0 {
        n += 8;
        v >>= 8;
    }
    if v >> 4 != 0 {
        n += 4;
        v >>= 4;
    }
    if v >> 2 != 0 {
        n += 2;
        v >>= 2;
    }
    if v >> 1 != 0 {
        n += 1;
    }
    n
}

/// The bucket of a latency of `ns` nanoseconds: `ns` itself below [`LAT_EXACT`]; above,
/// `128 + 64 * (k - 7) + s` for `ns` in `[2^k, 2^(k+1))` and `s` the next six bits after
/// the leading one; values from `2^37` ns (137 s) on go into the last bucket too.
#[inline(always)]
pub const fn latency_bucket(ns: u64) -> usize {
    if ns < LAT_EXACT {
        return ns as usize;
    }
    let k = log2_floor(ns);
    let sub = (ns >> (k - LAT_SUB_BITS)) & (LAT_SUB - 1);
    let b = LAT_EXACT as usize + (k as usize - 7) * LAT_SUB as usize + sub as usize;
    if b >= LAT_BUCKETS { LAT_BUCKETS - 1 } else { b }
}

/// The values of bucket `b`: `(lowest, end)`, `end` exclusive; `u64::MAX` as the end of
/// the last, open-ended bucket. Buckets past the last are treated as the last.
pub const fn latency_bucket_bounds(b: usize) -> (u64, u64) {
    let b = if b >= LAT_BUCKETS { LAT_BUCKETS - 1 } else { b };
    if (b as u64) < LAT_EXACT {
        return (b as u64, b as u64 + 1);
    }
    let i = (b as u64) - LAT_EXACT;
    let shift = (i / LAT_SUB) as u32 + 1; // k - 6
    let lo = (LAT_SUB + i % LAT_SUB) << shift;
    if b == LAT_BUCKETS - 1 {
        (lo, u64::MAX)
    } else {
        (lo, lo + (1 << shift))
    }
}

/// The value that stands for bucket `b`: the midpoint, rounded down (the value itself for
/// the exact buckets; for the last bucket, the midpoint of its regular width).
pub const fn latency_bucket_mid(b: usize) -> u64 {
    let (lo, end) = latency_bucket_bounds(b);
    if (b as u64) < LAT_EXACT {
        return lo;
    }
    let width = if end == u64::MAX {
        // The regular width of the last power's sub-buckets.
        let (plo, pend) = latency_bucket_bounds(LAT_BUCKETS - 2);
        pend - plo
    } else {
        end - lo
    };
    lo + (width - 1) / 2
}

/// Latency counts by [`latency_bucket`], one per CPU (a per-CPU map's single value).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyHist {
    /// Replies by bucket.
    pub buckets: [u64; LAT_BUCKETS],
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self {
            buckets: [0; LAT_BUCKETS],
        }
    }
}

/// [`LoadParams::mode`]: count and drop the replies.
pub const LOAD_MODE_OPEN: u32 = 0;
/// [`LoadParams::mode`]: turn each reply into the flow's next request (`XDP_TX`).
pub const LOAD_MODE_CLOSED: u32 = 1;

/// Value of the control map: closed loop goes on.
pub const LOAD_CTL_RUN: u32 = 0;
/// Value of the control map: record and drop the replies, send no more requests.
pub const LOAD_CTL_DRAIN: u32 = 1;

/// What `netmit_load` takes for a reply, a read-only global set at load time.
///
/// A reply is a UDP frame (IPv4 without options or fragments, or IPv6 whose next header
/// is UDP) from source port `server_port` to a destination port
/// `sport_base..sport_base + flows`, whose payload starts with [`STAMP_MAGIC`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadParams {
    /// The server's UDP port (host order).
    pub server_port: u16,
    /// The client's first source port (host order): flow and closed-loop slot `i` is
    /// port `sport_base + i`.
    pub sport_base: u16,
    /// Number of flows (slots), at least 1.
    pub flows: u32,
    /// [`LOAD_MODE_OPEN`] or [`LOAD_MODE_CLOSED`].
    pub mode: u32,
    /// Padding, zero.
    pub _pad: u32,
}

/// What `netmit_load` counts, per CPU. Every field only grows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadCounters {
    /// Replies whose latency was recorded.
    pub replies: u64,
    /// Frame bytes of those (Ethernet header on).
    pub bytes: u64,
    /// Sum of their latencies in ns (the exact mean).
    pub latency_sum_ns: u64,
    /// Closed loop: replies turned into the slot's next request (`XDP_TX`).
    pub reflected: u64,
    /// Closed loop: replies to a request older than the slot's newest (the slot was
    /// re-seeded meanwhile): dropped, not recorded.
    pub stale: u64,
    /// Our ports and magic, but a send time in the future: dropped, not recorded.
    pub bad_stamp: u64,
    /// UDP from the server's port that is not a reply of ours (destination port out of
    /// range, no magic, too short): passed to the kernel.
    pub passed: u64,
    /// Closed loop: recorded replies that could not become a request (the UDP length
    /// does not end the frame): dropped, so their slot is re-seeded.
    pub unreflected: u64,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C) structs of integers without implicit padding.
    unsafe impl aya::Pod for LatencyHist {}
    // SAFETY: as above.
    unsafe impl aya::Pod for LoadParams {}
    // SAFETY: as above.
    unsafe impl aya::Pod for LoadCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward definition, written differently: exact below 128, else the
    /// power of two from `leading_zeros` and the offset into it divided by the width.
    fn reference_bucket(ns: u64) -> usize {
        if ns < 128 {
            return ns as usize;
        }
        let k = 63 - ns.leading_zeros() as usize; // floor(log2)
        let width = 1u64 << (k - 6);
        let sub = ((ns - (1u64 << k)) / width) as usize;
        (128 + (k - 7) * 64 + sub).min(LAT_BUCKETS - 1)
    }

    #[test]
    fn log2_floor_matches_leading_zeros() {
        for i in 0..64 {
            let v = 1u64 << i;
            assert_eq!(log2_floor(v), i);
            assert_eq!(log2_floor(v | (v >> 1)), i);
            assert_eq!(log2_floor((v - 1).max(1)), i.saturating_sub(1));
        }
        assert_eq!(log2_floor(u64::MAX), 63);
    }

    #[test]
    fn buckets_match_the_reference() {
        for ns in 0..200_000u64 {
            assert_eq!(latency_bucket(ns), reference_bucket(ns), "{ns} ns");
        }
        // Powers of two and their neighbours, up to the top.
        for k in 0..64 {
            let v = 1u64 << k;
            for ns in [v - 1, v, v + 1, v + v / 3] {
                assert_eq!(latency_bucket(ns), reference_bucket(ns), "{ns} ns");
            }
        }
        assert_eq!(latency_bucket(u64::MAX), LAT_BUCKETS - 1);
        assert_eq!(latency_bucket(127), 127);
        assert_eq!(latency_bucket(128), 128);
        assert_eq!(latency_bucket(129), 128);
        assert_eq!(latency_bucket(130), 129);
        assert_eq!(latency_bucket(256), 192);
    }

    #[test]
    fn bounds_are_contiguous_and_agree_with_the_function() {
        let mut next = 0u64;
        for b in 0..LAT_BUCKETS {
            let (lo, end) = latency_bucket_bounds(b);
            assert_eq!(
                lo,
                next,
                "bucket {b} starts where {} ended",
                b.wrapping_sub(1)
            );
            assert_eq!(latency_bucket(lo), b);
            if end != u64::MAX {
                assert_eq!(latency_bucket(end - 1), b);
                assert_eq!(latency_bucket(end), b + 1);
                // Relative width: at most 1/64 of the bucket's lowest value (above 128).
                if lo >= LAT_EXACT {
                    assert!((end - lo) * 64 <= lo, "bucket {b}: [{lo}, {end})");
                }
            } else {
                assert_eq!(b, LAT_BUCKETS - 1);
            }
            let mid = latency_bucket_mid(b);
            assert!(mid >= lo && (end == u64::MAX || mid < end));
            next = end;
        }
        assert_eq!(latency_bucket_bounds(LAT_BUCKETS - 1).0, 127 << 30);
    }

    #[test]
    fn midpoints_are_within_one_percent() {
        for ns in (128..10_000_000u64).step_by(997) {
            let mid = latency_bucket_mid(latency_bucket(ns));
            let err = (mid as f64 - ns as f64).abs() / ns as f64;
            assert!(err <= 1.0 / 128.0, "{ns} -> {mid}");
        }
    }

    #[test]
    fn stamped_checksum_update_equals_adding_the_words() {
        use crate::{udp_csum_seed, udp_csum_update};
        // With a send time of 0 the stamped update is the plain one.
        for seed in [0u32, 1, 0xfffe, 0xffff] {
            for (s, d) in [(1u16, 2u16), (0xffff, 0), (32768, 9000)] {
                assert_eq!(
                    udp_csum_update_stamped(seed, s, d, 0),
                    udp_csum_update(seed, s, d)
                );
            }
        }
        // A checksum over words w, then with four words changed from 0 to the stamp.
        let words = [0x1234u16, 0xabcd, 0x8000, 0x0001, 0x7fff];
        let ts: u64 = 0x0123_4567_89ab_cdef;
        let full = |extra: &[u16]| -> u16 {
            let mut sum = 0u32;
            for w in words.iter().chain(extra) {
                sum += u32::from(*w);
            }
            !csum_fold(sum)
        };
        let template = full(&[0, 0, 0, 0]);
        let seed = udp_csum_seed(template, words[0], words[1]);
        let got = udp_csum_update_stamped(seed, words[0], words[1], ts);
        assert_eq!(got, full(&[0x0123, 0x4567, 0x89ab, 0xcdef]));
    }

    #[test]
    fn sizes() {
        assert_eq!(core::mem::size_of::<LatencyHist>(), 8 * LAT_BUCKETS);
        assert_eq!(core::mem::size_of::<LoadParams>(), 16);
        assert_eq!(core::mem::size_of::<LoadCounters>(), 64);
    }
}
