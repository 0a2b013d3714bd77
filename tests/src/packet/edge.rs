//! The hand-made edge-case corpus: every layer's boundary cases, and the bases that
//! truncation tests cut.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

pub(super) const V4_DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub(super) const V6_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);

pub(super) fn payload_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

pub(super) fn hbh(len: u8) -> Ipv6Ext {
    Ipv6Ext::HopByHop { len }
}
pub(super) fn rt(len: u8) -> Ipv6Ext {
    Ipv6Ext::Routing { len }
}
pub(super) fn dopt(len: u8) -> Ipv6Ext {
    Ipv6Ext::DestOpts { len }
}
pub(super) fn frag(offset: u16, more: bool) -> Ipv6Ext {
    Ipv6Ext::Fragment {
        offset,
        more,
        id: 0xabcd,
    }
}

/// Base packets whose every truncation is part of [`edge_case_packets`].
pub fn truncation_bases() -> Vec<Vec<u8>> {
    vec![
        // UDP over IPv4.
        PacketBuilder::new()
            .ipv4(SRC_V4, V4_DST)
            .udp(40000, 9000)
            .payload(payload_bytes(6))
            .build(),
        // TCP over IPv4 with IPv4 options and TCP options.
        PacketBuilder::new()
            .ipv4(SRC_V4, V4_DST)
            .ipv4_options(vec![1, 1, 1, 0])
            .tcp(40000, 443)
            .tcp_flags(TCP_SYN)
            .tcp_options(tcp_syn_options())
            .payload(payload_bytes(3))
            .build(),
        // UDP over IPv6 behind hop-by-hop, routing, destination options and fragment headers.
        PacketBuilder::new()
            .ipv6(SRC_V6, V6_DST)
            .ipv6_ext(hbh(0))
            .ipv6_ext(rt(1))
            .ipv6_ext(dopt(0))
            .ipv6_ext(frag(0, true))
            .udp(40000, 53)
            .payload(payload_bytes(4))
            .build(),
        // VLAN-tagged (QinQ) UDP over IPv4.
        PacketBuilder::new()
            .vlan_tag(TPID_8021AD, 100, 3)
            .vlan(10)
            .ipv4(SRC_V4, Ipv4Addr::new(198, 19, 0, 1))
            .udp(40000, 9005)
            .payload(payload_bytes(2))
            .build(),
    ]
}

