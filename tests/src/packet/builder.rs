//! [`PacketBuilder`]: frames layer by layer, with checksums over the bytes emitted.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

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

pub(super) fn sum_words(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum()
}

pub(super) fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Transport checksum over a pseudo-header (`pseudo`) and the segment.
pub(super) fn transport_checksum(pseudo: &[u8], segment: &[u8]) -> u16 {
    !fold(sum_words(pseudo) + sum_words(segment))
}

pub(super) fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, protocol]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

pub(super) fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, len: usize) -> Vec<u8> {
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
