//! The generator's template frame: Ethernet + IPv4 or IPv6 + UDP, with a correct IPv4
//! header checksum and a correct UDP checksum, and the addresses and ports it is built
//! from.
//!
//! The template is flow 0 (the lowest source and destination port). The XDP program only
//! ever rewrites the two ports and the UDP checksum; [`TrafficParams`] carries what it
//! needs for that (RFC 1624 incremental update from the template's values, see
//! [`netmit_common::udp_csum_update`]). The IPv4 header checksum does not cover the
//! ports, so it never changes.
//!
//! A stamped template ([`FrameSpec::stamp`], for the load client) starts its payload with
//! [`STAMP_MAGIC`] and a send time of zero; the program writes the real send time there
//! and adds its four 16-bit words to the checksum
//! ([`netmit_common::udp_csum_update_stamped`]): the zero words of the template contributed
//! nothing to the template's checksum.

use std::{fmt, net::IpAddr, str::FromStr};

use netmit_common::{STAMP_LEN, STAMP_MAGIC, TrafficParams, udp_csum_seed};

use super::GenError;

/// Smallest frame the generator sends (Ethernet minimum without FCS).
pub const MIN_FRAME: usize = 64;
/// Largest frame the generator sends (bytes from the Ethernet header on, no FCS).
pub const MAX_FRAME: usize = 1500;

const ETH_HLEN: usize = 14;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
const PAYLOAD_PATTERN: &[u8] = b"netmit-gen ";

