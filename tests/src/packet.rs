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

use std::fs::File;
use std::io::BufWriter;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use rand::Rng;
use rand::seq::IndexedRandom;

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

/// One VLAN tag: 4 bytes of TPID and TCI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag {
    /// Tag protocol identifier, normally [`TPID_8021Q`] or [`TPID_8021AD`].
    pub tpid: u16,
    /// VLAN id; only the low 12 bits are emitted.
    pub vid: u16,
    /// Priority code point; only the low 3 bits are emitted.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
}

/// An IPv4 header description. `None` fields are derived from the rest of the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live.
    pub ttl: u8,
    /// Identification field.
    pub id: u16,
    /// Protocol field; `None` = derived from the transport layer.
    pub protocol: Option<u8>,
    /// Option bytes, zero-padded (EOL) to a multiple of 4 when emitted.
    pub options: Vec<u8>,
    /// Fragment offset in 8-byte units (low 13 bits emitted).
    pub frag_offset: u16,
    /// More-fragments flag.
    pub more_fragments: bool,
    /// Don't-fragment flag.
    pub dont_fragment: bool,
    /// Version field override (default 4).
    pub version: Option<u8>,
    /// IHL field override (default: actual header length / 4). Only the field changes;
    /// the emitted header is always 20 bytes plus the padded options.
    pub ihl: Option<u8>,
    /// Total length field override (default: header + transport bytes).
    pub total_len: Option<u16>,
}

/// An IPv6 extension header, emitted in list order after the fixed header. Each header's
/// next-header byte is set to the following header's code (or the transport protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Ext {
    /// Hop-by-hop options (0); `len` is the Hdr Ext Len field, the header is (len+1)*8 bytes
    /// filled with a PadN option.
    HopByHop {
        /// Hdr Ext Len field.
        len: u8,
    },
    /// Routing header (43), type 253 (experimental) with segments left 0; (len+1)*8 bytes.
    Routing {
        /// Hdr Ext Len field.
        len: u8,
    },
    /// Destination options (60); (len+1)*8 bytes filled with a PadN option.
    DestOpts {
        /// Hdr Ext Len field.
        len: u8,
    },
    /// Fragment header (44), always 8 bytes.
    Fragment {
        /// Fragment offset in 8-byte units (13 bits).
        offset: u16,
        /// M (more fragments) flag.
        more: bool,
        /// Identification.
        id: u32,
    },
}

impl Ipv6Ext {
    /// The next-header code announcing this extension header.
    pub fn code(&self) -> u8 {
        match self {
            Ipv6Ext::HopByHop { .. } => IPPROTO_HOPOPTS,
            Ipv6Ext::Routing { .. } => IPPROTO_ROUTING,
            Ipv6Ext::DestOpts { .. } => IPPROTO_DSTOPTS,
            Ipv6Ext::Fragment { .. } => IPPROTO_FRAGMENT,
        }
    }

    /// Serialize this header with the given next-header byte.
    fn to_bytes(self, next_header: u8) -> Vec<u8> {
        match self {
            Ipv6Ext::HopByHop { len } | Ipv6Ext::DestOpts { len } => {
                let total = (usize::from(len) + 1) * 8;
                let mut b = vec![0u8; total];
                b[0] = next_header;
                b[1] = len;
                // total - 2 >= 6 bytes remain: one PadN option covering all of them.
                b[2] = 1;
                b[3] = (total - 4) as u8;
                b
            }
            Ipv6Ext::Routing { len } => {
                let total = (usize::from(len) + 1) * 8;
                let mut b = vec![0u8; total];
                b[0] = next_header;
                b[1] = len;
                b[2] = 253; // routing type: RFC 4727 experimental
                b[3] = 0; // segments left
                b
            }
            Ipv6Ext::Fragment { offset, more, id } => {
                let mut b = vec![0u8; 8];
                b[0] = next_header;
                let fo = ((offset & 0x1fff) << 3) | u16::from(more);
                b[2..4].copy_from_slice(&fo.to_be_bytes());
                b[4..8].copy_from_slice(&id.to_be_bytes());
                b
            }
        }
    }
}

/// An IPv6 header description. `None` fields are derived from the rest of the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Header {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Hop limit.
    pub hop_limit: u8,
    /// Extension headers, in order.
    pub exts: Vec<Ipv6Ext>,
    /// Next header of the last header in the chain (the "protocol");
    /// `None` = derived from the transport layer.
    pub protocol: Option<u8>,
    /// Payload length field override (default: extension headers + transport bytes).
    pub payload_len: Option<u16>,
    /// Version field override (default 6).
    pub version: Option<u8>,
}

