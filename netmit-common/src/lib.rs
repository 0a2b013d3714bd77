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

/// Upper bound on steering rules per interface; also the width of a [`RuleSet`].
pub const MAX_RULES: usize = 256;
/// Words in a [`RuleSet`].
pub const RULE_WORDS: usize = MAX_RULES / 64;
/// Number of rule-table generations (double buffering).
pub const GENERATIONS: usize = 2;
/// RX queues with their own counters; higher queues share the last slot.
pub const MAX_QUEUES: usize = 256;
/// Highest AF_XDP socket map index (one per RX queue).
pub const MAX_XSKS: u32 = MAX_QUEUES as u32;
/// Entries per generation in the port table: every port plus [`PORT_NONE`].
pub const PORT_SLOTS: usize = 65_537;
/// Port-table index used for packets that carry no destination port.
pub const PORT_NONE: usize = 65_536;
/// Length of [`GenTables::ports`]: [`PORT_SLOTS`] rounded up so that the fields after it
/// stay 8-byte aligned (the padding entries are never read).
pub const PORT_TABLE_LEN: usize = PORT_SLOTS.next_multiple_of(4);
/// Entries per generation in the VLAN table (one per VID).
pub const VLAN_SLOTS: usize = 4096;
/// IPv6 extension headers the parser walks before it gives up (malformed).
pub const MAX_IPV6_EXT_HEADERS: usize = 6;
/// VLAN tags the parser accepts (802.1Q and 802.1ad); a third tag is malformed.
pub const MAX_VLAN_TAGS: usize = 2;
/// Distinct rule sets per generation ([`GenTables::sets`]), shared by the port table, the
/// VLAN table and the destination trie. Ports need at most `2 * MAX_RULES + 2` (each
/// range starts and ends one run of equal sets), VLANs `MAX_RULES + 1`; the trie gets
/// the rest.
pub const SET_POOL_SLOTS: usize = 4096;
/// Entries of a destination trie's first level (indexed by the first 16 address bits).
pub const DST_ROOT_SLOTS: usize = 65_536;
/// Entries of each deeper node (indexed by the next 8 bits).
pub const DST_NODE_SLOTS: usize = 256;
/// Entries of [`GenTables::dst`]: the IPv4 root, the IPv6 root, then the nodes.
pub const DST_ENTRIES: usize = 1 << 20;
/// First entry of the IPv4 root in [`GenTables::dst`].
pub const DST_ROOT_V4: usize = 0;
/// First entry of the IPv6 root.
pub const DST_ROOT_V6: usize = DST_ROOT_SLOTS;
/// First entry of node 0.
pub const DST_NODES: usize = 2 * DST_ROOT_SLOTS;
/// Deeper nodes per generation (both families share them). A prefix longer than 16 bits
/// needs at most one node per further byte (2 for IPv4, 14 for IPv6), so this many
/// always suffice for [`MAX_RULES`] rules.
pub const DST_MAX_NODES: usize = (DST_ENTRIES - DST_NODES) / DST_NODE_SLOTS;
const _: () = assert!(DST_MAX_NODES >= MAX_RULES * 14);
/// A trie entry with this bit set points to a node: its low 15 bits are the node's first
/// entry divided by [`DST_NODE_SLOTS`], so the next entry for address byte `b` is
/// `((entry << 8) | b) & (DST_ENTRIES - 1)` (the mask drops this bit). Any other entry is
/// the index of a rule set in [`GenTables::sets`].
pub const DST_CHILD: u16 = 1 << 15;
const _: () = assert!((DST_ENTRIES / DST_NODE_SLOTS) <= DST_CHILD as usize);
const _: () = assert!(SET_POOL_SLOTS <= DST_CHILD as usize);
/// Rule id used in a [`VerdictRecord`] when no rule matched.
pub const NO_RULE: u16 = u16::MAX;
/// Magic value in [`VerdictRecord::magic`] ("NM").
pub const VERDICT_MAGIC: u16 = 0x4e4d;

/// Map and program names, shared so that both sides agree.
pub mod names {
    /// The steering XDP program.
    pub const PROG_STEER: &str = "netmit_steer";
    /// A trivial XDP_PASS program used as the benchmark baseline.
    pub const PROG_PASS: &str = "netmit_pass";
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

/// A set of rules, one bit per rank.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleSet(pub [u64; RULE_WORDS]);

impl RuleSet {
    /// The empty set.
    pub const EMPTY: Self = Self([0; RULE_WORDS]);

    /// Adds rank `rank`.
    #[inline(always)]
    pub fn insert(&mut self, rank: usize) {
        self.0[rank / 64] |= 1 << (rank % 64);
    }

    /// Whether rank `rank` is in the set.
    #[inline(always)]
    pub fn contains(&self, rank: usize) -> bool {
        self.0[rank / 64] & (1 << (rank % 64)) != 0
    }

