//! The controller's configuration: thresholds, hold times, dwell, the mode ceiling and
//! the settings of each mode, with their defaults and where the numbers come from.
//!
//! Every key is optional in a configuration file (missing keys take the defaults below);
//! unknown keys are errors, and [`PolicyConfig::validate`] rejects values that are out of
//! range, that would let the controller switch back and forth, or whose relation makes one
//! of them meaningless (a dwell below every hold time) ([`ControlError`]), so a typo never
//! silently becomes a default.
//!
//! # Defaults and why
//!
//! All of them are per interface (or per NAPI) and assume the daemon's 1 s interval; the
//! hold times are durations, so a shorter interval needs more samples in a row to agree.
//!
//! - **Defer when packets ≥ 20,000/s and wake-ups ≥ 10,000/s for 3 s; back to Interrupt
//!   when packets ≤ 10,000/s for 5 s.** The Defer mode's watchdog (`gro-flush-timeout`
//!   200 µs) polls at most 5,000 times a second. At 20,000 packets/s each watchdog poll
//!   finds about 4 packets, so deferral batches; at ≥ 10,000 wake-ups/s the watchdog's
//!   ≤ 5,000 polls/s at least halve the notifications. Below 10,000 packets/s a watchdog
//!   poll finds 2 packets or fewer: deferral adds up to 200 µs of latency and saves little,
//!   so Interrupt (best at low load, Cai & Karsten) is better. The factor 2 between the
//!   enter and exit rates is the hysteresis band. The exit test uses the packet rate only,
//!   because wake-ups and packets per poll change *with* the mode: on the veth here,
//!   deferral took NAPI polls per packet from 1 to about 1/52 (docs/kernel-compat.md), so a
//!   per-poll threshold measured in Interrupt mode means nothing in Defer mode. Packets
//!   per poll is not an entry test either: a veth's NAPI is scheduled by the sender for
//!   every packet and stays at 1 packet per poll at any load, and on a NIC a poll reaches
//!   the budget (64) only once the NAPI is already polling continuously.
//! - **Suspend when busy-polled packets ≥ 1,000/s for 2 s; leave when ≤ 100/s for 3 s.**
//!   IRQ suspension lasts only while busy polls keep finding packets; with less than
//!   about one packet per millisecond an epoll busy-poll loop mostly comes back empty, and
//!   the NAPI runs on the deferral fallback anyway. The exit rate is ten times lower, so
//!   rate noise of ±50% cannot cross both.
//! - **Minimum dwell 5 s** in a mode before the next switch (longer than every hold time
//!   above), so no sequence of samples switches more than once per 5 s.
//! - **Fallback after 10 s without signals**: if the signals that could take the
//!   controller out of Defer or Suspend are missing for that long, it returns to the
//!   kernel's default rather than stay in a mode nothing justifies any more.
//! - **max_mode = suspend**: no limit beyond the caller's capabilities.

use serde::{Deserialize, Serialize};

use super::{
    effect::EffectConfig,
    mode::{Mode, ModeSettings, ModeTable},
};
use crate::sys::napi::NapiParam;

/// Longest hold time, dwell or fallback accepted (one day, in milliseconds): anything
/// longer is almost certainly a value in the wrong unit.
pub const MAX_MS: u64 = 86_400_000;

/// When to enter and leave [`Mode::Defer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeferThresholds {
    /// Interrupt → Defer needs at least this many packets/s. Default 20,000 (4 packets
    /// per 200 µs watchdog poll).
    pub enter_packets_per_sec: u64,
    /// … and at least this many wake-ups/s (when a wake-up rate is known). Default 10,000
    /// (twice the watchdog's 5,000 polls/s).
    pub enter_wakeups_per_sec: u64,
    /// … for this long without a sample against it. Default 3,000 ms.
    pub enter_after_ms: u64,
    /// Defer → Interrupt when packets/s are at most this. Default 10,000 (2 packets per
    /// watchdog poll). Must be below `enter_packets_per_sec`.
    pub exit_packets_per_sec: u64,
    /// … for this long. Default 5,000 ms.
    pub exit_after_ms: u64,
}

impl Default for DeferThresholds {
    fn default() -> Self {
        DeferThresholds {
            enter_packets_per_sec: 20_000,
            enter_wakeups_per_sec: 10_000,
            enter_after_ms: 3_000,
            exit_packets_per_sec: 10_000,
            exit_after_ms: 5_000,
        }
    }
}

