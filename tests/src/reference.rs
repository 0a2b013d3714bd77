//! An independent reference classifier: the oracle for differential tests of the XDP
//! program.
//!
//! It implements `docs/steering.md` (parsing, matching, verdicts) as plainly as possible:
//! [`parse`] turns a frame into a [`ParsedPacket`] (or [`Malformed`]) with bounds-checked
//! slicing only, and [`classify`] scans the rule list linearly and keeps the matching rule
//! with the smallest `(prio, index)`. It deliberately shares no code with `netmit-user` or
//! `netmit-ebpf`.
//!
//! Rules are given as an ordered slice of [`RefRule`]: the index is the insertion order and,
//! because the tool assigns the lowest free slot, also the rule id when the rules are added
//! in that order to an empty table.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;
use rand::seq::IndexedRandom;

use crate::packet::{DST_V4_POOL, DST_V6_POOL, PORT_POOL, VID_POOL};

/// The `proto` key of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefProto {
    /// `proto=any` (the default; not rendered).
    Any,
    /// `proto=udp`.
    Udp,
    /// `proto=tcp`.
    Tcp,
}

/// The `action` key of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefAction {
    /// `action=xsk`: redirect to the queue's AF_XDP socket.
    Xsk,
    /// `action=pass`: hand to the kernel.
    Pass,
    /// `action=drop`: drop.
    Drop,
}

impl RefAction {
    /// The rule-syntax spelling: `xsk`, `pass` or `drop`.
    pub fn name(self) -> &'static str {
        match self {
            RefAction::Xsk => "xsk",
            RefAction::Pass => "pass",
            RefAction::Drop => "drop",
        }
    }
}

/// A steering rule as the reference understands it. `None` means "no constraint".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RefRule {
    /// Transport protocol.
    pub proto: RefProto,
    /// Inclusive destination port range `(lo, hi)`; `(0, 65535)` is no constraint.
    pub dport: Option<(u16, u16)>,
    /// Destination prefix `(address, prefix length)`; bits below the length are ignored
    /// when matching and rendered as zero.
    pub dst: Option<(IpAddr, u8)>,
    /// Outer VLAN id.
    pub vlan: Option<u16>,
    /// Action of the rule.
    pub action: RefAction,
    /// Priority; lower wins.
    pub prio: u16,
}

impl Default for RefRule {
    /// The empty rule: matches everything, `action=xsk`, `prio=1000`.
    fn default() -> Self {
        RefRule {
            proto: RefProto::Any,
            dport: None,
            dst: None,
            vlan: None,
            action: RefAction::Xsk,
            prio: 1000,
        }
    }
}

impl RefRule {
    /// Render in the `docs/steering.md` syntax, keys in the order proto, dport, dst, vlan,
    /// action, prio. Unset keys (and `proto=any`) are omitted; action and prio are always
    /// emitted. `dport` is `N` when lo == hi, else `LO-HI`; `dst` is `addr/len` with the host
    /// bits cleared.
    pub fn to_rule_string(&self) -> String {
        let mut s = String::new();
        match self.proto {
            RefProto::Any => {}
            RefProto::Udp => s.push_str("proto=udp,"),
            RefProto::Tcp => s.push_str("proto=tcp,"),
        }
        if let Some((lo, hi)) = self.dport {
            if lo == hi {
                write!(s, "dport={lo},").unwrap();
            } else {
                write!(s, "dport={lo}-{hi},").unwrap();
            }
        }
        if let Some((addr, len)) = self.dst {
            write!(s, "dst={}/{len},", mask_addr(addr, len)).unwrap();
        }
        if let Some(vid) = self.vlan {
            write!(s, "vlan={vid},").unwrap();
        }
        write!(s, "action={},prio={}", self.action.name(), self.prio).unwrap();
        s
    }