/// The network layer of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// Nothing after the EtherType (the transport layer is ignored).
    None,
    /// IPv4.
    Ipv4(Ipv4Header),
    /// IPv6.
    Ipv6(Ipv6Header),
    /// Arbitrary bytes after the EtherType, e.g. an ARP body (the transport layer is ignored).
    Raw(Vec<u8>),
}

/// A TCP header description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte (`TCP_SYN | TCP_ACK` ...).
    pub flags: u8,
    /// Window.
    pub window: u16,
    /// Option bytes, zero-padded (EOL) to a multiple of 4 when emitted.
    pub options: Vec<u8>,
    /// Data offset field override (default: actual header length / 4).
    pub data_offset: Option<u8>,
    /// Payload after the header.
    pub payload: Vec<u8>,
}

/// The transport layer of an IP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// No transport bytes (protocol 255 for IPv4, 59 "no next header" for IPv6).
    None,
    /// UDP with a computed length and checksum.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Payload.
        payload: Vec<u8>,
    },
    /// TCP with a computed checksum.
    Tcp(TcpHeader),
    /// ICMP (IPv4) or ICMPv6 (IPv6) echo request with a computed checksum.
    IcmpEcho {
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Arbitrary protocol number and bytes (no checksum processing).
    Raw {
        /// IP protocol / next header number.
        protocol: u8,
        /// Bytes after the IP header (chain).
        payload: Vec<u8>,
    },
}

impl Transport {
    /// The IP protocol number this transport announces, given the IP family.
    fn protocol(&self, ipv6: bool) -> u8 {
        match self {
            Transport::None if ipv6 => IPPROTO_NONE,
            Transport::None => 255,
            Transport::Udp { .. } => IPPROTO_UDP,
            Transport::Tcp(_) => IPPROTO_TCP,
            Transport::IcmpEcho { .. } if ipv6 => IPPROTO_ICMPV6,
            Transport::IcmpEcho { .. } => IPPROTO_ICMP,
            Transport::Raw { protocol, .. } => *protocol,
        }
    }
}

/// Builder for raw Ethernet frames. All fields are public; the chainable methods are
/// shorthands. Methods that configure a layer that is not present panic (this is test code:
/// a misuse is a bug in the test).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketBuilder {
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// VLAN tags, outermost first (any number, so over-long stacks can be built).
    pub vlans: Vec<VlanTag>,
    /// EtherType after the tags; `None` = derived from the network layer.
    pub ethertype: Option<u16>,
    /// Network layer.
    pub network: Network,
    /// Transport layer (only emitted for IPv4/IPv6).
    pub transport: Transport,
    /// Bytes appended after the IP packet (beyond its total/payload length).
    pub trailer: Vec<u8>,
    /// Minimum frame length, reached by appending zero bytes (Ethernet padding; 60 is the
    /// classic minimum without FCS). 0 = no padding.
    pub pad_to: usize,
    /// Truncate the finished frame to this many bytes.
    pub truncate: Option<usize>,
}

impl Default for PacketBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBuilder {
    /// An empty frame description: default MACs, no tags, no network layer.
    pub fn new() -> Self {
        PacketBuilder {
            dst_mac: DEFAULT_DST_MAC,
            src_mac: DEFAULT_SRC_MAC,
            vlans: Vec::new(),
            ethertype: None,
            network: Network::None,
            transport: Transport::None,
            trailer: Vec::new(),
            pad_to: 0,
            truncate: None,
        }
    }

    /// Set the source MAC address.
    pub fn src_mac(mut self, mac: [u8; 6]) -> Self {
        self.src_mac = mac;
        self
    }

    /// Set the destination MAC address.
    pub fn dst_mac(mut self, mac: [u8; 6]) -> Self {
        self.dst_mac = mac;
        self
    }

    /// Push an 802.1Q tag (TPID 0x8100, PCP 0) with the given VID inside the existing tags.
    pub fn vlan(self, vid: u16) -> Self {
        self.vlan_tag(TPID_8021Q, vid, 0)
    }