/// When to enter and leave [`Mode::Suspend`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuspendThresholds {
    /// Busy polling counts as active at this many busy-polled packets/s or more (or when
    /// an AF_XDP socket busy-polls the interface). Default 1,000.
    pub enter_busy_poll_packets_per_sec: u64,
    /// Interrupt/Defer → Suspend once busy polling was active this long. Default 2,000 ms.
    pub enter_after_ms: u64,
    /// Busy polling counts as stopped at this many busy-polled packets/s or fewer (and no
    /// AF_XDP busy polling). Default 100. Must be below the enter rate.
    pub exit_busy_poll_packets_per_sec: u64,
    /// Suspend → Defer/Interrupt once busy polling was stopped this long. Default
    /// 3,000 ms.
    pub exit_after_ms: u64,
}

impl Default for SuspendThresholds {
    fn default() -> Self {
        SuspendThresholds {
            enter_busy_poll_packets_per_sec: 1_000,
            enter_after_ms: 2_000,
            exit_busy_poll_packets_per_sec: 100,
            exit_after_ms: 3_000,
        }
    }
}

/// Everything the mode controller is configured with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The most mitigating mode allowed (the caller's capabilities may lower it further).
    /// Default `suspend`.
    pub max_mode: Mode,
    /// Least time in a mode before the next switch. Default 5,000 ms.
    pub min_dwell_ms: u64,
    /// Time without the signals that decide leaving Defer or Suspend after which the
    /// controller falls back. Default 10,000 ms.
    pub missing_signal_fallback_ms: u64,
    /// Defer thresholds.
    pub defer: DeferThresholds,
    /// Suspend thresholds.
    pub suspend: SuspendThresholds,
    /// Judging each switch by its effect ([`crate::control::effect`]).
    pub effect: EffectConfig,
    /// The settings each mode stands for.
    pub modes: ModeTable,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            max_mode: Mode::Suspend,
            min_dwell_ms: 5_000,
            missing_signal_fallback_ms: 10_000,
            defer: DeferThresholds::default(),
            suspend: SuspendThresholds::default(),
            effect: EffectConfig::default(),
            modes: ModeTable::default(),
        }
    }
}

