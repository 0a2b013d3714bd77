//! What can go wrong while configuring, loading and running the generator.

use super::*;

/// Errors of the traffic generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// Not a MAC address.
    #[error("`{0}` is not a MAC address (use aa:bb:cc:dd:ee:ff)")]
    InvalidMac(String),
    /// Not an IP address.
    #[error("`{0}` is not an IPv4 or IPv6 address")]
    InvalidIp(String),
    /// Not a port or port range.
    #[error("`{0}` is not a port or port range (use PORT or LO-HI, ports 1-65535)")]
    InvalidPorts(String),
    /// Frame size outside the supported range.
    #[error(
        "frame size {size} is out of range: use {min} to {max} bytes (Ethernet header included, FCS not)"
    )]
    SizeOutOfRange {
        /// Asked size.
        size: usize,
        /// Smallest size.
        min: usize,
        /// Largest size.
        max: usize,
    },
    /// A stamped frame too small for the send stamp.
    #[error(
        "frame size {size} leaves no room for the send stamp: use at least {min} bytes (12 bytes of UDP payload)"
    )]
    StampDoesNotFit {
        /// Asked size.
        size: usize,
        /// Smallest size with room for the stamp.
        min: usize,
    },
    /// Frame larger than the interface's MTU allows.
    #[error("frame size {size} exceeds what the MTU of {iface} allows ({mtu} + 14 bytes)")]
    FrameExceedsMtu {
        /// Interface.
        iface: String,
        /// Asked size.
        size: usize,
        /// The interface's MTU.
        mtu: u32,
    },
    /// Source and destination address of different families.
    #[error("source {src} and destination {dst} are not of the same address family")]
    FamilyMismatch {
        /// Source.
        src: IpAddr,
        /// Destination.
        dst: IpAddr,
    },
    /// The flows' source ports do not fit.
    #[error("{flows} flows from source port {sport} need ports up to {}, beyond 65535: use fewer flows or a lower source port", u32::from(*sport) + flows - 1)]
    TooManyFlows {
        /// Asked flows.
        flows: u32,
        /// First source port.
        sport: u16,
    },
    /// A parameter that must be positive is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// Live-frames batch out of range.
    #[error("live-frames batch {0} is out of range: use 1 to {MAX_LIVE_BATCH}")]
    InvalidBatch(u32),
    /// No such interface.
    #[error("interface `{0}` does not exist in this network namespace (see `ip link`)")]
    UnknownInterface(String),
    /// The interface has no Ethernet address.
    #[error("interface {0} has no Ethernet address: pass a source MAC")]
    NoMac(String),
    /// The interface has no address of the destination's family.
    #[error("interface {iface} has no {family} address: pass a source IP")]
    NoSourceAddress {
        /// Interface.
        iface: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// Listing the interface addresses failed.
    #[error("reading the addresses of {iface}")]
    Addresses {
        /// Interface.
        iface: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An rtnetlink request failed.
    #[error("reading link attributes of {iface} over rtnetlink")]
    Netlink {
        /// Interface.
        iface: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Missing privileges.
    #[error(
        "sending with BPF_PROG_TEST_RUN needs root (CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN): run it with sudo"
    )]
    NotPermitted,
    /// The kernel does not support live frames.
    #[error(
        "this kernel does not run XDP programs in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18 or later)"
    )]
    LiveFramesUnsupported {
        /// The error of the probe.
        #[source]
        source: io::Error,
    },
    /// Loading the eBPF object failed.
    #[error("loading the eBPF object")]
    Load(#[source] aya::EbpfError),
    /// A program operation failed.
    #[error("{what}")]
    Program {
        /// The step.
        what: &'static str,
        /// The error.
        #[source]
        source: ProgramError,
    },
    /// Reading the program's counters failed.
    #[error("reading the generator's frame counters")]
    Map(#[source] MapError),
}
