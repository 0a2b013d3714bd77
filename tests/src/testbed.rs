//! RAII network-namespace testbeds for the integration tests: the library's
//! [`netmit_lab::testbed`], re-exported so that tests keep writing
//! `tests::testbed::{Side, Testbed}`. Its module documentation describes the naming scheme,
//! why `ip netns exec` is not used, and the cleanup guarantees.
//!
//! Its functions return [`TestbedError`]; the tests use anyhow, so `?` converts it.

pub use netmit_lab::testbed::*;
