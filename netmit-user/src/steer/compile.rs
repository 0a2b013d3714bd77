//! Compiles a rule list into the per-field bitmap tables that the XDP program reads.
//!
//! This is pure computation (no maps, no syscalls) so that it can be unit-tested: the
//! [`Compiled::lookup`] method performs the same steps as the data path and is checked
//! against a linear scan of the rules.

use std::net::IpAddr;

use netmit_common::{
    GenConfig, MAX_RULES, PORT_NONE, PORT_SLOTS, PacketProto, RuleAction, RuleProto, RuleSet,
    VLAN_SLOTS, lookup,
};

use super::rule::{Prefix, Rule};

/// A rule with its stable id (slot) and insertion sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledRule {
    /// Slot in the rules map, 0..MAX_RULES; shown to users as the rule id.
    pub id: u16,
    /// Insertion order; breaks ties of equal `prio`.
    pub seq: u32,
    /// The rule.
    pub rule: Rule,
}

/// The tables of one generation.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// Small tables that live in the config map.
    pub config: GenConfig,
    /// Action and rule id by rank.
    pub actions: Vec<RuleAction>,
    /// By destination port, plus [`PORT_NONE`]; empty when no rule has a port range.
    pub ports: Vec<RuleSet>,
    /// By VLAN id; empty when no rule has a VLAN.
    pub vlans: Vec<RuleSet>,
    /// IPv4 prefixes and the rules that accept every address in them; includes `/0`.
    pub dst4: Vec<(Prefix, RuleSet)>,
    /// IPv6 prefixes, likewise.
    pub dst6: Vec<(Prefix, RuleSet)>,
}

/// The fields of a packet that rules match on (the output of the parser).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketFields {
    /// Protocol class.
    pub proto: PacketProto,
    /// Destination port, if the packet has one.
    pub dport: Option<u16>,
    /// Outer VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Destination address, if IP.
    pub dst: Option<IpAddr>,
}

/// Orders rules by `(prio, seq)`: the rank order of the data path.
pub fn ranked(rules: &[InstalledRule]) -> Vec<&InstalledRule> {
    let mut v: Vec<&InstalledRule> = rules.iter().collect();
    v.sort_by_key(|r| (r.rule.prio, r.seq));
    v
}