    /// Set union, in place.
    #[inline(always)]
    pub fn union_with(&mut self, other: &Self) {
        let mut i = 0;
        while i < RULE_WORDS {
            self.0[i] |= other.0[i];
            i += 1;
        }
    }

    /// Set intersection, in place.
    #[inline(always)]
    pub fn intersect_with(&mut self, other: &Self) {
        let mut i = 0;
        while i < RULE_WORDS {
            self.0[i] &= other.0[i];
            i += 1;
        }
    }

    /// The lowest rank in the set: the best-ranked rule.
    #[inline(always)]
    pub fn first(&self) -> Option<usize> {
        let mut i = 0;
        while i < RULE_WORDS {
            let w = self.0[i];
            if w != 0 {
                return Some(i * 64 + lowest_bit(w) as usize);
            }
            i += 1;
        }
        None
    }
}

/// Positions of the single-bit words by their De Bruijn hash, for [`lowest_bit`].
static DEBRUIJN_POSITIONS: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        t[debruijn_hash(1 << i)] = i as u8;
        i += 1;
    }
    t
};

/// A distinct number in `0..64` for each single-bit word (the De Bruijn sequence
/// `0x03f79d71b4ca8b09` shifted by the bit's position, top six bits).
#[inline(always)]
const fn debruijn_hash(single_bit: u64) -> usize {
    (single_bit.wrapping_mul(0x03f7_9d71_b4ca_8b09) >> 58) as usize
}

/// Index of the lowest set bit of a non-zero word: isolate it, hash it, look its
/// position up in a 64-byte table. Branch-free; in the XDP program the table is a
/// read-only global that the verifier turns into a direct load, and the whole step is
/// about eight instructions (a binary search took about 30, with six branches, and cost
/// 2-3 ns more per packet).
#[inline(always)]
pub fn lowest_bit(w: u64) -> u32 {
    DEBRUIJN_POSITIONS[debruijn_hash(w & w.wrapping_neg())] as u32
}

/// Bits of [`GenTables::lookups`]: which per-packet table lookups a generation needs.
/// A lookup is skipped when no rule constrains that field.
pub mod lookup {
    /// Some rule has a destination-port range.
    pub const PORT: u32 = 1 << 0;
    /// Some rule has a VLAN id.
    pub const VLAN: u32 = 1 << 1;
    /// Some rule has an IPv4 destination prefix.
    pub const DST4: u32 = 1 << 2;
    /// Some rule has an IPv6 destination prefix.
    pub const DST6: u32 = 1 << 3;
}

/// Every lookup table of one generation: one value of the tables map, so that the data
/// path reaches all of them with a single map lookup. About 2.3 MiB; user space builds it
/// on the heap.
///
/// The big tables hold 16-bit indexes into [`GenTables::sets`] rather than bitmaps.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GenTables {
    /// Rules installed in this generation.
    pub rule_count: u32,
    /// [`lookup`] bits.
    pub lookups: u32,
    /// Every installed rule (the value used for a skipped lookup).
    pub all: RuleSet,
    /// Rules accepting a UDP, TCP and other packet, by [`PacketProto`] index.
    pub proto: [RuleSet; 3],
    /// Rules without a VLAN constraint (the set for untagged packets).
    pub untagged: RuleSet,
    /// Rules without a destination constraint (the set for non-IP packets).
    pub any_dst: RuleSet,
    /// The rules an IPv6 packet can match, whatever its address: `any_dst` and the rules
    /// with an IPv6 prefix (see [`V6_CHECKS`]).
    pub v6_candidates: RuleSet,
    /// Action and rule id by rank.
    pub actions: [RuleAction; MAX_RULES],
    /// IPv6 prefix by rank (zero for the other rules).
    pub v6_prefixes: [Prefix6; MAX_RULES],
    /// Set index by destination port, [`PORT_NONE`] for packets without ports; only
    /// read when [`lookup::PORT`] is set.
    pub ports: [u16; PORT_TABLE_LEN],
    /// Set index by outer VLAN id; only read when [`lookup::VLAN`] is set.
    pub vlans: [u16; VLAN_SLOTS],
    /// The deduplicated rule sets.
    pub sets: [RuleSet; SET_POOL_SLOTS],
    /// The destination trie: [`DST_ROOT_SLOTS`] entries of IPv4 root at
    /// [`DST_ROOT_V4`], the IPv6 root at [`DST_ROOT_V6`], then the nodes from
    /// [`DST_NODES`] on, [`DST_NODE_SLOTS`] entries each (see [`DST_CHILD`]).
    pub dst: [u16; DST_ENTRIES],
}

