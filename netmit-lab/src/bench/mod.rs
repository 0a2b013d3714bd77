//! Benchmarks. Each measures netmit against a baseline in the same run and reports the
//! ratio, so results are comparable across machines.

pub mod app;
pub mod modes;
pub mod xdp;
pub mod xdp_filter;
