//! Steering rules: the `key=value,...` syntax of `--steer`, and its canonical rendering.
//!
//! The syntax and the exact matching semantics are specified in `docs/steering.md`.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::RangeInclusive,
    str::FromStr,
};

use netmit_common::{Action, RuleProto, RuleSpec, family};
use serde::Serialize;

/// Default `prio` of a rule that does not name one.
pub const DEFAULT_PRIO: u16 = 1000;

/// A rule that does not follow the syntax of docs/steering.md: where (the 1-based
/// character position in the rule text) and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("at position {pos}: {kind}")]
pub struct RuleError {
    /// 1-based position (in characters) of the offending field or value.
    pub pos: usize,
    /// What is wrong there, and what is allowed.
    pub kind: RuleErrorKind,
}

/// What is wrong with a rule, each naming the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleErrorKind {
    /// Two commas in a row, or a comma at the start.
    #[error("an empty field: remove the stray comma (rules look like `proto=udp,dport=9000`)")]
    EmptyField,
    /// A comma at the end.
    #[error("a trailing comma: remove it (rules look like `proto=udp,dport=9000`)")]
    TrailingComma,
    /// White space anywhere in the rule.
    #[error(
        "white space is not allowed: write the pairs without spaces, e.g. `proto=udp,dport=80`"
    )]
    Whitespace,
    /// An element is not of the form `key=value`.
    #[error("`{0}` is not key=value (rules look like `proto=udp,dport=9000,action=xsk`)")]
    NotKeyValue(String),
    /// An unknown key.
    #[error("unknown key `{0}`: allowed keys are proto, dport, dst, vlan, action, prio")]
    UnknownKey(String),
    /// A key given twice.
    #[error("key `{0}` given twice: give each key at most once")]
    Duplicate(&'static str),
    /// A value that does not fit its key.
    #[error("bad value `{value}` for `{key}`: use {allowed}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What the key accepts.
        allowed: &'static str,
    },
}

/// Destination prefix of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Prefix {
    /// Whether `ip` lies in the prefix (false across families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_u128(u32::from(ip) as u128, self.len, 32) == u32::from(net) as u128
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_u128(u128::from(ip), self.len, 128) == u128::from(net)
            }
            _ => false,
        }
    }

    /// Whether `other` lies entirely within this prefix.
    pub fn covers(&self, other: &Prefix) -> bool {
        self.len <= other.len && self.contains(other.addr)
    }

    fn bits(&self) -> u8 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }
}

fn mask_u128(v: u128, len: u8, bits: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let host = bits - len;
        (v >> host) << host
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALLOWED: &str = "an IPv4 or IPv6 address or prefix such as 198.18.0.0/15";
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| ALLOWED)?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => bits,
            Some(l) => match digits::<u8>(l) {
                Some(l) if l <= bits => l,
                _ => return Err("the prefix length must be 0-32 for IPv4 and 0-128 for IPv6"),
            },
        };
        let p = Prefix { addr, len };
        let net = match addr {
            IpAddr::V4(a) => mask_u128(u32::from(a) as u128, len, 32) == u32::from(a) as u128,
            IpAddr::V6(a) => mask_u128(u128::from(a), len, 128) == u128::from(a),
        };
        if !net {
            return Err("host bits are set below the prefix length (write the network address)");
        }
        debug_assert_eq!(p.bits(), bits);
        Ok(p)
    }
}

/// One steering rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Transport protocol.
    pub proto: RuleProto,
    /// Destination port range; `0..=65535` means no constraint.
    pub dport: RangeInclusive<u16>,
    /// Destination prefix.
    pub dst: Option<Prefix>,
    /// Outer VLAN id.
    pub vlan: Option<u16>,
    /// What a match does.
    pub action: Action,
    /// Lower wins.
    pub prio: u16,
}

impl Default for Rule {
    fn default() -> Self {
        Self {
            proto: RuleProto::Any,
            dport: 0..=u16::MAX,
            dst: None,
            vlan: None,
            action: Action::Xsk,
            prio: DEFAULT_PRIO,
        }
    }
}

impl Rule {
    /// Whether the rule constrains the destination port.
    pub fn has_port_constraint(&self) -> bool {
        self.dport != (0..=u16::MAX)
    }

