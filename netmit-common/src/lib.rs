//! Types shared by netmit's eBPF programs (`netmit-ebpf`) and its user-space library
//! (`netmit-user`).
//!
//! Everything here is `#[repr(C)]` plain old data: the kernel side reads and writes these
//! structs in BPF maps and the user side reads and writes the same bytes through aya.
//! With the `user` feature the types implement [`aya::Pod`].
//!
//! # How the steering lookup works
//!
//! Rules are ranked by `(prio, insertion order)`; rank `r` is bit `r` of a [`RuleSet`]
//! bitmap. For every field a packet can be matched on, user space precomputes which rules
//! accept each possible value of that field:
//!
//! * protocol (udp, tcp, other): three bitmaps, [`GenTables::proto`];
//! * destination port: [`PORT_SLOTS`] entries indexed by port, plus one slot
//!   ([`PORT_NONE`]) for packets without ports (non-first fragments, other protocols);
//! * outer VLAN id: 4096 entries indexed by VID, plus [`GenTables::untagged`];
//! * destination address: a multibit trie (strides 16, 8, 8, ...). Each leaf entry is the
//!   set of rules whose prefix covers every address of that entry. An IPv4 lookup takes
//!   at most three reads, an IPv6 lookup at most fifteen (an LPM trie map costs a
//!   function call and a tree walk per packet).
//!
//! Port, VLAN and trie entries are 16-bit numbers of bitmaps in one deduplicated pool,
//! [`GenTables::sets`] (a few hundred distinct sets serve 65,537 ports).
//!
//! The data path ANDs the bitmaps of the packet's values and takes the lowest set bit: the
//! best-ranked matching rule. The cost is a fixed number of reads and `MAX_RULES / 64`
//! word operations, independent of how many rules are installed.
//!
//! All tables of a rule set live in one value of one array map ([`GenTables`], about
//! 2.3 MiB), so the data path makes two map lookups per packet for the whole
//! classification (the config, then the active generation's tables) and everything else
//! is a plain load at a bounded offset. Every lookup of a map, even one the verifier
//! inlines, stores its key on the stack and, because the compiler has to treat it as a
//! helper call, spills live registers around it: with a lookup per trie level, a level
//! took about 30 instructions; as a load from the same value it takes about eight.
//!
//! All tables exist twice ("generations"). User space rewrites the inactive generation and
//! then flips [`Config::active`], so a packet never sees a half-written rule set.
#![no_std]
#![deny(missing_docs)]

