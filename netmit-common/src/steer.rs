//! The steering program's tables, rules, verdicts and counters (see the crate
//! documentation for how the lookup works).
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

/// Written in front of the packet (XDP metadata) when [`crate::names::GLOBAL_TRACE`] is set, so
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
