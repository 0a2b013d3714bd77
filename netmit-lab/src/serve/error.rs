//! [`ServeError`]: everything that can stop `netmit serve` from serving, with the address,
//! interface or step it happened at, and what to do about it.

use std::{io, net::IpAddr};

use netmit_user::{ebpf::TableError, sys::napi::NapiError, xsk::XskError};

/// Errors of the UDP request/response server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is invalid (found before any system call).
    #[error("invalid serve configuration: {what}")]
    InvalidConfig {
        /// The offending field and why.
        what: String,
    },
    /// The target is neither an interface of this network namespace nor an IP address.
    #[error(
        "`{0}` is neither an interface in this network namespace nor an IP address \
         (see `ip -brief address`)"
    )]
    UnknownTarget(String),
    /// The interface has no address to bind to.
    #[error(
        "interface {iface} has no IPv4 or IPv6 address to serve on: add one, or give an address"
    )]
    NoAddress {
        /// Interface.
        iface: String,
    },
    /// The address belongs to no interface of this network namespace (`EADDRNOTAVAIL`).
    #[error("{addr} is not an address of this network namespace (see `ip -brief address`)")]
    AddressNotLocal {
        /// The address.
        addr: IpAddr,
    },
    /// Another socket holds the port (`EADDRINUSE`).
    #[error("UDP port {port} on {addr} is in use by another socket (see `ss -ulpn`)")]
    PortInUse {
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
    /// A port below 1024 without `CAP_NET_BIND_SERVICE` (`EACCES`).
    #[error("binding to UDP port {port} (below 1024) needs root (CAP_NET_BIND_SERVICE)")]
    PortNotPermitted {
        /// Port.
        port: u16,
    },
    /// `EPIOCSPARAMS` is missing (`ENOTTY` before Linux 6.9, `EOPNOTSUPP` without
    /// `CONFIG_NET_RX_BUSY_POLL`).
    #[error(
        "epoll busy polling (the EPIOCSPARAMS ioctl) is not supported by this kernel \
         ({kernel}): it needs Linux 6.9 or later built with CONFIG_NET_RX_BUSY_POLL; \
         use --mode epoll"
    )]
    EpollParamsUnsupported {
        /// The running kernel's release (`uname -r`).
        kernel: String,
        /// The ioctl's error.
        #[source]
        source: io::Error,
    },
    /// A busy-poll budget above `NAPI_POLL_WEIGHT` without `CAP_NET_ADMIN` (`EPERM`).
    #[error(
        "a busy-poll budget of {budget} (above 64, the kernel's NAPI_POLL_WEIGHT) needs \
         CAP_NET_ADMIN: run as root or use --busy-poll-budget 64 or less"
    )]
    BudgetNotPermitted {
        /// The budget asked for.
        budget: u16,
    },
    /// xsk mode without the privileges to open AF_XDP sockets and read netmit's pins.
    #[error(
        "xsk mode needs root (CAP_NET_RAW for AF_XDP sockets, CAP_BPF to read netmit's \
         pinned maps): run it with sudo"
    )]
    XskNotPermitted,
    /// xsk mode was given an address that is on no interface (or the unspecified address).
    #[error(
        "xsk mode needs an interface, and {addr} is on none here: give the interface \
         netmit is attached to"
    )]
    XskNeedsInterface {
        /// The address given.
        addr: IpAddr,
    },
    /// xsk mode on an interface netmit's steering program is not attached to.
    #[error(
        "netmit is not attached to {iface}: run `netmit attach {iface} --steer \
         'proto=udp,dport={port},action=xsk'` first"
    )]
    NotAttached {
        /// Interface.
        iface: String,
        /// The server's port.
        port: u16,
    },
    /// xsk mode, but the attached rules do not send the server's datagrams to AF_XDP.
    #[error(
        "no steering rule of {iface} sends UDP to {addr} port {port} to AF_XDP ({why}): add \
         one with `netmit steer add {iface} 'proto=udp,dport={port},action=xsk'`"
    )]
    NotSteered {
        /// Interface.
        iface: String,
        /// The server's address.
        addr: IpAddr,
        /// The server's port.
        port: u16,
        /// What the rules do with such a datagram instead.
        why: String,
    },
    /// Reading the attached steering rules failed.
    #[error("reading the steering rules of {iface}")]
    Rules {
        /// Interface.
        iface: String,
        /// The error (boxed: it is large, and rare).
        #[source]
        source: Box<TableError>,
    },
    /// Listing the interface's RX queues failed.
    #[error("listing the RX queues of {iface}")]
    Queues {
        /// Interface.
        iface: String,
        /// The error.
        #[source]
        source: Box<NapiError>,
    },
    /// An AF_XDP socket failed (the error names interface, queue and step).
    #[error(transparent)]
    Xsk(#[from] XskError),
    /// netmit was detached from the interface under an xsk server (and the server was
    /// not told to wait for a new attachment).
    #[error(
        "{why}: the xsk server stopped on queue {queue}. Attach it again and restart, or \
         pass --wait to wait for a new attachment"
    )]
    Detached {
        /// RX queue of the socket.
        queue: u32,
        /// What happened ([`netmit_user::xsk::RegistrationState::describe`]).
        why: String,
    },
    /// Pinning a server thread to a CPU failed.
    #[error("pinning server thread {thread} to CPU {cpu}")]
    Affinity {
        /// Thread index.
        thread: usize,
        /// CPU.
        cpu: usize,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Any other failed system call.
    #[error("{step}")]
    Io {
        /// The step that failed, with its object (`recvmmsg on 198.18.0.1:9000`).
        step: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A server thread panicked.
    #[error("a server thread panicked")]
    ThreadPanicked,
}

impl ServeError {
    /// Classifies a failed `bind(2)` of the server's socket.
    pub(crate) fn bind(addr: IpAddr, port: u16, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EADDRINUSE) => ServeError::PortInUse { addr, port },
            Some(libc::EADDRNOTAVAIL) => ServeError::AddressNotLocal { addr },
            Some(libc::EACCES) => ServeError::PortNotPermitted { port },
            _ => ServeError::Io {
                step: format!("bind to {addr} port {port}"),
                source,
            },
        }
    }

    /// Classifies a failed `ioctl(EPIOCSPARAMS)` on the running kernel `kernel`.
    pub(crate) fn epoll_params(budget: u16, kernel: String, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::ENOTTY | libc::EOPNOTSUPP) => {
                ServeError::EpollParamsUnsupported { kernel, source }
            }
            Some(libc::EPERM) => ServeError::BudgetNotPermitted { budget },
            _ => ServeError::Io {
                step: "ioctl(EPIOCSPARAMS) on the epoll instance".into(),
                source,
            },
        }
    }

    /// A failed system call: `step` names it and its object.
    pub(crate) fn io(step: impl Into<String>, source: io::Error) -> Self {
        ServeError::Io {
            step: step.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn bind_errors_are_classified() {
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let e = ServeError::bind(a, 9000, os(libc::EADDRINUSE));
        assert!(
            matches!(e, ServeError::PortInUse { port: 9000, .. }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "UDP port 9000 on 198.18.0.1 is in use by another socket (see `ss -ulpn`)"
        );
        let e = ServeError::bind(a, 9000, os(libc::EADDRNOTAVAIL));
        assert!(
            e.to_string().starts_with("198.18.0.1 is not an address"),
            "{e}"
        );
        let e = ServeError::bind(a, 53, os(libc::EACCES));
        assert!(e.to_string().contains("CAP_NET_BIND_SERVICE"), "{e}");
        let e = ServeError::bind(a, 9000, os(libc::EINVAL));
        assert_eq!(e.to_string(), "bind to 198.18.0.1 port 9000");
    }

    #[test]
    fn epoll_params_errors_name_the_kernel() {
        for errno in [libc::ENOTTY, libc::EOPNOTSUPP] {
            let e = ServeError::epoll_params(64, "6.1.0-18-amd64".into(), os(errno));
            let msg = e.to_string();
            assert!(
                msg.contains("(6.1.0-18-amd64)")
                    && msg.contains("Linux 6.9")
                    && msg.contains("--mode epoll"),
                "{msg}"
            );
        }
        let e = ServeError::epoll_params(128, "6.18".into(), os(libc::EPERM));
        assert!(matches!(e, ServeError::BudgetNotPermitted { budget: 128 }));
        assert!(e.to_string().contains("CAP_NET_ADMIN"));
        let e = ServeError::epoll_params(64, "6.18".into(), os(libc::EINVAL));
        assert!(matches!(e, ServeError::Io { .. }));
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = ServeError::NotAttached {
            iface: "eth1".into(),
            port: 9000,
        };
        assert_eq!(
            e.to_string(),
            "netmit is not attached to eth1: run `netmit attach eth1 --steer \
             'proto=udp,dport=9000,action=xsk'` first"
        );
        let e = ServeError::UnknownTarget("eth9".into());
        assert!(e.to_string().contains("neither an interface"), "{e}");
    }

    #[test]
    fn error_is_small() {
        assert!(
            std::mem::size_of::<ServeError>() <= 96,
            "{}",
            std::mem::size_of::<ServeError>()
        );
    }
}
