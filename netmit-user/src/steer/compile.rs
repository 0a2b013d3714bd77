//! Compiles a rule list into the per-field bitmap tables that the XDP program reads.
//!
//! This is pure computation (no maps, no syscalls) so that it can be unit-tested: the
//! [`Compiled::lookup`] method performs the same steps as the data path and is checked
//! against a linear scan of the rules.

use std::{collections::HashMap, net::IpAddr};

use netmit_common::{
    DST_CHILD, DST_MAX_NODES, DST_NODE_SLOTS, DST_POOL_SLOTS, DST_ROOT_SLOTS, GenConfig, MAX_RULES,
    PORT_NONE, PORT_SLOTS, PacketProto, RuleAction, RuleProto, RuleSet, VLAN_SLOTS, lookup,
};

use super::rule::Rule;

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
    /// The destination trie.
    pub dst: DstTrie,
}

/// The destination-address trie of one generation, in the layout of the trie map: entries
/// are pool indexes, or [`DST_CHILD`] | node number.
#[derive(Clone, Debug, Default)]
pub struct DstTrie {
    /// IPv4 root, indexed by the first 16 address bits; empty when no rule has an IPv4
    /// destination.
    pub root_v4: Vec<u32>,
    /// IPv6 root, likewise.
    pub root_v6: Vec<u32>,
    /// Deeper nodes, indexed by the next address byte.
    pub nodes: Vec<[u32; DST_NODE_SLOTS]>,
    /// Deduplicated rule sets.
    pub pool: Vec<RuleSet>,
}

/// Rule sets that do not fit the fixed-size tables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompileError {
    /// More rules than the data path holds.
    #[error("at most {MAX_RULES} rules fit an interface")]
    TooManyRules,
    /// The destination prefixes need more trie nodes than exist.
    #[error(
        "the destination prefixes need more than {DST_MAX_NODES} trie nodes (many long, \
         unrelated IPv6 prefixes); use shorter or fewer prefixes"
    )]
    TrieFull,
    /// Too many distinct destination rule sets.
    #[error("the destination prefixes produce more than {DST_POOL_SLOTS} distinct rule sets")]
    PoolFull,
}

/// A prefix of one family as bytes, with the rank of its rule.
#[derive(Clone, Copy)]
struct DstPrefix {
    rank: usize,
    addr: [u8; 16],
    len: u8,
}

struct TrieBuilder {
    trie: DstTrie,
    pool_index: HashMap<RuleSet, u32>,
}

impl TrieBuilder {
    fn pool_id(&mut self, set: RuleSet) -> Result<u32, CompileError> {
        if let Some(&id) = self.pool_index.get(&set) {
            return Ok(id);
        }
        if self.trie.pool.len() >= DST_POOL_SLOTS {
            return Err(CompileError::PoolFull);
        }
        let id = self.trie.pool.len() as u32;
        self.trie.pool.push(set);
        self.pool_index.insert(set, id);
        Ok(id)
    }

    /// Builds the entries of a node that has consumed `depth` bits and indexes the next
    /// `stride` bits. `inherited` holds the rules whose prefixes cover the whole node;
    /// `prefixes` are the longer ones that lie inside it.
    fn node(
        &mut self,
        depth: u32,
        stride: u32,
        inherited: RuleSet,
        prefixes: &[DstPrefix],
    ) -> Result<Vec<u32>, CompileError> {
        let slots = 1usize << stride;
        let index = |p: &DstPrefix| -> usize {
            if stride == 16 {
                ((p.addr[0] as usize) << 8) | p.addr[1] as usize
            } else {
                p.addr[(depth / 8) as usize] as usize
            }
        };
        let mut sets = vec![inherited; slots];
        let mut deeper: HashMap<usize, Vec<DstPrefix>> = HashMap::new();
        for p in prefixes {
            let end = depth + stride;
            if u32::from(p.len) <= end {
                // Covers a run of slots: host bits are zero, so `index` is its start.
                let count = 1usize << (end - u32::from(p.len));
                for set in &mut sets[index(p)..index(p) + count] {
                    set.insert(p.rank);
                }
            } else {
                deeper.entry(index(p)).or_default().push(*p);
            }
        }
        let mut entries = Vec::with_capacity(slots);
        for (slot, set) in sets.iter().enumerate() {
            match deeper.get(&slot) {
                None => entries.push(self.pool_id(*set)?),
                Some(longer) => {
                    let id = self.trie.nodes.len();
                    if id >= DST_MAX_NODES {
                        return Err(CompileError::TrieFull);
                    }
                    self.trie.nodes.push([0; DST_NODE_SLOTS]);
                    let longer = longer.clone();
                    let child = self.node(depth + stride, 8, *set, &longer)?;
                    self.trie.nodes[id].copy_from_slice(&child);
                    entries.push(DST_CHILD | id as u32);
                }
            }
        }
        Ok(entries)
    }
}

