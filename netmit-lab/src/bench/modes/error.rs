//! What can stop a comparison: bad arguments, a testbed or interface that cannot be
//! prepared, a server, client or daemon that fails, settings that cannot be restored.

use super::*;

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModesError {
    /// The configuration is unusable.
    #[error("invalid benchmark configuration: {what}")]
    Config {
        /// The problem.
        what: String,
    },
    /// Building or using the testbed failed.
    #[error("veth testbed")]
    Testbed(#[source] Box<TestbedError>),
    /// Reading or changing a NAPI setting failed.
    #[error("NAPI settings of {iface}")]
    Napi {
        /// Interface.
        iface: String,
        /// The error.
        #[source]
        source: NapiError,
    },
    /// The fresh testbed's server end does not answer ping.
    #[error(
        "the testbed's server end {addr} does not answer ping: is something filtering \
         ICMP or UDP in new network namespaces?"
    )]
    Unreachable {
        /// Its address.
        addr: std::net::IpAddr,
    },
    /// A network namespace could not be opened or entered.
    #[error("network namespace {ns}")]
    Netns {
        /// Its name or path.
        ns: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A named interface does not exist.
    #[error("no interface {iface} in {ns}: check the name with `ip link` there")]
    NoInterface {
        /// Interface.
        iface: String,
        /// Namespace.
        ns: String,
    },
    /// The restore journal failed (named interfaces).
    #[error("the restore journal")]
    Journal(#[source] Box<JournalError>),
    /// A setting could not be restored.
    #[error("restoring {what}")]
    Restore {
        /// The setting and what to do.
        what: String,
    },
    /// The interface has no NAPI instance.
    #[error("{iface} has no NAPI instance (GRO on a veth should have created one)")]
    NoNapi {
        /// Interface.
        iface: String,
    },
    /// Pinning a thread failed.
    #[error("pinning {what} (pid {pid}) to CPU {cpu}")]
    Affinity {
        /// Which thread.
        what: String,
        /// Its pid.
        pid: u32,
        /// The CPU.
        cpu: usize,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The server failed.
    #[error("the server ({setup} setup)")]
    Serve {
        /// The setup.
        setup: Setup,
        /// The error.
        #[source]
        source: Box<ServeError>,
    },
    /// The load client failed.
    #[error("the load client ({setup} setup, load {load})")]
    Load {
        /// The setup.
        setup: Setup,
        /// The load point.
        load: String,
        /// The error.
        #[source]
        source: Box<LoadError>,
    },
    /// Attaching the steering program for the AF_XDP setup failed.
    #[error("attaching the steering program for the xsk setup")]
    Attach(#[source] Box<AttachError>),
    /// Starting or stopping the daemon of the adaptive setup failed.
    #[error("the daemon of the adaptive setup: {what}")]
    Daemon {
        /// The step.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A counter file could not be read or parsed.
    #[error("reading {file}: {reason}")]
    Proc {
        /// The file.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The requests would not (or did not) pass through the server's NAPI instance.
    #[error("the server's receive path: {what}")]
    ServerPath {
        /// What was found, and what to check.
        what: String,
    },
    /// The NAPI poll counters failed.
    #[error("NAPI poll counters")]
    Signals(#[source] SignalsError),
    /// A worker thread panicked.
    #[error("the {what} thread panicked")]
    Panicked {
        /// Which thread.
        what: &'static str,
    },
    /// The unmodified server of `bench app` failed.
    #[error("memcached ({setup} setup): {what}")]
    AppServer {
        /// The setup.
        setup: &'static str,
        /// The step, and what the server said.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The memcached load client of `bench app` failed.
    #[error("the memcached load client ({setup} setup, load {load})")]
    AppClient {
        /// The setup.
        setup: &'static str,
        /// The load point (or `preload`).
        load: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A global busy-poll sysctl could not be read.
    #[error("the sysctl {name}")]
    AppSysctl {
        /// The sysctl.
        name: &'static str,
        /// The error.
        #[source]
        source: netmit_user::sys::sysctl::SysctlError,
    },
    /// Stopped by the caller (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

impl From<TestbedError> for ModesError {
    fn from(e: TestbedError) -> Self {
        ModesError::Testbed(Box::new(e))
    }
}
