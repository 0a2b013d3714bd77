//! The tuning control plane: every interrupt-mitigation setting netmit can read and
//! change, and the journal that always brings the originals back.
//!
//! - [`napi`](crate::sys::napi): per-NAPI settings over the netdev generic-netlink family (napi-get /
//!   napi-set), device-wide sysfs defaults as the fallback, and NAPI/queue/IRQ discovery;
//! - [`coalesce`](crate::sys::coalesce): NIC interrupt coalescing over ethtool netlink;
//! - [`sysctl`](crate::sys::sysctl): system-wide busy-poll and budget settings;
//! - [`setting`]: one changeable setting, whatever its mechanism;
//! - [`plan`]: requests and named profiles, validated in full before any change;
//! - [`journal`]: the crash-safe restore journal under /run/netmit.
//!
//! Netlink goes through `netlink-bindings`, generated from the kernel's YNL specs: it
//! covers both the netdev and the ethtool families (rust-netlink's ethtool crate reads
//! coalescing but cannot set it).

pub mod journal;
pub mod plan;
pub mod setting;

pub use journal::{Journal, JournalError};
pub use setting::{Setting, SettingError};