/// An IPv6 prefix as two 64-bit words of the address bytes in memory order, as two
/// loads from the packet give them: an address `a` lies in the prefix when
/// `(a ^ addr) & mask` is zero in both words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefix6 {
    /// The prefix bytes.
    pub addr: [u64; 2],
    /// The prefix length as a mask over the same bytes.
    pub mask: [u64; 2],
}

impl Prefix6 {
    /// `addr/len` (host bits must be zero).
    pub fn new(addr: [u8; 16], len: u8) -> Self {
        let mut mask = [0u8; 16];
        let mut bits = len.min(128) as usize;
        let mut i = 0;
        while bits > 0 {
            let n = bits.min(8);
            mask[i] = 0xff << (8 - n);
            bits -= n;
            i += 1;
        }
        let word = |b: &[u8; 16], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(w)
        };
        Self {
            addr: [word(&addr, 0), word(&addr, 1)],
            mask: [word(&mask, 0), word(&mask, 1)],
        }
    }

    /// Whether the address given as two memory-order words lies in the prefix.
    #[inline(always)]
    pub fn contains(&self, a0: u64, a1: u64) -> bool {
        ((a0 ^ self.addr[0]) & self.mask[0]) | ((a1 ^ self.addr[1]) & self.mask[1]) == 0
    }
}

/// Candidate rules an IPv6 packet checks against their own prefix, best first, before it
/// walks the destination trie. IPv6 rule sets are usually small, so most packets are
/// decided after one or two checks; the trie walk (up to fifteen dependent reads) is the
/// fallback when more candidates than this precede the winner.
pub const V6_CHECKS: usize = 4;

/// The configuration map's single value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Generation the data path uses (0 or 1): the index of its [`GenTables`].
    pub active: u32,
    /// Interface index the program was attached to (for `status`).
    pub ifindex: u32,
    /// [`AttachMode`] as a number.
    pub attach_mode: u32,
    /// Next insertion sequence number for rules (orders rules of equal prio).
    pub next_seq: u32,
}

/// How the program is attached, as recorded in [`Config::attach_mode`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) XDP.
    Native = 1,
    /// Generic (skb) XDP.
    Generic = 2,
}

impl AttachMode {
    /// The mode's name, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// Protocol class of a packet, as the rule tables index it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketProto {
    /// UDP over IPv4 or IPv6.
    Udp = 0,
    /// TCP over IPv4 or IPv6.
    Tcp = 1,
    /// Anything else, including non-IP frames.
    Other = 2,
}

/// Protocol selector of a rule.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleProto {
    /// Any protocol, including non-IP frames.
    Any = 0,
    /// UDP only.
    Udp = 1,
    /// TCP only.
    Tcp = 2,
}

/// What a matching rule does.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Redirect to the AF_XDP socket of the packet's RX queue (kernel if none).
    Xsk = 0,
    /// Hand the packet to the kernel stack.
    Pass = 1,
    /// Drop the packet.
    Drop = 2,
}

impl Action {
    /// Decodes the byte stored in maps.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Xsk),
            1 => Some(Self::Pass),
            2 => Some(Self::Drop),
            _ => None,
        }
    }
}

/// Destination family of a rule's prefix in [`RuleSpec::dst_family`].
pub mod family {
    /// No destination constraint.
    pub const NONE: u8 = 0;
    /// IPv4 prefix.
    pub const V4: u8 = 4;
    /// IPv6 prefix.
    pub const V6: u8 = 6;
}

/// A steering rule as the user wrote it, stored by rule id so that the rule set can be
/// listed and rebuilt from bpffs alone. The data path never reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleSpec {
    /// Insertion sequence number; orders rules of equal `prio`.
    pub seq: u32,
    /// 1 when this slot holds a rule.
    pub valid: u8,
    /// [`RuleProto`] as a number.
    pub proto: u8,
    /// [`Action`] as a number.
    pub action: u8,
    /// 1 when `vlan` is a constraint.
    pub has_vlan: u8,
    /// Outer VLAN id to match.
    pub vlan: u16,
    /// Priority: lower wins.
    pub prio: u16,
    /// Lowest destination port accepted.
    pub dport_lo: u16,
    /// Highest destination port accepted.
    pub dport_hi: u16,
    /// [`family`] of `dst`.
    pub dst_family: u8,
    /// Prefix length of `dst`.
    pub dst_prefix_len: u8,
    /// Padding, zero.
    pub _pad: [u8; 2],
    /// Destination prefix bytes (IPv4 in the first four).
    pub dst: [u8; 16],
}

/// What the data path does for a given rank.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleAction {
    /// Rule id (index into the rules map and the hit counters).
    pub rule_id: u16,
    /// [`Action`] as a number.
    pub action: u8,
    /// Padding, zero.
    pub _pad: u8,
}