    /// The map representation, with insertion sequence number `seq`.
    pub fn to_spec(&self, seq: u32) -> RuleSpec {
        let mut spec = RuleSpec {
            seq,
            valid: 1,
            proto: self.proto as u8,
            action: self.action as u8,
            has_vlan: self.vlan.is_some() as u8,
            vlan: self.vlan.unwrap_or(0),
            prio: self.prio,
            dport_lo: *self.dport.start(),
            dport_hi: *self.dport.end(),
            ..Default::default()
        };
        if let Some(p) = self.dst {
            spec.dst_prefix_len = p.len;
            match p.addr {
                IpAddr::V4(a) => {
                    spec.dst_family = family::V4;
                    spec.dst[..4].copy_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    spec.dst_family = family::V6;
                    spec.dst = a.octets();
                }
            }
        }
        spec
    }

    /// Decodes a map entry; `None` for an empty slot or bytes no netmit wrote.
    pub fn from_spec(spec: &RuleSpec) -> Option<Rule> {
        if spec.valid != 1 {
            return None;
        }
        let proto = match spec.proto {
            0 => RuleProto::Any,
            1 => RuleProto::Udp,
            2 => RuleProto::Tcp,
            _ => return None,
        };
        let dst = match spec.dst_family {
            family::NONE => None,
            family::V4 => {
                let a = Ipv4Addr::new(spec.dst[0], spec.dst[1], spec.dst[2], spec.dst[3]);
                Some(Prefix {
                    addr: a.into(),
                    len: spec.dst_prefix_len,
                })
            }
            family::V6 => Some(Prefix {
                addr: Ipv6Addr::from(spec.dst).into(),
                len: spec.dst_prefix_len,
            }),
            _ => return None,
        };
        Some(Rule {
            proto,
            dport: spec.dport_lo..=spec.dport_hi,
            dst,
            vlan: (spec.has_vlan != 0).then_some(spec.vlan),
            action: Action::from_u8(spec.action)?,
            prio: spec.prio,
        })
    }
}

/// Name of a protocol selector as the syntax spells it.
pub fn proto_name(p: RuleProto) -> &'static str {
    match p {
        RuleProto::Any => "any",
        RuleProto::Udp => "udp",
        RuleProto::Tcp => "tcp",
    }
}

/// Name of an action as the syntax spells it.
pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Xsk => "xsk",
        Action::Pass => "pass",
        Action::Drop => "drop",
    }
}

impl fmt::Display for Rule {
    /// The canonical form: every constrained key, then action and prio.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.proto != RuleProto::Any {
            write!(f, "proto={},", proto_name(self.proto))?;
        }
        if self.has_port_constraint() {
            let (lo, hi) = (*self.dport.start(), *self.dport.end());
            if lo == hi {
                write!(f, "dport={lo},")?;
            } else {
                write!(f, "dport={lo}-{hi},")?;
            }
        }
        if let Some(p) = self.dst {
            write!(f, "dst={p},")?;
        }
        if let Some(v) = self.vlan {
            write!(f, "vlan={v},")?;
        }
        write!(f, "action={},prio={}", action_name(self.action), self.prio)
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A decimal number of ASCII digits only (no sign, no space), as the syntax spells numbers.
fn digits<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// 1-based character position of byte offset `at` in `s`.
fn position(s: &str, at: usize) -> usize {
    s[..at].chars().count() + 1
}

impl FromStr for Rule {
    type Err = RuleError;

