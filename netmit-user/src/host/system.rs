//! [`System`]: the [`Host`] that is the running kernel.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use super::{Host, XdpStatus};
use crate::{
    ebpf::{
        self, AttachError, AttachOptions, Attachment, Forwarder, PinError, PinRoot, SteerTables,
        log::LogError, tables::QueueCounters,
    },
    sys::{
        IfName, Netdev, NetdevError, NetnsError, NetnsId, Presence, bpf,
        coalesce::{self, CoalesceError, CoalesceParam},
        link::{self, LinkCounters, LinkError},
        napi::{self, DeviceParam, IrqLine, KernelSupport, NapiError, NapiInfo, NapiParam},
        sysctl::{Sysctl, SysctlError},
    },
};

/// The running kernel, with netmit's pins under a [`PinRoot`].
#[derive(Clone, Debug, Default)]
pub struct System {
    pins: PinRoot,
    sysfs_only: bool,
    /// RX queue counts (`IFLA_NUM_RX_QUEUES`) by device, as [`Host::xdp_status`] last
    /// read them: [`Host::queue_counters`] reads only those queues' counters instead of
    /// all 256 slots (the daemon asks for both every tick).
    rx_queues: Arc<Mutex<BTreeMap<(NetnsId, u32), u32>>>,
}

/// Test builds of the binary only (`test-hooks` feature): an environment variable that
/// makes [`System::new`] behave as on a kernel without per-NAPI netlink, so the sysfs
/// fallback of the command line can be exercised on a kernel that has netlink.
#[cfg(feature = "test-hooks")]
pub const FORCE_SYSFS_ENV: &str = "NETMIT_TEST_FORCE_SYSFS";

impl System {
    /// The running kernel with the default pin root.
    pub fn new() -> System {
        System {
            pins: PinRoot::default(),
            #[cfg(feature = "test-hooks")]
            sysfs_only: std::env::var_os(FORCE_SYSFS_ENV).is_some_and(|v| v == "1"),
            #[cfg(not(feature = "test-hooks"))]
            sysfs_only: false,
            rx_queues: Arc::default(),
        }
    }

    /// Uses only the device-wide sysfs defaults for NAPI settings, as on a kernel without
    /// per-NAPI netlink (before 6.13 for napi-set): how the fallback is tested on a kernel
    /// that has netlink, and a choice for a host whose tools expect the sysfs values.
    pub fn sysfs_only(mut self) -> System {
        self.sysfs_only = true;
        self
    }

    /// Keeps pins under another root (tests with a bpffs of their own).
    pub fn with_pins(mut self, pins: PinRoot) -> System {
        self.pins = pins;
        self
    }

    /// The pin root.
    pub fn pins(&self) -> &PinRoot {
        &self.pins
    }

    fn netlink_off(&self, what: &str) -> Result<(), NapiError> {
        if self.sysfs_only {
            return Err(NapiError::NotSupported {
                what: format!("netdev netlink {what}"),
                hint: "switched off: this netmit uses the device-wide sysfs defaults only",
            });
        }
        Ok(())
    }
}

impl Host for System {
    fn netns(&self) -> Result<NetnsId, NetnsError> {
        NetnsId::current()
    }

    fn resolve(&self, name: &IfName) -> Result<Netdev, NetdevError> {
        Netdev::resolve(name)
    }

    fn recheck(&self, dev: &Netdev) -> Result<Presence, NetdevError> {
        dev.recheck()
    }

    fn napi_netlink(&self) -> bool {
        !self.sysfs_only && napi::napi_netlink_supported()
    }

    fn napi_support(&self) -> Result<KernelSupport, NapiError> {
        if self.sysfs_only {
            return Ok(KernelSupport {
                forced_fallback: true,
                ..KernelSupport::default()
            });
        }
        napi::kernel_support()
    }

    fn napi_list(&self, dev: &Netdev) -> Result<Vec<NapiInfo>, NapiError> {
        self.netlink_off("napi-get")?;
        napi::list(dev)
    }

