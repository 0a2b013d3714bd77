//! netmit: taking interrupt overhead out of Linux networking.
//!
//! This library owns all of netmit's logic; the `netmit` binary is a thin shell over it.
//!
//! - [`steer`]: steering rules (syntax, compilation into lookup tables);
//! - [`ebpf`]: the embedded eBPF object, its bpffs pins, typed tables, attach/detach;
//! - [`check`]: probing what the kernel and a NIC support;
//! - [`tune`]: interrupt-mitigation settings and the restore journal;
//! - [`capture`]: reading pcap and pcapng files;
//! - [`classify`]: running frames through the real program with BPF_PROG_TEST_RUN.

pub mod bench;
pub mod capture;
pub mod check;
pub mod classify;
pub mod ebpf;
pub mod steer;
pub mod tune;
