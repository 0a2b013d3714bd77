//! Everything netmit says to the kernel: system calls, netlink (rtnetlink, the netdev and
//! ethtool generic-netlink families), sysfs and procfs.
//!
//! The logic above (tuning plans, the daemon, status output) reaches the kernel only
//! through this module.

pub mod coalesce;
pub mod link;
pub mod napi;
pub mod sysctl;
