//! The per-NAPI parameters (napi-set) and the device-wide sysfs defaults, with their
//! ranges, the kernel that added each, and what each does.

use std::{fmt, str::FromStr};

use super::{
    NapiError,
    netlink::{
        ATTR_DEFER_HARD_IRQS, ATTR_GRO_FLUSH_TIMEOUT, ATTR_IRQ_SUSPEND_TIMEOUT, ATTR_THREADED,
    },
};

/// Per-NAPI parameters settable with napi-set.
///
/// Values are `u64`: a count for [`NapiParam::DeferHardIrqs`], nanoseconds for the two
/// timeouts, a mode (0 off, 1 threaded, 2 threaded busy-poll) for [`NapiParam::Threaded`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum NapiParam {
    /// Empty polls before hardware IRQs are re-enabled (`defer-hard-irqs`).
    DeferHardIrqs,
    /// Watchdog timeout that re-polls while IRQs are deferred (`gro-flush-timeout`, ns).
    GroFlushTimeout,
    /// IRQ suspension timeout while busy polling finds events (`irq-suspend-timeout`, ns).
    IrqSuspendTimeout,
    /// Threaded NAPI polling mode (`threaded`).
    Threaded,
}

impl NapiParam {
    /// Every parameter, in netlink attribute order.
    pub const ALL: [NapiParam; 4] = [
        NapiParam::DeferHardIrqs,
        NapiParam::GroFlushTimeout,
        NapiParam::IrqSuspendTimeout,
        NapiParam::Threaded,
    ];

    /// The netlink attribute name (`defer-hard-irqs`, …), also the serde name.
    pub fn name(self) -> &'static str {
        match self {
            NapiParam::DeferHardIrqs => "defer-hard-irqs",
            NapiParam::GroFlushTimeout => "gro-flush-timeout",
            NapiParam::IrqSuspendTimeout => "irq-suspend-timeout",
            NapiParam::Threaded => "threaded",
        }
    }

    /// The parameter called `name` (as [`NapiParam::name`] spells it).
    pub fn from_name(name: &str) -> Option<NapiParam> {
        NapiParam::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Largest value the netdev spec allows (the range is always `0..=max`).
    ///
    /// defer-hard-irqs is a `u32` capped at `S32_MAX`; the timeouts are unbounded `uint`
    /// nanoseconds; threaded is the `napi-threaded` enum, whose newest entry `busy-poll`
    /// (2) exists from Linux 6.19: 6.18's own policy stops at 1 and the kernel answers
    /// ERANGE, reported as [`NapiError::OutOfRange`] with the kernel's bound.
    /// [`super::kernel_support`] reads the running kernel's bounds.
    pub fn max(self) -> u64 {
        match self {
            NapiParam::DeferHardIrqs => i32::MAX as u64,
            NapiParam::GroFlushTimeout | NapiParam::IrqSuspendTimeout => u64::MAX,
            NapiParam::Threaded => 2,
        }
    }

    /// First Linux release that can set this parameter per NAPI.
    pub fn since(self) -> &'static str {
        match self {
            NapiParam::DeferHardIrqs
            | NapiParam::GroFlushTimeout
            | NapiParam::IrqSuspendTimeout => "6.13",
            NapiParam::Threaded => "6.17",
        }
    }

    /// Unit of the value.
    pub fn unit(self) -> &'static str {
        match self {
            NapiParam::DeferHardIrqs => "polls",
            NapiParam::GroFlushTimeout | NapiParam::IrqSuspendTimeout => "ns",
            NapiParam::Threaded => "mode",
        }
    }

    /// What the parameter does, its range and the first kernel that has it per NAPI.
    pub fn description(self) -> &'static str {
        match self {
            NapiParam::DeferHardIrqs => {
                "number of consecutive empty NAPI polls before hardware IRQs are re-enabled; \
                 while deferred, the gro-flush-timeout watchdog re-polls instead of the IRQ. \
                 0 (default) disables deferral. Range 0..=2147483647. Per NAPI since Linux \
                 6.13 (device-wide sysfs napi_defer_hard_irqs since 5.7)"
            }
            NapiParam::GroFlushTimeout => {
                "nanoseconds before the NAPI watchdog timer schedules a poll while IRQs are \
                 deferred; non-zero also keeps GRO from flushing super-frames at the end of a \
                 poll. 0 (default) disables it. Range 0..=2^64-1 ns. Per NAPI since Linux 6.13 \
                 (device-wide sysfs gro_flush_timeout since 3.19)"
            }
            NapiParam::IrqSuspendTimeout => {
                "nanoseconds IRQs stay suspended while an application busy-polls this NAPI \
                 with epoll (prefer-busy-poll) and keeps finding events; a safety net that \
                 should exceed the application's processing time. 0 (default) disables IRQ \
                 suspension. Range 0..=2^64-1 ns. Per NAPI only, since Linux 6.13"
            }
            NapiParam::Threaded => {
                "polling mode: 0 softirq (default), 1 a kthread napi/<dev>-<id> polls, 2 that \
                 kthread busy-polls (Linux 6.19+; 6.18 accepts 0..=1). Per NAPI since Linux \
                 6.17 (device-wide sysfs threaded since 5.12)"
            }
        }
    }

    /// Checks `value` against [`NapiParam::max`].
    pub fn validate(self, value: u64) -> Result<(), NapiError> {
        if value > self.max() {
            return Err(NapiError::OutOfRange {
                param: self.name(),
                value,
                max: self.max(),
            });
        }
        Ok(())
    }

    /// The device-wide sysfs default that sets this parameter on every NAPI, if any.
    pub fn device_param(self) -> Option<DeviceParam> {
        match self {
            NapiParam::DeferHardIrqs => Some(DeviceParam::DeferHardIrqs),
            NapiParam::GroFlushTimeout => Some(DeviceParam::GroFlushTimeout),
            NapiParam::IrqSuspendTimeout => None,
            NapiParam::Threaded => Some(DeviceParam::Threaded),
        }
    }

    /// `NETDEV_A_NAPI_*` attribute type.
    pub(super) fn attr(self) -> u16 {
        match self {
            NapiParam::DeferHardIrqs => ATTR_DEFER_HARD_IRQS,
            NapiParam::GroFlushTimeout => ATTR_GRO_FLUSH_TIMEOUT,
            NapiParam::IrqSuspendTimeout => ATTR_IRQ_SUSPEND_TIMEOUT,
            NapiParam::Threaded => ATTR_THREADED,
        }
    }

    pub fn requirement(self) -> &'static str {
        match self {
            NapiParam::Threaded => "per-NAPI threaded needs Linux 6.17 or later",
            _ => "per-NAPI napi-set attributes need Linux 6.13 or later",
        }
    }
}

