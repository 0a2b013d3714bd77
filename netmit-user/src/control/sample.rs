//! One measurement interval of one interface (or one NAPI), as the policy sees it.
//!
//! Every signal is a rate over the interval and is optional: which ones exist depends on
//! the kernel (the `napi:napi_poll` tracepoint), the device (a veth has no IRQ line) and
//! what the caller collects. A value that is not a finite, non-negative number (or a
//! fraction outside 0..=1) counts as missing; [`crate::control`] says what the policy
//! does when a signal is missing.

use std::{fmt, time::Duration};

/// Rates measured over one interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Length of the interval the rates were measured over. A sample with a zero
    /// interval carries no information and is ignored.
    pub interval: Duration,
    /// Packets received per second (the XDP program's counters, or the sum of the
    /// tracepoint's `work`). The offered load; independent of the mode.
    pub packets_per_sec: Option<f64>,
    /// Packets transmitted per second by the interface (`IFLA_STATS64`): on a server, its
    /// replies. Used to judge a switch by its effect ([`crate::control::effect`]).
    pub tx_packets_per_sec: Option<f64>,
    /// NAPI polls per second (`napi:napi_poll` events of this NAPI/interface).
    pub polls_per_sec: Option<f64>,
    /// Fraction of those polls that used their whole budget (`work == budget`, 64 by
    /// default). Such a poll is followed by a re-poll without any interrupt.
    pub full_budget_fraction: Option<f64>,
    /// Hardware interrupts per second of the interface's queues (/proc/interrupts). None
    /// on a veth, which has no IRQ line.
    pub irqs_per_sec: Option<f64>,
    /// NET_RX softirqs per second on the CPUs that serve the interface (/proc/softirqs).
    /// Counts every device's receive work on those CPUs, so it over-counts wake-ups.
    pub net_rx_softirqs_per_sec: Option<f64>,
    /// Packets per second received by busy polling (`BusyPollRxPackets` in
    /// /proc/net/netstat). System-wide: not attributed to an interface.
    pub busy_poll_packets_per_sec: Option<f64>,
    /// Whether an AF_XDP socket busy-polls this interface (the caller knows, e.g. from
    /// `netmit rx --busy-poll`). `None`: unknown.
    pub xsk_busy_poll: Option<bool>,
    /// Processes of the namespace that `netmit run` preloaded and that the library made
    /// busy-poll (`comm pid`, from their state files). Only explains a decision: what
    /// counts is the busy-polled packet rate, as for any other application.
    pub preloaded_busy_pollers: Vec<String>,
}

/// Where a wake-up rate came from, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WakeupSource {
    /// NAPI polls, less the re-polls after a full budget (tracepoint).
    NapiPolls,
    /// Hardware interrupts.
    Irqs,
    /// NET_RX softirqs (an over-estimate: other devices' receive work is included).
    NetRxSoftirqs,
}

impl fmt::Display for WakeupSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WakeupSource::NapiPolls => "NAPI polls",
            WakeupSource::Irqs => "IRQs",
            WakeupSource::NetRxSoftirqs => "NET_RX softirqs",
        })
    }
}

/// A rate, if it is one (finite and not negative).
fn rate(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && *v >= 0.0)
}

impl Sample {
    /// A sample over `interval` with no signals.
    pub fn new(interval: Duration) -> Sample {
        Sample {
            interval,
            ..Sample::default()
        }
    }

    /// [`Sample::packets_per_sec`], if valid.
    pub fn packets(&self) -> Option<f64> {
        rate(self.packets_per_sec)
    }

    /// [`Sample::tx_packets_per_sec`], if valid.
    pub fn tx_packets(&self) -> Option<f64> {
        rate(self.tx_packets_per_sec)
    }

    /// [`Sample::full_budget_fraction`], if valid (0..=1).
    pub fn full_budget(&self) -> Option<f64> {
        self.full_budget_fraction
            .filter(|f| f.is_finite() && (0.0..=1.0).contains(f))
    }

