//! NAPI interrupt mitigation: per-NAPI settings over the netdev generic-netlink family,
//! the device-wide sysfs defaults, and discovery (NAPI instances, their queues, IRQ lines).
//!
//! # Why netlink first, sysfs second
//!
//! A NAPI instance is the kernel's polling context for one (or a few) device queues; the
//! knobs that decide how often its interrupt fires live on it:
//!
//! | knob | per-NAPI (`napi-set`) | device-wide sysfs file |
//! |---|---|---|
//! | defer-hard-irqs | Linux 6.13 | `napi_defer_hard_irqs` (5.7) |
//! | gro-flush-timeout | Linux 6.13 | `gro_flush_timeout` (3.19) |
//! | irq-suspend-timeout | Linux 6.13 | none |
//! | threaded | Linux 6.17 (busy-poll mode 2: 6.19) | `threaded` (5.12) |
//!
//! The sysfs files (`/sys/class/net/IFACE/…`) set one default for the whole device: a
//! write copies the value into every NAPI of the device and into the device's own field,
//! and a read returns only the device's field. Per-NAPI values set through netlink are
//! therefore *not* visible in sysfs (measured on 6.18, see the integration tests), and a
//! later sysfs write overwrites every per-NAPI value. Netlink is also the only way to
//! address one queue's NAPI, the only place irq-suspend-timeout exists, and it reports
//! each NAPI's IRQ, kthread pid and queues. So netmit uses `napi-get`/`napi-set` when the
//! kernel has them ([`napi_netlink_supported`]) and falls back to the sysfs defaults
//! ([`device_read`], [`device_write`]) when it does not.
//!
//! Requests go through `netlink-bindings`' netdev family (generated from the kernel's YNL
//! spec `netdev.yaml`) with two local corrections, kept in this file: the generator types
//! the spec's variable-width `uint` attributes (gro-flush-timeout, irq-suspend-timeout) as
//! `u32`, which truncates a kernel reply of 8 bytes (timeouts of 2^32 ns, about 4.3 s, and
//! more) and cannot send one; so replies are parsed from the raw attributes and large
//! values are sent as 8-byte attributes (`netlink.rs`). And netlink-socket2 0.3.5
//! misparses a dump that ends with an error (it reads an `NLMSG_DONE` error as too short),
//! so dumps filtered by ifindex first check that the interface exists.
//!
//! # What a veth needs
//!
//! A veth has a NAPI instance only while native (driver-mode) XDP is attached or GRO is on
//! (`ethtool -K DEV gro on`); it has none otherwise, and writing the sysfs `threaded` file
//! then fails with EIO ([`NapiError::NoNapi`]). Its NAPI has no `irq` attribute, and the
//! veth driver does not link its queues to the NAPI, so queue-get lists rx queue 0 without
//! a `napi-id` and [`NapiInfo::rx_queues`] stays empty (6.18). NAPI ids change when a NAPI
//! is re-created; the kernel carries the settings over.
//!
//! # Namespaces
//!
//! Netlink requests act on the network namespace of the calling *thread*, so every
//! function about a device takes its [`Netdev`](super::netdev::Netdev) and checks that the
//! thread is in the device's namespace first. sysfs does not follow the thread:
//! `/sys/class/net` lists the devices of the namespace that mounted sysfs. The `device_*`
//! functions therefore also check that the sysfs `ifindex` file shows the device's index,
//! and refuse otherwise ([`NapiError::SysfsOtherNamespace`]) instead of touching a
//! same-named device elsewhere.

mod error;
mod irq;
mod netlink;
mod param;
mod sysfs;

use std::collections::BTreeMap;

pub use error::NapiError;
pub use irq::{
    IrqLine, cpu_columns, interrupts_for, irq_counts, irqbalance_running, parse_interrupts,
};
pub use netlink::{
    get, kernel_support, list, list_all, napi_netlink_supported, queues, read, set, xdp_features,
};
pub use param::{DeviceParam, NapiParam};
pub use sysfs::{device_read, device_write};

/// One NAPI instance as napi-get reports it, with the queues queue-get links to it.
/// Attributes the kernel does not report are `None` (e.g. `irq` on a veth, `pid` when not
/// threaded, the settings on kernels before 6.13).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NapiInfo {
    /// NAPI id (changes when the NAPI is re-created).
    pub id: u32,
    /// Interface index of the device.
    pub ifindex: u32,
    /// IRQ line, when the driver registered one.
    pub irq: Option<u32>,
    /// Pid of the `napi/<dev>-<id>` kthread when threaded.
    pub pid: Option<u32>,
    /// defer-hard-irqs.
    pub defer_hard_irqs: Option<u32>,
    /// gro-flush-timeout in nanoseconds.
    pub gro_flush_timeout_ns: Option<u64>,
    /// irq-suspend-timeout in nanoseconds.
    pub irq_suspend_timeout_ns: Option<u64>,
    /// threaded mode (0, 1, 2).
    pub threaded: Option<u32>,
    /// Receive queues this NAPI services, as queue-get links them (empty when the driver
    /// does not link queues to NAPIs, as veth on 6.18).
    pub rx_queues: Vec<u32>,
    /// Transmit queues this NAPI services.
    pub tx_queues: Vec<u32>,
}

impl NapiInfo {
    /// The reported value of `param`, if the kernel reported it.
    pub fn value(&self, param: NapiParam) -> Option<u64> {
        match param {
            NapiParam::DeferHardIrqs => self.defer_hard_irqs.map(u64::from),
            NapiParam::GroFlushTimeout => self.gro_flush_timeout_ns,
            NapiParam::IrqSuspendTimeout => self.irq_suspend_timeout_ns,
            NapiParam::Threaded => self.threaded.map(u64::from),
        }
    }
}

/// Direction of a device queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueKind {
    /// Receive queue.
    Rx,
    /// Transmit queue.
    Tx,
}

/// One device queue as queue-get reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct QueueInfo {
    /// Interface index.
    pub ifindex: u32,
    /// Direction.
    pub kind: QueueKind,
    /// Queue index within its direction.
    pub id: u32,
    /// The NAPI servicing it, when the driver links them (`netif_queue_set_napi`); veth
    /// does not, so its queues carry none even while its NAPI exists.
    pub napi_id: Option<u32>,
}

/// What the running kernel offers, from the generic-netlink controller (the netdev
/// family's operations and napi-set's attribute policy): the authoritative answer to
/// "which per-NAPI knobs exist here, and up to what value".
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelSupport {
    /// The netdev family exists (Linux 6.3+).
    pub netdev_family: bool,
    /// napi-get exists (Linux 6.8+).
    pub napi_get: bool,
    /// napi-set exists (Linux 6.13+).
    pub napi_set: bool,
    /// queue-get exists (Linux 6.8+).
    pub queue_get: bool,
    /// Largest value napi-set accepts per parameter, from the kernel's own policy; a
    /// parameter is missing when napi-set does not take it (or the policy was unreadable).
    pub set_max: BTreeMap<NapiParam, u64>,
    /// Netlink use is switched off (`Host` configured for the sysfs fallback).
    pub forced_fallback: bool,
}