impl fmt::Display for NapiParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NapiParam {
    type Err = NapiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NapiParam::from_name(s).ok_or_else(|| NapiError::UnknownParam {
            name: s.to_string(),
            known: "defer-hard-irqs, gro-flush-timeout, irq-suspend-timeout, threaded",
        })
    }
}

/// Device-wide defaults in sysfs (`/sys/class/net/IFACE/{napi_defer_hard_irqs,
/// gro_flush_timeout,threaded}`): a write applies to every NAPI of the device.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceParam {
    /// `napi_defer_hard_irqs`.
    DeferHardIrqs,
    /// `gro_flush_timeout` (ns).
    GroFlushTimeout,
    /// `threaded` (0 or 1).
    Threaded,
}

impl DeviceParam {
    /// Every device-wide parameter.
    pub const ALL: [DeviceParam; 3] = [
        DeviceParam::DeferHardIrqs,
        DeviceParam::GroFlushTimeout,
        DeviceParam::Threaded,
    ];

    /// Name, spelled like the per-NAPI equivalent (`defer-hard-irqs`, …).
    pub fn name(self) -> &'static str {
        self.napi_param().name()
    }

    /// The parameter called `name` (as [`DeviceParam::name`] spells it).
    pub fn from_name(name: &str) -> Option<DeviceParam> {
        DeviceParam::ALL.into_iter().find(|p| p.name() == name)
    }

    /// File name under `/sys/class/net/IFACE/`.
    pub fn file(self) -> &'static str {
        match self {
            DeviceParam::DeferHardIrqs => "napi_defer_hard_irqs",
            DeviceParam::GroFlushTimeout => "gro_flush_timeout",
            DeviceParam::Threaded => "threaded",
        }
    }

    /// Largest value the kernel accepts: `S32_MAX` for napi_defer_hard_irqs (ERANGE
    /// above), an `unsigned long` of nanoseconds for gro_flush_timeout, 1 for threaded
    /// (the sysfs file takes 0 or 1 on 6.18; busy-poll mode goes through napi-set).
    pub fn max(self) -> u64 {
        match self {
            DeviceParam::DeferHardIrqs => i32::MAX as u64,
            DeviceParam::GroFlushTimeout => u64::MAX,
            DeviceParam::Threaded => 1,
        }
    }

    /// First Linux release with the sysfs file.
    pub fn since(self) -> &'static str {
        match self {
            DeviceParam::DeferHardIrqs => "5.7",
            DeviceParam::GroFlushTimeout => "3.19",
            DeviceParam::Threaded => "5.12",
        }
    }

    /// What the file does, its range and the first kernel that has it.
    pub fn description(self) -> &'static str {
        match self {
            DeviceParam::DeferHardIrqs => {
                "device-wide default of defer-hard-irqs: empty polls before hardware IRQs are \
                 re-enabled (0 disables deferral); a write sets every NAPI of the device. \
                 Range 0..=2147483647. sysfs napi_defer_hard_irqs, Linux 5.7+"
            }
            DeviceParam::GroFlushTimeout => {
                "device-wide default of gro-flush-timeout in ns (0 disables the watchdog); a \
                 write sets every NAPI of the device. Range 0..=2^64-1. sysfs \
                 gro_flush_timeout, Linux 3.19+"
            }
            DeviceParam::Threaded => {
                "device-wide threaded NAPI: 1 moves every NAPI of the device to its own \
                 kthread, 0 back to softirq; EIO when the device has no NAPI. sysfs threaded, \
                 Linux 5.12+"
            }
        }
    }

    /// Checks `value` against [`DeviceParam::max`].
    pub fn validate(self, value: u64) -> Result<(), NapiError> {
        if value > self.max() {
            return Err(NapiError::OutOfRange {
                param: self.name(),
                value,
                max: self.max(),
            });
        }
        Ok(())
    }

    /// The per-NAPI parameter this default applies to.
    pub fn napi_param(self) -> NapiParam {
        match self {
            DeviceParam::DeferHardIrqs => NapiParam::DeferHardIrqs,
            DeviceParam::GroFlushTimeout => NapiParam::GroFlushTimeout,
            DeviceParam::Threaded => NapiParam::Threaded,
        }
    }
}

