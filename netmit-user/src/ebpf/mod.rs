//! Loading netmit's eBPF object, its bpffs pin layout, the typed rule and counter tables,
//! and attaching the steering program to an interface.
//!
//! The object is built from `netmit-ebpf` by `build.rs` and embedded in the binary, so an
//! installed `netmit` needs no files besides itself.

pub mod attach;
pub mod log;
pub mod pins;
pub mod tables;

use aya::{Ebpf, EbpfLoader};
use netmit_common::names;

pub use attach::{AttachError, AttachOptions, Attachment, ModeRequest, attach, detach};
pub use log::{Forwarder, LogLevel};
pub use pins::{PinError, PinLayout, PinRoot};
pub use tables::{SteerTables, TableError};

/// The eBPF object (ELF) compiled from `netmit-ebpf`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netmit"));

/// aya-log's level global in the object.
const AYA_LOG_LEVEL: &str = "AYA_LOG_LEVEL";

/// A loader for the object with the steering program's log off (every user of the object
/// starts here; aya-log's own default would log everything).
pub fn loader() -> EbpfLoader<'static> {
    // BPF memory is charged to the memory cgroup on current kernels; where
    // RLIMIT_MEMLOCK still applies and cannot be raised, loading reports it.
    crate::sys::bpf::raise_memlock();
    let mut l = EbpfLoader::new();
    l.override_global(AYA_LOG_LEVEL, LogLevel::Off.global(), true);
    l
}

/// Loads the object's maps (programs are loaded on demand).
///
/// With `trace_verdicts`, the steering program writes a
/// [`netmit_common::VerdictRecord`] into each frame's metadata (for `classify`); it is a
/// read-only global, so with `false` the verifier removes that code entirely. `log` sets
/// the steering program's log level ([`log`]).
pub fn load_object(trace_verdicts: bool, log: LogLevel) -> Result<Ebpf, aya::EbpfError> {
    static TRACE: [u8; 2] = [0, 1];
    let mut l = loader();
    l.override_global(names::GLOBAL_TRACE, &TRACE[trace_verdicts as usize], true)
        .override_global(AYA_LOG_LEVEL, log.global(), true);
    l.load(EBPF_OBJECT)
}