    /// Push a tag with an explicit TPID and PCP inside the existing tags.
    pub fn vlan_tag(mut self, tpid: u16, vid: u16, pcp: u8) -> Self {
        self.vlans.push(VlanTag {
            tpid,
            vid,
            pcp,
            dei: false,
        });
        self
    }

    /// Override the EtherType that follows the tags (e.g. [`ETHERTYPE_ARP`], or a wrong one
    /// for an IP packet).
    pub fn ethertype(mut self, ethertype: u16) -> Self {
        self.ethertype = Some(ethertype);
        self
    }

    /// Use raw bytes as the network layer (non-IP frames; set [`Self::ethertype`] too).
    pub fn raw_l3(mut self, bytes: Vec<u8>) -> Self {
        self.network = Network::Raw(bytes);
        self
    }

    /// A broadcast ARP request (EtherType 0x0806) asking for `target` on behalf of `sender`.
    pub fn arp_request(self, sender: Ipv4Addr, target: Ipv4Addr) -> Self {
        let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1]; // Ethernet/IPv4, request
        body.extend_from_slice(&self.src_mac);
        body.extend_from_slice(&sender.octets());
        body.extend_from_slice(&[0; 6]);
        body.extend_from_slice(&target.octets());
        self.dst_mac([0xff; 6])
            .ethertype(ETHERTYPE_ARP)
            .raw_l3(body)
    }

    /// Make the network layer IPv4 with default fields (TTL 64, no options, not a fragment).
    pub fn ipv4(mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        self.network = Network::Ipv4(Ipv4Header {
            src,
            dst,
            ttl: 64,
            id: 0x1234,
            protocol: None,
            options: Vec::new(),
            frag_offset: 0,
            more_fragments: false,
            dont_fragment: false,
            version: None,
            ihl: None,
            total_len: None,
        });
        self
    }

    /// Make the network layer IPv6 with default fields (hop limit 64, no extension headers).
    pub fn ipv6(mut self, src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        self.network = Network::Ipv6(Ipv6Header {
            src,
            dst,
            hop_limit: 64,
            exts: Vec::new(),
            protocol: None,
            payload_len: None,
            version: None,
        });
        self
    }

    fn v4(&mut self) -> &mut Ipv4Header {
        match &mut self.network {
            Network::Ipv4(h) => h,
            other => panic!("IPv4 setting on a non-IPv4 packet: {other:?}"),
        }
    }

    fn v6(&mut self) -> &mut Ipv6Header {
        match &mut self.network {
            Network::Ipv6(h) => h,
            other => panic!("IPv6 setting on a non-IPv6 packet: {other:?}"),
        }
    }

    /// Set the IPv4 option bytes (zero-padded to a multiple of 4; IHL follows unless
    /// overridden). Panics unless the packet is IPv4.
    pub fn ipv4_options(mut self, options: Vec<u8>) -> Self {
        self.v4().options = options;
        self
    }

    /// Set the IPv4 fragment offset (8-byte units) and MF flag. Panics unless IPv4.
    pub fn ipv4_fragment(mut self, offset: u16, more_fragments: bool) -> Self {
        let h = self.v4();
        h.frag_offset = offset;
        h.more_fragments = more_fragments;
        self
    }

    /// Set the IPv4 DF flag. Panics unless IPv4.
    pub fn ipv4_dont_fragment(mut self, df: bool) -> Self {
        self.v4().dont_fragment = df;
        self
    }

    /// Override the IPv4 version field. Panics unless IPv4.
    pub fn ipv4_version(mut self, version: u8) -> Self {
        self.v4().version = Some(version);
        self
    }

    /// Override the IPv4 IHL field (the emitted bytes do not change). Panics unless IPv4.
    pub fn ipv4_ihl(mut self, ihl: u8) -> Self {
        self.v4().ihl = Some(ihl);
        self
    }

    /// Override the IPv4 total length field. Panics unless IPv4.
    pub fn ipv4_total_len(mut self, total_len: u16) -> Self {
        self.v4().total_len = Some(total_len);
        self
    }

    /// Append an IPv6 extension header to the chain. Panics unless IPv6.
    pub fn ipv6_ext(mut self, ext: Ipv6Ext) -> Self {
        self.v6().exts.push(ext);
        self
    }

    /// Override the IPv6 payload length field. Panics unless IPv6.
    pub fn ipv6_payload_len(mut self, payload_len: u16) -> Self {
        self.v6().payload_len = Some(payload_len);
        self
    }

    /// Override the IPv6 version field. Panics unless IPv6.
    pub fn ipv6_version(mut self, version: u8) -> Self {
        self.v6().version = Some(version);
        self
    }

    /// Override the protocol: IPv4's protocol field, or the next-header byte of the last
    /// header of an IPv6 chain. Panics unless the packet is IP.
    pub fn ip_protocol(mut self, protocol: u8) -> Self {
        match &mut self.network {
            Network::Ipv4(h) => h.protocol = Some(protocol),
            Network::Ipv6(h) => h.protocol = Some(protocol),
            other => panic!("protocol override on a non-IP packet: {other:?}"),
        }
        self
    }

    /// Make the transport layer UDP with an empty payload.
    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.transport = Transport::Udp {
            sport,
            dport,
            payload: Vec::new(),
        };
        self
    }

    /// Make the transport layer TCP (flags ACK, no options, empty payload).
    pub fn tcp(mut self, sport: u16, dport: u16) -> Self {
        self.transport = Transport::Tcp(TcpHeader {
            sport,
            dport,
            seq: 1,
            ack: 1,
            flags: TCP_ACK,
            window: 65535,
            options: Vec::new(),
            data_offset: None,
            payload: Vec::new(),
        });
        self
    }

    /// Make the transport layer an ICMP/ICMPv6 echo request (family decided at build time).
    pub fn icmp_echo(mut self, id: u16, seq: u16) -> Self {
        self.transport = Transport::IcmpEcho {
            id,
            seq,
            payload: Vec::new(),
        };
        self
    }

    /// Make the transport layer arbitrary bytes under an arbitrary protocol number.
    pub fn l4_raw(mut self, protocol: u8, payload: Vec<u8>) -> Self {
        self.transport = Transport::Raw { protocol, payload };
        self
    }

    /// Set the payload of the UDP/TCP/ICMP/raw transport. Panics if there is none.
    pub fn payload(mut self, bytes: Vec<u8>) -> Self {
        match &mut self.transport {
            Transport::Udp { payload, .. }
            | Transport::IcmpEcho { payload, .. }
            | Transport::Raw { payload, .. } => *payload = bytes,
            Transport::Tcp(t) => t.payload = bytes,
            Transport::None => panic!("payload without a transport layer"),
        }
        self
    }

    fn tcp_mut(&mut self) -> &mut TcpHeader {
        match &mut self.transport {
            Transport::Tcp(t) => t,
            other => panic!("TCP setting on a non-TCP packet: {other:?}"),
        }
    }

    /// Set the TCP flags byte. Panics unless TCP.
    pub fn tcp_flags(mut self, flags: u8) -> Self {
        self.tcp_mut().flags = flags;
        self
    }

    /// Set the TCP option bytes (zero-padded to a multiple of 4; the data offset follows
    /// unless overridden). Panics unless TCP.
    pub fn tcp_options(mut self, options: Vec<u8>) -> Self {
        self.tcp_mut().options = options;
        self
    }

    /// Override the TCP data offset field (the emitted bytes do not change). Panics unless TCP.
    pub fn tcp_data_offset(mut self, data_offset: u8) -> Self {
        self.tcp_mut().data_offset = Some(data_offset);
        self
    }

    /// Append bytes after the IP packet (they are not counted in IP lengths).
    pub fn trailer(mut self, bytes: Vec<u8>) -> Self {
        self.trailer = bytes;
        self
    }

    /// Pad the frame with zero bytes up to `len` bytes (no-op if already that long).
    pub fn pad_to(mut self, len: usize) -> Self {
        self.pad_to = len;
        self
    }

    /// Truncate the finished frame (after padding) to `len` bytes.
    pub fn truncate(mut self, len: usize) -> Self {
        self.truncate = Some(len);
        self
    }

    /// Assemble the frame.
    pub fn build(&self) -> Vec<u8> {
        let mut frame = Vec::with_capacity(128);
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        for tag in &self.vlans {
            let tci =
                (u16::from(tag.pcp & 7) << 13) | (u16::from(tag.dei) << 12) | (tag.vid & 0x0fff);
            frame.extend_from_slice(&tag.tpid.to_be_bytes());
            frame.extend_from_slice(&tci.to_be_bytes());
        }
        let default_ethertype = match self.network {
            Network::Ipv4(_) => ETHERTYPE_IPV4,
            Network::Ipv6(_) => ETHERTYPE_IPV6,
            Network::None | Network::Raw(_) => ETHERTYPE_EXPERIMENTAL,
        };
        frame.extend_from_slice(&self.ethertype.unwrap_or(default_ethertype).to_be_bytes());

        match &self.network {
            Network::None => {}
            Network::Raw(bytes) => frame.extend_from_slice(bytes),
            Network::Ipv4(h) => frame.extend_from_slice(&build_ipv4(h, &self.transport)),
            Network::Ipv6(h) => frame.extend_from_slice(&build_ipv6(h, &self.transport)),
        }

        frame.extend_from_slice(&self.trailer);
        if frame.len() < self.pad_to {
            frame.resize(self.pad_to, 0);
        }
        if let Some(len) = self.truncate {
            frame.truncate(len);
        }
        frame
    }
}

