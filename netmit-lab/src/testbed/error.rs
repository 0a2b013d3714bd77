//! [`TestbedError`]: what can go wrong while building or using a [`Testbed`](super::Testbed),
//! with the namespace, command, file or counter it happened at.

use std::{io, path::PathBuf, process::ExitStatus, time::Duration};

/// A `Result` whose error defaults to [`TestbedError`].
pub type Result<T, E = TestbedError> = std::result::Result<T, E>;

/// Errors of the network-namespace testbed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestbedError {
    /// The name prefix given to [`Testbed::with_prefix`](super::Testbed::with_prefix) cannot
    /// be used (see the naming rules in the [module documentation](super)).
    #[error("invalid testbed name prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// No unused name was found: the counter no longer fits in an interface name after the
    /// prefix, or every name tried already existed (stale namespaces of a crashed process).
    #[error(
        "no free testbed name with prefix {prefix} (gave up at counter {counter}); \
         remove stale namespaces from /run/netns (see `leftovers`)"
    )]
    NoFreeName {
        /// The name prefix.
        prefix: String,
        /// The last counter value tried.
        counter: u64,
    },
    /// A command could not be started at all (not installed, not executable, `setns` in the
    /// child failed, …).
    #[error("cannot run `{command}`{}", in_namespace(.ns))]
    Spawn {
        /// The command line.
        command: String,
        /// The namespace it was to run in, when known; `None` for the caller's own.
        ns: Option<String>,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// A command ran but did not exit with status 0.
    #[error(
        "`{command}`{} failed ({status})\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
        in_namespace(.ns)
    )]
    CommandFailed {
        /// The command line.
        command: String,
        /// The namespace it ran in, when known; `None` for the caller's own.
        ns: Option<String>,
        /// How it exited.
        status: ExitStatus,
        /// What it printed on stdout (lossily decoded).
        stdout: String,
        /// What it printed on stderr (lossily decoded).
        stderr: String,
    },
    /// The bind mount of a freshly created namespace could not be opened.
    #[error("opening namespace {ns} at {}", path.display())]
    OpenNamespace {
        /// The namespace.
        ns: String,
        /// Its bind mount, `/run/netns/<ns>`.
        path: PathBuf,
        /// The error of `open`.
        #[source]
        source: io::Error,
    },
    /// The helper thread of [`Testbed::in_ns`](super::Testbed::in_ns) could not be spawned.
    #[error("spawning a thread for namespace {ns}")]
    Thread {
        /// The namespace the thread was for.
        ns: String,
        /// The error of `std::thread::Builder::spawn`.
        #[source]
        source: io::Error,
    },
    /// A thread could not join a namespace (`setns(CLONE_NEWNET)`).
    #[error("joining namespace {ns} (setns)")]
    Setns {
        /// The namespace.
        ns: String,
        /// The error of `setns`.
        #[source]
        source: io::Error,
    },
    /// `ip -j link show dev <ifname>` printed something that is not the expected JSON.
    #[error("unexpected `ip -j link show dev {ifname}` output in its namespace: {message}")]
    LinkOutput {
        /// The interface (and namespace) asked about.
        ifname: String,
        /// What was wrong with the output, quoting the offending part.
        message: String,
    },
    /// A veth end did not come up (operstate UP and IPv6 local route) in time.
    #[error(
        "{ifname} not ready after {} s (operstate {operstate}, IPv6 local route: {ipv6_route})",
        waited.as_secs()
    )]
    NotReady {
        /// The veth end (and namespace).
        ifname: String,
        /// Its last operstate.
        operstate: String,
        /// Whether the local route of its IPv6 address existed.
        ipv6_route: bool,
        /// How long it was waited for.
        waited: Duration,
    },
    /// A file below `/proc` could not be read inside a namespace.
    #[error("reading {} in namespace {ns}", path.display())]
    ReadProc {
        /// The namespace.
        ns: String,
        /// The file, e.g. `/proc/thread-self/net/snmp`.
        path: PathBuf,
        /// The error of `read`.
        #[source]
        source: io::Error,
    },
    /// A sysctl could not be written inside a namespace.
    #[error("writing {value:?} to sysctl {key} in namespace {ns}")]
    Sysctl {
        /// The namespace.
        ns: String,
        /// The dotted key, e.g. `net.ipv4.ip_forward`.
        key: String,
        /// The value.
        value: String,
        /// The error of `write`.
        #[source]
        source: io::Error,
    },
    /// `/proc/net/snmp` or `/proc/net/netstat` is not in the `Group: names` / `Group: values`
    /// line-pair format.
    #[error("malformed /proc/net/{file}, group {group}: {message}")]
    ProcNetFormat {
        /// `snmp` or `netstat`.
        file: String,
        /// The group being parsed, e.g. `Udp`.
        group: String,
        /// What was wrong, quoting the offending text.
        message: String,
    },
    /// The counter asked for does not exist in that file.
    #[error("no counter {group}.{name} in /proc/net/{file} of namespace {ns}")]
    NoCounter {
        /// The namespace.
        ns: String,
        /// `snmp` or `netstat`.
        file: String,
        /// The group, e.g. `Udp`.
        group: String,
        /// The counter, e.g. `NoPorts`.
        name: String,
    },
    /// The counter asked for is negative (only `Tcp.MaxConn` is), so not a `u64`.
    #[error("counter {group}.{name} in /proc/net/{file} of namespace {ns} is negative ({value})")]
    NegativeCounter {
        /// The namespace.
        ns: String,
        /// `snmp` or `netstat`.
        file: String,
        /// The group.
        group: String,
        /// The counter.
        name: String,
        /// Its value.
        value: i64,
    },
    /// The raw ICMP(v6) socket of [`Testbed::ping_replies`](super::Testbed::ping_replies)
    /// could not be created.
    #[error("creating a raw ICMP socket in namespace {ns}")]
    IcmpSocket {
        /// The namespace.
        ns: String,
        /// The error of `socket`.
        #[source]
        source: io::Error,
    },
}

/// ` in namespace <ns>`, or nothing for the caller's own namespace.
fn in_namespace(ns: &Option<String>) -> String {
    ns.as_ref()
        .map(|ns| format!(" in namespace {ns}"))
        .unwrap_or_default()
}