/// How the data path disposed of a packet; indexes [`QueueStats::verdicts`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched: passed to the kernel.
    Unmatched = 0,
    /// A `pass` rule matched.
    Pass = 1,
    /// A `drop` rule matched.
    Drop = 2,
    /// An `xsk` rule matched and the packet went to the queue's AF_XDP socket.
    Xsk = 3,
    /// An `xsk` rule matched but no socket is registered for the queue: passed.
    XskFallback = 4,
    /// The headers could not be parsed: passed to the kernel untouched.
    Malformed = 5,
}

/// Number of [`Verdict`] values.
pub const VERDICTS: usize = 6;
/// Slots in [`QueueStats::verdicts`]: a power of two so the data path can index it with a
/// mask instead of a bounds check; the last two are unused.
pub const VERDICT_SLOTS: usize = 8;

impl Verdict {
    /// All verdicts in index order.
    pub const ALL: [Verdict; VERDICTS] = [
        Verdict::Unmatched,
        Verdict::Pass,
        Verdict::Drop,
        Verdict::Xsk,
        Verdict::XskFallback,
        Verdict::Malformed,
    ];

    /// Decodes the byte in a [`VerdictRecord`].
    pub const fn from_u8(v: u8) -> Option<Self> {
        if (v as usize) < VERDICTS {
            Some(Self::ALL[v as usize])
        } else {
            None
        }
    }

    /// Short lower-case name used in output.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Unmatched => "unmatched",
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::Xsk => "xsk",
            Verdict::XskFallback => "xsk_fallback",
            Verdict::Malformed => "malformed",
        }
    }
}

/// Packets and bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes (frame length as XDP sees it).
    pub bytes: u64,
}

/// Per-queue (and per-CPU) counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// By [`Verdict`] (slots past [`VERDICTS`] stay zero).
    pub verdicts: [Counter; VERDICT_SLOTS],
}

/// Why a packet was [`Verdict::Malformed`]; reported by `netmit classify`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not malformed.
    None = 0,
    /// Shorter than an Ethernet header.
    Ethernet = 1,
    /// A VLAN tag is cut short, or there are more than two tags.
    Vlan = 2,
    /// IPv4 header cut short or invalid (version, IHL, total length).
    Ipv4 = 3,
    /// IPv6 header cut short or invalid (version, payload length).
    Ipv6 = 4,
    /// IPv6 extension header cut short, or more than the parser walks.
    Ipv6Ext = 5,
    /// UDP or TCP header cut short or invalid.
    L4 = 6,
}

impl Malformed {
    /// Decodes the byte in a [`VerdictRecord`].
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::Ethernet),
            2 => Some(Self::Vlan),
            3 => Some(Self::Ipv4),
            4 => Some(Self::Ipv6),
            5 => Some(Self::Ipv6Ext),
            6 => Some(Self::L4),
            _ => None,
        }
    }

    /// Short lower-case name used in output.
    pub const fn name(self) -> &'static str {
        match self {
            Malformed::None => "none",
            Malformed::Ethernet => "ethernet",
            Malformed::Vlan => "vlan",
            Malformed::Ipv4 => "ipv4",
            Malformed::Ipv6 => "ipv6",
            Malformed::Ipv6Ext => "ipv6-ext",
            Malformed::L4 => "l4",
        }
    }
}

/// Written in front of the packet (XDP metadata) when [`names::GLOBAL_TRACE`] is set, so
/// that a BPF_PROG_TEST_RUN caller learns which rule matched.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictRecord {
    /// [`VERDICT_MAGIC`].
    pub magic: u16,
    /// Matching rule id or [`NO_RULE`].
    pub rule_id: u16,
    /// [`Verdict`] as a number.
    pub verdict: u8,
    /// [`Malformed`] as a number.
    pub malformed: u8,
    /// Padding, zero.
    pub _pad: [u8; 2],
}

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
    /// 1: write a send stamp ([`STAMP_MAGIC`] is in the template; the program writes
    /// `bpf_ktime_get_ns()` at UDP payload offset [`STAMP_TS_OFF`] and checksums it with
    /// [`udp_csum_update_stamped`]); 0: the frames are sent as the template has them.
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

mod load;
pub use load::*;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C) (or packed) structs of integers without implicit
    // padding, so every bit pattern is valid.
    unsafe impl aya::Pod for RuleSet {}
    unsafe impl aya::Pod for GenTables {}
    unsafe impl aya::Pod for Prefix6 {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for RuleSpec {}
    unsafe impl aya::Pod for RuleAction {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for QueueStats {}
    unsafe impl aya::Pod for VerdictRecord {}
    unsafe impl aya::Pod for TrafficParams {}
    unsafe impl aya::Pod for TrafficState {}
    unsafe impl aya::Pod for NapiOffsets {}
    unsafe impl aya::Pod for NapiPollCounters {}
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
