//! netmit: taking interrupt overhead out of Linux networking.
//!
//! This library owns what runs on a server; the `netmit` command (crate `netmit-cli`) is a
//! thin shell over it, and the lab (crate `netmit-lab`: testbeds, the test server, load
//! client, generator and benchmarks) builds on it without the core depending on the lab.
//!
//! - [`sys`]: everything netmit says to the kernel (the one place with system calls);
//! - [`host`]: the seam between the logic and the kernel ([`host::Host`]), faked in unit tests;
//! - [`status`]: what `netmit status` reports (gathered, then rendered);
//! - [`steer`]: steering rules (syntax, compilation into lookup tables);
//! - [`ebpf`]: the embedded eBPF object, its bpffs pins, typed tables, attach/detach;
//! - [`check`]: probing what the kernel and a NIC support;
//! - [`tune`]: interrupt-mitigation settings and the restore journal;
//! - [`control`]: the daemon's mode controller, pure policy (samples in, mode switches out);
//! - [`daemon`]: the adaptive daemon (`netmit daemon`): configuration, sampling, mode
//!   switches through the journal, signals, shutdown restore, HTTP endpoints;
//! - [`metrics`]: the daemon's Prometheus metrics (definitions, snapshot collector, encoding);
//! - [`xsk`]: AF_XDP sockets (UMEM, rings, batched receive and transmit, XSKMAP registration);
//! - [`duration`]: the one duration syntax of the command line and the configuration;
//! - [`capture`]: reading pcap and pcapng files;
//! - [`classify`]: running frames through the real program with BPF_PROG_TEST_RUN;
//! - [`frames`]: fixed well-formed frames for self-tests and benchmarks;
//! - [`preload`]: applications running with the preload library (`netmit run`): its
//!   configuration, where it is installed, the state files they export;
//! - [`signals`]: load signals: per-NAPI poll counters (napi_poll tracepoint), softirq and IRQ counts;

pub mod capture;
pub mod check;
pub mod classify;
pub mod control;
pub mod daemon;
pub mod duration;
pub mod ebpf;
pub mod error;
pub mod frames;
pub mod host;
pub mod metrics;
pub mod preload;
pub mod signals;
pub mod status;
pub mod steer;
pub mod sys;
pub mod tune;
pub mod xsk;