/// The Internet checksum (RFC 1071) of `data`: the ones' complement of the ones' complement
/// sum of big-endian 16-bit words (an odd trailing byte is padded with zero).
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum_words(data))
}

fn sum_words(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum()
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Transport checksum over a pseudo-header (`pseudo`) and the segment.
fn transport_checksum(pseudo: &[u8], segment: &[u8]) -> u16 {
    !fold(sum_words(pseudo) + sum_words(segment))
}

fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, protocol]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, protocol]);
    p
}

/// Serialize the transport layer. `pseudo` builds the pseudo-header for a protocol and
/// segment length; `ipv6` selects ICMPv6 vs ICMP.
fn build_transport(t: &Transport, ipv6: bool, pseudo: &dyn Fn(u8, usize) -> Vec<u8>) -> Vec<u8> {
    match t {
        Transport::None => Vec::new(),
        Transport::Raw { payload, .. } => payload.clone(),
        Transport::Udp {
            sport,
            dport,
            payload,
        } => {
            let len = 8 + payload.len();
            let mut s = Vec::with_capacity(len);
            s.extend_from_slice(&sport.to_be_bytes());
            s.extend_from_slice(&dport.to_be_bytes());
            s.extend_from_slice(&(len as u16).to_be_bytes());
            s.extend_from_slice(&[0, 0]);
            s.extend_from_slice(payload);
            let mut csum = transport_checksum(&pseudo(IPPROTO_UDP, len), &s);
            if csum == 0 {
                csum = 0xffff;
            }
            s[6..8].copy_from_slice(&csum.to_be_bytes());
            s
        }
        Transport::Tcp(h) => {
            let mut opts = h.options.clone();
            opts.resize(opts.len().div_ceil(4) * 4, 0);
            let hlen = 20 + opts.len();
            let doff = h.data_offset.unwrap_or((hlen / 4) as u8);
            let mut s = Vec::with_capacity(hlen + h.payload.len());
            s.extend_from_slice(&h.sport.to_be_bytes());
            s.extend_from_slice(&h.dport.to_be_bytes());
            s.extend_from_slice(&h.seq.to_be_bytes());
            s.extend_from_slice(&h.ack.to_be_bytes());
            s.push((doff & 0x0f) << 4);
            s.push(h.flags);
            s.extend_from_slice(&h.window.to_be_bytes());
            s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
            s.extend_from_slice(&opts);
            s.extend_from_slice(&h.payload);
            let csum = transport_checksum(&pseudo(IPPROTO_TCP, s.len()), &s);
            s[16..18].copy_from_slice(&csum.to_be_bytes());
            s
        }
        Transport::IcmpEcho { id, seq, payload } => {
            let mut s = vec![if ipv6 { 128 } else { 8 }, 0, 0, 0];
            s.extend_from_slice(&id.to_be_bytes());
            s.extend_from_slice(&seq.to_be_bytes());
            s.extend_from_slice(payload);
            let csum = if ipv6 {
                transport_checksum(&pseudo(IPPROTO_ICMPV6, s.len()), &s)
            } else {
                internet_checksum(&s)
            };
            s[2..4].copy_from_slice(&csum.to_be_bytes());
            s
        }
    }
}