    /// Notifications per second: how often something outside the NAPI had to start it.
    ///
    /// On a NIC, a hard IRQ; on a veth, `veth_xmit` scheduling the peer's NAPI. From the
    /// polls less the full-budget re-polls when the tracepoint is there (all polls when the
    /// fraction is missing), else the IRQ count, else the NET_RX softirq count.
    pub fn wakeups(&self) -> Option<(f64, WakeupSource)> {
        if let Some(polls) = rate(self.polls_per_sec) {
            let repolls = self.full_budget().unwrap_or(0.0);
            return Some((polls * (1.0 - repolls), WakeupSource::NapiPolls));
        }
        if let Some(irqs) = rate(self.irqs_per_sec) {
            return Some((irqs, WakeupSource::Irqs));
        }
        rate(self.net_rx_softirqs_per_sec).map(|s| (s, WakeupSource::NetRxSoftirqs))
    }

    /// Packets per NAPI poll (for reports; `None` without both rates or with no polls).
    pub fn packets_per_poll(&self) -> Option<f64> {
        let polls = rate(self.polls_per_sec).filter(|p| *p > 0.0)?;
        Some(self.packets()? / polls)
    }

    /// Busy-polled packets per second that can belong to this interface: the system-wide
    /// `BusyPollRxPackets` rate, capped at the interface's own packet rate when that is
    /// known (an interface cannot have more busy-polled packets than packets).
    pub fn busy_polled(&self) -> Option<f64> {
        let busy = rate(self.busy_poll_packets_per_sec)?;
        Some(match self.packets() {
            Some(p) => busy.min(p),
            None => busy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> Sample {
        Sample::new(Duration::from_secs(1))
    }

    #[test]
    fn wakeups_prefer_polls_then_irqs_then_softirqs() {
        let mut x = s();
        assert_eq!(x.wakeups(), None);
        x.net_rx_softirqs_per_sec = Some(900.0);
        assert_eq!(x.wakeups(), Some((900.0, WakeupSource::NetRxSoftirqs)));
        x.irqs_per_sec = Some(500.0);
        assert_eq!(x.wakeups(), Some((500.0, WakeupSource::Irqs)));
        x.polls_per_sec = Some(400.0);
        assert_eq!(x.wakeups(), Some((400.0, WakeupSource::NapiPolls)));
        x.full_budget_fraction = Some(0.25);
        assert_eq!(x.wakeups(), Some((300.0, WakeupSource::NapiPolls)));
        // An invalid fraction is ignored, an invalid rate falls through to the next source.
        x.full_budget_fraction = Some(1.5);
        assert_eq!(x.wakeups(), Some((400.0, WakeupSource::NapiPolls)));
        x.polls_per_sec = Some(f64::NAN);
        assert_eq!(x.wakeups(), Some((500.0, WakeupSource::Irqs)));
        x.irqs_per_sec = Some(-1.0);
        assert_eq!(x.wakeups(), Some((900.0, WakeupSource::NetRxSoftirqs)));
    }

    #[test]
    fn derived_rates() {
        let mut x = s();
        x.packets_per_sec = Some(52_000.0);
        assert_eq!(x.packets_per_poll(), None);
        x.polls_per_sec = Some(0.0);
        assert_eq!(x.packets_per_poll(), None);
        x.polls_per_sec = Some(1_000.0);
        assert_eq!(x.packets_per_poll(), Some(52.0));
        x.busy_poll_packets_per_sec = Some(80_000.0);
        assert_eq!(x.busy_polled(), Some(52_000.0));
        x.packets_per_sec = None;
        assert_eq!(x.busy_polled(), Some(80_000.0));
        x.packets_per_sec = Some(f64::INFINITY);
        assert_eq!(x.packets(), None);
        assert_eq!(x.busy_polled(), Some(80_000.0));
    }
}
