//! The tuning control plane: every interrupt-mitigation setting netmit can read and
//! change, and the journal that always brings the originals back.
//!
//! - [`napi`]: per-NAPI settings over the netdev generic-netlink family (napi-get /
//!   napi-set), device-wide sysfs defaults as the fallback, and NAPI/queue discovery;
//! - [`coalesce`]: NIC interrupt coalescing over ethtool netlink;
//! - [`sysctl`]: system-wide busy-poll and budget settings;
//! - [`journal`]: the crash-safe restore journal under /run/netmit.

pub mod coalesce;
pub mod napi;
