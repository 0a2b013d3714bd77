//! Loading netmit's eBPF object, its bpffs pin layout, the typed rule and counter tables,
//! and attaching the steering program to an interface.
//!
//! The object is built from `netmit-ebpf` by `build.rs` and embedded in the binary, so an
//! installed `netmit` needs no files besides itself.

pub mod attach;
pub mod pins;
pub mod tables;

use aya::{Ebpf, EbpfLoader};
use netmit_common::names;

pub use attach::{AttachError, AttachOptions, Attachment, ModeRequest, attach, detach};
pub use pins::{PinError, PinLayout, PinRoot};
pub use tables::{SteerTables, TableError};

/// The eBPF object (ELF) compiled from `netmit-ebpf`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netmit"));

/// Loads the object's maps (programs are loaded on demand).
///
/// With `trace_verdicts`, the steering program writes a
/// [`netmit_common::VerdictRecord`] into each frame's metadata (for `classify`); it is a
/// read-only global, so with `false` the verifier removes that code entirely.
pub fn load_object(trace_verdicts: bool) -> Result<Ebpf, aya::EbpfError> {
    // BPF memory is charged to the memory cgroup on current kernels; where
    // RLIMIT_MEMLOCK still applies and cannot be raised, loading reports it.
    crate::sys::bpf::raise_memlock();
    EbpfLoader::new()
        .override_global(names::GLOBAL_TRACE, &(trace_verdicts as u8), true)
        .load(EBPF_OBJECT)
}
