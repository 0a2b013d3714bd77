//! The layer descriptions a [`super::PacketBuilder`] assembles.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

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
    pub(super) fn to_bytes(self, next_header: u8) -> Vec<u8> {
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
    pub(super) fn protocol(&self, ipv6: bool) -> u8 {
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
