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

mod parse;
#[cfg(test)]
mod tests;

pub use parse::{Malformed, PacketProto, ParsedPacket, parse};

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