/// Map and program names, shared so that both sides agree.
pub mod names {
    /// The steering XDP program.
    pub const PROG_STEER: &str = "netmit_steer";
    /// A trivial XDP_PASS program used as the benchmark baseline.
    pub const PROG_PASS: &str = "netmit_pass";
    /// The benchmark's minimal parse-and-decide program (headers, one array lookup).
    pub const PROG_FLOOR: &str = "netmit_floor";
    /// `u32` verdict by destination port for [`PROG_FLOOR`]; one entry in the object,
    /// resized by the benchmark's loader.
    pub const MAP_FLOOR: &str = "NETMIT_FLOOR";
    /// [`crate::Config`], one entry.
    pub const MAP_CONFIG: &str = "NETMIT_CONFIG";
    /// [`crate::RuleSpec`] by rule id: the rules as the user wrote them.
    pub const MAP_RULES: &str = "NETMIT_RULES";
    /// [`crate::GenTables`] by generation: every lookup table of one rule set.
    pub const MAP_TABLES: &str = "NETMIT_TABLES";
    /// Per-CPU [`crate::QueueStats`] by RX queue.
    pub const MAP_QUEUE_STATS: &str = "NETMIT_QSTATS";
    /// Per-CPU [`crate::Counter`] by rule id.
    pub const MAP_RULE_HITS: &str = "NETMIT_RHITS";
    /// XSKMAP: AF_XDP socket by RX queue.
    pub const MAP_XSKS: &str = "NETMIT_XSKS";
    /// Every map of the steering program, in a fixed order: what `netmit attach` pins,
    /// and what the generator and the signal source shrink because they never use it.
    pub const STEERING_MAPS: [&str; 6] = [
        MAP_CONFIG,
        MAP_RULES,
        MAP_TABLES,
        MAP_QUEUE_STATS,
        MAP_RULE_HITS,
        MAP_XSKS,
    ];
    /// Global (rodata) that makes the program write a [`crate::VerdictRecord`] into the
    /// packet metadata; used by `netmit classify`, off in production.
    pub const GLOBAL_TRACE: &str = "NETMIT_TRACE_VERDICT";
    /// The traffic generator's XDP program (run with BPF_PROG_TEST_RUN live frames).
    pub const PROG_GEN: &str = "netmit_gen";
    /// [`crate::TrafficState`] of the generator, one entry.
    pub const MAP_GEN_STATE: &str = "NETMIT_GEN_STATE";
    /// Global (rodata) [`crate::TrafficParams`] of the generator, set at load time.
    pub const GLOBAL_GEN_PARAMS: &str = "NETMIT_GEN_PARAMS";
    /// The load client's XDP program (`netmit load`): latency of replies, closed loop.
    pub const PROG_LOAD: &str = "netmit_load";
    /// Global (rodata) [`crate::LoadParams`] of the load client, set at load time.
    pub const GLOBAL_LOAD_PARAMS: &str = "NETMIT_LOAD_PARAMS";
    /// Per-CPU [`crate::LatencyHist`], one entry: reply latencies.
    pub const MAP_LOAD_HIST: &str = "NETMIT_LOAD_HIST";
    /// Per-CPU [`crate::LoadCounters`], one entry.
    pub const MAP_LOAD_COUNTERS: &str = "NETMIT_LOAD_COUNTERS";
    /// `u64` per closed-loop slot: the send timestamp of the slot's newest request.
    pub const MAP_LOAD_SLOTS: &str = "NETMIT_LOAD_SLOTS";
    /// `u32`, one entry: [`crate::LOAD_CTL_RUN`] or [`crate::LOAD_CTL_DRAIN`].
    pub const MAP_LOAD_CTL: &str = "NETMIT_LOAD_CTL";
    /// The raw tracepoint program counting NAPI polls (attached to
    /// [`TRACEPOINT_NAPI_POLL`]).
    pub const PROG_NAPI_POLL: &str = "netmit_napi_poll";
    /// The tracepoint `netmit_napi_poll` attaches to (`napi:napi_poll`, raw form).
    pub const TRACEPOINT_NAPI_POLL: &str = "napi_poll";
    /// Per-CPU LRU hash: NAPI id (`u32`) -> [`crate::NapiPollCounters`].
    pub const MAP_NAPI_POLLS: &str = "NETMIT_NAPIPOLL";
    /// Per-CPU `u64`, one entry: polls that could not be counted in
    /// [`MAP_NAPI_POLLS`] (the NAPI id was unreadable or the insert failed).
    pub const MAP_NAPI_LOST: &str = "NETMIT_NAPILOST";
    /// Global (rodata) [`crate::NapiOffsets`]: where the kernel keeps the fields the
    /// program reads, computed from the kernel's BTF at load time.
    pub const GLOBAL_NAPI_OFFSETS: &str = "NETMIT_NAPI_OFFSETS";
}

mod load;
mod napi;
mod steer;
mod traffic;

