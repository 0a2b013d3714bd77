//! netmit: taking interrupt overhead out of Linux networking.
//!
//! This library owns all of netmit's logic; the `netmit` binary is a thin shell over it.
//!
//! - [`steer`]: steering rules (syntax, compilation into lookup tables);
//! - [`ebpf`]: the embedded eBPF object, its bpffs pins, typed tables, attach/detach;
//! - [`check`]: probing what the kernel and a NIC support;
//! - [`tune`]: interrupt-mitigation settings and the restore journal;
//! - [`control`]: the daemon's mode controller, pure policy (samples in, mode switches out);
//! - [`daemon`]: the adaptive daemon (`netmit daemon`): configuration, sampling, mode
//!   switches through the journal, signals, shutdown restore, HTTP endpoints;
//! - [`metrics`]: the daemon's Prometheus metrics (definitions, snapshot collector, encoding);
//! - [`xsk`]: AF_XDP sockets (UMEM, rings, batched receive and transmit, XSKMAP registration);
//! - [`serve`]: a UDP request/response server in each interrupt mode (`netmit serve`):
//!   epoll, epoll busy polling with IRQ suspension, AF_XDP;
//! - [`capture`]: reading pcap and pcapng files;
//! - [`classify`]: running frames through the real program with BPF_PROG_TEST_RUN;
//! - [`testbed`]: throwaway veth testbeds in two fresh network namespaces (tests, benchmarks);
//! - [`signals`]: load signals: per-NAPI poll counters (napi_poll tracepoint), softirq and IRQ counts;
//! - `r#gen` (`gen` is reserved in Rust 2024): a UDP traffic generator on BPF_PROG_TEST_RUN
//!   live frames.
//! - [`load`]: a load client for request/response benchmarks (`netmit load`): stamped
//!   requests from the generator, reply latency in an XDP program, open or closed loop.

pub mod bench;
pub mod capture;
pub mod check;
pub mod classify;
pub mod control;
pub mod daemon;
pub mod ebpf;
pub mod echo;
pub mod error;
pub mod r#gen;
pub mod load;
pub mod metrics;
pub mod serve;
pub mod signals;
pub mod steer;
pub mod testbed;
pub mod tune;
pub mod xsk;
