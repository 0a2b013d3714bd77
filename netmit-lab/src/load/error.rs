//! [`LoadError`]: everything that stops the load client, with the interface, address or
//! step it happened at.

use std::{io, net::IpAddr};

use aya::{maps::MapError, programs::ProgramError};

use crate::r#gen::GenError;

/// Errors of the load client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The configuration is invalid (found before any system call).
    #[error("invalid load configuration: {what}")]
    InvalidConfig {
        /// The offending field and why.
        what: String,
    },
    /// No such interface in the calling thread's network namespace.
    #[error("interface `{0}` does not exist in this network namespace (see `ip link`)")]
    UnknownInterface(String),
    /// No route to the server.
    #[error("no route to {server} from {iface} (see `ip route get {server}`)")]
    NoRoute {
        /// Interface.
        iface: String,
        /// The server's address.
        server: IpAddr,
        /// The error of the route lookup (rtnetlink `RTM_GETROUTE`).
        #[source]
        source: io::Error,
    },
    /// The route to the server leaves through another interface.
    #[error(
        "the route to {server} leaves through interface index {ifindex}, not {iface} (see \
         `ip route get {server}`)"
    )]
    OtherInterface {
        /// Interface.
        iface: String,
        /// The server's address.
        server: IpAddr,
        /// The route's output interface.
        ifindex: u32,
    },
    /// The MAC address of the server (or of the router towards it) could not be
    /// resolved.
    #[error(
        "no neighbour entry for {neighbour} on {iface} after {waited_ms} ms of ARP/ND: is \
         it on that link and up? (or give its MAC address)"
    )]
    NoNeighbour {
        /// Interface.
        iface: String,
        /// The server, or the router towards it.
        neighbour: IpAddr,
        /// How long resolution was waited for.
        waited_ms: u64,
    },
    /// Reading the neighbour table failed.
    #[error("reading the neighbour table of {iface} over rtnetlink")]
    Neighbours {
        /// Interface.
        iface: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Missing privileges.
    #[error(
        "the load client needs root (CAP_BPF and CAP_NET_ADMIN to load and attach XDP \
         programs and send with BPF_PROG_TEST_RUN): run it with sudo"
    )]
    NotPermitted,
    /// Setting up or running the request generator failed.
    #[error("request generator")]
    Gen(#[source] GenError),
    /// Loading the eBPF object failed.
    #[error("loading the eBPF object")]
    Object(#[source] aya::EbpfError),
    /// A program operation failed.
    #[error("{what}")]
    Program {
        /// The step.
        what: &'static str,
        /// The error.
        #[source]
        source: ProgramError,
    },
    /// Attaching `netmit_load` to the interface failed.
    #[error(
        "cannot attach the load client's XDP program to {iface} in native mode (is another \
         XDP program attached? `ip link show {iface}`)"
    )]
    Attach {
        /// Interface.
        iface: String,
        /// The error.
        #[source]
        source: ProgramError,
    },
    /// The kernel attached without a bpf_link, which would outlive a crash.
    #[error(
        "the kernel attached the load client's program to {0} without a bpf_link (Linux \
         5.9+ needed), so it would stay attached after a crash: detached again"
    )]
    NoLink(String),
    /// A map operation failed.
    #[error("{what}")]
    Map {
        /// The step.
        what: &'static str,
        /// The error.
        #[source]
        source: MapError,
    },
    /// Setting up or using the socket sender's UDP sockets failed.
    #[error("{what}")]
    Socket {
        /// The step (with the address or interface).
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Pinning the thread to a CPU failed.
    #[error("pinning the load client's thread to CPU {cpu}")]
    Affinity {
        /// The CPU.
        cpu: usize,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl From<GenError> for LoadError {
    fn from(e: GenError) -> Self {
        match e {
            GenError::NotPermitted => LoadError::NotPermitted,
            GenError::UnknownInterface(i) => LoadError::UnknownInterface(i),
            e => LoadError::Gen(e),
        }
    }
}