pub use load::*;
pub use napi::*;
pub use steer::*;
pub use traffic::*;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    /// aya::Pod for repr(C) (or packed) structs of integers without implicit padding.
    macro_rules! pod {
        ($($t:ty),* $(,)?) => {$(
            // SAFETY: every bit pattern of the struct's integer fields is valid, and it
            // has no implicit padding (the layout test below checks the sizes).
            unsafe impl aya::Pod for $t {}
        )*};
    }
    pod!(
        RuleSet,
        GenTables,
        Prefix6,
        Config,
        RuleSpec,
        RuleAction,
        Counter,
        QueueStats,
        VerdictRecord,
        TrafficParams,
        TrafficState,
        NapiOffsets,
        NapiPollCounters,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_bit_matches_trailing_zeros() {
        for i in 0..64 {
            let w = 1u64 << i;
            assert_eq!(lowest_bit(w), i);
            assert_eq!(lowest_bit(w | (w << 1).wrapping_mul(3)), i);
        }
        assert_eq!(lowest_bit(u64::MAX), 0);
    }

    #[test]
    fn prefix6_contains_exactly_its_addresses() {
        let addr = |s: [u16; 8]| {
            let mut b = [0u8; 16];
            for (i, w) in s.iter().enumerate() {
                b[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
            }
            let w = |i: usize| {
                let mut x = [0u8; 8];
                x.copy_from_slice(&b[i * 8..i * 8 + 8]);
                u64::from_ne_bytes(x)
            };
            (b, w(0), w(1))
        };
        let (p48, ..) = addr([0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 0]);
        let p = Prefix6::new(p48, 48);
        let (_, a0, a1) = addr([0x2001, 0xdb8, 0xb, 0xffff, 0, 0, 0, 1]);
        assert!(p.contains(a0, a1));
        let (_, a0, a1) = addr([0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1]);
        assert!(!p.contains(a0, a1));
        let (_, a0, a1) = addr([0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1]);
        let (host, ..) = addr([0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1]);
        assert!(Prefix6::new(host, 128).contains(a0, a1));
        assert!(!Prefix6::new(host, 128).contains(a0, a1 ^ (1 << 63)));
        assert!(Prefix6::new([0; 16], 0).contains(a0, a1));
        // A /65 looks at the first bit of the second word.
        let (p65, ..) = addr([0x2001, 0xdb8, 0, 0, 0x8000, 0, 0, 0]);
        let (_, a0, a1) = addr([0x2001, 0xdb8, 0, 0, 0x8000, 1, 2, 3]);
        assert!(Prefix6::new(p65, 65).contains(a0, a1));
        let (_, a0, a1) = addr([0x2001, 0xdb8, 0, 0, 0x7fff, 1, 2, 3]);
        assert!(!Prefix6::new(p65, 65).contains(a0, a1));
    }

    #[test]
    fn ruleset_first_is_lowest_rank() {
        let mut s = RuleSet::EMPTY;
        assert_eq!(s.first(), None);
        s.insert(200);
        s.insert(70);
        assert_eq!(s.first(), Some(70));
        let mut t = RuleSet::EMPTY;
        t.insert(200);
        s.intersect_with(&t);
        assert_eq!(s.first(), Some(200));
    }

    #[test]
    fn struct_sizes_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<RuleSpec>(), 36);
        assert_eq!(core::mem::size_of::<RuleAction>(), 4);
        assert_eq!(core::mem::size_of::<VerdictRecord>(), 8);
        assert_eq!(core::mem::size_of::<Config>(), 16);
        assert_eq!(
            core::mem::size_of::<GenTables>(),
            8 + 32 * 7
                + 4 * MAX_RULES
                + 32 * MAX_RULES
                + 2 * PORT_TABLE_LEN
                + 2 * VLAN_SLOTS
                + 32 * SET_POOL_SLOTS
                + 2 * DST_ENTRIES
        );
        assert_eq!(core::mem::size_of::<TrafficParams>(), 24);
        assert_eq!(core::mem::size_of::<TrafficState>(), 16);
        assert_eq!(core::mem::size_of::<NapiOffsets>(), 16);
        assert_eq!(
            core::mem::size_of::<NapiPollCounters>(),
            8 * (4 + NAPI_WORK_BUCKETS) + 8
        );
    }

    #[test]
    fn napi_work_buckets_are_log2_ranges() {
        let expect = |w: u32| -> usize {
            match w {
                0 => 0,
                w if w >= 64 => 7,
                w => (32 - w.leading_zeros()) as usize,
            }
        };
        for w in 0..=1000u32 {
            assert_eq!(napi_work_bucket(w), expect(w), "work {w}");
        }
        assert_eq!(napi_work_bucket(u32::MAX), 7);
        // The documented bounds agree with the function at both ends of every bucket.
        for b in 0..NAPI_WORK_BUCKETS {
            let (lo, hi) = napi_work_bucket_bounds(b);
            assert_eq!(napi_work_bucket(lo), b);
            if lo > 0 {
                assert_eq!(napi_work_bucket(lo - 1), b - 1);
            }
            match hi {
                Some(hi) => assert_eq!(napi_work_bucket(hi), b),
                None => assert_eq!(b, NAPI_WORK_BUCKETS - 1),
            }
        }
        assert_eq!(napi_work_bucket_bounds(2), (2, Some(3)));
        assert_eq!(napi_work_bucket_bounds(7), (64, None));
    }

    #[test]
    fn napi_poll_record_counts_every_field() {
        let mut c = NapiPollCounters::default();
        c.record(0, 64);
        c.record(1, 64);
        c.record(64, 64);
        c.record(3, 3);
        c.record(0, 0); // netpoll's TX-only poll: budget 0 is not "exhausted"
        c.record(-5, 64);
        assert_eq!(c.polls, 6);
        assert_eq!(c.packets, 68);
        assert_eq!(c.budget_exhausted, 2);
        assert_eq!(c.empty, 3);
        assert_eq!(c.work_hist, [3, 1, 1, 0, 0, 0, 0, 1]);
    }
}