/// Builds the tables for `rules` (at most [`MAX_RULES`]).
pub fn compile(rules: &[InstalledRule]) -> Compiled {
    assert!(rules.len() <= MAX_RULES, "caller checks the rule limit");
    let ranked = ranked(rules);
    let mut config = GenConfig { rule_count: ranked.len() as u32, ..Default::default() };
    let mut actions = Vec::with_capacity(ranked.len());

    for (rank, r) in ranked.iter().enumerate() {
        let rule = &r.rule;
        actions.push(RuleAction { rule_id: r.id, action: rule.action as u8, _pad: 0 });
        config.all.insert(rank);
        let protos: &[usize] = match rule.proto {
            RuleProto::Any => &[0, 1, 2],
            RuleProto::Udp => &[PacketProto::Udp as usize],
            RuleProto::Tcp => &[PacketProto::Tcp as usize],
        };
        for &p in protos {
            config.proto[p].insert(rank);
        }
        if rule.vlan.is_none() {
            config.untagged.insert(rank);
        } else {
            config.lookups |= lookup::VLAN;
        }
        match rule.dst {
            None => config.any_dst.insert(rank),
            Some(p) if p.addr.is_ipv4() => config.lookups |= lookup::DST4,
            Some(_) => config.lookups |= lookup::DST6,
        }
        if rule.has_port_constraint() {
            config.lookups |= lookup::PORT;
        }
    }

    let ports = if config.lookups & lookup::PORT != 0 {
        let mut ports = vec![RuleSet::EMPTY; PORT_SLOTS];
        for (rank, r) in ranked.iter().enumerate() {
            if r.rule.has_port_constraint() {
                for port in r.rule.dport.clone() {
                    ports[port as usize].insert(rank);
                }
            } else {
                for set in ports.iter_mut() {
                    set.insert(rank);
                }
            }
        }
        // Only rules without a port constraint accept packets without ports.
        let mut none = RuleSet::EMPTY;
        for (rank, r) in ranked.iter().enumerate() {
            if !r.rule.has_port_constraint() {
                none.insert(rank);
            }
        }
        ports[PORT_NONE] = none;
        ports
    } else {
        Vec::new()
    };

    let vlans = if config.lookups & lookup::VLAN != 0 {
        let mut vlans = vec![config.untagged; VLAN_SLOTS];
        for (rank, r) in ranked.iter().enumerate() {
            if let Some(v) = r.rule.vlan {
                vlans[v as usize].insert(rank);
            }
        }
        vlans
    } else {
        Vec::new()
    };

    let dst_table = |v4: bool| -> Vec<(Prefix, RuleSet)> {
        let family_rules: Vec<(usize, Prefix)> = ranked
            .iter()
            .enumerate()
            .filter_map(|(rank, r)| r.rule.dst.filter(|p| p.addr.is_ipv4() == v4).map(|p| (rank, p)))
            .collect();
        if family_rules.is_empty() {
            return Vec::new();
        }
        let root = Prefix {
            addr: if v4 { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u8; 16]) },
            len: 0,
        };
        let mut prefixes: Vec<Prefix> = family_rules.iter().map(|(_, p)| *p).collect();
        prefixes.push(root);
        prefixes.sort_by_key(|p| (p.len, p.addr));
        prefixes.dedup();
        // With longest-prefix match, the entry found for an address is the longest listed
        // prefix containing it; every rule prefix containing the address contains that
        // entry too (nested prefixes), so the entry's set is exactly the matching rules.
        prefixes
            .into_iter()
            .map(|p| {
                let mut set = config.any_dst;
                for (rank, rp) in &family_rules {
                    if rp.covers(&p) {
                        set.insert(*rank);
                    }
                }
                (p, set)
            })
            .collect()
    };
    let dst4 = dst_table(true);
    let dst6 = dst_table(false);

    Compiled { config, actions, ports, vlans, dst4, dst6 }
}

impl Compiled {
    /// The data path's lookup, step for step: the rank of the winning rule.
    pub fn lookup(&self, pkt: &PacketFields) -> Option<usize> {
        let c = &self.config;
        if c.rule_count == 0 {
            return None;
        }
        let mut set = c.proto[pkt.proto as usize];
        if c.lookups & lookup::PORT != 0 {
            set.intersect_with(&self.ports[pkt.dport.map_or(PORT_NONE, usize::from)]);
        }
        if c.lookups & lookup::VLAN != 0 {
            match pkt.vlan {
                Some(v) => set.intersect_with(&self.vlans[v as usize]),
                None => set.intersect_with(&c.untagged),
            }
        }
        let lpm = |table: &[(Prefix, RuleSet)], ip: IpAddr| {
            table
                .iter()
                .filter(|(p, _)| p.contains(ip))
                .max_by_key(|(p, _)| p.len)
                .map(|(_, s)| *s)
                .unwrap_or(RuleSet::EMPTY)
        };
        match pkt.dst {
            Some(ip @ IpAddr::V4(_)) if c.lookups & lookup::DST4 != 0 => {
                set.intersect_with(&lpm(&self.dst4, ip))
            }
            Some(ip @ IpAddr::V6(_)) if c.lookups & lookup::DST6 != 0 => {
                set.intersect_with(&lpm(&self.dst6, ip))
            }
            _ => set.intersect_with(&c.any_dst),
        }
        set.first()
    }
}

