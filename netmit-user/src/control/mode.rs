//! The three interrupt modes, the settings each stands for, and which modes an interface
//! can have.
//!
//! A mode is a named point in the kernel's interrupt-mitigation space, expressed in the
//! three per-NAPI knobs of Linux 6.13 plus optional NIC coalescing. The defaults are the
//! values of [`tune::plan::Profile`](crate::tune::plan::Profile), read from
//! [`Profile::request`] so that a mode and its profile cannot drift apart:
//!
//! | mode | profile | defer-hard-irqs | gro-flush-timeout | irq-suspend-timeout | NIC coalescing (where supported) |
//! |---|---|---|---|---|---|
//! | [`Mode::Interrupt`] | `latency` | 0 | 0 | 0 | adaptive-rx off, rx-usecs 0, rx-frames 1 |
//! | [`Mode::Defer`] | `throughput` | 100 | 200 µs | 0 | adaptive-rx off, rx-usecs 100, rx-frames 64 |
//! | [`Mode::Suspend`] | `suspend` | 100 | 20 µs | 20 ms | none named |
//!
//! Where the numbers come from is in [`Profile::source`]. The modes nest in what they need
//! from the kernel: Defer needs hard-IRQ deferral (per NAPI 6.13, device-wide sysfs 5.7),
//! Suspend additionally needs `irq-suspend-timeout` (per NAPI only, 6.13). That is why an
//! interface's allowed modes are a ceiling ([`Capabilities::max_mode`]) rather than an
//! arbitrary set.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use crate::{
    sys::{coalesce::CoalesceParam, napi::NapiParam},
    tune::plan::Profile,
};

/// An interrupt mode of one NAPI instance (or of every NAPI of an interface).
///
/// Ordered by how much interrupt mitigation they do: `Interrupt < Defer < Suspend`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// The kernel's default: every completion raises an interrupt (NIC) or schedules the
    /// NAPI (veth). Lowest latency at low load.
    #[default]
    Interrupt,
    /// Software interrupt coalescing: after a poll, the NAPI watchdog (`gro-flush-timeout`)
    /// re-polls instead of the IRQ, until `defer-hard-irqs` polls in a row found nothing.
    Defer,
    /// IRQ suspension: while an application busy-polls the NAPI (epoll with
    /// `prefer_busy_poll`, or AF_XDP busy polling) and finds packets, IRQs stay off for up
    /// to `irq-suspend-timeout`; when it stops finding any, deferral takes over.
    Suspend,
}

impl Mode {
    /// Every mode, from least to most mitigation.
    pub const ALL: [Mode; 3] = [Mode::Interrupt, Mode::Defer, Mode::Suspend];

    /// The mode's name, as in configuration files and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Interrupt => "interrupt",
            Mode::Defer => "defer",
            Mode::Suspend => "suspend",
        }
    }

    /// The `tune` profile whose values are this mode's defaults.
    pub fn profile(self) -> Profile {
        match self {
            Mode::Interrupt => Profile::Latency,
            Mode::Defer => Profile::Throughput,
            Mode::Suspend => Profile::Suspend,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The per-NAPI values a mode stands for, and the NIC coalescing that goes with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeSettings {
    /// `defer-hard-irqs`: empty polls before hardware IRQs are re-enabled (0 = no deferral).
    pub defer_hard_irqs: u64,
    /// `gro-flush-timeout` in nanoseconds: the watchdog period while IRQs are deferred.
    pub gro_flush_timeout_ns: u64,
    /// `irq-suspend-timeout` in nanoseconds (0 = no IRQ suspension).
    pub irq_suspend_timeout_ns: u64,
    /// NIC coalescing for this mode, keyed by netlink attribute name (`rx-usecs`,
    /// `rx-max-frames`, `use-adaptive-rx`, …). The caller applies only the parameters the
    /// driver supports; a parameter a mode does not name goes back to its original value.
    /// Omitted in a configuration file: no coalescing changes in this mode.
    #[serde(default)]
    pub coalesce: BTreeMap<CoalesceParam, u32>,
}

impl ModeSettings {
    /// The values of a `tune` profile.
    pub fn from_profile(profile: Profile) -> ModeSettings {
        let request = profile.request();
        let napi = |param: NapiParam| {
            request
                .napi_values
                .iter()
                .find(|(p, _)| *p == param)
                .map_or(0, |&(_, v)| v)
        };
        ModeSettings {
            defer_hard_irqs: napi(NapiParam::DeferHardIrqs),
            gro_flush_timeout_ns: napi(NapiParam::GroFlushTimeout),
            irq_suspend_timeout_ns: napi(NapiParam::IrqSuspendTimeout),
            coalesce: request.coalesce_if_supported.into_iter().collect(),
        }
    }

    /// The three per-NAPI values, ready for a `napi-set` (or a `TuneRequest`).
    pub fn napi_values(&self) -> [(NapiParam, u64); 3] {
        [
            (NapiParam::DeferHardIrqs, self.defer_hard_irqs),
            (NapiParam::GroFlushTimeout, self.gro_flush_timeout_ns),
            (NapiParam::IrqSuspendTimeout, self.irq_suspend_timeout_ns),
        ]
    }

    /// The coalescing values, in parameter order.
    pub fn coalesce_values(&self) -> Vec<(CoalesceParam, u32)> {
        self.coalesce.iter().map(|(&p, &v)| (p, v)).collect()
    }
}

/// The settings of every mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModeTable {
    /// Interrupt mode restores the values the interface had before netmit changed anything
    /// (the restore journal's originals) instead of [`ModeTable::interrupt`]. Default
    /// `false`: the kernel defaults of the `latency` profile.
    pub interrupt_uses_originals: bool,
    /// Interrupt mode. Default: the `latency` profile (0, 0, 0).
    pub interrupt: ModeSettings,
    /// Defer mode. Default: the `throughput` profile (100, 200 µs, 0).
    pub defer: ModeSettings,
    /// Suspend mode. Default: the `suspend` profile (100, 20 µs, 20 ms).
    pub suspend: ModeSettings,
}

impl Default for ModeTable {
    fn default() -> Self {
        ModeTable {
            interrupt_uses_originals: false,
            interrupt: ModeSettings::from_profile(Mode::Interrupt.profile()),
            defer: ModeSettings::from_profile(Mode::Defer.profile()),
            suspend: ModeSettings::from_profile(Mode::Suspend.profile()),
        }
    }
}

impl ModeTable {
    /// The configured settings of `mode` (ignoring [`ModeTable::interrupt_uses_originals`]).
    pub fn settings(&self, mode: Mode) -> &ModeSettings {
        match mode {
            Mode::Interrupt => &self.interrupt,
            Mode::Defer => &self.defer,
            Mode::Suspend => &self.suspend,
        }
    }

    /// What the caller must put in place to be in `mode`.
    pub fn target(&self, mode: Mode) -> ModeTarget<'_> {
        if mode == Mode::Interrupt && self.interrupt_uses_originals {
            ModeTarget::Originals
        } else {
            ModeTarget::Settings(self.settings(mode))
        }
    }
}

