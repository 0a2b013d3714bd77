//! Everything netmit says to the kernel: system calls, netlink (rtnetlink, the netdev and
//! ethtool generic-netlink families), sysfs and procfs. It is the one place in the core
//! library with `unsafe` (besides the AF_XDP rings in [`crate::xsk`]); each block carries
//! the reason it is sound.
//!
//! - [`netns`]: network namespace identity (cookie and inode), entering one;
//! - [`netdev`]: validated interface names and the [`Netdev`] handle made once at the edge;
//! - [`link`]: rtnetlink link attributes and XDP state;
//! - [`bpf`]: the bpf(2) commands aya lacks, bpffs;
//! - [`caps`]: the effective user and capabilities;
//! - [`napi`]: per-NAPI settings (netdev netlink), the sysfs defaults, IRQ lines;
//! - [`coalesce`]: NIC interrupt coalescing (ethtool netlink);
//! - [`sysctl`]: the system-wide busy-poll and budget sysctls;
//! - [`ifaddr`]: interface addresses (getifaddrs);
//! - [`cpu`]: CPU affinity;
//! - [`fs`]: trusted state directories, removal of what is provably ours, locks;
//! - [`signal`]: the stop flag of command-line tools, SIGPIPE;
//! - [`tap`]: throwaway tap devices (for probes).
//!
//! The logic above (tuning plans, the daemon, status) does not call these directly where it
//! wants unit tests without root: it goes through [`crate::host::Host`], the seam.

pub mod bpf;
pub mod caps;
pub mod coalesce;
pub mod cpu;
pub mod epoll;
pub mod fs;
pub mod ifaddr;
pub mod link;
pub mod mmsg;
pub mod mount;
pub mod napi;
pub mod netdev;
pub mod netns;
pub mod pod;
pub mod process;
pub mod signal;
pub mod socket;
pub mod sysctl;
pub mod tap;

pub use netdev::{IfName, IfNameError, Netdev, NetdevError, Presence};
pub use netns::{Netns, NetnsError, NetnsId};
