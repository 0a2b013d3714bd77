//! What the `napi:napi_poll` tracepoint program counts per NAPI instance.

/// Upper bound on NAPI instances counted at once by `netmit_napi_poll`. The map is an
/// LRU hash, so NAPIs that were destroyed (their ids are never reused) age out instead of
/// filling it; a host with more live NAPIs than this would see counter resets.
pub const MAX_NAPIS: u32 = 1024;

/// Buckets of [`NapiPollCounters::work_hist`]: work per poll 0, 1, 2-3, 4-7, 8-15,
/// 16-31, 32-63 and 64 or more (see [`napi_work_bucket`]).
pub const NAPI_WORK_BUCKETS: usize = 8;

/// Offset value meaning "not set": `netmit_napi_poll` counts nothing until user space
/// loads it with real offsets.
pub const NAPI_OFFSET_UNSET: u32 = u32::MAX;

/// Byte offsets of the kernel fields `netmit_napi_poll` reads, a read-only global set at
/// load time. aya-ebpf has no CO-RE, so user space computes them from the running
/// kernel's BTF (`/sys/kernel/btf/vmlinux`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NapiOffsets {
    /// `struct napi_struct`, member `napi_id` (`unsigned int`).
    pub napi_id: u32,
    /// `struct napi_struct`, member `dev` (`struct net_device *`).
    pub napi_dev: u32,
    /// `struct net_device`, member `ifindex` (`int`).
    pub dev_ifindex: u32,
    /// Padding, zero.
    pub _pad: u32,
}

impl NapiOffsets {
    /// Nothing known: the program returns at once.
    pub const UNSET: Self = Self {
        napi_id: NAPI_OFFSET_UNSET,
        napi_dev: NAPI_OFFSET_UNSET,
        dev_ifindex: NAPI_OFFSET_UNSET,
        _pad: 0,
    };
}

/// What `netmit_napi_poll` counts for one NAPI instance on one CPU (the map is per-CPU;
/// user space adds the CPUs up). Every field but `ifindex` only grows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NapiPollCounters {
    /// Polls (one per `napi:napi_poll` event: softirq, threaded, busy-poll and netpoll
    /// polls alike).
    pub polls: u64,
    /// Packets processed: the sum of the polls' `work`.
    pub packets: u64,
    /// Polls that used their whole budget (`budget > 0 && work >= budget`): the NAPI
    /// stayed scheduled, the sign of a backlog.
    pub budget_exhausted: u64,
    /// Polls that found no work (`work == 0`).
    pub empty: u64,
    /// Polls by work, bucket [`napi_work_bucket`]`(work)`.
    pub work_hist: [u64; NAPI_WORK_BUCKETS],
    /// Interface index of the NAPI's device (`napi->dev->ifindex`), recorded when the
    /// entry is created, on the CPU that created it (0 on the others, and for NAPIs
    /// without a device such as the per-CPU backlog, whose NAPI id is 0).
    pub ifindex: u32,
    /// Padding, zero.
    pub _pad: u32,
}

/// Histogram bucket of a poll that processed `work` packets: 0 for 0, then
/// `floor(log2(work)) + 1` (1 for 1, 2 for 2-3, 3 for 4-7, ... 6 for 32-63), and 7 for 64
/// and more (64 is the default NAPI budget). Negative work (never seen) counts as 0.
///
/// Written as a sum of comparisons so that the BPF backend needs neither a lookup table
/// nor a count-leading-zeros sequence.
#[inline(always)]
pub fn napi_work_bucket(work: u32) -> usize {
    (work >= 1) as usize
        + (work >= 2) as usize
        + (work >= 4) as usize
        + (work >= 8) as usize
        + (work >= 16) as usize
        + (work >= 32) as usize
        + (work >= 64) as usize
}

/// The work values of histogram bucket `bucket`: `(lowest, highest)`, highest `None` for
/// the last, open-ended bucket.
pub const fn napi_work_bucket_bounds(bucket: usize) -> (u32, Option<u32>) {
    match bucket {
        0 => (0, Some(0)),
        b if b + 1 < NAPI_WORK_BUCKETS => (1 << (b - 1), Some((1 << b) - 1)),
        _ => (1 << (NAPI_WORK_BUCKETS - 2), None),
    }
}

impl NapiPollCounters {
    /// Counts one poll that processed `work` packets with `budget` allowed.
    #[inline(always)]
    pub fn record(&mut self, work: i32, budget: i32) {
        let w = if work > 0 { work as u32 } else { 0 };
        self.polls += 1;
        self.packets += w as u64;
        self.budget_exhausted += (budget > 0 && work >= budget) as u64;
        self.empty += (w == 0) as u64;
        self.work_hist[napi_work_bucket(w) & (NAPI_WORK_BUCKETS - 1)] += 1;
    }
}