fn build_ipv4(h: &Ipv4Header, t: &Transport) -> Vec<u8> {
    let protocol = h.protocol.unwrap_or_else(|| t.protocol(false));
    let l4 = build_transport(t, false, &|p, len| pseudo_v4(h.src, h.dst, p, len));
    let mut opts = h.options.clone();
    opts.resize(opts.len().div_ceil(4) * 4, 0);
    let hlen = 20 + opts.len();
    let version = h.version.unwrap_or(4);
    let ihl = h.ihl.unwrap_or((hlen / 4) as u8);
    let total_len = h.total_len.unwrap_or((hlen + l4.len()) as u16);
    let flags_frag = (u16::from(h.dont_fragment) << 14)
        | (u16::from(h.more_fragments) << 13)
        | (h.frag_offset & 0x1fff);

    let mut b = Vec::with_capacity(hlen + l4.len());
    b.push(((version & 0x0f) << 4) | (ihl & 0x0f));
    b.push(0); // DSCP/ECN
    b.extend_from_slice(&total_len.to_be_bytes());
    b.extend_from_slice(&h.id.to_be_bytes());
    b.extend_from_slice(&flags_frag.to_be_bytes());
    b.push(h.ttl);
    b.push(protocol);
    b.extend_from_slice(&[0, 0]); // checksum
    b.extend_from_slice(&h.src.octets());
    b.extend_from_slice(&h.dst.octets());
    b.extend_from_slice(&opts);
    let csum = internet_checksum(&b);
    b[10..12].copy_from_slice(&csum.to_be_bytes());
    b.extend_from_slice(&l4);
    b
}

