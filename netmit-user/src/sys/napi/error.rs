//! The errors of NAPI access, and how a kernel answer becomes one of them.

use std::{io, path::PathBuf};

use netlink_socket2::ReplyError;

use super::{
    super::netdev::NetdevError,
    NapiParam,
    netlink::{FAMILY_HINT, OP_HINT},
};

/// Errors reading or changing NAPI settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NapiError {
    /// No NAPI instance with this id in the calling thread's network namespace.
    #[error(
        "NAPI {id} does not exist in this network namespace (ids change when a NAPI is \
         re-created; list them with `netmit tune show IFACE`)"
    )]
    NoSuchNapi {
        /// The id asked for.
        id: u32,
    },
    /// The device is in another namespace, or the namespace cannot be read.
    #[error(transparent)]
    Netdev(#[from] NetdevError),
    /// The device is gone (no interface with its index any more).
    #[error(
        "the interface with index {ifindex} is gone from this network namespace (see `ip link`)"
    )]
    NoSuchIfindex {
        /// Interface index.
        ifindex: u32,
    },
    /// The device has no NAPI instance.
    #[error(
        "`{iface}` has no NAPI instance: a veth has one only with native XDP attached or GRO \
         on (`ethtool -K {iface} gro on`); other virtual devices may have none"
    )]
    NoNapi {
        /// Interface name.
        iface: String,
    },
    /// The kernel lacks the operation or attribute (or the test hook switched netlink off).
    #[error("{what} is not supported here: {hint}")]
    NotSupported {
        /// What is missing.
        what: String,
        /// Which kernel has it, or what to do instead.
        hint: &'static str,
    },
    /// A value outside the parameter's range; nothing was changed.
    #[error("{value} is out of range for {param}: give 0 to {max}")]
    OutOfRange {
        /// Parameter name.
        param: &'static str,
        /// The value given.
        value: u64,
        /// Largest valid value (the kernel's own bound when the kernel rejected it).
        max: u64,
    },
    /// A parameter name that does not exist.
    #[error("unknown parameter `{name}` (known: {known})")]
    UnknownParam {
        /// The name given.
        name: String,
        /// The valid names.
        known: &'static str,
    },
    /// The kernel refused for lack of privilege.
    #[error("{what} needs CAP_NET_ADMIN: run as root")]
    PermissionDenied {
        /// The refused operation.
        what: &'static str,
    },
    /// A netlink request failed.
    #[error("netlink {what} failed{}", extack_suffix(.extack))]
    Netlink {
        /// The request.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
        /// The kernel's extended-ack message, if it sent one.
        extack: Option<String>,
    },
    /// A reply lacked a mandatory attribute or carried a malformed one.
    #[error("netlink {what}: reply lacks a valid `{attr}` attribute")]
    BadReply {
        /// The request.
        what: &'static str,
        /// Attribute name.
        attr: &'static str,
    },
    /// Reading or writing a sysfs file failed.
    #[error("{} {}", sysfs_action(*.value), .path.display())]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// The value being written (None for a read).
        value: Option<u64>,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A sysfs file did not hold a number.
    #[error("{} holds {text:?}, not a number", .path.display())]
    SysfsParse {
        /// The file.
        path: PathBuf,
        /// Its content.
        text: String,
    },
    /// The interface exists here, but /sys/class/net belongs to another namespace.
    #[error(
        "`{iface}` exists in this network namespace, but /sys/class/net shows another one's \
         devices (sysfs lists the namespace that mounted it): mount sysfs inside this \
         namespace first, as `ip netns exec` does"
    )]
    SysfsOtherNamespace {
        /// Interface name.
        iface: String,
    },
    /// Reading a /proc file failed.
    #[error("reading {}", .path.display())]
    Proc {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// /proc/interrupts had an unexpected shape.
    #[error("{} line {line}: {reason}", .path.display())]
    ProcParse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The IRQ is not in /proc/interrupts.
    #[error("IRQ {irq} is not listed in /proc/interrupts")]
    NoSuchIrq {
        /// IRQ number.
        irq: u32,
    },
}

fn extack_suffix(extack: &Option<String>) -> String {
    match extack {
        Some(m) if !m.is_empty() => format!(" (kernel: {m})"),
        _ => String::new(),
    }
}