    /// Whether this rule matches a well-formed packet (the "Matching" section of the spec).
    pub fn matches(&self, p: &ParsedPacket) -> bool {
        let proto_ok = match self.proto {
            RefProto::Any => true,
            RefProto::Udp => p.proto == PacketProto::Udp,
            RefProto::Tcp => p.proto == PacketProto::Tcp,
        };
        let dport_ok = match self.dport {
            None | Some((0, 65535)) => true,
            Some((lo, hi)) => match p.dport {
                Some(port) => lo <= port && port <= hi,
                None => false,
            },
        };
        let dst_ok = match self.dst {
            None => true,
            Some((net, len)) => match p.dst {
                Some(addr) => prefix_contains(net, len, addr),
                None => false,
            },
        };
        let vlan_ok = match self.vlan {
            None => true,
            Some(vid) => p.vlan == Some(vid),
        };
        proto_ok && dport_ok && dst_ok && vlan_ok
    }
}

/// Clear the bits of `addr` below prefix length `len` (clamped to the family's width).
pub fn mask_addr(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// Whether `addr` is of the same family as `net` and lies in `net/len`.
pub fn prefix_contains(net: IpAddr, len: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            mask_addr(net, len) == mask_addr(addr, len)
        }
        _ => false,
    }
}

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

/// Classification outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Parsing failed.
    Malformed,
    /// No rule matched.
    Unmatched,
    /// A `pass` rule won.
    Pass,
    /// A `drop` rule won.
    Drop,
    /// An `xsk` rule won and the queue has an AF_XDP socket.
    Xsk,
    /// An `xsk` rule won but the queue has no socket.
    XskFallback,
}

impl Verdict {
    /// All verdicts, in counter order.
    pub const ALL: [Verdict; 6] = [
        Verdict::Malformed,
        Verdict::Unmatched,
        Verdict::Pass,
        Verdict::Drop,
        Verdict::Xsk,
        Verdict::XskFallback,
    ];

    /// The verdict's name as in the spec: `malformed`, `unmatched`, `pass`, `drop`, `xsk`,
    /// `xsk_fallback`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Malformed => "malformed",
            Verdict::Unmatched => "unmatched",
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::Xsk => "xsk",
            Verdict::XskFallback => "xsk_fallback",
        }
    }
}

/// Verdict plus the index of the winning rule (`None` for malformed/unmatched).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RefVerdict {
    /// The verdict.
    pub verdict: Verdict,
    /// Index into the rule slice of the winning rule.
    pub rule: Option<usize>,
}

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

/// Classify a frame against `rules` (index = insertion order) per `docs/steering.md`.
/// `xsk_socket_present` says whether the RX queue has an AF_XDP socket.
pub fn classify(frame: &[u8], rules: &[RefRule], xsk_socket_present: bool) -> RefVerdict {
    let packet = match parse(frame) {
        Ok(p) => p,
        Err(_) => {
            return RefVerdict {
                verdict: Verdict::Malformed,
                rule: None,
            };
        }
    };
    let mut best: Option<usize> = None;
    for (i, rule) in rules.iter().enumerate() {
        if !rule.matches(&packet) {
            continue;
        }
        // Strictly lower prio wins; on equal prio the earlier rule (already in `best`) stays.
        match best {
            Some(b) if rules[b].prio <= rule.prio => {}
            _ => best = Some(i),
        }
    }
    let Some(i) = best else {
        return RefVerdict {
            verdict: Verdict::Unmatched,
            rule: None,
        };
    };
    let verdict = match rules[i].action {
        RefAction::Pass => Verdict::Pass,
        RefAction::Drop => Verdict::Drop,
        RefAction::Xsk if xsk_socket_present => Verdict::Xsk,
        RefAction::Xsk => Verdict::XskFallback,
    };
    RefVerdict {
        verdict,
        rule: Some(i),
    }
}

/// `n` random rules whose fields often overlap [`crate::packet::random_packets`]: protocols
/// any/udp/tcp; ports 53, 80, 443, the [`PORT_POOL`], ranges such as 9000-9010, 1-1023,
/// 1024-65535 and 0-65535; IPv4 prefixes /8 /15 /16 /24 /32 (rarely /0) around
/// 198.18.0.0/15 and IPv6 prefixes /32 /48 /64 /128 (rarely /0) around 2001:db8::/32; VLANs
/// from [`VID_POOL`]; prios from a small set (so ties occur); all three actions.
pub fn random_rules<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<RefRule> {
    (0..n).map(|_| random_rule(rng)).collect()
}

