//! netmit's lab: what reproduces and measures netmit's claims, and nothing a server
//! running netmit needs.
//!
//! The core library (`netmit_user`) owns everything that runs on a server: steering,
//! eBPF loading, AF_XDP, tuning, load signals, the controller, the daemon and its
//! metrics. This crate sits on top of it with the tools that build and load test setups:
//!
//! - [`testbed`]: throwaway veth testbeds in two fresh network namespaces;
//! - [`serve`]: a UDP request/response server in each interrupt mode (`netmit serve`):
//!   epoll, epoll busy polling with IRQ suspension, AF_XDP;
//! - `r#gen` (`gen` is reserved in Rust 2024): a UDP traffic generator on
//!   BPF_PROG_TEST_RUN live frames (`netmit gen`);
//! - [`load`]: a load client for request/response benchmarks (`netmit load`);
//! - [`bench`](mod@bench): the benchmarks (`netmit bench`).
//!
//! It is a crate of its own, not a feature of `netmit_user`, so that the dependency runs
//! one way only and the compiler enforces it: nothing in the core can reach the lab. The
//! `netmit` command links it behind its default `lab` feature.

// System calls live in netmit_user::sys; nothing here may add its own.
#![forbid(unsafe_code)]

pub mod bench;
pub mod r#gen;
pub mod load;
pub mod memcache;
pub mod serve;
pub mod testbed;
