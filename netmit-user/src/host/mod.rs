//! The seam between netmit's logic and the machine it runs on.
//!
//! Tuning plans ([`crate::tune`]), the restore journal, the daemon's interface life cycle
//! ([`crate::daemon`]) and `netmit status` need a handful of things from the kernel: find a
//! device, list its NAPI instances, read and write a knob, see what XDP program it runs,
//! attach and detach netmit's. [`Host`] is that list, and nothing more. [`System`] does it
//! for real (through [`crate::sys`] and [`crate::ebpf`]); the unit tests use an in-memory
//! machine (`fake.rs`, test builds only) where devices disappear, come back under another
//! ifindex or are renamed on command, so that logic is tested without root.
//!
//! Every device is named by a [`Netdev`] resolved at the edge; the host never resolves
//! the same name twice behind the caller's back.

#[cfg(test)]
pub mod fake;
mod system;

use std::collections::BTreeMap;

pub use system::System;

use crate::{
    ebpf::{
        AttachError, AttachOptions, Attachment, Forwarder, PinError, log::LogError,
        tables::QueueCounters,
    },
    sys::{
        IfName, Netdev, NetdevError, NetnsError, NetnsId, Presence,
        coalesce::{CoalesceError, CoalesceParam},
        link::{LinkCounters, LinkError},
        napi::{DeviceParam, IrqLine, KernelSupport, NapiError, NapiInfo, NapiParam},
        sysctl::{Sysctl, SysctlError},
    },
};

/// What XDP a device runs, as netmit's pins and the kernel see it together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpStatus {
    /// No XDP program, and no netmit pins.
    None,
    /// netmit's program, pinned by netmit, drives the device.
    Ours {
        /// Program id.
        prog_id: u32,
        /// bpf_link id.
        link_id: u32,
    },
    /// netmit has pins for the device, but their link drives nothing any more (the
    /// device was re-created under the same ifindex).
    Stale,
    /// netmit's pins name one program, the device runs another.
    Mismatch {
        /// The program netmit pinned.
        pinned: u32,
        /// The program the device runs.
        running: u32,
    },
    /// A program netmit did not attach.
    Foreign {
        /// Program id.
        prog_id: u32,
    },
}

/// What the logic above needs from the kernel (see the module documentation). Every
/// method acts in the calling thread's network namespace and refuses a [`Netdev`] of
/// another one.
pub trait Host: Send + Sync {
    /// The calling thread's network namespace.
    fn netns(&self) -> Result<NetnsId, NetnsError>;
    /// Resolves an interface name.
    fn resolve(&self, name: &IfName) -> Result<Netdev, NetdevError>;
    /// What became of a device: the same, renamed or gone.
    fn recheck(&self, dev: &Netdev) -> Result<Presence, NetdevError>;

    /// Whether per-NAPI settings work over netlink here (else: the sysfs defaults).
    fn napi_netlink(&self) -> bool;
    /// What the kernel's netdev family offers.
    fn napi_support(&self) -> Result<KernelSupport, NapiError>;
    /// The device's NAPI instances, by id.
    fn napi_list(&self, dev: &Netdev) -> Result<Vec<NapiInfo>, NapiError>;
    /// One NAPI instance of the namespace.
    fn napi_get(&self, napi_id: u32) -> Result<NapiInfo, NapiError>;
    /// Sets one parameter of one NAPI instance.
    fn napi_set(&self, napi_id: u32, param: NapiParam, value: u64) -> Result<(), NapiError>;
    /// Reads a device-wide sysfs default.
    fn device_read(&self, dev: &Netdev, param: DeviceParam) -> Result<u64, NapiError>;
    /// Writes a device-wide sysfs default.
    fn device_write(&self, dev: &Netdev, param: DeviceParam, value: u64) -> Result<(), NapiError>;
    /// The IRQ lines of a device.
    fn interrupts(&self, dev: &Netdev) -> Result<Vec<IrqLine>, NapiError>;

    /// The coalescing parameters the driver reports.
    fn coalesce_get(&self, dev: &Netdev) -> Result<BTreeMap<CoalesceParam, u32>, CoalesceError>;
    /// Writes coalescing parameters in one request.
    fn coalesce_set(
        &self,
        dev: &Netdev,
        values: &[(CoalesceParam, u32)],
    ) -> Result<(), CoalesceError>;

    /// Reads a system-wide sysctl.
    fn sysctl_read(&self, sysctl: Sysctl) -> Result<u64, SysctlError>;
    /// Writes a system-wide sysctl.
    fn sysctl_write(&self, sysctl: Sysctl, value: u64) -> Result<(), SysctlError>;

    /// Whether netmit's pins can be kept here: bpffs is mounted (and visible: `ip netns
    /// exec` hides it) and the pin directories that exist are trusted.
    fn check_pins(&self) -> Result<(), PinError>;
    /// The device's XDP, as pins and kernel see it.
    fn xdp_status(&self, dev: &Netdev) -> Result<XdpStatus, AttachError>;
    /// Attaches netmit's steering program.
    fn attach(&self, dev: &Netdev, opts: &AttachOptions) -> Result<Attachment, AttachError>;
    /// Detaches it and removes its pins; the program id it had.
    fn detach(&self, dev: &Netdev) -> Result<Option<u32>, AttachError>;
    /// The per-queue verdict counters of netmit's program on the device.
    fn queue_counters(&self, dev: &Netdev) -> Result<Vec<QueueCounters>, AttachError>;
    /// Opens the log of an attached program, to forward its records into netmit's log.
    fn open_log(&self, prog_id: u32) -> Result<Forwarder, LogError>;
    /// The device's packet counters (`IFLA_STATS64`): what it received and sent, so that
    /// a switch can be judged by the replies it let through.
    fn link_counters(&self, dev: &Netdev) -> Result<LinkCounters, LinkError>;
}
