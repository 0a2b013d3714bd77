//! Steering rules: syntax ([`rule`]) and their compilation into lookup tables
//! ([`compile`](mod@compile)). Both are pure; [`crate::ebpf::tables`] writes the result into maps.

pub mod compile;
pub mod rule;

pub use compile::{InstalledRule, PacketFields, compile, matches};
pub use rule::{Prefix, Rule, RuleError, RuleErrorKind};
