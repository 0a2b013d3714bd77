//! [`XskError`]: everything that can go wrong with an AF_XDP socket, with the interface,
//! queue and step it happened in.

use std::{io, time::Duration};

use crate::ebpf::TableError;

/// Errors of AF_XDP sockets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XskError {
    /// The configuration is invalid (found before any system call).
    #[error("invalid AF_XDP configuration: {what}")]
    InvalidConfig {
        /// The offending field and why.
        what: String,
    },
    /// No such interface in the caller's network namespace.
    #[error("interface `{iface}` does not exist in this network namespace (see `ip link`)")]
    NoSuchInterface {
        /// Interface name.
        iface: String,
    },
    /// The queue index is not below the device's RX queue count.
    #[error(
        "queue {queue} is out of range for {iface}: it has {queues} RX queue(s), \
         numbered from 0"
    )]
    QueueOutOfRange {
        /// Interface name.
        iface: String,
        /// Queue asked for.
        queue: u32,
        /// RX queues of the device.
        queues: u32,
    },
    /// Zero-copy was required and the driver does not support it (`EOPNOTSUPP`).
    #[error("zero-copy is not supported by {iface}'s driver; use --mode copy or auto")]
    ZeroCopyUnsupported {
        /// Interface name.
        iface: String,
    },
    /// Another AF_XDP socket holds the queue, still after retrying.
    #[error(
        "queue {queue} of {iface} is busy: another AF_XDP socket is bound to it (still \
         EBUSY after retrying for {waited:?}; a socket closed less than a second ago \
         releases its queue late)"
    )]
    Busy {
        /// Interface name.
        iface: String,
        /// Queue.
        queue: u32,
        /// How long binding was retried.
        waited: Duration,
    },
    /// Missing privileges.
    #[error(
        "{step} on {iface} queue {queue}: permission denied; AF_XDP needs root \
         (CAP_NET_RAW, and CAP_BPF to register in netmit's XSKMAP)"
    )]
    NotPermitted {
        /// Interface name.
        iface: String,
        /// Queue.
        queue: u32,
        /// The step that failed.
        step: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// netmit's steering program is not attached to the interface, so there is no XSKMAP
    /// to register in.
    #[error(
        "netmit is not attached to {iface}{note}: run `netmit attach {iface} --steer \
         'proto=udp,dport=PORT,action=xsk'` first"
    )]
    NotAttached {
        /// Interface name.
        iface: String,
        /// More detail (empty, or starting with a separator).
        note: String,
    },
    /// Opening or writing netmit's pinned maps failed.
    #[error("netmit's XSKMAP for {iface} queue {queue}")]
    Map {
        /// Interface name.
        iface: String,
        /// Queue.
        queue: u32,
        /// The error (boxed: it is large, and rare).
        #[source]
        source: Box<TableError>,
    },
    /// A frame handed to [`super::XskSocket::send_batch`] does not fit a UMEM frame.
    #[error("a {len}-byte frame does not fit a UMEM frame (at most {max} bytes)")]
    FrameTooLarge {
        /// Frame length.
        len: usize,
        /// Largest frame.
        max: usize,
    },
    /// Any other failed system call.
    #[error("{step} on {iface} queue {queue}")]
    Io {
        /// Interface name.
        iface: String,
        /// Queue.
        queue: u32,
        /// The step that failed.
        step: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl XskError {
    /// Classifies a failed system call: `EPERM`/`EACCES` become
    /// [`XskError::NotPermitted`], everything else [`XskError::Io`].
    pub(crate) fn os(iface: &str, queue: u32, step: impl Into<String>, source: io::Error) -> Self {
        let (iface, step) = (iface.to_string(), step.into());
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => XskError::NotPermitted {
                iface,
                queue,
                step,
                source,
            },
            _ => XskError::Io {
                iface,
                queue,
                step,
                source,
            },
        }
    }

    /// The `errno` behind this error, if it came from a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            XskError::NotPermitted { source, .. } | XskError::Io { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_are_classified() {
        let e = XskError::os(
            "veth0",
            3,
            "socket(AF_XDP)",
            io::Error::from_raw_os_error(libc::EPERM),
        );
        assert!(
            matches!(e, XskError::NotPermitted { queue: 3, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        let e = XskError::os(
            "veth0",
            0,
            "bind",
            io::Error::from_raw_os_error(libc::ENODEV),
        );
        assert!(matches!(e, XskError::Io { .. }));
        assert_eq!(e.to_string(), "bind on veth0 queue 0");
    }

    #[test]
    fn error_is_small() {
        assert!(
            std::mem::size_of::<XskError>() <= 80,
            "{}",
            std::mem::size_of::<XskError>()
        );
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = XskError::ZeroCopyUnsupported {
            iface: "veth0".into(),
        };
        assert_eq!(
            e.to_string(),
            "zero-copy is not supported by veth0's driver; use --mode copy or auto"
        );
        let e = XskError::NotAttached {
            iface: "eth1".into(),
            note: String::new(),
        };
        assert!(
            e.to_string().contains("run `netmit attach eth1 --steer"),
            "{e}"
        );
        let e = XskError::QueueOutOfRange {
            iface: "veth0".into(),
            queue: 5,
            queues: 1,
        };
        assert!(e.to_string().contains("has 1 RX queue(s)"), "{e}");
    }
}