/// An Ethernet (MAC) address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = GenError;

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-` separators).
    fn from_str(s: &str) -> Result<Self, GenError> {
        let bad = || GenError::InvalidMac(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An inclusive range of UDP ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
}

impl PortRange {
    /// A range of one port.
    pub const fn single(port: u16) -> Self {
        Self { lo: port, hi: port }
    }

    /// Number of ports in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.hi) - u32::from(self.lo) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl FromStr for PortRange {
    type Err = GenError;

    /// Parses `PORT` or `LO-HI` (1..=65535, `LO <= HI`).
    fn from_str(s: &str) -> Result<Self, GenError> {
        let bad = || GenError::InvalidPorts(s.to_string());
        let port = |p: &str| match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(bad()),
            Ok(v) => Ok(v),
        };
        let range = match s.split_once('-') {
            None => PortRange::single(port(s)?),
            Some((lo, hi)) => PortRange {
                lo: port(lo)?,
                hi: port(hi)?,
            },
        };
        if range.lo > range.hi {
            return Err(bad());
        }
        Ok(range)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Everything a template frame is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// IP source (same family as `dst_ip`).
    pub src_ip: IpAddr,
    /// IP destination.
    pub dst_ip: IpAddr,
    /// UDP source port.
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
    /// Frame length from the Ethernet header on, without FCS.
    pub size: usize,
    /// Start the payload with a send stamp ([`STAMP_MAGIC`], then a zero send time that
    /// the program fills in); the payload must hold [`STAMP_LEN`] bytes.
    pub stamp: bool,
}

/// A built template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The frame bytes.
    pub bytes: Vec<u8>,
    /// Offset of the UDP header.
    pub udp_off: usize,
    /// Whether the payload starts with a send stamp for the program to fill in.
    pub stamped: bool,
}

impl Template {
    /// The UDP checksum field, host order.
    pub fn udp_check(&self) -> u16 {
        u16::from_be_bytes([self.bytes[self.udp_off + 6], self.bytes[self.udp_off + 7]])
    }

    /// The XDP program's parameters for `flows` flows over `dports` destination ports,
    /// flow 0 being this template's ports.
    pub fn params(&self, flows: u32, dports: u32) -> TrafficParams {
        let b = &self.bytes[self.udp_off..];
        let sport = u16::from_be_bytes([b[0], b[1]]);
        let dport = u16::from_be_bytes([b[2], b[3]]);
        TrafficParams {
            udp_off: self.udp_off as u32,
            flows,
            dports,
            csum_seed: udp_csum_seed(self.udp_check(), sport, dport),
            sport_base: sport,
            dport_base: dport,
            stamp: u32::from(self.stamped),
        }
    }
}

/// Builds the template frame. Fails when `size` is outside [`MIN_FRAME`]..=[`MAX_FRAME`]
/// or the addresses are of different families.
pub fn build(spec: &FrameSpec) -> Result<Template, GenError> {
    if !(MIN_FRAME..=MAX_FRAME).contains(&spec.size) {
        return Err(GenError::SizeOutOfRange {
            size: spec.size,
            min: MIN_FRAME,
            max: MAX_FRAME,
        });
    }
    let (ethertype, ip_hlen) = match (spec.src_ip, spec.dst_ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (0x0800u16, IPV4_HLEN),
        (IpAddr::V6(_), IpAddr::V6(_)) => (0x86dd, IPV6_HLEN),
        _ => {
            return Err(GenError::FamilyMismatch {
                src: spec.src_ip,
                dst: spec.dst_ip,
            });
        }
    };
    let udp_off = ETH_HLEN + ip_hlen;
    let udp_len = spec.size - udp_off;
    if spec.stamp && udp_len < UDP_HLEN + STAMP_LEN {
        return Err(GenError::StampDoesNotFit {
            size: spec.size,
            min: udp_off + UDP_HLEN + STAMP_LEN,
        });
    }

    let mut f = Vec::with_capacity(spec.size);
    f.extend_from_slice(&spec.dst_mac.0);
    f.extend_from_slice(&spec.src_mac.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    match (spec.src_ip, spec.dst_ip) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let start = f.len();
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&((IPV4_HLEN + udp_len) as u16).to_be_bytes());
            // id 0, don't fragment, TTL 64, UDP, checksum below.
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
            f.extend_from_slice(&src.octets());
            f.extend_from_slice(&dst.octets());
            let c = !csum_fold(sum16(&f[start..]));
            f[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(udp_len as u16).to_be_bytes());
            f.extend_from_slice(&[17, 64]);
            f.extend_from_slice(&src.octets());
            f.extend_from_slice(&dst.octets());
        }
        _ => unreachable!("families checked above"),
    }
    f.extend_from_slice(&spec.sport.to_be_bytes());
    f.extend_from_slice(&spec.dport.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    let mut payload = udp_len - UDP_HLEN;
    if spec.stamp {
        f.extend_from_slice(&STAMP_MAGIC.to_be_bytes());
        f.extend_from_slice(&[0; STAMP_LEN - 4]);
        payload -= STAMP_LEN;
    }
    f.extend(PAYLOAD_PATTERN.iter().cycle().take(payload));
    let check = udp_checksum(spec.src_ip, spec.dst_ip, &f[udp_off..]);
    f[udp_off + 6..udp_off + 8].copy_from_slice(&check.to_be_bytes());
    Ok(Template {
        bytes: f,
        udp_off,
        stamped: spec.stamp,
    })
}

/// One's-complement sum of big-endian 16-bit words (odd length padded with zero).
fn sum16(data: &[u8]) -> u32 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn csum_fold(sum: u32) -> u16 {
    netmit_common::csum_fold(sum)
}

/// The UDP checksum of `udp` (header with a zero checksum field, and payload) between
/// `src` and `dst`, including the pseudo-header; 0 is returned as 0xffff.
fn udp_checksum(src: IpAddr, dst: IpAddr, udp: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut add = |bytes: &[u8]| {
        sum = u32::from(csum_fold(sum + sum16(bytes)));
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
            add(&[0, 17]);
            add(&(udp.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            add(&s.octets());
            add(&d.octets());
            add(&(udp.len() as u32).to_be_bytes());
            add(&[0, 0, 0, 17]);
        }
        _ => {}
    }
    add(udp);
    match !csum_fold(sum) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use netmit_common::udp_csum_update;

    use super::*;

    fn spec(src: IpAddr, dst: IpAddr, size: usize) -> FrameSpec {
        FrameSpec {
            src_mac: "02:00:00:00:00:01".parse().unwrap(),
            dst_mac: "02:00:00:00:00:02".parse().unwrap(),
            src_ip: src,
            dst_ip: dst,
            sport: 32768,
            dport: 9200,
            size,
            stamp: false,
        }
    }

    fn v4() -> (IpAddr, IpAddr) {
        (
            Ipv4Addr::new(198, 18, 0, 2).into(),
            Ipv4Addr::new(198, 18, 0, 1).into(),
        )
    }

    fn v6() -> (IpAddr, IpAddr) {
        (
            "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
        )
    }

    /// Verifies a frame's checksums the way a receiver does: the sum over the covered
    /// bytes, checksum included, is 0xffff.
    fn checksums_ok(f: &[u8]) -> bool {
        let (src, dst, udp_off): (IpAddr, IpAddr, usize) = match u16::from_be_bytes([f[12], f[13]])
        {
            0x0800 => {
                if csum_fold(sum16(&f[14..34])) != 0xffff {
                    return false;
                }
                let s: [u8; 4] = f[26..30].try_into().unwrap();
                let d: [u8; 4] = f[30..34].try_into().unwrap();
                (Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into(), 34)
            }
            _ => {
                let s: [u8; 16] = f[22..38].try_into().unwrap();
                let d: [u8; 16] = f[38..54].try_into().unwrap();
                (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into(), 54)
            }
        };
        let mut udp = f[udp_off..].to_vec();
        let check = u16::from_be_bytes([udp[6], udp[7]]);
        udp[6] = 0;
        udp[7] = 0;
        check != 0 && udp_checksum(src, dst, &udp) == check
    }

    #[test]
    fn templates_have_valid_checksums_and_lengths() {
        for (src, dst) in [v4(), v6()] {
            for size in [MIN_FRAME, 65, 128, 999, MAX_FRAME] {
                let t = build(&spec(src, dst, size)).unwrap();
                assert_eq!(t.bytes.len(), size);
                assert!(checksums_ok(&t.bytes), "{src} size {size}");
                let udp_len = u16::from_be_bytes([t.bytes[t.udp_off + 4], t.bytes[t.udp_off + 5]]);
                assert_eq!(udp_len as usize, size - t.udp_off);
            }
        }
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // 20-byte header of the template, checked against the sum computed by hand:
        // 4500 0032 0000 4000 4011 0000 c612 0002 c612 0001.
        let t = build(&spec(v4().0, v4().1, 64)).unwrap();
        assert_eq!(&t.bytes[14..18], &[0x45, 0, 0, 50]);
        let c = u16::from_be_bytes([t.bytes[24], t.bytes[25]]);
        let manual: u32 = 0x4500 + 0x0032 + 0x4000 + 0x4011 + 0xc612 + 0x0002 + 0xc612 + 0x0001;
        assert_eq!(c, !csum_fold(manual));
    }

    /// The program's incremental update (the same function, from netmit-common) must give
    /// what a full recomputation gives, for every flow, whatever the template.
    #[test]
    fn incremental_update_matches_full_checksum() {
        for (src, dst) in [v4(), v6()] {
            for size in [64, 77, 1500] {
                let t = build(&spec(src, dst, size)).unwrap();
                let p = t.params(4096, 300);
                for flow in (0..4096u32).chain([65535 - 32768]) {
                    let sport = p.sport_base.wrapping_add(flow as u16);
                    let dport = p.dport_base.wrapping_add((flow % 300) as u16);
                    let mut f = t.bytes.clone();
                    let u = t.udp_off;
                    f[u..u + 2].copy_from_slice(&sport.to_be_bytes());
                    f[u + 2..u + 4].copy_from_slice(&dport.to_be_bytes());
                    let c = udp_csum_update(p.csum_seed, sport, dport);
                    f[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
                    assert!(checksums_ok(&f), "{src} size {size} flow {flow}");
                }
            }
        }
    }

    /// A stamped template: magic and a zero send time at the payload's start; with the
    /// program's update (send time and ports from netmit-common) the checksum is right.
    #[test]
    fn stamped_template_update_matches_full_checksum() {
        use netmit_common::{STAMP_TS_OFF, udp_csum_update_stamped};
        for (src, dst) in [v4(), v6()] {
            for size in [74, 77, 1500] {
                let mut sp = spec(src, dst, size);
                sp.stamp = true;
                let t = build(&sp).unwrap();
                let u = t.udp_off;
                assert!(checksums_ok(&t.bytes));
                assert_eq!(&t.bytes[u + 8..u + 12], &STAMP_MAGIC.to_be_bytes());
                assert_eq!(&t.bytes[u + 12..u + 20], &[0; 8]);
                let p = t.params(16, 1);
                assert_eq!(p.stamp, 1);
                for (flow, ts) in [(0u16, 1u64), (5, 0x0123_4567_89ab_cdef), (15, u64::MAX)] {
                    let sport = p.sport_base + flow;
                    let mut f = t.bytes.clone();
                    f[u..u + 2].copy_from_slice(&sport.to_be_bytes());
                    let at = u + 8 + STAMP_TS_OFF;
                    f[at..at + 8].copy_from_slice(&ts.to_be_bytes());
                    let c = udp_csum_update_stamped(p.csum_seed, sport, p.dport_base, ts);
                    f[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
                    assert!(checksums_ok(&f), "{src} size {size} flow {flow} ts {ts:#x}");
                }
            }
        }
        // IPv6 needs 74 bytes for the stamp (IPv4 54, below the minimum frame anyway).
        let mut sp = spec(v6().0, v6().1, 73);
        sp.stamp = true;
        assert!(matches!(
            build(&sp),
            Err(GenError::StampDoesNotFit { size: 73, min: 74 })
        ));
        sp.size = 74;
        assert!(build(&sp).is_ok());
        assert_eq!(
            build(&spec(v4().0, v4().1, 64)).unwrap().params(1, 1).stamp,
            0
        );
    }

    #[test]
    fn update_never_writes_zero() {
        // Whatever the seed, 0 ("no checksum") must never come out.
        for seed in [0u32, 1, 0xfffe, 0xffff, 0x1_fffe] {
            for p in [0u16, 1, 0x7fff, 0xffff] {
                assert_ne!(udp_csum_update(seed, p, p.wrapping_mul(3)), 0);
            }
        }
    }

    #[test]
    fn size_and_family_are_checked() {
        let (s4, d4) = v4();
        let (_, d6) = v6();
        assert!(matches!(
            build(&spec(s4, d4, 20)),
            Err(GenError::SizeOutOfRange { size: 20, .. })
        ));
        assert!(build(&spec(s4, d4, MAX_FRAME + 1)).is_err());
        assert!(matches!(
            build(&spec(s4, d6, 64)),
            Err(GenError::FamilyMismatch { .. })
        ));
    }

    #[test]
    fn parses_macs_and_ports() {
        let m: MacAddr = "02:AB:cd:00:0:ff".parse().unwrap();
        assert_eq!(m.0, [2, 0xab, 0xcd, 0, 0, 0xff]);
        assert_eq!(m.to_string(), "02:ab:cd:00:00:ff");
        assert_eq!("02-00-00-00-00-01".parse::<MacAddr>().unwrap().0[5], 1);
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "020:0:0:0:0:0",
        ] {
            assert!(
                matches!(bad.parse::<MacAddr>(), Err(GenError::InvalidMac(_))),
                "{bad}"
            );
        }
        assert_eq!(
            "9200".parse::<PortRange>().unwrap(),
            PortRange::single(9200)
        );
        let r: PortRange = "9200-9203".parse().unwrap();
        assert_eq!((r.lo, r.hi, r.len()), (9200, 9203, 4));
        assert_eq!(r.to_string(), "9200-9203");
        for bad in ["0", "9300-9200", "70000", "a-b", "1-"] {
            assert!(
                matches!(bad.parse::<PortRange>(), Err(GenError::InvalidPorts(_))),
                "{bad}"
            );
        }
    }
}
