//! The reference classifier on hand-built cases for each rule of docs/steering.md.

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