/// What entering a mode means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModeTarget<'a> {
    /// Put back the values the interface had before netmit changed them.
    Originals,
    /// Apply these values.
    Settings(&'a ModeSettings),
}

/// What the kernel and the interface can do, as probed by the caller (`netmit check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Hard-IRQ deferral: `napi-set` defer-hard-irqs/gro-flush-timeout (6.13), or the
    /// device-wide sysfs `napi_defer_hard_irqs` (5.7; then every NAPI of the device shares
    /// one mode).
    pub deferral: bool,
    /// IRQ suspension: `napi-set` irq-suspend-timeout (6.13; no sysfs fallback).
    pub irq_suspension: bool,
}

impl Capabilities {
    /// Everything available (Linux 6.13 and later).
    pub const ALL: Capabilities = Capabilities {
        deferral: true,
        irq_suspension: true,
    };

    /// The most mitigating mode these capabilities allow. Suspend also needs deferral (its
    /// fallback when the application stops busy polling), so without deferral only
    /// Interrupt remains.
    pub fn max_mode(self) -> Mode {
        match (self.deferral, self.irq_suspension) {
            (false, _) => Mode::Interrupt,
            (true, false) => Mode::Defer,
            (true, true) => Mode::Suspend,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_profiles_values() {
        let table = ModeTable::default();
        let napi = |m: Mode| {
            let s = table.settings(m);
            (
                s.defer_hard_irqs,
                s.gro_flush_timeout_ns,
                s.irq_suspend_timeout_ns,
            )
        };
        assert_eq!(napi(Mode::Interrupt), (0, 0, 0));
        assert_eq!(napi(Mode::Defer), (100, 200_000, 0));
        assert_eq!(napi(Mode::Suspend), (100, 20_000, 20_000_000));
        use CoalesceParam as C;
        assert_eq!(
            table.interrupt.coalesce_values(),
            [(C::RxUsecs, 0), (C::RxMaxFrames, 1), (C::UseAdaptiveRx, 0)]
        );
        assert_eq!(
            table.defer.coalesce_values(),
            [
                (C::RxUsecs, 100),
                (C::RxMaxFrames, 64),
                (C::UseAdaptiveRx, 0)
            ]
        );
        assert!(table.suspend.coalesce.is_empty());
        assert_eq!(
            table.defer.napi_values(),
            [
                (NapiParam::DeferHardIrqs, 100),
                (NapiParam::GroFlushTimeout, 200_000),
                (NapiParam::IrqSuspendTimeout, 0)
            ]
        );
    }

    #[test]
    fn interrupt_can_mean_the_originals() {
        let mut table = ModeTable::default();
        assert_eq!(
            table.target(Mode::Interrupt),
            ModeTarget::Settings(&table.interrupt)
        );
        table.interrupt_uses_originals = true;
        assert_eq!(table.target(Mode::Interrupt), ModeTarget::Originals);
        assert_eq!(
            table.target(Mode::Defer),
            ModeTarget::Settings(&table.defer)
        );
    }

    #[test]
    fn capabilities_give_a_ceiling() {
        let caps = |deferral, irq_suspension| Capabilities {
            deferral,
            irq_suspension,
        };
        assert_eq!(caps(true, true).max_mode(), Mode::Suspend);
        assert_eq!(caps(true, false).max_mode(), Mode::Defer);
        assert_eq!(caps(false, true).max_mode(), Mode::Interrupt);
        assert_eq!(caps(false, false).max_mode(), Mode::Interrupt);
        assert!(Mode::Interrupt < Mode::Defer && Mode::Defer < Mode::Suspend);
    }
}
