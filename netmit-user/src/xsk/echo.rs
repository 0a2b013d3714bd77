//! UDP echo: turning a received frame into its reply, in place.
//!
//! The reply swaps the Ethernet, IP and UDP source and destination. A one's-complement
//! checksum is a sum and a swap does not change a sum, so the IPv4 header checksum stays
//! valid as it is. The UDP checksum is recomputed all the same: a frame that a local
//! sender handed to a veth (or to a NIC with checksum offload) carries only the partial
//! sum over the pseudo-header, which the device was meant to complete, so the received
//! field cannot be trusted. The IPv4 TTL / IPv6 hop limit is left as received.

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;

fn swap_ranges(buf: &mut [u8], a: usize, b: usize, len: usize) {
    for i in 0..len {
        buf.swap(a + i, b + i);
    }
}

/// Turns a UDP frame (IPv4 or IPv6, up to two VLAN tags) into its reply. Returns `false`,
/// leaving the frame unchanged, for anything else: non-UDP, fragments, IPv6 extension
/// headers, truncated headers.
pub fn udp_reply_in_place(frame: &mut [u8]) -> bool {
    if frame.len() < ETH_HLEN {
        return false;
    }
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        off += 4;
        match frame.get(off..off + 2) {
            Some(t) => ethertype = u16::from_be_bytes([t[0], t[1]]),
            None => return false,
        }
    }
    let l3 = off + 2;
    let (l4, addr_off, addr_len) = match ethertype {
        ETH_P_IP => {
            let Some(h) = frame.get(l3..l3 + 20) else {
                return false;
            };
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([h[6], h[7]]);
            if h[0] >> 4 != 4 || ihl < 20 || h[9] != IPPROTO_UDP || frag & 0x3fff != 0 {
                return false;
            }
            (l3 + ihl, l3 + 12, 4)
        }
        ETH_P_IPV6 => {
            let Some(h) = frame.get(l3..l3 + 40) else {
                return false;
            };
            if h[0] >> 4 != 6 || h[6] != IPPROTO_UDP {
                return false;
            }
            (l3 + 40, l3 + 8, 16)
        }
        _ => return false,
    };
    if frame.len() < l4 + 8 {
        return false;
    }
    let udp_len = usize::from(u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]));
    if udp_len < 8 || frame.len() < l4 + udp_len {
        return false;
    }
    swap_ranges(frame, 0, 6, 6);
    swap_ranges(frame, addr_off, addr_off + addr_len, addr_len);
    swap_ranges(frame, l4, l4 + 2, 2);
    // UDP checksum over the pseudo-header (addresses, protocol, length) and the datagram.
    frame[l4 + 6] = 0;
    frame[l4 + 7] = 0;
    let mut sum = sum16(&frame[addr_off..addr_off + 2 * addr_len]);
    sum += u32::from(IPPROTO_UDP) + udp_len as u32;
    sum += sum16(&frame[l4..l4 + udp_len]);
    let mut c = !fold(sum);
    if c == 0 {
        c = 0xffff; // 0 means "no checksum" in UDP over IPv4, and is invalid over IPv6
    }
    frame[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    true
}

fn sum16(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    let mut s: u32 = chunks
        .by_ref()
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        s += u32::from(*last) << 8;
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames;

    /// Verifies the IPv4 header checksum and the UDP checksum (pseudo-header included).
    fn checksums_valid_v4(f: &[u8]) -> bool {
        let ip = &f[14..34];
        let udp = &f[34..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip[12..20]);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        fold(sum16(ip)) == 0xffff && fold(sum16(&pseudo) + sum16(udp)) == 0xffff
    }

    fn with_udp_checksum(mut f: Vec<u8>) -> Vec<u8> {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&((f.len() - 34) as u16).to_be_bytes());
        let c = !fold(sum16(&pseudo) + sum16(&f[34..]));
        f[40..42].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn reply_swaps_and_keeps_checksums_valid() {
        let f = with_udp_checksum(frames::ipv4(17, "198.18.0.1".parse().unwrap(), 9000, 23));
        assert!(checksums_valid_v4(&f));
        let mut r = f.clone();
        assert!(udp_reply_in_place(&mut r));
        assert_eq!(&r[0..6], &f[6..12]);
        assert_eq!(&r[26..30], &f[30..34]);
        assert_eq!(&r[34..36], &f[36..38]);
        assert_eq!(&r[42..], &f[42..], "payload untouched");
        assert!(checksums_valid_v4(&r));
        assert!(udp_reply_in_place(&mut r));
        assert_eq!(r, f, "two swaps give the original back");
    }

    #[test]
    fn partial_checksum_from_offload_is_replaced() {
        let mut f = with_udp_checksum(frames::ipv4(17, "198.18.0.1".parse().unwrap(), 9000, 9));
        f[40] ^= 0x5a; // what a veth peer hands over: not the final checksum
        assert!(!checksums_valid_v4(&f));
        assert!(udp_reply_in_place(&mut f));
        assert!(checksums_valid_v4(&f));
    }

    #[test]
    fn ipv6_and_non_udp() {
        let f = frames::ipv6(17, "2001:db8::9".parse().unwrap(), 53, 4);
        let mut r = f.clone();
        assert!(udp_reply_in_place(&mut r));
        assert_eq!(&r[22..38], &f[38..54]);
        let mut tcp = frames::ipv4(6, "198.18.0.1".parse().unwrap(), 80, 0);
        let before = tcp.clone();
        assert!(!udp_reply_in_place(&mut tcp));
        assert_eq!(tcp, before);
        let mut short = f[..50].to_vec();
        assert!(!udp_reply_in_place(&mut short));
    }
}