fn build_ipv6(h: &Ipv6Header, t: &Transport) -> Vec<u8> {
    let protocol = h.protocol.unwrap_or_else(|| t.protocol(true));
    let l4 = build_transport(t, true, &|p, len| pseudo_v6(h.src, h.dst, p, len));
    let mut exts = Vec::new();
    for (i, ext) in h.exts.iter().enumerate() {
        let next = h.exts.get(i + 1).map_or(protocol, Ipv6Ext::code);
        exts.extend_from_slice(&ext.to_bytes(next));
    }
    let first_next = h.exts.first().map_or(protocol, Ipv6Ext::code);
    let payload_len = h.payload_len.unwrap_or((exts.len() + l4.len()) as u16);
    let version = h.version.unwrap_or(6);

    let mut b = Vec::with_capacity(40 + exts.len() + l4.len());
    b.extend_from_slice(&(u32::from(version & 0x0f) << 28).to_be_bytes());
    b.extend_from_slice(&payload_len.to_be_bytes());
    b.push(first_next);
    b.push(h.hop_limit);
    b.extend_from_slice(&h.src.octets());
    b.extend_from_slice(&h.dst.octets());
    b.extend_from_slice(&exts);
    b.extend_from_slice(&l4);
    b
}

/// Typical SYN options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7
/// (20 bytes, data offset 10).
pub fn tcp_syn_options() -> Vec<u8> {
    vec![
        2, 4, 0x05, 0xb4, // MSS 1460
        4, 2, // SACK permitted
        8, 10, 0, 0, 0, 1, 0, 0, 0, 0, // timestamps
        1, // NOP
        3, 3, 7, // window scale
    ]
}

/// Write `frames` to a classic (libpcap) capture file with Ethernet link type, one
/// microsecond apart.
pub fn write_pcap(path: impl AsRef<Path>, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    let path = path.as_ref();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let header = PcapHeader {
        snaplen: 262_144,
        datalink: DataLink::ETHERNET,
        ..Default::default()
    };
    let mut writer = PcapWriter::with_header(BufWriter::new(file), header)
        .with_context(|| format!("writing pcap header to {}", path.display()))?;
    for (i, frame) in frames.iter().enumerate() {
        let packet = PcapPacket::new(Duration::from_micros(i as u64), frame.len() as u32, frame);
        writer
            .write_packet(&packet)
            .with_context(|| format!("writing packet {i} to {}", path.display()))?;
    }
    let mut inner = writer.into_writer();
    std::io::Write::flush(&mut inner).with_context(|| format!("flushing {}", path.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Corpora
// ---------------------------------------------------------------------------------------

const V4_DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const V6_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);

fn payload_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn hbh(len: u8) -> Ipv6Ext {
    Ipv6Ext::HopByHop { len }
}
fn rt(len: u8) -> Ipv6Ext {
    Ipv6Ext::Routing { len }
}
fn dopt(len: u8) -> Ipv6Ext {
    Ipv6Ext::DestOpts { len }
}
fn frag(offset: u16, more: bool) -> Ipv6Ext {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

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
        let path =
            std::env::temp_dir().join(format!("netmit-packet-test-{}.pcap", std::process::id()));
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
}