/// Whether `rule` matches `pkt`: the specification, as a plain predicate.
pub fn matches(rule: &Rule, pkt: &PacketFields) -> bool {
    let proto_ok = match rule.proto {
        RuleProto::Any => true,
        RuleProto::Udp => pkt.proto == PacketProto::Udp,
        RuleProto::Tcp => pkt.proto == PacketProto::Tcp,
    };
    let port_ok = !rule.has_port_constraint() || pkt.dport.is_some_and(|p| rule.dport.contains(&p));
    let dst_ok = rule.dst.is_none_or(|p| pkt.dst.is_some_and(|ip| p.contains(ip)));
    let vlan_ok = rule.vlan.is_none_or(|v| pkt.vlan == Some(v));
    proto_ok && port_ok && dst_ok && vlan_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(texts: &[&str]) -> Vec<InstalledRule> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| InstalledRule { id: i as u16, seq: i as u32, rule: t.parse().unwrap() })
            .collect()
    }

    fn linear(rules: &[InstalledRule], pkt: &PacketFields) -> Option<u16> {
        ranked(rules).into_iter().find(|r| matches(&r.rule, pkt)).map(|r| r.id)
    }

    /// A small deterministic generator, so this test needs no extra crates.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
            &v[self.next() as usize % v.len()]
        }
    }

    #[test]
    fn lookup_agrees_with_linear_scan() {
        let mut g = Lcg(42);
        let protos = ["", "proto=udp,", "proto=tcp,", "proto=any,"];
        let ports = ["", "dport=53,", "dport=9000-9010,", "dport=1-1024,", "dport=0-65535,"];
        let dsts = [
            "", "dst=198.18.0.0/15,", "dst=198.18.1.0/24,", "dst=198.18.1.7,",
            "dst=2001:db8::/32,", "dst=2001:db8:1::/48,", "dst=0.0.0.0/0,",
        ];
        let vlans = ["", "vlan=10,", "vlan=20,"];
        let actions = ["action=xsk", "action=pass", "action=drop"];
        for n in [0usize, 1, 5, 16, 64, 256] {
            let texts: Vec<String> = (0..n)
                .map(|_| {
                    format!(
                        "{}{}{}{}{},prio={}",
                        g.pick(&protos), g.pick(&ports), g.pick(&dsts), g.pick(&vlans),
                        g.pick(&actions), g.next() % 4
                    )
                })
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let rules = installed(&refs);
            let compiled = compile(&rules);
            let addrs: [Option<IpAddr>; 6] = [
                None,
                Some("198.18.1.7".parse().unwrap()),
                Some("198.19.0.1".parse().unwrap()),
                Some("10.0.0.1".parse().unwrap()),
                Some("2001:db8:1::5".parse().unwrap()),
                Some("2001:db9::1".parse().unwrap()),
            ];
            for _ in 0..2000 {
                let pkt = PacketFields {
                    proto: *g.pick(&[PacketProto::Udp, PacketProto::Tcp, PacketProto::Other]),
                    dport: *g.pick(&[None, Some(53), Some(9005), Some(500), Some(40000)]),
                    vlan: *g.pick(&[None, Some(10), Some(20), Some(30)]),
                    dst: *g.pick(&addrs),
                };
                let got = compiled.lookup(&pkt).map(|rank| compiled.actions[rank].rule_id);
                assert_eq!(got, linear(&rules, &pkt), "{n} rules, {pkt:?}");
            }
        }
    }

    #[test]
    fn prio_then_insertion_order() {
        let rules = installed(&["proto=udp,prio=5", "prio=5", "dport=53,prio=1"]);
        let c = compile(&rules);
        let udp53 = PacketFields {
            proto: PacketProto::Udp,
            dport: Some(53),
            vlan: None,
            dst: None,
        };
        assert_eq!(c.actions[c.lookup(&udp53).unwrap()].rule_id, 2);
        let udp54 = PacketFields { dport: Some(54), ..udp53 };
        assert_eq!(c.actions[c.lookup(&udp54).unwrap()].rule_id, 0);
    }

    #[test]
    fn skipped_lookups_are_not_flagged() {
        let c = compile(&installed(&["proto=udp", "action=drop"]));
        assert_eq!(c.config.lookups, 0);
        assert!(c.ports.is_empty() && c.vlans.is_empty() && c.dst4.is_empty());
    }
}
