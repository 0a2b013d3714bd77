//! Packet crafting for the differential and integration tests.
//!
//! [`PacketBuilder`] assembles raw Ethernet frames layer by layer: MAC addresses, any number
//! of VLAN tags, an optional EtherType override, an IPv4 or IPv6 header (with options,
//! fragmentation, extension headers and explicit overrides of the fields the classifier
//! checks, so that malformed headers can be produced on purpose), and a UDP, TCP, ICMP echo
//! or arbitrary transport payload. IPv4 header checksums and UDP/TCP/ICMP checksums are
//! computed over whatever bytes are actually emitted. Ethernet padding, trailers and
//! truncation are applied last.
//!
//! The module also provides the packet corpora used by the differential tests
//! ([`edge_case_packets`], [`random_packets`]), the address and port pools they draw from
//! (shared with `reference::random_rules` so that random rules often hit random packets), and
//! [`write_pcap`] to dump a corpus for inspection with tcpdump/Wireshark or for replay.
//!
//! Nothing here knows the classification rules; see `docs/steering.md` and the
//! `reference` module for that.

use std::net::{Ipv4Addr, Ipv6Addr};

mod builder;
mod edge;
mod headers;
mod pcap;
mod random;
#[cfg(test)]
mod tests;

pub use builder::{PacketBuilder, internet_checksum, tcp_syn_options};
pub use edge::{edge_case_packets, truncation_bases};
pub use headers::{Ipv4Header, Ipv6Ext, Ipv6Header, Network, TcpHeader, Transport, VlanTag};
pub use pcap::write_pcap;
pub use random::{random_packet, random_packets};

/// TPID of an IEEE 802.1Q (customer) VLAN tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of an IEEE 802.1ad (service, "QinQ") VLAN tag.
pub const TPID_8021AD: u16 = 0x88a8;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of LLDP.
pub const ETHERTYPE_LLDP: u16 = 0x88cc;
/// IEEE "local experimental" EtherType, used when a frame has no IP layer and no override.
pub const ETHERTYPE_EXPERIMENTAL: u16 = 0x88b5;

/// IPv6 hop-by-hop options extension header.
pub const IPPROTO_HOPOPTS: u8 = 0;
/// ICMP (IPv4).
pub const IPPROTO_ICMP: u8 = 1;
/// TCP.
pub const IPPROTO_TCP: u8 = 6;
/// UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 routing extension header.
pub const IPPROTO_ROUTING: u8 = 43;
/// IPv6 fragment extension header.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 "no next header".
pub const IPPROTO_NONE: u8 = 59;
/// IPv6 destination options extension header.
pub const IPPROTO_DSTOPTS: u8 = 60;
/// SCTP (an arbitrary "other" transport protocol).
pub const IPPROTO_SCTP: u8 = 132;

/// TCP FIN flag.
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP PSH flag.
pub const TCP_PSH: u8 = 0x08;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;

/// Default source MAC address of built frames (locally administered).
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// Default destination MAC address of built frames (locally administered).
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// IPv4 destinations used by the generators: mostly inside 198.18.0.0/15, a few outside.
pub const DST_V4_POOL: [Ipv4Addr; 8] = [
    Ipv4Addr::new(198, 18, 0, 1),
    Ipv4Addr::new(198, 18, 0, 2),
    Ipv4Addr::new(198, 18, 1, 1),
    Ipv4Addr::new(198, 18, 255, 254),
    Ipv4Addr::new(198, 19, 0, 1),
    Ipv4Addr::new(198, 19, 128, 7),
    Ipv4Addr::new(10, 0, 0, 1),
    Ipv4Addr::new(192, 0, 2, 1),
];

/// IPv6 destinations used by the generators: mostly inside 2001:db8::/32, a few outside.
pub const DST_V6_POOL: [Ipv6Addr; 8] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 3),
    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
];

/// Source address of generated IPv4 packets.
pub const SRC_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// Source address of generated IPv6 packets.
pub const SRC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbeef, 0, 0, 0, 0, 0x100);

/// VLAN ids used by the generators (rules draw from the same set).
pub const VID_POOL: [u16; 4] = [1, 10, 20, 100];

/// "Interesting" destination ports used by the generators (rules draw from the same set).
pub const PORT_POOL: [u16; 17] = [
    0, 1, 53, 80, 443, 1023, 1024, 8999, 9000, 9001, 9005, 9009, 9010, 9011, 12345, 65534, 65535,
];