    fn napi_get(&self, napi_id: u32) -> Result<NapiInfo, NapiError> {
        self.netlink_off("napi-get")?;
        napi::get(napi_id)
    }

    fn napi_set(&self, napi_id: u32, param: NapiParam, value: u64) -> Result<(), NapiError> {
        param.validate(value)?;
        self.netlink_off("napi-set")?;
        napi::set(napi_id, param, value)
    }

    fn device_read(&self, dev: &Netdev, param: DeviceParam) -> Result<u64, NapiError> {
        napi::device_read(dev, param)
    }

    fn device_write(&self, dev: &Netdev, param: DeviceParam, value: u64) -> Result<(), NapiError> {
        napi::device_write(dev, param, value)
    }

    fn interrupts(&self, dev: &Netdev) -> Result<Vec<IrqLine>, NapiError> {
        napi::interrupts_for(dev)
    }

    fn coalesce_get(&self, dev: &Netdev) -> Result<BTreeMap<CoalesceParam, u32>, CoalesceError> {
        coalesce::get(dev)
    }

    fn coalesce_set(
        &self,
        dev: &Netdev,
        values: &[(CoalesceParam, u32)],
    ) -> Result<(), CoalesceError> {
        coalesce::set(dev, values)
    }

    fn sysctl_read(&self, sysctl: Sysctl) -> Result<u64, SysctlError> {
        sysctl.read()
    }

    fn sysctl_write(&self, sysctl: Sysctl, value: u64) -> Result<(), SysctlError> {
        sysctl.write(value)
    }

    fn check_pins(&self) -> Result<(), PinError> {
        let netns = NetnsId::current().map_err(|e| PinError::Io {
            path: "/proc/thread-self/ns/net".into(),
            source: std::io::Error::other(crate::error::chain(&e)),
        })?;
        self.pins.check(&netns).map(drop)
    }

    fn xdp_status(&self, dev: &Netdev) -> Result<XdpStatus, AttachError> {
        let attrs = link::get(dev)?;
        if let Ok(mut known) = self.rx_queues.lock() {
            match attrs.rx_queues {
                Some(n) => known.insert((dev.netns, dev.ifindex), n),
                None => known.remove(&(dev.netns, dev.ifindex)),
            };
        }
        let running = attrs.xdp;
        let Some(layout) = self.pins.find(dev)? else {
            return Ok(match running {
                Some(s) => XdpStatus::Foreign { prog_id: s.prog_id },
                None => XdpStatus::None,
            });
        };
        let pinned = bpf::pinned_link_info(&layout.link())?;
        Ok(match running {
            Some(s) if s.prog_id == pinned.prog_id => XdpStatus::Ours {
                prog_id: s.prog_id,
                link_id: pinned.id,
            },
            Some(s) => XdpStatus::Mismatch {
                pinned: pinned.prog_id,
                running: s.prog_id,
            },
            None => XdpStatus::Stale,
        })
    }

    fn attach(&self, dev: &Netdev, opts: &AttachOptions) -> Result<Attachment, AttachError> {
        ebpf::attach(&self.pins, dev, opts)
    }

    fn detach(&self, dev: &Netdev) -> Result<Option<u32>, AttachError> {
        ebpf::detach(&self.pins, dev)
    }

    fn open_log(&self, prog_id: u32) -> Result<Forwarder, LogError> {
        Forwarder::for_program(prog_id)
    }

    fn queue_counters(&self, dev: &Netdev) -> Result<Vec<QueueCounters>, AttachError> {
        let layout = self
            .pins
            .find(dev)?
            .ok_or_else(|| AttachError::NotAttached {
                iface: dev.name.to_string(),
                note: String::new(),
            })?;
        let queues = self
            .rx_queues
            .lock()
            .ok()
            .and_then(|known| known.get(&(dev.netns, dev.ifindex)).copied());
        Ok(SteerTables::from_pins(&layout)?.queue_counters(queues)?)
    }

    fn link_counters(&self, dev: &Netdev) -> Result<LinkCounters, LinkError> {
        link::get(dev).map(|a| a.counters)
    }
}
