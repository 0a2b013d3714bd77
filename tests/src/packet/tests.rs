//! The builder's layouts and checksums, the corpora, and the pcap writer.

use std::fs::File;

use pcap_file::DataLink;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::builder::*;
use super::edge::*;
use super::*;

#[test]
fn ipv4_udp_layout_and_checksums() {
    let f = PacketBuilder::new()
        .ipv4(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 18, 0, 1))
        .udp(1234, 9000)
        .payload(vec![1, 2, 3])
        .build();
    assert_eq!(f.len(), 14 + 20 + 8 + 3);
    assert_eq!(&f[12..14], &[0x08, 0x00]);
    assert_eq!(f[14], 0x45);
    assert_eq!(u16::from_be_bytes([f[16], f[17]]), 31);
    assert_eq!(f[23], IPPROTO_UDP);
    assert_eq!(&f[30..34], &[198, 18, 0, 1]);
    // A correct header checksums to zero.
    assert_eq!(internet_checksum(&f[14..34]), 0);
    assert_eq!(u16::from_be_bytes([f[36], f[37]]), 9000);
    assert_eq!(u16::from_be_bytes([f[38], f[39]]), 11);
    let pseudo = pseudo_v4(
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(198, 18, 0, 1),
        17,
        11,
    );
    assert_eq!(transport_checksum(&pseudo, &f[34..]), 0);
}

#[test]
fn known_checksum_value() {
    // RFC 1071 example words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2.
    assert_eq!(
        internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        !0xddf2
    );
}

#[test]
fn vlan_stack_and_overrides() {
    let f = PacketBuilder::new()
        .vlan_tag(TPID_8021AD, 100, 3)
        .vlan(10)
        .ipv4(SRC_V4, V4_DST)
        .ipv4_options(vec![1, 1, 1])
        .ipv4_fragment(5, true)
        .ipv4_version(6)
        .ipv4_total_len(1000)
        .tcp(1, 80)
        .tcp_options(vec![1, 1])
        .build();
    assert_eq!(&f[12..16], &[0x88, 0xa8, 0x60, 100]);
    assert_eq!(&f[16..20], &[0x81, 0x00, 0x00, 10]);
    assert_eq!(&f[20..22], &[0x08, 0x00]);
    assert_eq!(f[22], 0x66); // version 6 override, IHL 6 (options padded to 4)
    assert_eq!(u16::from_be_bytes([f[24], f[25]]), 1000);
    assert_eq!(u16::from_be_bytes([f[28], f[29]]), 0x2000 | 5);
    assert_eq!(f[22 + 24 + 12], 6 << 4); // TCP data offset 6
    assert_eq!(f.len(), 22 + 24 + 24);
}

#[test]
fn ipv6_extension_chain() {
    let f = PacketBuilder::new()
        .ipv6(SRC_V6, V6_DST)
        .ipv6_ext(hbh(0))
        .ipv6_ext(rt(1))
        .ipv6_ext(frag(3, true))
        .udp(1, 53)
        .build();
    assert_eq!(f[14] >> 4, 6);
    assert_eq!(u16::from_be_bytes([f[18], f[19]]) as usize, 8 + 16 + 8 + 8);
    assert_eq!(f[20], IPPROTO_HOPOPTS);
    let e = 54;
    assert_eq!((f[e], f[e + 1]), (IPPROTO_ROUTING, 0));
    assert_eq!((f[e + 8], f[e + 9]), (IPPROTO_FRAGMENT, 1));
    assert_eq!(f[e + 24], IPPROTO_UDP);
    assert_eq!(u16::from_be_bytes([f[e + 26], f[e + 27]]), (3 << 3) | 1);
    assert_eq!(u16::from_be_bytes([f[e + 34], f[e + 35]]), 53);
    assert_eq!(f.len(), e + 32 + 8);
}

#[test]
fn padding_trailer_truncation() {
    let b = PacketBuilder::new().arp_request(SRC_V4, V4_DST);
    assert_eq!(b.build().len(), 42);
    assert_eq!(b.clone().pad_to(60).build().len(), 60);
    assert_eq!(b.clone().pad_to(60).truncate(50).build().len(), 50);
    assert_eq!(b.clone().trailer(vec![9; 4]).build().len(), 46);
    assert_eq!(&b.build()[12..14], &[0x08, 0x06]);
}

#[test]
fn corpora_are_deterministic_and_nonempty() {
    let edge = edge_case_packets();
    assert!(edge.len() > 500, "only {} edge cases", edge.len());
    let a = random_packets(&mut StdRng::seed_from_u64(7), 200);
    let b = random_packets(&mut StdRng::seed_from_u64(7), 200);
    assert_eq!(a, b);
    assert_eq!(a.len(), 200);
}

#[test]
fn pcap_round_trip() {
    let frames = vec![
        PacketBuilder::new().ipv4(SRC_V4, V4_DST).udp(1, 2).build(),
        vec![1, 2, 3],
    ];
    let path = std::env::temp_dir().join(format!("netmit-packet-test-{}.pcap", std::process::id()));
    write_pcap(&path, &frames).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(File::open(&path).unwrap()).unwrap();
    assert_eq!(reader.header().datalink, DataLink::ETHERNET);
    let mut read = Vec::new();
    while let Some(p) = reader.next_packet() {
        read.push(p.unwrap().data.into_owned());
    }
    std::fs::remove_file(&path).unwrap();
    assert_eq!(read, frames);
}