    /// Parses the syntax of docs/steering.md exactly: `key=value` pairs separated by single
    /// commas, no white space, numbers as plain decimal digits; `""` is the match-all rule.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut rule = Rule::default();
        if s.is_empty() {
            return Ok(rule);
        }
        let at = |offset: usize, kind| RuleError {
            pos: position(s, offset),
            kind,
        };
        if let Some(i) = s.find(char::is_whitespace) {
            return Err(at(i, RuleErrorKind::Whitespace));
        }
        let mut seen: Vec<&'static str> = Vec::new();
        let mut offset = 0;
        let count = s.split(',').count();
        for (n, item) in s.split(',').enumerate() {
            let start = offset;
            offset += item.len() + 1;
            if item.is_empty() {
                // Point at the stray comma itself: the one before a trailing empty field,
                // else the one this empty field starts at.
                return Err(if n > 0 && n + 1 == count {
                    at(start - 1, RuleErrorKind::TrailingComma)
                } else {
                    at(start, RuleErrorKind::EmptyField)
                });
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(at(start, RuleErrorKind::NotKeyValue(item.to_string())));
            };
            let key: &'static str = match key {
                "proto" => "proto",
                "dport" => "dport",
                "dst" => "dst",
                "vlan" => "vlan",
                "action" => "action",
                "prio" => "prio",
                "" => return Err(at(start, RuleErrorKind::NotKeyValue(item.to_string()))),
                other => return Err(at(start, RuleErrorKind::UnknownKey(other.to_string()))),
            };
            if seen.contains(&key) {
                return Err(at(start, RuleErrorKind::Duplicate(key)));
            }
            seen.push(key);
            let value_at = start + key.len() + 1;
            let bad = |allowed| {
                at(
                    value_at,
                    RuleErrorKind::BadValue {
                        key,
                        value: value.to_string(),
                        allowed,
                    },
                )
            };
            match key {
                "proto" => {
                    rule.proto = match value {
                        "udp" => RuleProto::Udp,
                        "tcp" => RuleProto::Tcp,
                        "any" => RuleProto::Any,
                        _ => return Err(bad("one of udp, tcp, any")),
                    }
                }
                "dport" => {
                    const ALLOWED: &str =
                        "a port N or range LO-HI in decimal digits within 0-65535, LO <= HI";
                    let (lo, hi) = value.split_once('-').unwrap_or((value, value));
                    let lo: u16 = digits(lo).ok_or_else(|| bad(ALLOWED))?;
                    let hi: u16 = digits(hi).ok_or_else(|| bad(ALLOWED))?;
                    if lo > hi {
                        return Err(bad(ALLOWED));
                    }
                    rule.dport = lo..=hi;
                }
                "dst" => rule.dst = Some(value.parse().map_err(bad)?),
                "vlan" => match digits::<u16>(value) {
                    Some(v) if v <= 4095 => rule.vlan = Some(v),
                    _ => return Err(bad("a VLAN id 0-4095 in decimal digits")),
                },
                "action" => {
                    rule.action = match value {
                        "xsk" => Action::Xsk,
                        "pass" => Action::Pass,
                        "drop" => Action::Drop,
                        _ => return Err(bad("one of xsk, pass, drop")),
                    }
                }
                "prio" => {
                    rule.prio =
                        digits(value).ok_or_else(|| bad("a number 0-65535 in decimal digits"))?
                }
                _ => unreachable!("key was matched above"),
            }
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_rule_and_renders_canonically() {
        let r: Rule = "proto=udp,dport=9000-9010,dst=198.18.0.0/15,vlan=10,action=xsk,prio=10"
            .parse()
            .unwrap();
        assert_eq!(r.proto, RuleProto::Udp);
        assert_eq!(r.dport, 9000..=9010);
        assert_eq!(r.dst.unwrap().len, 15);
        assert_eq!(r.vlan, Some(10));
        assert_eq!(r.prio, 10);
        assert_eq!(
            r.to_string(),
            "proto=udp,dport=9000-9010,dst=198.18.0.0/15,vlan=10,action=xsk,prio=10"
        );
        assert_eq!(r.to_string().parse::<Rule>().unwrap(), r);
    }

    #[test]
    fn defaults() {
        let r: Rule = "".parse().unwrap();
        assert_eq!(r, Rule::default());
        assert_eq!(r.to_string(), "action=xsk,prio=1000");
        let r: Rule = "dport=0-65535".parse().unwrap();
        assert!(!r.has_port_constraint());
        let r: Rule = "dst=2001:db8::1".parse().unwrap();
        assert_eq!(r.dst.unwrap().len, 128);
    }

    fn kind(text: &str) -> RuleErrorKind {
        text.parse::<Rule>().unwrap_err().kind
    }

