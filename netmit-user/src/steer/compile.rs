//! Compiles a rule list into the lookup tables that the XDP program reads: one
//! [`GenTables`] per rule set (see `netmit_common` for the scheme).
//!
//! This is pure computation (no maps, no syscalls) so that it can be unit-tested: the
//! [`Compiled::lookup`] method performs the same steps on the same bytes as the data path
//! and is checked against a linear scan of the rules.

use std::{collections::HashMap, net::IpAddr};

use netmit_common::{
    DST_CHILD, DST_ENTRIES, DST_MAX_NODES, DST_NODE_SLOTS, DST_NODES, DST_ROOT_V4, DST_ROOT_V6,
    GenTables, MAX_RULES, PORT_NONE, PORT_SLOTS, PacketProto, Prefix6, RuleAction, RuleProto,
    RuleSet, SET_POOL_SLOTS, V6_CHECKS, VLAN_SLOTS, lookup,
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

/// The tables of one generation, as the tables map holds them.
pub struct Compiled {
    /// The map value (on the heap: it is about 2.3 MiB).
    pub tables: Box<GenTables>,
    /// Trie nodes in use (of [`DST_MAX_NODES`]).
    pub dst_nodes: usize,
    /// Rule sets in use (of [`SET_POOL_SLOTS`]).
    pub sets: usize,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("rule_count", &self.tables.rule_count)
            .field("lookups", &self.tables.lookups)
            .field("dst_nodes", &self.dst_nodes)
            .field("sets", &self.sets)
            .finish_non_exhaustive()
    }
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
    /// Too many distinct rule sets.
    #[error(
        "the rules produce more than {SET_POOL_SLOTS} distinct rule sets (mostly from \
         destination prefixes); use fewer prefixes"
    )]
    PoolFull,
}

/// The deduplicated rule sets of one generation.
struct Pool<'t> {
    sets: &'t mut [RuleSet; SET_POOL_SLOTS],
    len: usize,
    index: HashMap<RuleSet, u16>,
}

impl Pool<'_> {
    fn id(&mut self, set: RuleSet) -> Result<u16, CompileError> {
        if let Some(&id) = self.index.get(&set) {
            return Ok(id);
        }
        if self.len >= SET_POOL_SLOTS {
            return Err(CompileError::PoolFull);
        }
        let id = self.len as u16;
        self.sets[self.len] = set;
        self.len += 1;
        self.index.insert(set, id);
        Ok(id)
    }
}

/// A prefix of one family as bytes, with the rank of its rule.
#[derive(Clone, Copy)]
struct DstPrefix {
    rank: usize,
    addr: [u8; 16],
    len: u8,
}

/// Builds the trie into `dst` ([`GenTables::dst`]).
struct TrieBuilder<'t> {
    dst: &'t mut [u16],
    nodes: usize,
}

impl TrieBuilder<'_> {
    /// Fills the entries of a node at `first` (its first entry) that has consumed `depth`
    /// bits and indexes the next `stride` bits. `inherited` holds the rules whose prefixes
    /// cover the whole node; `prefixes` are the longer ones that lie inside it.
    fn node(
        &mut self,
        pool: &mut Pool<'_>,
        first: usize,
        depth: u32,
        stride: u32,
        inherited: RuleSet,
        prefixes: &[DstPrefix],
    ) -> Result<(), CompileError> {
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
        for (slot, set) in sets.iter().enumerate() {
            self.dst[first + slot] = match deeper.get(&slot) {
                None => pool.id(*set)?,
                Some(longer) => {
                    if self.nodes >= DST_MAX_NODES {
                        return Err(CompileError::TrieFull);
                    }
                    let child = DST_NODES + self.nodes * DST_NODE_SLOTS;
                    self.nodes += 1;
                    self.node(pool, child, depth + stride, 8, *set, longer)?;
                    DST_CHILD | (child / DST_NODE_SLOTS) as u16
                }
            };
        }
        Ok(())
    }
}