/// Hand-crafted edge cases covering every rule of `docs/steering.md`, followed by every
/// truncation (lengths `0..len`) of the [`truncation_bases`]. Note: frames shorter than 14
/// bytes cannot be injected through every path (e.g. `BPF_PROG_TEST_RUN` requires an
/// Ethernet header); callers may filter them.
pub fn edge_case_packets() -> Vec<Vec<u8>> {
    let v4 = || PacketBuilder::new().ipv4(SRC_V4, V4_DST);
    let v6 = || PacketBuilder::new().ipv6(SRC_V6, V6_DST);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut add = |b: PacketBuilder| out.push(b.build());

    // --- Ethernet / VLAN stacks -------------------------------------------------------
    add(v4().udp(1000, 9000).pad_to(60));
    for tpid in [TPID_8021Q, TPID_8021AD] {
        add(v4().vlan_tag(tpid, 10, 0).udp(1000, 9000));
        add(v4()
            .vlan_tag(tpid, 10, 5)
            .vlan_tag(TPID_8021Q, 20, 0)
            .udp(1000, 9000));
        add(v4()
            .vlan_tag(tpid, 20, 0)
            .vlan_tag(TPID_8021AD, 10, 0)
            .tcp(1000, 80));
        // Three tags: malformed.
        add(v4()
            .vlan_tag(tpid, 10, 0)
            .vlan(20)
            .vlan_tag(tpid, 100, 0)
            .udp(1000, 9000));
        add(v6().vlan_tag(tpid, 100, 0).udp(1000, 53));
        // Tag present, nothing after it.
        add(PacketBuilder::new()
            .vlan_tag(tpid, 10, 0)
            .ethertype(ETHERTYPE_ARP));
        // Two tags announcing a third that is missing.
        add(PacketBuilder::new().vlan(10).vlan(20).ethertype(tpid));
    }
    add(v4().vlan(0).udp(1000, 9000)); // VID 0 (priority tag)
    add(v4().vlan(4095).udp(1000, 9000));
    add(v4().vlan_tag(TPID_8021Q, 0x0fff, 7).udp(1000, 9000));
    // Tag whose TCI has PCP/DEI bits set: only the low 12 bits are the VID.
    add(v4().vlan_tag(TPID_8021Q, 10, 7).udp(1000, 9001));
    // VLAN-tagged ARP and LLDP.
    add(PacketBuilder::new().vlan(10).arp_request(SRC_V4, V4_DST));
    add(PacketBuilder::new()
        .vlan(20)
        .vlan(10)
        .ethertype(ETHERTYPE_LLDP)
        .raw_l3(payload_bytes(30)));

    // --- Non-IP ethertypes -------------------------------------------------------------
    add(PacketBuilder::new().arp_request(SRC_V4, V4_DST));
    add(PacketBuilder::new().arp_request(SRC_V4, V4_DST).pad_to(60));
    add(PacketBuilder::new()
        .ethertype(ETHERTYPE_LLDP)
        .raw_l3(payload_bytes(40)));
    add(PacketBuilder::new()
        .ethertype(0x1234)
        .raw_l3(payload_bytes(10)));
    add(PacketBuilder::new().ethertype(0x0000));
    add(PacketBuilder::new()
        .ethertype(0xffff)
        .raw_l3(vec![0x45; 30]));
    add(PacketBuilder::new()
        .ethertype(0x0801)
        .raw_l3(v4().udp(1, 9000).build()[14..].to_vec()));
    // IPv4 packet labelled IPv6 and vice versa.
    add(v4().udp(1000, 9000).ethertype(ETHERTYPE_IPV6));
    add(v6().udp(1000, 9000).ethertype(ETHERTYPE_IPV4));
    // Exactly an Ethernet header; one byte short of it.
    add(PacketBuilder::new().ethertype(ETHERTYPE_IPV4));
    add(PacketBuilder::new().ethertype(ETHERTYPE_ARP).truncate(13));

    // --- IPv4 header -------------------------------------------------------------------
    add(v4().udp(1000, 9000));
    add(v4().udp(1000, 9000).payload(payload_bytes(100)));
    add(v4().tcp(1000, 80));
    add(v4().icmp_echo(1, 1).payload(payload_bytes(8)));
    add(v4().l4_raw(IPPROTO_SCTP, payload_bytes(20)));
    add(v4().l4_raw(IPPROTO_UDP, vec![])); // UDP with no UDP header: malformed
    add(v4().l4_raw(IPPROTO_UDP, payload_bytes(7))); // 7 bytes: malformed
    add(v4().l4_raw(IPPROTO_UDP, vec![0, 1, 0x23, 0x28, 0, 8, 0, 0])); // exactly 8 bytes
    add(v4().l4_raw(IPPROTO_TCP, payload_bytes(19))); // 19 bytes: malformed
    add(v4()); // protocol 255, no payload
    for words in [1usize, 2, 5, 10] {
        let opts = vec![1u8; words * 4]; // NOPs
        add(v4().ipv4_options(opts.clone()).udp(1000, 9000));
        add(v4()
            .ipv4_options(opts)
            .tcp(1000, 443)
            .tcp_options(tcp_syn_options()));
    }
    add(v4().ipv4_options(vec![0x94, 0x04, 0, 0]).udp(1000, 53)); // router alert
    for version in [0u8, 5, 6, 15] {
        add(v4().ipv4_version(version).udp(1000, 9000));
    }
    for ihl in [0u8, 1, 4] {
        add(v4().ipv4_ihl(ihl).udp(1000, 9000));
    }
    add(v4().ipv4_ihl(6).udp(1000, 9000)); // IHL says 24: only 4 "UDP" bytes left, malformed
    add(v4().ipv4_ihl(6).udp(1000, 9000).payload(payload_bytes(4))); // UDP read 4 bytes later: OK
    add(v4().ipv4_ihl(15).udp(1000, 9000)); // 60-byte header beyond the frame: malformed
    add(v4().ipv4_ihl(15).udp(1000, 9000).payload(payload_bytes(20))); // 48 bytes: IHL*4 beyond the frame
    add(v4().ipv4_ihl(15).udp(1000, 9000).payload(payload_bytes(32))); // IHL fits, UDP doesn't
    add(v4().ipv4_ihl(15).udp(1000, 9000).payload(payload_bytes(40))); // 60-byte header + UDP: OK
    // Total length: too short, exactly header, too long, shorter than actual (trailing junk).
    add(v4().ipv4_total_len(19).udp(1000, 9000));
    add(v4().ipv4_total_len(20).udp(1000, 9000)); // UDP beyond total length: malformed
    add(v4().ipv4_total_len(27).udp(1000, 9000)); // 7 UDP bytes: malformed
    add(v4()
        .ipv4_total_len(28)
        .udp(1000, 9000)
        .payload(payload_bytes(10))); // OK
    add(v4().ipv4_total_len(29).udp(1000, 9000)); // one past the frame: malformed
    add(v4().ipv4_total_len(29).udp(1000, 9000).pad_to(60)); // padding covers it: OK
    add(v4().ipv4_total_len(0xffff).udp(1000, 9000).pad_to(60));
    add(v4().ipv4_total_len(0).udp(1000, 9000));
    add(v4()
        .ipv4_total_len(20)
        .l4_raw(IPPROTO_ICMP, payload_bytes(8))); // other proto: OK
    add(v4().ipv4_total_len(39).tcp(1000, 80)); // 19 TCP bytes: malformed
    add(v4()
        .ipv4_total_len(40)
        .tcp(1000, 80)
        .payload(payload_bytes(4))); // OK
    add(v4().udp(1000, 9000).trailer(payload_bytes(13))); // trailing bytes: OK
    // IPv4 header cut short.
    add(v4().udp(1000, 9000).truncate(14 + 19));
    add(v4().udp(1000, 9000).truncate(14 + 20)); // header complete, total length too long

    // --- IPv4 fragments ----------------------------------------------------------------
    for (offset, mf) in [
        (0u16, true),
        (0, false),
        (1, true),
        (1, false),
        (185, true),
        (0x1fff, false),
    ] {
        add(v4()
            .ipv4_fragment(offset, mf)
            .udp(1000, 9000)
            .payload(payload_bytes(16)));
        add(v4()
            .ipv4_fragment(offset, mf)
            .tcp(1000, 80)
            .payload(payload_bytes(16)));
        add(v4()
            .ipv4_fragment(offset, mf)
            .ipv4_dont_fragment(true)
            .icmp_echo(2, 2));
    }
    // Non-first fragments whose "transport header" would be garbage or absent: not malformed.
    add(v4().ipv4_fragment(10, true).l4_raw(IPPROTO_UDP, vec![]));
    add(v4()
        .ipv4_fragment(10, false)
        .l4_raw(IPPROTO_TCP, payload_bytes(3)));
    add(v4().ipv4_fragment(1, true).tcp(1000, 80).tcp_data_offset(0));
    // First fragment with a too-short transport header: malformed.
    add(v4()
        .ipv4_fragment(0, true)
        .l4_raw(IPPROTO_UDP, payload_bytes(4)));
    // Non-first fragment with a bad total length is still malformed.
    add(v4()
        .ipv4_fragment(3, false)
        .ipv4_total_len(200)
        .udp(1000, 9000));
    // DF only: a normal packet.
    add(v4().ipv4_dont_fragment(true).udp(1000, 9000));

    // --- TCP ---------------------------------------------------------------------------
    add(v4()
        .tcp(1000, 443)
        .tcp_flags(TCP_SYN)
        .tcp_options(tcp_syn_options()));
    add(v4().tcp(1000, 443).tcp_options(vec![1; 40])); // data offset 15
    add(v6()
        .tcp(1000, 443)
        .tcp_options(tcp_syn_options())
        .payload(payload_bytes(10)));
    for doff in [0u8, 1, 4] {
        add(v4()
            .tcp(1000, 80)
            .tcp_data_offset(doff)
            .payload(payload_bytes(40)));
        add(v6()
            .tcp(1000, 80)
            .tcp_data_offset(doff)
            .payload(payload_bytes(40)));
    }
    add(v4().tcp(1000, 80).tcp_data_offset(6)); // 24-byte header, 20 present: malformed
    add(v4()
        .tcp(1000, 80)
        .tcp_data_offset(6)
        .payload(payload_bytes(4))); // exactly fits
    add(v4()
        .tcp(1000, 80)
        .tcp_data_offset(15)
        .payload(payload_bytes(39))); // 1 short
    add(v4()
        .tcp(1000, 80)
        .tcp_data_offset(15)
        .payload(payload_bytes(40))); // exactly fits
    add(v4()
        .tcp(1000, 80)
        .tcp_data_offset(15)
        .payload(payload_bytes(20))
        .pad_to(100)); // padding doesn't count
    add(v4().tcp(1000, 0).tcp_flags(TCP_RST | TCP_ACK));
    add(v4().tcp(1000, 65535).tcp_flags(TCP_FIN | TCP_PSH | TCP_ACK));
    add(v4().udp(1000, 0));
    add(v4().udp(1000, 65535));

    // --- IPv6 --------------------------------------------------------------------------
    add(v6().udp(1000, 9000));
    add(v6().tcp(1000, 80));
    add(v6().icmp_echo(1, 1).payload(payload_bytes(8)));
    add(v6()); // no next header
    add(v6().l4_raw(IPPROTO_SCTP, payload_bytes(12)));
    add(v6().l4_raw(IPPROTO_UDP, payload_bytes(7))); // malformed
    add(PacketBuilder::new()
        .ipv6(SRC_V6, DST_V6_POOL[6])
        .udp(1000, 9000)); // outside 2001:db8::/32
    add(PacketBuilder::new()
        .ipv6(SRC_V6, "::ffff:198.18.0.1".parse().unwrap())
        .udp(1000, 9000)); // v4-mapped
    for version in [0u8, 4, 7, 15] {
        add(v6().ipv6_version(version).udp(1000, 9000));
    }
    add(v6().ipv6_payload_len(9).udp(1000, 9000)); // one byte too long: malformed
    add(v6().ipv6_payload_len(9).udp(1000, 9000).pad_to(80)); // covered by padding: OK
    add(v6().ipv6_payload_len(0).udp(1000, 9000)); // UDP beyond payload end: malformed
    add(v6().ipv6_payload_len(7).udp(1000, 9000)); // malformed
    add(v6()
        .ipv6_payload_len(0)
        .l4_raw(IPPROTO_ICMPV6, payload_bytes(8))); // OK
    add(v6().ipv6_payload_len(0xffff).udp(1000, 9000));
    add(v6().ipv6_payload_len(0).tcp(1000, 80)); // malformed
    add(v6().ipv6_payload_len(0).ip_protocol(IPPROTO_HOPOPTS)); // ext header missing: malformed
    add(v6().udp(1000, 9000).truncate(14 + 39));
    add(v6().udp(1000, 9000).trailer(payload_bytes(5)));

    // Each extension header type, alone, in front of UDP, TCP and ICMPv6.
    for ext in [
        hbh(0),
        hbh(1),
        hbh(3),
        rt(0),
        rt(2),
        dopt(0),
        dopt(5),
        frag(0, false),
        frag(0, true),
    ] {
        add(v6().ipv6_ext(ext).udp(1000, 9000));
        add(v6().ipv6_ext(ext).tcp(1000, 443));
        add(v6().ipv6_ext(ext).icmp_echo(7, 7));
        add(v6().ipv6_ext(ext)); // followed by "no next header"
    }
    // Chains of 1..=8 extension headers: up to 6 fine, the 7th still being one is malformed.
    let cycle = [
        hbh(0),
        dopt(0),
        rt(0),
        frag(0, true),
        dopt(1),
        rt(1),
        dopt(0),
        hbh(0),
    ];
    for n in 1..=cycle.len() {
        let mut b = v6();
        for ext in &cycle[..n] {
            b = b.ipv6_ext(*ext);
        }
        add(b.clone().udp(1000, 9000));
        add(b.clone().tcp(1000, 80));
        add(b.l4_raw(IPPROTO_ICMPV6, payload_bytes(8)));
    }
    // Exactly 6 headers then a non-extension header; 6 then "no next header".
    add(v6()
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0)));
    // 6 headers and the 6th is a non-first fragment: the walk stops at the fragment.
    add(v6()
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(frag(3, false))
        .udp(1000, 9000));
    // 7 headers, the 7th a non-first fragment: malformed.
    add(v6()
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(dopt(0))
        .ipv6_ext(frag(3, false))
        .udp(1000, 9000));
    // Fragments (IPv6).
    for (offset, mf) in [
        (0u16, true),
        (0, false),
        (1, true),
        (1, false),
        (0x1fff, true),
    ] {
        add(v6()
            .ipv6_ext(frag(offset, mf))
            .udp(1000, 9000)
            .payload(payload_bytes(8)));
        add(v6().ipv6_ext(frag(offset, mf)).tcp(1000, 80));
        add(v6()
            .ipv6_ext(hbh(0))
            .ipv6_ext(frag(offset, mf))
            .ipv6_ext(dopt(0))
            .udp(1000, 53));
    }
    // Non-first fragment whose next header is itself an extension header: protocol "other".
    add(v6()
        .ipv6_ext(frag(5, true))
        .ipv6_ext(dopt(0))
        .udp(1000, 9000));
    // Non-first fragment with nothing after it, and with a short UDP "header".
    add(v6().ipv6_ext(frag(5, false)).l4_raw(IPPROTO_UDP, vec![]));
    add(v6()
        .ipv6_ext(frag(5, false))
        .l4_raw(IPPROTO_TCP, payload_bytes(3)));
    // Extension header lengths running past the payload end.
    add(v6().ipv6_ext(dopt(0)).ipv6_payload_len(1)); // 1 of 2 bytes: malformed
    add(v6().ipv6_ext(dopt(0)).ipv6_payload_len(2)); // 2 of 8 bytes: malformed
    add(v6().ipv6_ext(dopt(0)).ipv6_payload_len(7)); // malformed
    add(v6().ipv6_ext(dopt(0)).ipv6_payload_len(8)); // exactly: OK, next header 59
    add(v6().ipv6_ext(dopt(1)).udp(1000, 9000).ipv6_payload_len(8)); // header says 16: malformed
    add(v6().ipv6_ext(frag(0, true)).ipv6_payload_len(7)); // malformed
    add(v6().ipv6_ext(frag(0, true)).ipv6_payload_len(8)); // OK
    add(v6().ipv6_ext(frag(9, true)).ipv6_payload_len(8)); // OK, no ports
    add(v6().ipv6_ext(hbh(0)).udp(1000, 9000).ipv6_payload_len(15)); // UDP short: malformed
    // Extension header bytes present in the frame but beyond the payload end (padding).
    add(v6().ipv6_ext(dopt(0)).ipv6_payload_len(4).pad_to(120));

    // --- Destinations from and around the rule prefixes ---------------------------------
    for dst in DST_V4_POOL {
        add(PacketBuilder::new().ipv4(SRC_V4, dst).udp(1000, 9000));
        add(PacketBuilder::new()
            .vlan(10)
            .ipv4(SRC_V4, dst)
            .tcp(1000, 443));
    }
    for dst in DST_V6_POOL {
        add(PacketBuilder::new().ipv6(SRC_V6, dst).udp(1000, 53));
        add(PacketBuilder::new()
            .vlan(20)
            .ipv6(SRC_V6, dst)
            .tcp(1000, 80));
    }
    for port in PORT_POOL {
        add(v4().udp(1000, port));
        add(v6().tcp(1000, port));
    }

    // --- Every truncation of the base packets ------------------------------------------
    for base in truncation_bases() {
        for len in 0..base.len() {
            out.push(base[..len].to_vec());
        }
        out.push(base);
    }
    out
}