    #[test]
    fn errors_name_the_key() {
        let e = "proto=icmp".parse::<Rule>().unwrap_err();
        assert!(e.to_string().contains("`proto`") && e.to_string().contains("udp, tcp, any"));
        assert_eq!(kind("port=1"), RuleErrorKind::UnknownKey("port".into()));
        assert!(matches!(
            kind("dport=10-5"),
            RuleErrorKind::BadValue { key: "dport", .. }
        ));
        assert!(matches!(
            kind("dport=70000"),
            RuleErrorKind::BadValue { .. }
        ));
        assert!(matches!(
            kind("vlan=4096"),
            RuleErrorKind::BadValue { key: "vlan", .. }
        ));
        assert!(matches!(
            kind("dst=198.18.0.1/15"),
            RuleErrorKind::BadValue { key: "dst", .. }
        ));
        assert!(matches!(
            kind("dst=1.2.3.4/33"),
            RuleErrorKind::BadValue { key: "dst", .. }
        ));
        assert_eq!(kind("prio=1,prio=2"), RuleErrorKind::Duplicate("prio"));
        assert!(matches!(kind("udp"), RuleErrorKind::NotKeyValue(_)));
    }

    /// Issue 13: empty fields, white space and signs were accepted.
    #[test]
    fn stray_commas_spaces_and_signs_are_refused_with_the_position() {
        for (text, pos, want) in [
            (",", 1, "empty field"),
            (",proto=udp", 1, "empty field"),
            ("proto=udp,,dport=80", 11, "empty field"),
            ("a,,b", 1, "not key=value"),
            ("proto=udp,", 10, "trailing comma"),
            ("proto=udp,dport=80,,", 20, "empty field"),
            ("dport= 80", 7, "white space"),
            (" proto=udp", 1, "white space"),
            ("proto=udp ", 10, "white space"),
            ("proto=udp,\tdport=1", 11, "white space"),
            ("dport=+80", 7, "bad value `+80`"),
            ("dport=80-+90", 7, "bad value"),
            ("prio=+1", 6, "bad value"),
            ("vlan=+1", 6, "bad value"),
            ("dst=198.18.0.0/+15", 5, "bad value"),
            ("proto=udp,dport=-1", 17, "bad value"),
            ("proto=udp,=1", 11, "not key=value"),
            ("proto=", 7, "bad value ``"),
            ("dport=", 7, "bad value"),
            ("proto=udp,prio=1,proto=tcp", 18, "given twice"),
            ("é=1,x", 1, "unknown key"),
            ("proto=udp,é", 11, "not key=value"),
        ] {
            let e = text.parse::<Rule>().expect_err(text);
            assert_eq!(e.pos, pos, "{text}: {e}");
            let shown = e.to_string();
            assert!(shown.contains(want), "{text}: {shown}");
            assert!(
                shown.starts_with(&format!("at position {pos}: ")),
                "{shown}"
            );
        }
        // What stays valid: the empty rule, and leading zeros are still decimal digits.
        assert_eq!("".parse::<Rule>().unwrap(), Rule::default());
        assert_eq!("dport=080".parse::<Rule>().unwrap().dport, 80..=80);
    }

    #[test]
    fn spec_round_trip() {
        for text in [
            "proto=tcp,dport=80,action=drop,prio=5",
            "dst=2001:db8:1::/48,vlan=4095,action=pass,prio=0",
            "dst=0.0.0.0/0,action=xsk,prio=1000",
        ] {
            let r: Rule = text.parse().unwrap();
            assert_eq!(Rule::from_spec(&r.to_spec(7)).unwrap(), r, "{text}");
        }
        assert_eq!(Rule::from_spec(&RuleSpec::default()), None);
    }

    #[test]
    fn prefix_containment() {
        let p: Prefix = "198.18.0.0/15".parse().unwrap();
        assert!(p.contains("198.19.255.255".parse().unwrap()));
        assert!(!p.contains("198.20.0.0".parse().unwrap()));
        assert!(!p.contains("2001:db8::".parse().unwrap()));
        let q: Prefix = "198.19.0.0/16".parse().unwrap();
        assert!(p.covers(&q) && !q.covers(&p));
        let all: Prefix = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
    }
}