/// Builds both families' tries into `tables.dst`; returns the nodes used.
fn build_dst(
    ranked: &[&InstalledRule],
    any_dst: RuleSet,
    dst: &mut [u16],
    pool: &mut Pool<'_>,
) -> Result<usize, CompileError> {
    let mut b = TrieBuilder { dst, nodes: 0 };
    for (v4, root) in [(true, DST_ROOT_V4), (false, DST_ROOT_V6)] {
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
        b.node(pool, root, 0, 16, any_dst, &prefixes)?;
    }
    Ok(b.nodes)
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
    let mut tables = zeroed_tables();
    let t = &mut *tables;
    t.rule_count = ranked.len() as u32;

    for (rank, r) in ranked.iter().enumerate() {
        let rule = &r.rule;
        t.actions[rank] = RuleAction {
            rule_id: r.id,
            action: rule.action as u8,
            _pad: 0,
        };
        t.all.insert(rank);
        let protos: &[usize] = match rule.proto {
            RuleProto::Any => &[0, 1, 2],
            RuleProto::Udp => &[PacketProto::Udp as usize],
            RuleProto::Tcp => &[PacketProto::Tcp as usize],
        };
        for &p in protos {
            t.proto[p].insert(rank);
        }
        if rule.vlan.is_none() {
            t.untagged.insert(rank);
        } else {
            t.lookups |= lookup::VLAN;
        }
        match rule.dst {
            None => t.any_dst.insert(rank),
            Some(p) => match p.addr {
                IpAddr::V4(_) => t.lookups |= lookup::DST4,
                IpAddr::V6(a) => {
                    t.lookups |= lookup::DST6;
                    t.v6_candidates.insert(rank);
                    t.v6_prefixes[rank] = Prefix6::new(a.octets(), p.len);
                }
            },
        }
        if rule.has_port_constraint() {
            t.lookups |= lookup::PORT;
        }
    }

    let (lookups, untagged, any_dst) = (t.lookups, t.untagged, t.any_dst);
    t.v6_candidates.union_with(&any_dst);
    let mut pool = Pool {
        sets: &mut t.sets,
        len: 0,
        index: HashMap::new(),
    };

    if lookups & lookup::PORT != 0 {
        // Rules without a port constraint accept every port, and they alone accept
        // packets without ports.
        let mut none = RuleSet::EMPTY;
        for (rank, r) in ranked.iter().enumerate() {
            if !r.rule.has_port_constraint() {
                none.insert(rank);
            }
        }
        let mut by_port = vec![none; PORT_SLOTS - 1];
        for (rank, r) in ranked.iter().enumerate() {
            if r.rule.has_port_constraint() {
                for port in r.rule.dport.clone() {
                    by_port[port as usize].insert(rank);
                }
            }
        }
        for (port, set) in by_port.iter().enumerate() {
            t.ports[port] = pool.id(*set)?;
        }
        t.ports[PORT_NONE] = pool.id(none)?;
    }

    if lookups & lookup::VLAN != 0 {
        let mut by_vid = vec![untagged; VLAN_SLOTS];
        for (rank, r) in ranked.iter().enumerate() {
            if let Some(v) = r.rule.vlan {
                by_vid[v as usize].insert(rank);
            }
        }
        for (vid, set) in by_vid.iter().enumerate() {
            t.vlans[vid] = pool.id(*set)?;
        }
    }

    let dst_nodes = build_dst(&ranked, any_dst, &mut t.dst, &mut pool)?;
    let sets = pool.len;
    Ok(Compiled {
        tables,
        dst_nodes,
        sets,
    })
}

/// An all-zero [`GenTables`] on the heap (it is too big for a thread's stack).
fn zeroed_tables() -> Box<GenTables> {
    crate::sys::pod::zeroed_box()
}