impl fmt::Display for DeviceParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceParam {
    type Err = NapiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceParam::from_name(s).ok_or_else(|| NapiError::UnknownParam {
            name: s.to_string(),
            known: "defer-hard-irqs, gro-flush-timeout, threaded",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_names_round_trip() {
        for p in NapiParam::ALL {
            assert_eq!(NapiParam::from_name(p.name()), Some(p));
            assert_eq!(p.name().parse::<NapiParam>().unwrap(), p);
            assert_eq!(p.to_string(), p.name());
            // serde uses the same kebab-case names.
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
            assert_eq!(
                serde_json::from_str::<NapiParam>(&format!("\"{p}\"")).unwrap(),
                p
            );
            assert!(!p.description().is_empty() && p.description().contains(p.since()));
            if let Some(d) = p.device_param() {
                assert_eq!(d.napi_param(), p);
            }
        }
        for d in DeviceParam::ALL {
            assert_eq!(DeviceParam::from_name(d.name()), Some(d));
            assert_eq!(d.name().parse::<DeviceParam>().unwrap(), d);
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.name())
            );
            assert_eq!(d.napi_param().device_param(), Some(d));
            assert!(d.description().contains(d.since()));
        }
        assert!(matches!(
            "defer".parse::<NapiParam>(),
            Err(NapiError::UnknownParam { .. })
        ));
        assert_eq!(NapiParam::IrqSuspendTimeout.device_param(), None);
    }

    #[test]
    fn range_validation() {
        assert!(NapiParam::DeferHardIrqs.validate(i32::MAX as u64).is_ok());
        let err = NapiParam::DeferHardIrqs.validate(1 << 31).unwrap_err();
        assert!(matches!(
            err,
            NapiError::OutOfRange {
                param: "defer-hard-irqs",
                value: 0x8000_0000,
                max: 0x7fff_ffff
            }
        ));
        assert!(NapiParam::GroFlushTimeout.validate(u64::MAX).is_ok());
        assert!(NapiParam::IrqSuspendTimeout.validate(u64::MAX).is_ok());
        assert!(NapiParam::Threaded.validate(2).is_ok());
        assert!(NapiParam::Threaded.validate(3).is_err());
        assert!(DeviceParam::Threaded.validate(1).is_ok());
        assert!(DeviceParam::Threaded.validate(2).is_err());
        assert!(DeviceParam::DeferHardIrqs.validate(1 << 31).is_err());
        // set() validates before anything else.
        assert!(matches!(
            super::super::set(1, NapiParam::Threaded, 7),
            Err(NapiError::OutOfRange {
                param: "threaded",
                value: 7,
                max: 2
            })
        ));
    }
}
