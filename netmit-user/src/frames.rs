//! Fixed, well-formed Ethernet frames (UDP and TCP over IPv4 and IPv6) for self-tests,
//! examples and benchmarks; the integration tests have a full packet crafter of their own.

use std::net::{Ipv4Addr, Ipv6Addr};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn l4(proto: u8, sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    if proto == 17 {
        h.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0]);
    } else {
        h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    }
    h.resize(h.len() + payload_len, 0xab);
    h
}

/// An IPv4 frame carrying UDP (17) or TCP (6).
pub fn ipv4(proto: u8, dst: Ipv4Addr, dport: u16, payload_len: usize) -> Vec<u8> {
    let l4 = l4(proto, 40000, dport, payload_len);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&Ipv4Addr::new(198, 18, 0, 1).octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&l4);
    ethernet(0x0800, &ip)
}

/// An IPv6 frame carrying UDP or TCP.
pub fn ipv6(proto: u8, dst: Ipv6Addr, dport: u16, payload_len: usize) -> Vec<u8> {
    let l4 = l4(proto, 40000, dport, payload_len);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[proto, 64]);
    ip.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().expect("literal").octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&l4);
    ethernet(0x86dd, &ip)
}

/// `frame` with an 802.1Q tag (VID `vid`, priority 0) inserted after the MAC addresses.
///
/// # Panics
/// If `frame` is shorter than an Ethernet header (the frames of this module never are).
pub fn vlan_tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(frame.len() + 4);
    f.extend_from_slice(&frame[..12]);
    f.extend_from_slice(&0x8100u16.to_be_bytes());
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}