impl Compiled {
    /// The data path's lookup, step for step, on the bytes it reads: the rank of the
    /// winning rule.
    pub fn lookup(&self, pkt: &PacketFields) -> Option<usize> {
        let t = &*self.tables;
        if t.rule_count == 0 {
            return None;
        }
        let mut set = t.proto[pkt.proto as usize];
        if t.lookups & lookup::PORT != 0 {
            let slot = pkt.dport.map_or(PORT_NONE, usize::from);
            set.intersect_with(&t.sets[t.ports[slot] as usize]);
        }
        match pkt.vlan {
            Some(v) if t.lookups & lookup::VLAN != 0 => {
                set.intersect_with(&t.sets[t.vlans[v as usize] as usize])
            }
            _ => set.intersect_with(&t.untagged),
        }
        match pkt.dst {
            Some(IpAddr::V4(a)) if t.lookups & lookup::DST4 != 0 => {
                set.intersect_with(&self.walk(DST_ROOT_V4, &a.octets()))
            }
            Some(IpAddr::V6(a)) if t.lookups & lookup::DST6 != 0 => {
                if let Some(decided) = self.v6_candidates(&set, &a.octets()) {
                    return decided;
                }
                set.intersect_with(&self.walk(DST_ROOT_V6, &a.octets()))
            }
            _ => set.intersect_with(&t.any_dst),
        }
        set.first()
    }

    /// The data path's shortcut for IPv6 packets: the first [`V6_CHECKS`] candidates of
    /// `set` (the rules the other fields allow) that could match an IPv6 packet, each
    /// checked against its own prefix. `None` when that is not enough to decide.
    pub fn v6_candidates(&self, set: &RuleSet, addr: &[u8; 16]) -> Option<Option<usize>> {
        let t = &*self.tables;
        let word = |i: usize| u64::from_ne_bytes(addr[i * 8..i * 8 + 8].try_into().expect("8"));
        let (a0, a1) = (word(0), word(1));
        let mut candidates = *set;
        candidates.intersect_with(&t.v6_candidates);
        let mut checks = 0;
        while let Some(rank) = candidates.first() {
            if rank >= t.rule_count as usize {
                break;
            }
            if checks == V6_CHECKS {
                return None;
            }
            checks += 1;
            if t.any_dst.contains(rank) || t.v6_prefixes[rank].contains(a0, a1) {
                return Some(Some(rank));
            }
            candidates.0[rank / 64] &= !(1 << (rank % 64));
        }
        Some(None)
    }

    /// The data path's trie walk from the root at entry `root`.
    pub fn walk(&self, root: usize, addr: &[u8]) -> RuleSet {
        let t = &*self.tables;
        let mut entry = t.dst[root | ((addr[0] as usize) << 8) | addr[1] as usize];
        for &byte in &addr[2..] {
            if entry & DST_CHILD == 0 {
                break;
            }
            entry = t.dst[(((entry as usize) << 8) | byte as usize) & (DST_ENTRIES - 1)];
        }
        t.sets[entry as usize]
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
                    .map(|rank| compiled.tables.actions[rank].rule_id);
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
        assert_eq!(c.tables.actions[c.lookup(&udp53).unwrap()].rule_id, 2);
        let udp54 = PacketFields {
            dport: Some(54),
            ..udp53
        };
        assert_eq!(c.tables.actions[c.lookup(&udp54).unwrap()].rule_id, 0);
    }

    #[test]
    fn skipped_lookups_are_not_flagged() {
        let c = compile(&installed(&["proto=udp", "action=drop"])).unwrap();
        assert_eq!(c.tables.lookups, 0);
        // Only the protocol, untagged and no-destination sets: no pool, no trie.
        assert_eq!((c.sets, c.dst_nodes), (0, 0));
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
        assert_eq!(c.dst_nodes, DST_MAX_NODES);
        assert!(c.sets <= SET_POOL_SLOTS);
    }

    #[test]
    fn worst_case_ports_and_vlans_fit_the_pool() {
        // Overlapping port ranges (every range boundary starts a new set) and one VLAN
        // each: the most distinct port and VLAN sets 256 rules can make.
        let rules: Vec<InstalledRule> = (0..256u16)
            .map(|i| InstalledRule {
                id: i,
                seq: i as u32,
                rule: format!("dport={}-{},vlan={}", 100 * i, 100 * i + 150, i)
                    .parse()
                    .unwrap(),
            })
            .collect();
        let c = compile(&rules).unwrap();
        assert!(
            c.sets <= 2 * MAX_RULES + 2 + MAX_RULES + 1,
            "{} sets",
            c.sets
        );
    }
}
