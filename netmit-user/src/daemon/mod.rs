//! The adaptive daemon (`netmit daemon`): samples every managed interface each interval,
//! asks the mode controller ([`crate::control`]) and applies the chosen mode's per-NAPI
//! settings through the restore journal; serves Prometheus metrics, health and status.
//!
//! # Lifecycle
//!
//! - **Start**: validate the configuration (interfaces must exist), refuse if another
//!   daemon runs ([`state`]), put back everything the journal holds (the leftovers of a
//!   crashed run: `kill -9` loses nothing), bind the HTTP address, open the napi_poll
//!   source, write the state file.
//! - **Every interval** (`engine`, `iface`): per interface, re-resolve it, keep XDP
//!   attached as configured, re-list its NAPIs, read counters, build a [`Sample`]
//!   ([`sample`]), call [`Controller::decide`]; on a switch apply the new mode to every
//!   NAPI; then make sure every NAPI (including re-created ones) carries the current mode.
//!   A failure is logged, counted in `netmit_errors_total{kind}` and the tick goes on with
//!   the next knob and the next interface; the daemon never exits on a failed tick.
//! - **SIGHUP**: load and validate the file again; on error keep the running
//!   configuration (`netmit_config_reloads_total{result="error"}`).
//! - **SIGTERM / SIGINT**: stop ticking, restore every setting of the managed interfaces
//!   and check each reads back as its original, detach the XDP the daemon attached
//!   (unless `keep_attached_on_exit`), stop the HTTP server, join every task, remove the
//!   state file, exit 0 (non-zero if something could not be restored).
//!
//! # Threads
//!
//! tokio runs the HTTP server and the signal handler on the main thread (a current-thread
//! runtime: all of it waits); ticks and reloads are blocking work (netlink, bpf(2), /proc)
//! and run one at a time on the runtime's one blocking thread, which owns the `engine`.
//! Two threads in all, and glibc's malloc told to give large blocks back
//! ([`crate::sys::process::fixed_mmap_threshold`]), keep the daemon's RSS small. The tick publishes a [`crate::metrics::Snapshot`] that the HTTP handlers
//! only read.
//!
//! [`Sample`]: crate::control::Sample
//! [`Controller::decide`]: crate::control::Controller::decide

pub mod config;
mod engine;
mod http;
mod iface;
mod run;
pub mod sample;
pub mod state;

use std::{net::SocketAddr, path::PathBuf};

pub use config::{ConfigError, DaemonConfig};
pub use engine::ShutdownReport;
pub use run::run;

/// Errors that end the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The run directory (journal, state file) is not usable, or the namespace unknown.
    #[error("the run directory")]
    RunDir(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The configuration is invalid or unreadable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another daemon runs.
    #[error(
        "another netmit daemon runs (pid {pid}, serving {address}; state file {}); stop it first",
        path.display()
    )]
    AlreadyRunning {
        /// Its pid.
        pid: u32,
        /// Its address.
        address: String,
        /// The state file.
        path: PathBuf,
    },
    /// Another daemon holds the namespace's lock and has not written its state yet.
    #[error(
        "another netmit daemon is starting in this network namespace (it holds {}); stop \
         it first",
        lock.display()
    )]
    Starting {
        /// The lock file.
        lock: PathBuf,
    },
    /// The journal could not be opened or restored at start-up.
    #[error("start-up restore")]
    Journal(#[from] crate::tune::JournalError),
    /// The metrics address could not be bound.
    #[error("listening on {address} (metrics_address)")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be written.
    #[error("writing the state file {}", path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    /// A task failed to run.
    #[error("daemon task: {0}")]
    Task(String),
    /// Settings could not all be restored at exit (each is listed).
    #[error("{} setting(s) could not be restored or detached at exit: {}", .0.len(), .0.join("; "))]
    Restore(Vec<String>),
}