/// A configuration the controller refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// A value outside its range.
    #[error("{key} = {value} is out of range (allowed: {allowed})")]
    OutOfRange {
        /// The key, dotted from the policy's table (`defer.enter_after_ms`).
        key: String,
        /// The value given.
        value: u64,
        /// The allowed range, in words.
        allowed: &'static str,
    },
    /// An enter threshold at or below its exit threshold: no hysteresis.
    #[error(
        "{enter_key} ({enter}) must exceed {exit_key} ({exit}); otherwise one load level \
         could satisfy both and the mode would switch back and forth: set {enter_key} above \
         {exit} or lower {exit_key}"
    )]
    ThresholdOrder {
        /// The enter key.
        enter_key: &'static str,
        /// Its value.
        enter: u64,
        /// The exit key.
        exit_key: &'static str,
        /// Its value.
        exit: u64,
    },
    /// A dwell so short that it never delays a switch: every switch already waits for a
    /// hold time at least as long, since the holds restart at each switch.
    #[error(
        "min_dwell_ms = {dwell} is below every hold time (the shortest is {hold_key} = \
         {hold}), so it would never delay a switch: set min_dwell_ms to 0 for no dwell, or \
         to at least {hold}"
    )]
    DwellBelowHolds {
        /// The dwell given.
        dwell: u64,
        /// The shortest hold time's key.
        hold_key: &'static str,
        /// Its value.
        hold: u64,
    },
    /// Mode settings that do not make the mode what it is named.
    #[error("modes.{mode}.{key} = {value}: {reason}")]
    ModeSettings {
        /// The mode.
        mode: Mode,
        /// The settings key.
        key: &'static str,
        /// The value given.
        value: u64,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl PolicyConfig {
    /// Checks every key; the first problem found is returned.
    ///
    /// # Errors
    ///
    /// [`ControlError::OutOfRange`] for a hold time, dwell or fallback above one day
    /// ([`MAX_MS`]), `defer-hard-irqs` above `i32::MAX` or a boolean coalescing value
    /// other than 0 or 1; [`ControlError::ThresholdOrder`] when an enter rate does not
    /// exceed its exit rate; [`ControlError::DwellBelowHolds`] when a non-zero
    /// `min_dwell_ms` is shorter than every hold time; [`ControlError::ModeSettings`] when Defer does not defer
    /// (`defer_hard_irqs` or `gro_flush_timeout_ns` 0), Suspend does not suspend
    /// (`irq_suspend_timeout_ns` 0 or not above `gro_flush_timeout_ns`, which
    /// Documentation/networking/napi.rst expects to be much smaller), or Interrupt or
    /// Defer sets an `irq_suspend_timeout_ns`.
    pub fn validate(&self) -> Result<(), ControlError> {
        for (key, value) in [
            ("min_dwell_ms", self.min_dwell_ms),
            (
                "missing_signal_fallback_ms",
                self.missing_signal_fallback_ms,
            ),
            ("defer.enter_after_ms", self.defer.enter_after_ms),
            ("defer.exit_after_ms", self.defer.exit_after_ms),
            ("suspend.enter_after_ms", self.suspend.enter_after_ms),
            ("suspend.exit_after_ms", self.suspend.exit_after_ms),
        ] {
            if value > MAX_MS {
                return Err(ControlError::OutOfRange {
                    key: key.into(),
                    value,
                    allowed: "0..=86400000 (milliseconds, at most one day)",
                });
            }
        }
        if let Some((hold_key, hold)) = self.shortest_hold()
            && self.min_dwell_ms > 0
            && self.min_dwell_ms < hold
        {
            return Err(ControlError::DwellBelowHolds {
                dwell: self.min_dwell_ms,
                hold_key,
                hold,
            });
        }
        let d = &self.defer;
        if d.enter_packets_per_sec <= d.exit_packets_per_sec {
            return Err(ControlError::ThresholdOrder {
                enter_key: "defer.enter_packets_per_sec",
                enter: d.enter_packets_per_sec,
                exit_key: "defer.exit_packets_per_sec",
                exit: d.exit_packets_per_sec,
            });
        }
        let s = &self.suspend;
        if s.enter_busy_poll_packets_per_sec <= s.exit_busy_poll_packets_per_sec {
            return Err(ControlError::ThresholdOrder {
                enter_key: "suspend.enter_busy_poll_packets_per_sec",
                enter: s.enter_busy_poll_packets_per_sec,
                exit_key: "suspend.exit_busy_poll_packets_per_sec",
                exit: s.exit_busy_poll_packets_per_sec,
            });
        }
        if let Some((key, value, allowed)) = self.effect.invalid() {
            return Err(ControlError::OutOfRange {
                key: key.into(),
                value,
                allowed,
            });
        }
        for mode in Mode::ALL {
            validate_mode(mode, self.modes.settings(mode))?;
        }
        Ok(())
    }
}

impl PolicyConfig {
    /// Every time a condition must hold before a switch (the fallback included), with its
    /// key: what the dwell and the daemon's interval are compared with.
    pub fn hold_times(&self) -> [(&'static str, u64); 5] {
        [
            ("defer.enter_after_ms", self.defer.enter_after_ms),
            ("defer.exit_after_ms", self.defer.exit_after_ms),
            ("suspend.enter_after_ms", self.suspend.enter_after_ms),
            ("suspend.exit_after_ms", self.suspend.exit_after_ms),
            (
                "missing_signal_fallback_ms",
                self.missing_signal_fallback_ms,
            ),
        ]
    }

    fn shortest_hold(&self) -> Option<(&'static str, u64)> {
        self.hold_times().into_iter().min_by_key(|&(_, v)| v)
    }
}

fn validate_mode(mode: Mode, s: &ModeSettings) -> Result<(), ControlError> {
    let refuse = |key, value, reason| {
        Err(ControlError::ModeSettings {
            mode,
            key,
            value,
            reason,
        })
    };
    if s.defer_hard_irqs > NapiParam::DeferHardIrqs.max() {
        return Err(ControlError::OutOfRange {
            key: format!("modes.{mode}.defer_hard_irqs"),
            value: s.defer_hard_irqs,
            allowed: "0..=2147483647",
        });
    }
    for (&param, &value) in &s.coalesce {
        if param.check_value(value).is_err() {
            return Err(ControlError::OutOfRange {
                key: format!("modes.{mode}.coalesce.{}", param.attr_name()),
                value: value.into(),
                allowed: "0 or 1 (a boolean)",
            });
        }
    }
    match mode {
        Mode::Interrupt | Mode::Defer if s.irq_suspend_timeout_ns != 0 => refuse(
            "irq_suspend_timeout_ns",
            s.irq_suspend_timeout_ns,
            "only the suspend mode may suspend IRQs; set 0",
        ),
        Mode::Defer if s.defer_hard_irqs == 0 => refuse(
            "defer_hard_irqs",
            0,
            "the defer mode needs a non-zero count of empty polls to defer IRQs for",
        ),
        Mode::Defer if s.gro_flush_timeout_ns == 0 => refuse(
            "gro_flush_timeout_ns",
            0,
            "the defer mode needs a non-zero watchdog period; without it the kernel does not \
             defer IRQs",
        ),
        Mode::Suspend if s.irq_suspend_timeout_ns == 0 => refuse(
            "irq_suspend_timeout_ns",
            0,
            "the suspend mode needs a non-zero IRQ suspension timeout",
        ),
        Mode::Suspend if s.irq_suspend_timeout_ns <= s.gro_flush_timeout_ns => refuse(
            "irq_suspend_timeout_ns",
            s.irq_suspend_timeout_ns,
            "must exceed gro_flush_timeout_ns: it covers one application processing cycle, \
             the watchdog only the gaps (Documentation/networking/napi.rst)",
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::coalesce::CoalesceParam;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = PolicyConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.max_mode, Mode::Suspend);
        assert_eq!(
            (c.min_dwell_ms, c.missing_signal_fallback_ms),
            (5_000, 10_000)
        );
        assert_eq!(
            (
                c.defer.enter_packets_per_sec,
                c.defer.enter_wakeups_per_sec,
                c.defer.enter_after_ms,
                c.defer.exit_packets_per_sec,
                c.defer.exit_after_ms
            ),
            (20_000, 10_000, 3_000, 10_000, 5_000)
        );
        // The rates are derived from the Defer mode's watchdog period: 4 and 2 packets per
        // 200 µs poll, wake-ups twice the watchdog's poll rate.
        let period_s = c.modes.defer.gro_flush_timeout_ns as f64 / 1e9;
        assert_eq!(c.defer.enter_packets_per_sec as f64 * period_s, 4.0);
        assert_eq!(c.defer.exit_packets_per_sec as f64 * period_s, 2.0);
        assert_eq!(c.defer.enter_wakeups_per_sec as f64 * period_s, 2.0);
        assert_eq!(
            (
                c.suspend.enter_busy_poll_packets_per_sec,
                c.suspend.enter_after_ms,
                c.suspend.exit_busy_poll_packets_per_sec,
                c.suspend.exit_after_ms
            ),
            (1_000, 2_000, 100, 3_000)
        );
        // The dwell is at least every hold time, so one switch per dwell at most.
        for hold in [
            c.defer.enter_after_ms,
            c.defer.exit_after_ms,
            c.suspend.enter_after_ms,
            c.suspend.exit_after_ms,
        ] {
            assert!(c.min_dwell_ms >= hold);
        }
    }

    #[test]
    fn toml_round_trip_with_defaults() {
        let c = PolicyConfig::default();
        let text = toml::to_string(&c).expect("serialising the defaults");
        let back: PolicyConfig = toml::from_str(&text).expect("parsing what was written");
        assert_eq!(back, c);
        // An empty file is the defaults; a partial one changes only what it names.
        assert_eq!(toml::from_str::<PolicyConfig>("").expect("empty"), c);
        let partial: PolicyConfig = toml::from_str(
            "max_mode = \"defer\"\n\
             [defer]\nenter_packets_per_sec = 50000\n\
             [modes]\ninterrupt_uses_originals = true\n\
             [modes.defer]\ndefer_hard_irqs = 2\ngro_flush_timeout_ns = 50000\n\
             irq_suspend_timeout_ns = 0\ncoalesce = { rx-usecs = 8, use-adaptive-rx = 1 }\n",
        )
        .expect("partial file");
        assert_eq!(partial.max_mode, Mode::Defer);
        assert_eq!(partial.defer.enter_packets_per_sec, 50_000);
        assert_eq!(partial.defer.exit_packets_per_sec, 10_000);
        assert!(partial.modes.interrupt_uses_originals);
        assert_eq!(
            partial.modes.defer.coalesce_values(),
            [
                (CoalesceParam::RxUsecs, 8),
                (CoalesceParam::UseAdaptiveRx, 1)
            ]
        );
        assert_eq!(partial.modes.suspend, c.modes.suspend);
        assert_eq!(partial.validate(), Ok(()));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors() {
        for text in [
            "min_dwel_ms = 3\n",
            "[defer]\nenter_pps = 1\n",
            "max_mode = \"polling\"\n",
            "min_dwell_ms = -1\n",
            "[modes.defer]\ndefer_hard_irqs = 1\n", // a mode's napi values are all required
            "[modes.defer]\ndefer_hard_irqs = 1\ngro_flush_timeout_ns = 1\n\
             irq_suspend_timeout_ns = 0\ncoalesce = { rx-profile = 1 }\n",
        ] {
            assert!(
                toml::from_str::<PolicyConfig>(text).is_err(),
                "accepted: {text}"
            );
        }
    }

    #[test]
    fn validation_names_the_key_and_the_range() {
        let check = |edit: &dyn Fn(&mut PolicyConfig)| {
            let mut c = PolicyConfig::default();
            edit(&mut c);
            c.validate().expect_err("invalid config accepted")
        };
        let e = check(&|c| c.defer.exit_packets_per_sec = 20_000);
        assert_eq!(
            e,
            ControlError::ThresholdOrder {
                enter_key: "defer.enter_packets_per_sec",
                enter: 20_000,
                exit_key: "defer.exit_packets_per_sec",
                exit: 20_000
            }
        );
        assert_eq!(
            e.to_string(),
            "defer.enter_packets_per_sec (20000) must exceed defer.exit_packets_per_sec \
             (20000); otherwise one load level could satisfy both and the mode would switch \
             back and forth: set defer.enter_packets_per_sec above 20000 or lower \
             defer.exit_packets_per_sec"
        );
        assert!(matches!(
            check(&|c| c.suspend.enter_busy_poll_packets_per_sec = 50),
            ControlError::ThresholdOrder {
                enter_key: "suspend.enter_busy_poll_packets_per_sec",
                enter: 50,
                exit: 100,
                ..
            }
        ));
        let e = check(&|c| c.min_dwell_ms = 5_000_000_000);
        assert_eq!(
            e.to_string(),
            "min_dwell_ms = 5000000000 is out of range (allowed: 0..=86400000 (milliseconds, \
             at most one day))"
        );
        assert!(matches!(
            check(&|c| c.suspend.exit_after_ms = MAX_MS + 1),
            ControlError::OutOfRange { ref key, .. } if key == "suspend.exit_after_ms"
        ));
        assert_eq!(
            check(&|c| c.modes.defer.gro_flush_timeout_ns = 0),
            ControlError::ModeSettings {
                mode: Mode::Defer,
                key: "gro_flush_timeout_ns",
                value: 0,
                reason: "the defer mode needs a non-zero watchdog period; without it the \
                         kernel does not defer IRQs"
            }
        );
        assert!(matches!(
            check(&|c| c.modes.defer.defer_hard_irqs = 0),
            ControlError::ModeSettings {
                mode: Mode::Defer,
                key: "defer_hard_irqs",
                ..
            }
        ));
        assert!(matches!(
            check(&|c| c.modes.interrupt.irq_suspend_timeout_ns = 1),
            ControlError::ModeSettings {
                mode: Mode::Interrupt,
                key: "irq_suspend_timeout_ns",
                value: 1,
                ..
            }
        ));
        assert!(matches!(
            check(&|c| c.modes.suspend.irq_suspend_timeout_ns = 20_000),
            ControlError::ModeSettings {
                mode: Mode::Suspend,
                value: 20_000,
                ..
            }
        ));
        assert!(matches!(
            check(&|c| c.modes.suspend.irq_suspend_timeout_ns = 0),
            ControlError::ModeSettings {
                mode: Mode::Suspend,
                value: 0,
                ..
            }
        ));
        assert_eq!(
            check(&|c| c.modes.defer.defer_hard_irqs = 1 << 31),
            ControlError::OutOfRange {
                key: "modes.defer.defer_hard_irqs".into(),
                value: 1 << 31,
                allowed: "0..=2147483647"
            }
        );
        assert_eq!(
            check(&|c| {
                c.modes
                    .suspend
                    .coalesce
                    .insert(CoalesceParam::UseAdaptiveRx, 2);
            }),
            ControlError::OutOfRange {
                key: "modes.suspend.coalesce.use-adaptive-rx".into(),
                value: 2,
                allowed: "0 or 1 (a boolean)"
            }
        );
    }
}