fn sysfs_action(value: Option<u64>) -> String {
    match value {
        Some(v) => format!("writing {v} to"),
        None => "reading".to_string(),
    }
}

/// An error from `NetlinkSocket::request` (socket, send, or family lookup).
pub(super) fn request_error(what: &'static str, source: io::Error) -> NapiError {
    match source.raw_os_error() {
        // The controller answers ENOENT for an unknown family.
        Some(libc::ENOENT) => NapiError::NotSupported {
            what: "the netdev generic-netlink family".to_string(),
            hint: FAMILY_HINT,
        },
        Some(libc::EPERM | libc::EACCES) => NapiError::PermissionDenied { what },
        _ => NapiError::Netlink {
            what,
            source,
            extack: None,
        },
    }
}

/// An error the kernel answered, classified with what the caller sent.
pub(super) fn reply_error(
    what: &'static str,
    err: ReplyError,
    napi_id: Option<u32>,
    param: Option<(NapiParam, u64)>,
) -> NapiError {
    let (extack, policy_max) = match err.ext_ack() {
        Some(ack) => (
            ack.get_msg().ok().map(|m| m.to_string_lossy().into_owned()),
            ack.get_policy().ok().and_then(|p| p.get_max_value_u().ok()),
        ),
        None => (None, None),
    };
    let source: io::Error = err.into();
    classify(what, source, extack, policy_max, napi_id, param)
}

fn classify(
    what: &'static str,
    source: io::Error,
    extack: Option<String>,
    policy_max: Option<u64>,
    napi_id: Option<u32>,
    param: Option<(NapiParam, u64)>,
) -> NapiError {
    match (source.raw_os_error(), napi_id, param) {
        (Some(libc::ENOENT), Some(id), _) => NapiError::NoSuchNapi { id },
        // Unknown generic-netlink command.
        (Some(libc::EOPNOTSUPP), _, _) => NapiError::NotSupported {
            what: format!("netlink {what}"),
            hint: OP_HINT,
        },
        // Attribute beyond the operation's policy (strict validation).
        (Some(libc::EINVAL), _, Some((p, _)))
            if extack
                .as_deref()
                .is_some_and(|m| m.contains("Unknown attribute")) =>
        {
            NapiError::NotSupported {
                what: format!("napi-set attribute {}", p.name()),
                hint: p.requirement(),
            }
        }
        (Some(libc::ERANGE | libc::EINVAL), _, Some((p, value))) if policy_max.is_some() => {
            NapiError::OutOfRange {
                param: p.name(),
                value,
                max: policy_max.unwrap_or(p.max()),
            }
        }
        (Some(libc::EPERM | libc::EACCES), _, _) => NapiError::PermissionDenied { what },
        _ => NapiError::Netlink {
            what,
            source,
            extack,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errors_are_classified() {
        let err = |code| io::Error::from_raw_os_error(code);
        let p = Some((NapiParam::Threaded, 2));
        assert!(matches!(
            classify("napi-set", err(libc::ENOENT), None, None, Some(5), p),
            NapiError::NoSuchNapi { id: 5 }
        ));
        // Messages as 6.18 sends them (see the integration tests).
        assert!(matches!(
            classify(
                "napi-set",
                err(libc::ERANGE),
                Some("integer out of range".into()),
                Some(1),
                Some(5),
                p
            ),
            NapiError::OutOfRange {
                param: "threaded",
                value: 2,
                max: 1
            }
        ));
        assert!(matches!(
            classify(
                "napi-set",
                err(libc::EINVAL),
                Some("Unknown attribute type".into()),
                None,
                Some(5),
                p
            ),
            NapiError::NotSupported { .. }
        ));
        assert!(matches!(
            classify("napi-set", err(libc::EOPNOTSUPP), None, None, Some(5), p),
            NapiError::NotSupported { .. }
        ));
        assert!(matches!(
            classify("napi-set", err(libc::EPERM), None, None, Some(5), p),
            NapiError::PermissionDenied { what: "napi-set" }
        ));
        let other = classify(
            "napi-get dump",
            err(libc::EBUSY),
            Some("busy".into()),
            None,
            None,
            None,
        );
        assert!(other.to_string().contains("(kernel: busy)"), "{other}");
        assert!(matches!(
            request_error("napi-get", err(libc::ENOENT)),
            NapiError::NotSupported {
                hint: FAMILY_HINT,
                ..
            }
        ));
    }
}
