//! An in-memory machine for unit tests (test builds only): devices with NAPI instances,
//! sysfs defaults, coalescing and XDP state, and the events that make real life hard
//! (a device disappears, comes back under another ifindex, is renamed; a NAPI is
//! re-created with a new id; someone else changes a knob).
//!
//! It behaves like the kernel where the logic above depends on it: a sysfs write copies
//! the value into every NAPI of the device; napi-get answers only for the host's
//! namespace; a re-created NAPI keeps its settings under its new id.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
};

use super::{Host, XdpStatus};
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

/// One fake device.
#[derive(Clone, Debug)]
struct Dev {
    name: IfName,
    napis: BTreeMap<u32, NapiInfo>,
    device: BTreeMap<DeviceParam, u64>,
    coalesce: BTreeMap<CoalesceParam, u32>,
    xdp: XdpStatus,
    queues: Vec<QueueCounters>,
    link: LinkCounters,
}

#[derive(Debug)]
struct State {
    netns: NetnsId,
    devs: BTreeMap<u32, Dev>,
    next_ifindex: u32,
    next_napi: u32,
    next_prog: u32,
    netlink: bool,
    sysctls: BTreeMap<Sysctl, u64>,
    /// Every write, in order: "what=value".
    writes: Vec<String>,
}

/// The fake machine (see the module documentation).
#[derive(Debug)]
pub struct FakeHost {
    state: Mutex<State>,
}

