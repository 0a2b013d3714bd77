//! Load signals for the adaptive daemon: how busy each NAPI instance is, read from the
//! kernel at low cost.
//!
//! - [`NapiPollSource`] counts every `napi:napi_poll` event per NAPI id in an eBPF
//!   program: polls, packets, budget-exhausted and empty polls, and a log2 histogram of
//!   packets per poll. [`napi_poll_rates`] turns two snapshots into per-interval rates.
//! - [`read_softirqs`] reads NET_RX / NET_TX softirq counts per CPU, [`read_irq_totals`]
//!   the total of every IRQ line (with the parser of [`crate::sys::napi`]).
//!
//! # Why a raw tracepoint, BTF offsets and per-CPU counters
//!
//! - **Raw tracepoint, not a classic tracepoint program.** A classic tracepoint program
//!   (`tracepoint/napi/napi_poll`) needs tracefs mounted to find the event and receives
//!   the formatted trace record, which the kernel first fills in (including a copy of the
//!   device name) on every poll. A raw tracepoint attaches by name with
//!   `BPF_RAW_TRACEPOINT_OPEN`, needs no tracefs, and receives the tracepoint's own
//!   arguments `(napi, work, budget)` before any formatting: cheaper, and available on
//!   hosts where tracefs is not mounted. kprobes and fentry are not an option here
//!   (kprobes are not built into the target kernels, trampolines fail under lockdown).
//! - **Offsets from BTF.** The raw arguments are bare pointers, and aya-ebpf has no CO-RE,
//!   so the offsets of `napi_struct.napi_id`, `napi_struct.dev` and `net_device.ifindex`
//!   are looked up in `/sys/kernel/btf/vmlinux` at load time ([`btf`]) and given to the
//!   program as a read-only global: the verifier then sees constants.
//! - **Per-CPU counters.** A NAPI can be polled on any CPU (a veth's NAPI runs on the
//!   sender's CPU; busy polling runs on the application's), so shared counters would need
//!   atomic adds whose cache line bounces between CPUs on every poll. A per-CPU map lets
//!   each CPU add to its own copy without atomics; user space adds the copies up when it
//!   reads, which happens once per daemon tick rather than once per poll.
//! - **LRU hash keyed by NAPI id.** NAPI ids are large, sparse and never reused (a
//!   re-created NAPI gets a new id), so an array would need a slot allocator; an LRU hash
//!   needs none and lets the entries of destroyed NAPIs age out. The id is what
//!   `netdev` netlink (`napi-get`, [`crate::sys::napi::list`]) and `SO_INCOMING_NAPI_ID`
//!   report, so signals and settings meet on the same key.

pub mod btf;
pub mod napi_poll;
pub mod proc;

use std::{io, path::PathBuf};

pub use napi_poll::{NapiPollRates, NapiPollSource, ProgramStats, napi_poll_rates};
pub use netmit_common::{NAPI_WORK_BUCKETS, NapiOffsets, NapiPollCounters, napi_work_bucket};
pub use proc::{Softirqs, parse_softirqs, read_irq_totals, read_softirqs};

/// Errors of the signal sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalsError {
    /// The kernel publishes no BTF (or it is unreadable).
    #[error(
        "reading the kernel's BTF at {path}: netmit needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF to find the napi_struct fields it reads"
    )]
    NoBtf {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The BTF could not be parsed.
    #[error("parsing the kernel's BTF at {path}")]
    BtfParse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A struct or member the program reads is missing or has an unexpected type.
    #[error("kernel BTF at {path}: struct {strukt}, member {member}: {reason}")]
    BtfLayout {
        /// The file.
        path: PathBuf,
        /// The struct.
        strukt: &'static str,
        /// The member.
        member: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The process lacks the capabilities to load and attach tracing programs.
    #[error(
        "counting NAPI polls loads a raw tracepoint program, which needs CAP_BPF and \
         CAP_PERFMON (or CAP_SYS_ADMIN): run netmit as root"
    )]
    NotPermitted,
    /// Loading the eBPF object (creating its maps) failed.
    #[error("loading the eBPF object")]
    Load(#[source] aya::EbpfError),
    /// A step of loading the program failed.
    #[error("{what} of the napi_poll program")]
    Program {
        /// The step.
        what: &'static str,
        /// The error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Attaching to the tracepoint failed.
    #[error(
        "attaching to the raw tracepoint {tracepoint} (needs CAP_BPF and CAP_PERFMON, or \
         root, and a kernel with tracepoints)"
    )]
    Attach {
        /// The tracepoint.
        tracepoint: &'static str,
        /// The error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Reading a counter map failed.
    #[error("reading map {map}")]
    Map {
        /// The map.
        map: &'static str,
        /// The error.
        #[source]
        source: aya::maps::MapError,
    },
    /// The eBPF object lacks a map or program this module needs (a build mismatch).
    #[error("the embedded eBPF object has no {0}")]
    Missing(&'static str),
    /// A /proc file could not be read.
    #[error("reading {path}")]
    Proc {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A /proc file had an unexpected format.
    #[error("{path}, line {line}: {reason}")]
    ProcParse {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// /proc/interrupts could not be parsed.
    #[error("parsing /proc/interrupts")]
    Interrupts(#[source] crate::sys::napi::NapiError),
}