fn build_dst(ranked: &[&InstalledRule], any_dst: RuleSet) -> Result<DstTrie, CompileError> {
    let mut b = TrieBuilder {
        trie: DstTrie::default(),
        pool_index: HashMap::new(),
    };
    for v4 in [true, false] {
        let prefixes: Vec<DstPrefix> = ranked
            .iter()
            .enumerate()
            .filter_map(|(rank, r)| {
                let p = r.rule.dst?;
                let addr = match p.addr {
                    IpAddr::V4(a) if v4 => {
                        let mut b = [0u8; 16];
                        b[..4].copy_from_slice(&a.octets());
                        b
                    }
                    IpAddr::V6(a) if !v4 => a.octets(),
                    _ => return None,
                };
                Some(DstPrefix {
                    rank,
                    addr,
                    len: p.len,
                })
            })
            .collect();
        if prefixes.is_empty() {
            continue;
        }
        let root = b.node(0, 16, any_dst, &prefixes)?;
        debug_assert_eq!(root.len(), DST_ROOT_SLOTS);
        if v4 {
            b.trie.root_v4 = root;
        } else {
            b.trie.root_v6 = root;
        }
    }
    Ok(b.trie)
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

/// Builds the tables for `rules`.
pub fn compile(rules: &[InstalledRule]) -> Result<Compiled, CompileError> {
    if rules.len() > MAX_RULES {
        return Err(CompileError::TooManyRules);
    }
    let ranked = ranked(rules);
    let mut config = GenConfig {
        rule_count: ranked.len() as u32,
        ..Default::default()
    };
    let mut actions = Vec::with_capacity(ranked.len());

    for (rank, r) in ranked.iter().enumerate() {
        let rule = &r.rule;
        actions.push(RuleAction {
            rule_id: r.id,
            action: rule.action as u8,
            _pad: 0,
        });
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

    let dst = build_dst(&ranked, config.any_dst)?;
    Ok(Compiled {
        config,
        actions,
        ports,
        vlans,
        dst,
    })
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
        match pkt.dst {
            Some(IpAddr::V4(a)) if c.lookups & lookup::DST4 != 0 => {
                set.intersect_with(&self.dst.walk(&self.dst.root_v4, &a.octets()))
            }
            Some(IpAddr::V6(a)) if c.lookups & lookup::DST6 != 0 => {
                set.intersect_with(&self.dst.walk(&self.dst.root_v6, &a.octets()))
            }
            _ => set.intersect_with(&c.any_dst),
        }
        set.first()
    }
}

impl DstTrie {
    /// The data path's trie walk.
    pub fn walk(&self, root: &[u32], addr: &[u8]) -> RuleSet {
        let mut entry = root[((addr[0] as usize) << 8) | addr[1] as usize];
        for &byte in &addr[2..] {
            if entry & DST_CHILD == 0 {
                break;
            }
            entry = self.nodes[(entry & !DST_CHILD) as usize][byte as usize];
        }
        self.pool[entry as usize]
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
    let dst_ok = rule
        .dst
        .is_none_or(|p| pkt.dst.is_some_and(|ip| p.contains(ip)));
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
            .map(|(i, t)| InstalledRule {
                id: i as u16,
                seq: i as u32,
                rule: t.parse().unwrap(),
            })
            .collect()
    }

    fn linear(rules: &[InstalledRule], pkt: &PacketFields) -> Option<u16> {
        ranked(rules)
            .into_iter()
            .find(|r| matches(&r.rule, pkt))
            .map(|r| r.id)
    }

    /// A small deterministic generator, so this test needs no extra crates.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
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
        let ports = [
            "",
            "dport=53,",
            "dport=9000-9010,",
            "dport=1-1024,",
            "dport=0-65535,",
        ];
        let dsts = [
            "",
            "dst=198.18.0.0/15,",
            "dst=198.18.1.0/24,",
            "dst=198.18.1.7,",
            "dst=2001:db8::/32,",
            "dst=2001:db8:1::/48,",
            "dst=0.0.0.0/0,",
            "dst=2001:db8:1::5/128,",
            "dst=198.18.1.0/25,",
            "dst=198.16.0.0/12,",
            "dst=::/0,",
        ];
        let vlans = ["", "vlan=10,", "vlan=20,"];
        let actions = ["action=xsk", "action=pass", "action=drop"];
        for n in [0usize, 1, 5, 16, 64, 256] {
            let texts: Vec<String> = (0..n)
                .map(|_| {
                    format!(
                        "{}{}{}{}{},prio={}",
                        g.pick(&protos),
                        g.pick(&ports),
                        g.pick(&dsts),
                        g.pick(&vlans),
                        g.pick(&actions),
                        g.next() % 4
                    )
                })
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let rules = installed(&refs);
            let compiled = compile(&rules).unwrap();
            let addrs: [Option<IpAddr>; 8] = [
                None,
                Some("198.18.1.7".parse().unwrap()),
                Some("198.19.0.1".parse().unwrap()),
                Some("10.0.0.1".parse().unwrap()),
                Some("2001:db8:1::5".parse().unwrap()),
                Some("2001:db8:1::6".parse().unwrap()),
                Some("198.18.1.200".parse().unwrap()),
                Some("2001:db9::1".parse().unwrap()),
            ];
            for _ in 0..2000 {
                let pkt = PacketFields {
                    proto: *g.pick(&[PacketProto::Udp, PacketProto::Tcp, PacketProto::Other]),
                    dport: *g.pick(&[None, Some(53), Some(9005), Some(500), Some(40000)]),
                    vlan: *g.pick(&[None, Some(10), Some(20), Some(30)]),
                    dst: *g.pick(&addrs),
                };
                let got = compiled
                    .lookup(&pkt)
                    .map(|rank| compiled.actions[rank].rule_id);
                assert_eq!(got, linear(&rules, &pkt), "{n} rules, {pkt:?}");
            }
        }
    }

    #[test]
    fn prio_then_insertion_order() {
        let rules = installed(&["proto=udp,prio=5", "prio=5", "dport=53,prio=1"]);
        let c = compile(&rules).unwrap();
        let udp53 = PacketFields {
            proto: PacketProto::Udp,
            dport: Some(53),
            vlan: None,
            dst: None,
        };
        assert_eq!(c.actions[c.lookup(&udp53).unwrap()].rule_id, 2);
        let udp54 = PacketFields {
            dport: Some(54),
            ..udp53
        };
        assert_eq!(c.actions[c.lookup(&udp54).unwrap()].rule_id, 0);
    }

    #[test]
    fn skipped_lookups_are_not_flagged() {
        let c = compile(&installed(&["proto=udp", "action=drop"])).unwrap();
        assert_eq!(c.config.lookups, 0);
        assert!(c.ports.is_empty() && c.vlans.is_empty() && c.dst.root_v4.is_empty());
    }
}

#[cfg(test)]
mod trie_tests {
    use super::*;

    #[test]
    fn worst_case_prefixes_fit_the_fixed_tables() {
        // 256 unrelated /128s: every one needs 14 nodes of its own.
        let rules: Vec<InstalledRule> = (0..256u16)
            .map(|i| InstalledRule {
                id: i,
                seq: i as u32,
                rule: format!("dst={:x}:{:x}::1/128", 0x2000 + i, i)
                    .parse()
                    .unwrap(),
            })
            .collect();
        let c = compile(&rules).unwrap();
        assert_eq!(c.dst.nodes.len(), DST_MAX_NODES);
        assert!(c.dst.pool.len() <= DST_POOL_SLOTS);
    }
}