fn napi(id: u32, ifindex: u32, queue: u32) -> NapiInfo {
    NapiInfo {
        id,
        ifindex,
        irq: None,
        pid: None,
        defer_hard_irqs: Some(0),
        gro_flush_timeout_ns: Some(0),
        irq_suspend_timeout_ns: Some(0),
        threaded: Some(0),
        rx_queues: vec![queue],
        tx_queues: vec![queue],
    }
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHost {
    /// An empty machine with per-NAPI netlink and the sysctls at their defaults.
    pub fn new() -> FakeHost {
        FakeHost {
            state: Mutex::new(State {
                netns: NetnsId {
                    cookie: 4242,
                    inode: 4026531999,
                },
                devs: BTreeMap::new(),
                next_ifindex: 2,
                next_napi: 8193,
                next_prog: 100,
                netlink: true,
                sysctls: Sysctl::ALL.iter().map(|&s| (s, 0)).collect(),
                writes: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// As on a kernel without napi-get/napi-set: the sysfs defaults only.
    pub fn without_netlink(self) -> FakeHost {
        self.lock().netlink = false;
        self
    }

    /// The host's namespace.
    pub fn netns_id(&self) -> NetnsId {
        self.lock().netns
    }

    /// Adds a device with `queues` NAPI instances (one per queue) and returns it.
    pub fn add(&self, name: &str, queues: u32) -> Netdev {
        let mut s = self.lock();
        let ifindex = s.next_ifindex;
        s.next_ifindex += 1;
        let mut napis = BTreeMap::new();
        for q in 0..queues {
            let id = s.next_napi;
            s.next_napi += 1;
            napis.insert(id, napi(id, ifindex, q));
        }
        let name = IfName::new(name).expect("valid test name");
        s.devs.insert(
            ifindex,
            Dev {
                name: name.clone(),
                napis,
                device: DeviceParam::ALL.iter().map(|&p| (p, 0)).collect(),
                coalesce: BTreeMap::new(),
                xdp: XdpStatus::None,
                queues: Vec::new(),
                link: LinkCounters::default(),
            },
        );
        Netdev {
            netns: s.netns,
            ifindex,
            name,
        }
    }

    /// Gives a device NIC coalescing with these parameters.
    pub fn with_coalesce(&self, dev: &Netdev, params: &[(CoalesceParam, u32)]) {
        if let Some(d) = self.lock().devs.get_mut(&dev.ifindex) {
            d.coalesce = params.iter().copied().collect();
        }
    }

    /// Removes a device.
    pub fn remove(&self, dev: &Netdev) {
        self.lock().devs.remove(&dev.ifindex);
    }

    /// Renames a device.
    pub fn rename(&self, dev: &Netdev, to: &str) {
        if let Some(d) = self.lock().devs.get_mut(&dev.ifindex) {
            d.name = IfName::new(to).expect("valid test name");
        }
    }

    /// Re-creates every NAPI of a device under new ids, keeping their settings (as the
    /// kernel does); returns the new ids.
    pub fn recreate_napis(&self, dev: &Netdev) -> Vec<u32> {
        let mut s = self.lock();
        let mut next = s.next_napi;
        let Some(d) = s.devs.get_mut(&dev.ifindex) else {
            return Vec::new();
        };
        let old: Vec<NapiInfo> = d.napis.values().cloned().collect();
        d.napis.clear();
        let mut ids = Vec::new();
        for mut n in old {
            n.id = next;
            next += 1;
            ids.push(n.id);
            d.napis.insert(n.id, n);
        }
        s.next_napi = next;
        ids
    }

    /// The NAPI ids of a device.
    pub fn napi_ids(&self, dev: &Netdev) -> Vec<u32> {
        self.lock()
            .devs
            .get(&dev.ifindex)
            .map(|d| d.napis.keys().copied().collect())
            .unwrap_or_default()
    }

    /// A NAPI parameter as the "kernel" holds it.
    pub fn napi_value(&self, napi_id: u32, param: NapiParam) -> Option<u64> {
        self.lock()
            .devs
            .values()
            .find_map(|d| d.napis.get(&napi_id))
            .and_then(|n| n.value(param))
    }

    /// Someone else changes a NAPI parameter (not logged as netmit's write).
    pub fn external_set(&self, napi_id: u32, param: NapiParam, value: u64) {
        let mut s = self.lock();
        if let Some(n) = s.devs.values_mut().find_map(|d| d.napis.get_mut(&napi_id)) {
            set_param(n, param, value);
        }
    }

    /// A sysctl as the "kernel" holds it.
    pub fn sysctl_value(&self, sysctl: Sysctl) -> u64 {
        self.lock().sysctls[&sysctl]
    }

    /// Every write netmit made, in order.
    pub fn writes(&self) -> Vec<String> {
        self.lock().writes.clone()
    }

    /// Sets the per-queue counters netmit's program would report.
    pub fn set_queue_counters(&self, dev: &Netdev, queues: Vec<QueueCounters>) {
        if let Some(d) = self.lock().devs.get_mut(&dev.ifindex) {
            d.queues = queues;
        }
    }

    /// Sets the device's packet counters.
    pub fn set_link_counters(&self, dev: &Netdev, link: LinkCounters) {
        if let Some(d) = self.lock().devs.get_mut(&dev.ifindex) {
            d.link = link;
        }
    }

    /// Marks a device as running someone else's XDP program.
    pub fn set_foreign_xdp(&self, dev: &Netdev, prog_id: u32) {
        if let Some(d) = self.lock().devs.get_mut(&dev.ifindex) {
            d.xdp = XdpStatus::Foreign { prog_id };
        }
    }

    fn check(&self, s: &State, dev: &Netdev) -> Result<(), NapiError> {
        if !dev.netns.same(&s.netns) {
            return Err(NapiError::Netdev(NetdevError::OtherNamespace {
                dev: Box::new(dev.clone()),
                here: s.netns,
            }));
        }
        if !s.devs.contains_key(&dev.ifindex) {
            return Err(NapiError::NoSuchIfindex {
                ifindex: dev.ifindex,
            });
        }
        Ok(())
    }
}

fn set_param(n: &mut NapiInfo, param: NapiParam, value: u64) {
    match param {
        NapiParam::DeferHardIrqs => n.defer_hard_irqs = Some(value as u32),
        NapiParam::GroFlushTimeout => n.gro_flush_timeout_ns = Some(value),
        NapiParam::IrqSuspendTimeout => n.irq_suspend_timeout_ns = Some(value),
        NapiParam::Threaded => n.threaded = Some(value as u32),
    }
}

fn not_netlink(what: &str) -> NapiError {
    NapiError::NotSupported {
        what: format!("netdev netlink {what}"),
        hint: "the fake host has no per-NAPI netlink",
    }
}

impl Host for FakeHost {
    fn netns(&self) -> Result<NetnsId, NetnsError> {
        Ok(self.lock().netns)
    }

    fn resolve(&self, name: &IfName) -> Result<Netdev, NetdevError> {
        let s = self.lock();
        s.devs
            .iter()
            .find(|(_, d)| &d.name == name)
            .map(|(&ifindex, d)| Netdev {
                netns: s.netns,
                ifindex,
                name: d.name.clone(),
            })
            .ok_or_else(|| NetdevError::NoSuchInterface {
                name: name.clone(),
                netns: s.netns,
            })
    }

    fn recheck(&self, dev: &Netdev) -> Result<Presence, NetdevError> {
        let s = self.lock();
        Ok(match s.devs.get(&dev.ifindex) {
            None => Presence::Gone,
            Some(d) if d.name == dev.name => Presence::Same,
            Some(d) => Presence::Renamed(d.name.clone()),
        })
    }

    fn napi_netlink(&self) -> bool {
        self.lock().netlink
    }

    fn napi_support(&self) -> Result<KernelSupport, NapiError> {
        let on = self.lock().netlink;
        Ok(KernelSupport {
            netdev_family: on,
            napi_get: on,
            napi_set: on,
            queue_get: on,
            ..KernelSupport::default()
        })
    }

    fn napi_list(&self, dev: &Netdev) -> Result<Vec<NapiInfo>, NapiError> {
        let s = self.lock();
        if !s.netlink {
            return Err(not_netlink("napi-get"));
        }
        self.check(&s, dev)?;
        Ok(s.devs[&dev.ifindex].napis.values().cloned().collect())
    }

    fn napi_get(&self, napi_id: u32) -> Result<NapiInfo, NapiError> {
        let s = self.lock();
        if !s.netlink {
            return Err(not_netlink("napi-get"));
        }
        s.devs
            .values()
            .find_map(|d| d.napis.get(&napi_id).cloned())
            .ok_or(NapiError::NoSuchNapi { id: napi_id })
    }

    fn napi_set(&self, napi_id: u32, param: NapiParam, value: u64) -> Result<(), NapiError> {
        param.validate(value)?;
        let mut s = self.lock();
        if !s.netlink {
            return Err(not_netlink("napi-set"));
        }
        let n = s
            .devs
            .values_mut()
            .find_map(|d| d.napis.get_mut(&napi_id))
            .ok_or(NapiError::NoSuchNapi { id: napi_id })?;
        set_param(n, param, value);
        s.writes
            .push(format!("napi {napi_id} {}={value}", param.name()));
        Ok(())
    }

    fn device_read(&self, dev: &Netdev, param: DeviceParam) -> Result<u64, NapiError> {
        let s = self.lock();
        self.check(&s, dev)?;
        Ok(s.devs[&dev.ifindex].device[&param])
    }

    fn device_write(&self, dev: &Netdev, param: DeviceParam, value: u64) -> Result<(), NapiError> {
        param.validate(value)?;
        let mut s = self.lock();
        self.check(&s, dev)?;
        let d = s.devs.get_mut(&dev.ifindex).expect("checked");
        d.device.insert(param, value);
        // The kernel copies a sysfs default into every NAPI of the device.
        for n in d.napis.values_mut() {
            set_param(n, param.napi_param(), value);
        }
        s.writes
            .push(format!("{} sysfs {}={value}", dev.name, param.name()));
        Ok(())
    }

    fn interrupts(&self, dev: &Netdev) -> Result<Vec<IrqLine>, NapiError> {
        let s = self.lock();
        self.check(&s, dev)?;
        Ok(Vec::new())
    }

    fn coalesce_get(&self, dev: &Netdev) -> Result<BTreeMap<CoalesceParam, u32>, CoalesceError> {
        let s = self.lock();
        let d = s
            .devs
            .get(&dev.ifindex)
            .ok_or(CoalesceError::NoSuchInterface {
                ifindex: dev.ifindex,
            })?;
        if d.coalesce.is_empty() {
            return Err(CoalesceError::NotSupported {
                ifindex: dev.ifindex,
                iface: dev.to_string(),
                hint: "the fake device has no coalescing",
            });
        }
        Ok(d.coalesce.clone())
    }

    fn coalesce_set(
        &self,
        dev: &Netdev,
        values: &[(CoalesceParam, u32)],
    ) -> Result<(), CoalesceError> {
        let current = self.coalesce_get(dev)?;
        let mut s = self.lock();
        for &(p, _) in values {
            if !current.contains_key(&p) {
                return Err(CoalesceError::ParamUnsupported {
                    ifindex: dev.ifindex,
                    iface: dev.to_string(),
                    param: p,
                    supported: current.keys().map(|p| p.name()).collect(),
                });
            }
        }
        let d = s.devs.get_mut(&dev.ifindex).expect("checked");
        for &(p, v) in values {
            d.coalesce.insert(p, v);
        }
        for &(p, v) in values {
            s.writes
                .push(format!("{} coalesce {}={v}", dev.name, p.name()));
        }
        Ok(())
    }

    fn sysctl_read(&self, sysctl: Sysctl) -> Result<u64, SysctlError> {
        Ok(self.lock().sysctls[&sysctl])
    }

    fn sysctl_write(&self, sysctl: Sysctl, value: u64) -> Result<(), SysctlError> {
        if value > sysctl.max() {
            return Err(SysctlError::OutOfRange {
                name: sysctl.name(),
                value,
                max: sysctl.max(),
            });
        }
        let mut s = self.lock();
        s.sysctls.insert(sysctl, value);
        s.writes.push(format!("{}={value}", sysctl.name()));
        Ok(())
    }

    fn check_pins(&self) -> Result<(), PinError> {
        Ok(())
    }

    fn xdp_status(&self, dev: &Netdev) -> Result<XdpStatus, AttachError> {
        let s = self.lock();
        s.devs
            .get(&dev.ifindex)
            .map(|d| d.xdp)
            .ok_or_else(|| AttachError::NotAttached {
                iface: dev.name.to_string(),
                note: " (the device is gone)".into(),
            })
    }

    fn attach(&self, dev: &Netdev, opts: &AttachOptions) -> Result<Attachment, AttachError> {
        let mut s = self.lock();
        let prog_id = s.next_prog;
        let d = s
            .devs
            .get_mut(&dev.ifindex)
            .ok_or_else(|| AttachError::NotAttached {
                iface: dev.name.to_string(),
                note: " (the device is gone)".into(),
            })?;
        match d.xdp {
            XdpStatus::None => {}
            XdpStatus::Foreign { prog_id } => {
                return Err(AttachError::Foreign {
                    iface: dev.name.to_string(),
                    prog_id,
                    name: "foreign".into(),
                    mode: crate::sys::link::XdpAttached::Driver,
                });
            }
            _ => {
                return Err(AttachError::AlreadyAttached {
                    iface: dev.name.to_string(),
                    prog_id,
                });
            }
        }
        d.xdp = XdpStatus::Ours {
            prog_id,
            link_id: prog_id + 1,
        };
        s.next_prog += 2;
        s.writes.push(format!("{} attach", dev.name));
        Ok(Attachment {
            dev: dev.clone(),
            mode: netmit_common::AttachMode::Native,
            prog_id,
            rule_ids: (0..opts.rules.len() as u16).collect(),
            replaced: None,
            native_error: None,
        })
    }

    fn detach(&self, dev: &Netdev) -> Result<Option<u32>, AttachError> {
        let mut s = self.lock();
        let d = s.devs.get_mut(&dev.ifindex);
        match d.map(|d| std::mem::replace(&mut d.xdp, XdpStatus::None)) {
            Some(XdpStatus::Ours { prog_id, .. }) => {
                s.writes.push(format!("{} detach", dev.name));
                Ok(Some(prog_id))
            }
            _ => Err(AttachError::NotAttached {
                iface: dev.name.to_string(),
                note: String::new(),
            }),
        }
    }

    fn open_log(&self, prog_id: u32) -> Result<Forwarder, LogError> {
        // The fake's programs have no log.
        Err(LogError::Gone { prog_id })
    }

    fn queue_counters(&self, dev: &Netdev) -> Result<Vec<QueueCounters>, AttachError> {
        let s = self.lock();
        match s.devs.get(&dev.ifindex) {
            Some(d) if matches!(d.xdp, XdpStatus::Ours { .. }) => Ok(d.queues.clone()),
            _ => Err(AttachError::NotAttached {
                iface: dev.name.to_string(),
                note: String::new(),
            }),
        }
    }

    fn link_counters(&self, dev: &Netdev) -> Result<LinkCounters, LinkError> {
        let s = self.lock();
        s.devs
            .get(&dev.ifindex)
            .map(|d| d.link)
            .ok_or_else(|| LinkError::Netlink {
                what: "getlink",
                dev: dev.to_string(),
                source: std::io::Error::from_raw_os_error(19),
            })
    }
}
