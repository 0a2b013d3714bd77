//! The daemon's mode controller, as pure policy: samples in, decisions out. No I/O, no
//! clock, no async; the daemon measures, calls [`Controller::decide`] once per interval
//! and applies what it answers with the `tune` module.
//!
//! # Why modes change at run time
//!
//! Cai and Karsten (SIGMETRICS 2024) found asynchronous interrupts, not protocol
//! processing, to be the main reason kernel networking trails kernel bypass. No single
//! setting is best at every load:
//!
//! - **Interrupt** (kernel defaults) has the lowest latency at low load, but pays an
//!   interrupt, a softirq and usually an application wake-up per small batch of packets.
//! - **Defer** (software interrupt coalescing: `defer-hard-irqs` + `gro-flush-timeout`)
//!   replaces most interrupts by a watchdog poll every `gro-flush-timeout`, batching
//!   packets at the price of up to one watchdog period of latency.
//! - **Suspend** (IRQ suspension, Linux 6.13) keeps interrupts off for as long as an
//!   application busy-polls the NAPI and keeps finding packets (epoll with
//!   `prefer_busy_poll`, or AF_XDP busy polling), and falls back to deferral when it
//!   stops. It does nothing for an application that does not busy-poll.
//!
//! So the controller follows the load: Interrupt while it is low, Defer when it is high,
//! Suspend while an application busy-polls, and back again.
//!
//! # What the signals mean physically
//!
//! See [`Sample`] for the fields.
//!
//! - **Packets per second**: the offered load. It does not depend on the mode, which makes
//!   it the signal for *leaving* Defer (hysteresis needs a yardstick the switch does not
//!   move).
//! - **Wake-ups per second**: how often something outside the NAPI had to start it. On a
//!   NIC, a hard interrupt: the handler masks the queue's IRQ and schedules the NAPI; the
//!   NET_RX softirq polls up to the budget (64 packets); a poll that uses the whole budget
//!   is followed by another poll without any interrupt, and a shorter one re-enables the
//!   IRQ (or, in Defer mode, arms the watchdog). Wake-ups are therefore the polls less the
//!   full-budget re-polls, or the IRQ count. On a **veth** there is no IRQ line: the
//!   sender's `veth_xmit` schedules the peer's NAPI (only present with native XDP or GRO
//!   on), the softirq runs on the *sender's* CPU, and here one poll handled one packet at
//!   any load until deferral took it to about 52 (measured on 6.18, docs/kernel-compat.md). NET_RX softirqs
//!   are the last resort: they count every device's receive work on those CPUs.
//! - **Packets per poll**: reported in the reasons, not used for decisions: it is 1 on a
//!   veth at any load, and it rises with deferral itself.
//! - **Busy-polled packets per second** (`BusyPollRxPackets` in /proc/net/netstat): packets
//!   an application pulled in by busy polling. The counter is system-wide, so the policy
//!   caps it at the interface's own packet rate. An AF_XDP socket in busy-poll mode is
//!   reported by the caller as a flag. (On a veth, AF_XDP busy polling has no effect: the
//!   socket has no NAPI id.)
//!
//! # The rules
//!
//! With the defaults of [`PolicyConfig`] (where the numbers come from: [`config`]):
//!
//! | from | to | when (sustained, every agreeing sample adds its interval) |
//! |---|---|---|
//! | Interrupt | Defer | packets ≥ 20,000/s and wake-ups ≥ 10,000/s for 3 s |
//! | Interrupt, Defer | Suspend | busy-polled packets ≥ 1,000/s, or AF_XDP busy polling, for 2 s |
//! | Defer | Interrupt | packets ≤ 10,000/s and busy polling not active, for 5 s |
//! | Suspend | Defer | busy-polled packets ≤ 100/s (no AF_XDP busy polling) for 3 s, packets > 10,000/s |
//! | Suspend | Interrupt | the same, packets ≤ 10,000/s or unknown |
//!
//! | Defer, Suspend (entered on the load) | the mode before | 2 s after the switch, received or transmitted packets/s below 80% of the 2 s before, or (Defer) polls per packet not below 90%: the switch is taken back and the mode held off 30 s, doubling ([`effect`]) |
//!
//! Every [`Decision::Switch`] names its [`Rule`] (the `reason` label of
//! `netmit_mode_switches_total`) and says why, with the signal values against their
//! thresholds.
//!
//! - **Hysteresis**: every enter threshold is above its exit threshold (validated), so
//!   noise around one threshold cannot cross the other.
//! - **Dwell**: after a switch, no other switch for `min_dwell_ms` (5 s), which is longer
//!   than every hold time. The only exception is the ceiling.
//! - **Ceiling**: `max_mode` from the configuration, lowered by the interface's
//!   [`Capabilities`] (no `irq-suspend-timeout`: at most Defer). When busy polling wants
//!   Suspend above the ceiling, the controller goes to Defer if allowed (preferred busy
//!   polling of Linux 5.11 works with deferral alone); a mode above a lowered ceiling is
//!   left at once.
//!
//! # Missing signals
//!
//! A condition that cannot be evaluated because its signal is missing (or not a finite,
//! non-negative number) neither extends nor breaks its streak. In detail:
//!
//! - No packet rate: no switch into or out of Defer on load. No wake-up rate: the packet
//!   rate alone decides Interrupt → Defer.
//! - No busy-poll rate and no AF_XDP flag: no switch into Suspend, none out of it on the
//!   busy-poll test.
//! - If the signals that could end the current mode (the packet rate in Defer, the
//!   busy-poll signals in Suspend) stay missing for `missing_signal_fallback_ms` (10 s),
//!   the controller falls back: to Interrupt from Defer; from Suspend to Defer if the
//!   packet rate is known and above the Defer exit rate, else to Interrupt. Interrupt,
//!   the kernel's default, is never left on missing signals.
//!
//! # Using it
//!
//! ```
//! use std::time::Duration;
//! use netmit_user::control::{Capabilities, Controller, Decision, Policy, Sample};
//!
//! let mut controller = Controller::new(Policy::default(), Capabilities::ALL);
//! let busy = Sample {
//!     packets_per_sec: Some(200_000.0),
//!     polls_per_sec: Some(60_000.0),
//!     ..Sample::new(Duration::from_secs(1))
//! };
//! let decisions: Vec<Decision> = (0..3).map(|_| controller.decide(&busy)).collect();
//! assert_eq!(decisions[2].switch_to(), Some(netmit_user::control::Mode::Defer));
//! ```

pub mod config;
pub mod effect;
pub mod mode;
pub mod policy;
pub mod sample;

pub use config::{ControlError, DeferThresholds, PolicyConfig, SuspendThresholds};
pub use effect::EffectConfig;
pub use mode::{Capabilities, Mode, ModeSettings, ModeTable, ModeTarget};
pub use policy::{Controller, Decision, Policy, Rule};
pub use sample::{Sample, WakeupSource};