/// One random rule (see [`random_rules`]).
pub fn random_rule<R: Rng + ?Sized>(rng: &mut R) -> RefRule {
    let proto = match rng.random_range(0..10) {
        0..4 => RefProto::Any,
        4..7 => RefProto::Udp,
        _ => RefProto::Tcp,
    };
    let dport = match rng.random_range(0..20) {
        0..9 => None,
        9..13 => {
            let p = *[53u16, 80, 443, 9000, 9005, 9010].choose(rng).unwrap();
            Some((p, p))
        }
        13 => {
            let p = *PORT_POOL.choose(rng).unwrap();
            Some((p, p))
        }
        14..17 => Some(
            *[
                (9000u16, 9010u16),
                (9000, 9004),
                (9005, 9010),
                (1, 1023),
                (1024, 65535),
            ]
            .choose(rng)
            .unwrap(),
        ),
        17 => Some((0, 65535)),
        _ => {
            let lo = rng.random_range(8990..=9010);
            Some((lo, lo + rng.random_range(0..10)))
        }
    };
    let dst = match rng.random_range(0..20) {
        0..10 => None,
        10..16 => {
            let addr = IpAddr::V4(*DST_V4_POOL.choose(rng).unwrap());
            let len = if rng.random_bool(0.03) {
                0
            } else {
                *[8u8, 15, 15, 16, 24, 32].choose(rng).unwrap()
            };
            Some((mask_addr(addr, len), len))
        }
        _ => {
            let addr = IpAddr::V6(*DST_V6_POOL.choose(rng).unwrap());
            let len = if rng.random_bool(0.03) {
                0
            } else {
                *[32u8, 32, 48, 64, 128].choose(rng).unwrap()
            };
            Some((mask_addr(addr, len), len))
        }
    };
    let vlan = match rng.random_range(0..20) {
        0..12 => None,
        12 => Some(*[0u16, 4095].choose(rng).unwrap()),
        _ => Some(*VID_POOL.choose(rng).unwrap()),
    };
    let action = *[
        RefAction::Xsk,
        RefAction::Xsk,
        RefAction::Pass,
        RefAction::Drop,
    ]
    .choose(rng)
    .unwrap();
    let prio = *[0u16, 1, 10, 10, 100, 100, 1000, 1000, 65535]
        .choose(rng)
        .unwrap();
    RefRule {
        proto,
        dport,
        dst,
        vlan,
        action,
        prio,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const D4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const D6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);

    fn v4() -> PacketBuilder {
        PacketBuilder::new().ipv4(SRC_V4, D4)
    }
    fn v6() -> PacketBuilder {
        PacketBuilder::new().ipv6(SRC_V6, D6)
    }
    fn rule(f: impl FnOnce(&mut RefRule)) -> RefRule {
        let mut r = RefRule::default();
        f(&mut r);
        r
    }
    fn verdict(frame: &[u8], rules: &[RefRule]) -> (Verdict, Option<usize>) {
        let v = classify(frame, rules, true);
        (v.verdict, v.rule)
    }
    fn v4net(a: [u8; 4], len: u8) -> Option<(IpAddr, u8)> {
        Some((IpAddr::V4(Ipv4Addr::from(a)), len))
    }

    #[test]
    fn vlan_udp_matched_by_vlan_and_dport() {
        let r = vec![rule(|r| {
            r.vlan = Some(10);
            r.dport = Some((9000, 9000));
        })];
        let f = v4().vlan(10).udp(1, 9000).build();
        assert_eq!(
            parse(&f),
            Ok(ParsedPacket {
                proto: PacketProto::Udp,
                dport: Some(9000),
                dst: Some(IpAddr::V4(D4)),
                vlan: Some(10)
            })
        );
        assert_eq!(verdict(&f, &r), (Verdict::Xsk, Some(0)));
        assert_eq!(classify(&f, &r, false).verdict, Verdict::XskFallback);
        // Inner tag 10 under outer tag 20 does not match vlan=10.
        assert_eq!(
            verdict(&v4().vlan(20).vlan(10).udp(1, 9000).build(), &r),
            (Verdict::Unmatched, None)
        );
        // Untagged does not match; other port does not match.
        assert_eq!(
            verdict(&v4().udp(1, 9000).build(), &r).0,
            Verdict::Unmatched
        );
        assert_eq!(
            verdict(&v4().vlan(10).udp(1, 9001).build(), &r).0,
            Verdict::Unmatched
        );
        // PCP bits and the 802.1ad TPID don't matter.
        assert_eq!(
            verdict(&v4().vlan_tag(TPID_8021AD, 10, 7).udp(1, 9000).build(), &r).0,
            Verdict::Xsk
        );
    }

    #[test]
    fn ipv4_non_first_fragment_has_protocol_but_no_ports() {
        let f = v4()
            .ipv4_fragment(100, true)
            .udp(1, 50)
            .payload(vec![0; 16])
            .build();
        assert_eq!(parse(&f).unwrap().proto, PacketProto::Udp);
        assert_eq!(parse(&f).unwrap().dport, None);
        let udp = rule(|r| r.proto = RefProto::Udp);
        let udp_ports = rule(|r| {
            r.proto = RefProto::Udp;
            r.dport = Some((1, 100));
        });
        let full_range = rule(|r| r.dport = Some((0, 65535)));
        assert_eq!(verdict(&f, std::slice::from_ref(&udp)).0, Verdict::Xsk);
        assert_eq!(
            verdict(&f, std::slice::from_ref(&udp_ports)).0,
            Verdict::Unmatched
        );
        assert_eq!(
            verdict(&f, std::slice::from_ref(&full_range)).0,
            Verdict::Xsk
        );
        // The first fragment (offset 0, MF) has ports.
        let first = v4().ipv4_fragment(0, true).udp(1, 50).build();
        assert_eq!(verdict(&first, &[udp_ports]).0, Verdict::Xsk);
        // A non-first "TCP" fragment with no TCP header at all is not malformed.
        let bare = v4()
            .ipv4_fragment(1, false)
            .l4_raw(IPPROTO_TCP, vec![])
            .build();
        assert_eq!(parse(&bare).unwrap().proto, PacketProto::Tcp);
    }

    #[test]
    fn vlan_stack_limits() {
        let any = [RefRule::default()];
        let three = v4()
            .vlan(10)
            .vlan_tag(TPID_8021AD, 20, 0)
            .vlan(30)
            .udp(1, 2)
            .build();
        assert_eq!(parse(&three), Err(Malformed("more than two VLAN tags")));
        assert_eq!(verdict(&three, &any), (Verdict::Malformed, None));
        let two = v4().vlan_tag(TPID_8021AD, 20, 0).vlan(30).udp(1, 2).build();
        assert_eq!(parse(&two).unwrap().vlan, Some(20));
        let cut = v4().vlan(10).build()[..17].to_vec();
        assert_eq!(verdict(&cut, &any).0, Verdict::Malformed);
        // Tag then ARP: 18 bytes is enough.
        let tagged_arp = PacketBuilder::new()
            .vlan(10)
            .ethertype(ETHERTYPE_ARP)
            .build();
        assert_eq!(parse(&tagged_arp).unwrap().vlan, Some(10));
    }

    #[test]
    fn truncated_tcp_is_malformed() {
        let f = v4().tcp(1, 80).tcp_options(tcp_syn_options()).build();
        assert_eq!(verdict(&f, &[RefRule::default()]).0, Verdict::Xsk);
        // Cut into the options: data offset 10 needs 40 bytes, but the total length still
        // claims the whole packet, so it is the IPv4 total length check that fails.
        assert_eq!(
            verdict(&f[..f.len() - 1], &[RefRule::default()]).0,
            Verdict::Malformed
        );
        // Total length shortened consistently: the TCP check fails.
        let g = v4()
            .tcp(1, 80)
            .tcp_options(tcp_syn_options())
            .ipv4_total_len(20 + 39)
            .build();
        assert_eq!(
            parse(&g),
            Err(Malformed("TCP header (data offset) beyond the L3 end"))
        );
        let h = v4()
            .tcp(1, 80)
            .tcp_data_offset(4)
            .payload(vec![0; 8])
            .build();
        assert_eq!(parse(&h), Err(Malformed("TCP data offset < 5")));
    }

    #[test]
    fn non_ip_matched_only_by_unconstrained_rules() {
        let arp = PacketBuilder::new()
            .arp_request(SRC_V4, D4)
            .pad_to(60)
            .build();
        assert_eq!(
            parse(&arp),
            Ok(ParsedPacket {
                proto: PacketProto::Other,
                dport: None,
                dst: None,
                vlan: None
            })
        );
        let rules = vec![
            rule(|r| r.proto = RefProto::Udp),
            rule(|r| r.dport = Some((0, 10))),
            rule(|r| r.dst = v4net([0, 0, 0, 0], 0)),
            rule(|r| r.vlan = Some(1)),
            rule(|r| {
                r.action = RefAction::Drop;
                r.prio = 5000;
            }),
        ];
        assert_eq!(verdict(&arp, &rules), (Verdict::Drop, Some(4)));
        assert_eq!(verdict(&arp, &rules[..4]), (Verdict::Unmatched, None));
        assert_eq!(verdict(&arp, &[]), (Verdict::Unmatched, None));
        // Fewer than 14 bytes: malformed even with the empty rule.
        assert_eq!(verdict(&arp[..13], &rules), (Verdict::Malformed, None));
    }

    #[test]
    fn priority_and_tie_breaking() {
        let f = v4().udp(1, 9000).build();
        let rules = vec![
            rule(|r| {
                r.action = RefAction::Pass;
                r.prio = 10;
            }),
            rule(|r| {
                r.action = RefAction::Drop;
                r.prio = 10;
            }),
            rule(|r| {
                r.dport = Some((9000, 9000));
                r.prio = 1000;
            }),
            rule(|r| {
                r.action = RefAction::Drop;
                r.proto = RefProto::Tcp;
                r.prio = 0;
            }),
        ];
        // Rule 3 (prio 0) doesn't match UDP; 0 and 1 tie at 10, 0 was added first.
        assert_eq!(verdict(&f, &rules), (Verdict::Pass, Some(0)));
        assert_eq!(verdict(&f, &rules[1..]), (Verdict::Drop, Some(0)));
        let mut swapped = rules.clone();
        swapped.swap(0, 1);
        assert_eq!(verdict(&f, &swapped), (Verdict::Drop, Some(0)));
        let mut low = rules.clone();
        low[2].prio = 9;
        assert_eq!(verdict(&f, &low), (Verdict::Xsk, Some(2)));
        assert_eq!(
            verdict(&v4().tcp(1, 80).build(), &rules),
            (Verdict::Drop, Some(3))
        );
    }

    #[test]
    fn destination_prefixes_and_families() {
        let r15 = rule(|r| r.dst = v4net([198, 18, 0, 0], 15));
        let r32 = rule(|r| r.dst = v4net([198, 19, 0, 1], 32));
        let r6 = rule(|r| r.dst = Some(("2001:db8::".parse().unwrap(), 32)));
        let r6_48 = rule(|r| r.dst = Some(("2001:db8:1::".parse().unwrap(), 48)));
        let a = PacketBuilder::new()
            .ipv4(SRC_V4, Ipv4Addr::new(198, 19, 255, 255))
            .udp(1, 1)
            .build();
        let b = PacketBuilder::new()
            .ipv4(SRC_V4, Ipv4Addr::new(198, 20, 0, 0))
            .udp(1, 1)
            .build();
        let c = PacketBuilder::new()
            .ipv4(SRC_V4, Ipv4Addr::new(198, 19, 0, 1))
            .udp(1, 1)
            .build();
        assert!(r15.matches(&parse(&a).unwrap()));
        assert!(!r15.matches(&parse(&b).unwrap()));
        assert!(!r32.matches(&parse(&a).unwrap()));
        assert!(r32.matches(&parse(&c).unwrap()));
        let p6 = parse(&v6().udp(1, 1).build()).unwrap();
        assert!(r6.matches(&p6));
        assert!(!r6_48.matches(&p6)); // 2001:db8:0:1::1 is not in 2001:db8:1::/48
        assert!(!r15.matches(&p6)); // wrong family
        let mapped = PacketBuilder::new()
            .ipv6(SRC_V6, "::ffff:198.18.0.1".parse().unwrap())
            .udp(1, 1)
            .build();
        assert!(!r15.matches(&parse(&mapped).unwrap()));
        assert!(!rule(|r| r.dst = v4net([0, 0, 0, 0], 0)).matches(&p6));
    }

    #[test]
    fn ipv6_extension_walk() {
        let udp9000 = rule(|r| {
            r.proto = RefProto::Udp;
            r.dport = Some((9000, 9000));
        });
        let dopt = Ipv6Ext::DestOpts { len: 0 };
        let chain = |n: usize| {
            let mut b = v6();
            for _ in 0..n {
                b = b.ipv6_ext(dopt);
            }
            b.udp(1, 9000).build()
        };
        assert_eq!(
            verdict(&chain(6), std::slice::from_ref(&udp9000)).0,
            Verdict::Xsk
        );
        assert_eq!(
            verdict(&chain(7), std::slice::from_ref(&udp9000)).0,
            Verdict::Malformed
        );
        // Non-first IPv6 fragment: UDP, no ports.
        let nf = v6()
            .ipv6_ext(Ipv6Ext::HopByHop { len: 1 })
            .ipv6_ext(Ipv6Ext::Fragment {
                offset: 8,
                more: false,
                id: 1,
            });
        let p = parse(&nf.udp(1, 9000).build()).unwrap();
        assert_eq!((p.proto, p.dport), (PacketProto::Udp, None));
        // First fragment: ports.
        let first = v6()
            .ipv6_ext(Ipv6Ext::Fragment {
                offset: 0,
                more: true,
                id: 1,
            })
            .udp(1, 9000)
            .build();
        assert_eq!(parse(&first).unwrap().dport, Some(9000));
        // Extension header longer than the payload.
        let long = v6()
            .ipv6_ext(Ipv6Ext::DestOpts { len: 1 })
            .ipv6_payload_len(8)
            .build();
        assert_eq!(
            parse(&long),
            Err(Malformed("extension header length beyond the payload end"))
        );
        // Payload length one past the frame.
        assert_eq!(
            parse(&v6().udp(1, 1).ipv6_payload_len(9).build()),
            Err(Malformed("IPv6 payload length beyond the frame"))
        );
        // ICMPv6 is "other".
        assert_eq!(
            parse(&v6().icmp_echo(1, 1).build()).unwrap().proto,
            PacketProto::Other
        );
    }

    #[test]
    fn ipv4_header_checks() {
        let any = [RefRule::default()];
        assert_eq!(
            parse(&v4().ipv4_version(6).udp(1, 1).build()),
            Err(Malformed("IPv4 version is not 4"))
        );
        assert_eq!(
            parse(&v4().ipv4_ihl(4).udp(1, 1).build()),
            Err(Malformed("IPv4 IHL < 5"))
        );
        assert_eq!(
            parse(&v4().ipv4_total_len(29).udp(1, 1).build()),
            Err(Malformed("IPv4 total length beyond the frame"))
        );
        assert_eq!(
            parse(&v4().ipv4_total_len(19).udp(1, 1).build()),
            Err(Malformed("IPv4 total length < IHL*4"))
        );
        // Padding after the IP packet is fine; padding counted by total length is fine too.
        assert_eq!(
            verdict(&v4().udp(1, 1).pad_to(60).build(), &any).0,
            Verdict::Xsk
        );
        assert_eq!(
            verdict(&v4().udp(1, 1).ipv4_total_len(29).pad_to(60).build(), &any).0,
            Verdict::Xsk
        );
        // Options shift the transport header.
        let opt = v4().ipv4_options(vec![1; 8]).udp(1, 443).build();
        assert_eq!(parse(&opt).unwrap().dport, Some(443));
        // An IPv4 packet with protocol ICMP and no payload is fine.
        assert_eq!(
            parse(&v4().l4_raw(IPPROTO_ICMP, vec![]).build())
                .unwrap()
                .proto,
            PacketProto::Other
        );
    }

    #[test]
    fn rule_strings() {
        assert_eq!(RefRule::default().to_rule_string(), "action=xsk,prio=1000");
        let r = RefRule {
            proto: RefProto::Udp,
            dport: Some((9000, 9010)),
            dst: v4net([198, 18, 0, 0], 15),
            vlan: Some(10),
            action: RefAction::Xsk,
            prio: 10,
        };
        assert_eq!(
            r.to_rule_string(),
            "proto=udp,dport=9000-9010,dst=198.18.0.0/15,vlan=10,action=xsk,prio=10"
        );
        let r = RefRule {
            proto: RefProto::Tcp,
            dport: Some((443, 443)),
            dst: Some(("2001:db8:1:2::3".parse().unwrap(), 48)),
            vlan: None,
            action: RefAction::Drop,
            prio: 0,
        };
        assert_eq!(
            r.to_rule_string(),
            "proto=tcp,dport=443,dst=2001:db8:1::/48,action=drop,prio=0"
        );
        let r = rule(|r| {
            r.dst = v4net([198, 19, 1, 1], 15);
            r.action = RefAction::Pass;
        });
        assert_eq!(
            r.to_rule_string(),
            "dst=198.18.0.0/15,action=pass,prio=1000"
        );
        assert_eq!(
            rule(|r| r.dst = v4net([198, 18, 0, 1], 32)).to_rule_string(),
            "dst=198.18.0.1/32,action=xsk,prio=1000"
        );
        let names: Vec<_> = Verdict::ALL.iter().map(|v| v.name()).collect();
        assert_eq!(
            names,
            [
                "malformed",
                "unmatched",
                "pass",
                "drop",
                "xsk",
                "xsk_fallback"
            ]
        );
    }

    #[test]
    fn edge_cases_cover_every_verdict_and_reason() {
        // Sanity of the corpora against the oracle: every kind of outcome occurs.
        let mut rng = StdRng::seed_from_u64(1);
        let rule_sets: Vec<Vec<RefRule>> = (0..10).map(|_| random_rules(&mut rng, 6)).collect();
        let rules = random_rules(&mut rng, 20);
        let mut frames = edge_case_packets();
        frames.extend(random_packets(&mut StdRng::seed_from_u64(2), 2000));
        let mut seen = std::collections::HashSet::new();
        let mut reasons = std::collections::HashSet::new();
        for f in &frames {
            for set in &rule_sets {
                seen.insert(classify(f, set, true).verdict);
                seen.insert(classify(f, set, false).verdict);
            }
            if let Err(Malformed(why)) = parse(f) {
                reasons.insert(why);
            }
        }
        assert_eq!(seen.len(), 6, "verdicts seen: {seen:?}");
        assert!(reasons.len() >= 15, "malformed reasons seen: {reasons:?}");
        // Random rules render to strings that contain action and prio.
        for r in &rules {
            let s = r.to_rule_string();
            assert!(
                s.contains("action=") && s.contains(",prio=") || s.starts_with("action="),
                "{s}"
            );
        }
        // Random packets are mostly well-formed, and random rules often match them.
        let random = random_packets(&mut StdRng::seed_from_u64(3), 1000);
        let ok = random.iter().filter(|f| parse(f).is_ok()).count();
        assert!(ok > 700, "only {ok}/1000 random packets are well-formed");
        let matched = random
            .iter()
            .filter(|f| classify(f, &rules, true).rule.is_some())
            .count();
        assert!(
            matched > 300,
            "only {matched}/1000 random packets match a rule"
        );
    }
}
