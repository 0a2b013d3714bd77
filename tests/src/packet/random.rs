//! Random frames drawn from the shared address and port pools, so that random rules
//! often hit random packets.

use rand::Rng;
use rand::seq::IndexedRandom;

use super::edge::*;
use super::*;

fn random_vid<R: Rng + ?Sized>(rng: &mut R) -> u16 {
    match rng.random_range(0..20) {
        0 => 0,
        1 => 4095,
        2 => rng.random_range(0..4096),
        _ => *VID_POOL.choose(rng).unwrap(),
    }
}

fn random_port<R: Rng + ?Sized>(rng: &mut R) -> u16 {
    if rng.random_bool(0.7) {
        *PORT_POOL.choose(rng).unwrap()
    } else if rng.random_bool(0.5) {
        rng.random_range(9000..=9010)
    } else {
        rng.random()
    }
}

fn random_bytes<R: Rng + ?Sized>(rng: &mut R, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..=max);
    let mut v = vec![0u8; n];
    rng.fill(&mut v[..]);
    v
}

fn random_ext<R: Rng + ?Sized>(rng: &mut R) -> Ipv6Ext {
    match rng.random_range(0..4) {
        0 => hbh(rng.random_range(0..3)),
        1 => rt(rng.random_range(0..3)),
        2 => dopt(rng.random_range(0..3)),
        _ => Ipv6Ext::Fragment {
            offset: if rng.random_bool(0.5) {
                0
            } else {
                rng.random_range(1..0x2000)
            },
            more: rng.random(),
            id: rng.random(),
        },
    }
}

/// One random, mostly well-formed frame (see [`random_packets`]).
pub fn random_packet<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    // 3%: pure garbage; 2%: garbage after a valid-looking Ethernet/VLAN prefix.
    match rng.random_range(0..100) {
        0..3 => return random_bytes(rng, 100),
        3..5 => {
            let mut b = PacketBuilder::new();
            if rng.random() {
                b = b.vlan(random_vid(rng));
            }
            let et = *[ETHERTYPE_IPV4, ETHERTYPE_IPV6, TPID_8021Q, TPID_8021AD]
                .choose(rng)
                .unwrap();
            return b.ethertype(et).raw_l3(random_bytes(rng, 80)).build();
        }
        _ => {}
    }

    let mut b = PacketBuilder::new();
    let tags = match rng.random_range(0..100) {
        0..50 => 0,
        50..80 => 1,
        80..95 => 2,
        _ => 3,
    };
    for _ in 0..tags {
        let tpid = if rng.random_bool(0.7) {
            TPID_8021Q
        } else {
            TPID_8021AD
        };
        b = b.vlan_tag(tpid, random_vid(rng), rng.random_range(0..8));
    }

    let l3 = rng.random_range(0..100);
    if l3 >= 85 {
        // Non-IP.
        b = match rng.random_range(0..3) {
            0 => b.arp_request(SRC_V4, *DST_V4_POOL.choose(rng).unwrap()),
            1 => b.ethertype(ETHERTYPE_LLDP).raw_l3(random_bytes(rng, 60)),
            _ => b.ethertype(rng.random()).raw_l3(random_bytes(rng, 60)),
        };
    } else if l3 < 45 {
        b = b.ipv4(SRC_V4, *DST_V4_POOL.choose(rng).unwrap());
        if rng.random_bool(0.15) {
            let words = rng.random_range(1..=10);
            let mut opts = vec![1u8; words * 4];
            if rng.random() {
                rng.fill(&mut opts[..]);
            }
            b = b.ipv4_options(opts);
        }
        match rng.random_range(0..20) {
            0 | 1 => b = b.ipv4_fragment(rng.random_range(1..0x2000), rng.random()),
            2 => b = b.ipv4_fragment(0, true),
            3 => b = b.ipv4_dont_fragment(true),
            _ => {}
        }
    } else {
        b = b.ipv6(SRC_V6, *DST_V6_POOL.choose(rng).unwrap());
        let n = match rng.random_range(0..20) {
            0..10 => 0,
            10..18 => rng.random_range(1..=3),
            _ => rng.random_range(4..=8),
        };
        for _ in 0..n {
            b = b.ipv6_ext(random_ext(rng));
        }
    }

    if matches!(b.network, Network::Ipv4(_) | Network::Ipv6(_)) {
        let sport = rng.random_range(1024..=65535);
        b = match rng.random_range(0..100) {
            0..45 => b.udp(sport, random_port(rng)),
            45..85 => {
                let mut b = b.tcp(sport, random_port(rng)).tcp_flags(rng.random());
                if rng.random_bool(0.3) {
                    b = b.tcp_options(tcp_syn_options());
                }
                b
            }
            85..95 => b.icmp_echo(rng.random(), rng.random()),
            _ => b.l4_raw(rng.random(), Vec::new()),
        };
        b = b.payload(random_bytes(rng, 64));

        // 8%: break a header field on purpose.
        if rng.random_bool(0.08) {
            let is_tcp = matches!(b.transport, Transport::Tcp(_));
            let is_v4 = matches!(b.network, Network::Ipv4(_));
            b = match (is_v4, rng.random_range(0..4)) {
                (_, 0) if is_tcp => b.tcp_data_offset(rng.random_range(0..16)),
                (true, 0) => b.ip_protocol(rng.random()),
                (true, 1) => b.ipv4_version(rng.random_range(0..16)),
                (true, 2) => b.ipv4_ihl(rng.random_range(0..16)),
                (true, _) => b.ipv4_total_len(rng.random_range(0..200)),
                (false, 0 | 1) => b.ipv6_version(rng.random_range(0..16)),
                (false, 2) => b.ip_protocol(rng.random()),
                (false, _) => b.ipv6_payload_len(rng.random_range(0..200)),
            };
        }
    }

    if rng.random_bool(0.1) {
        b = b.trailer(random_bytes(rng, 16));
    }
    if rng.random_bool(0.5) {
        b = b.pad_to(60);
    }
    let mut frame = b.build();
    if rng.random_bool(0.1) && !frame.is_empty() {
        let len = rng.random_range(0..frame.len());
        frame.truncate(len);
    }
    frame
}

/// `n` random frames: mostly well-formed mixes of 0–3 VLAN tags (VIDs mostly from
/// [`VID_POOL`]), IPv4 (options, fragments) / IPv6 (0–8 extension headers, fragments) /
/// non-IP, UDP/TCP/ICMP/other transports with ports mostly from [`PORT_POOL`] and 9000–9010,
/// destinations from [`DST_V4_POOL`]/[`DST_V6_POOL`]; sometimes broken header fields,
/// trailers, padding, truncation, or plain garbage.
pub fn random_packets<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|_| random_packet(rng)).collect()
}
