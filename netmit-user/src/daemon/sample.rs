//! Turning two readings of cumulative kernel counters into one [`Sample`] for the
//! controller. Pure: the daemon reads the counters (`daemon::iface`), this module only
//! subtracts and divides, so every rule here is unit-tested with synthetic numbers.
//!
//! - **Packets/s**: from the XDP program's per-queue counters when netmit is attached
//!   (every frame the program saw, whatever its verdict), else the sum of the `work` of
//!   the interface's NAPI polls (napi_poll tracepoint).
//! - **Polls/s, budget-exhausted fraction**: the interface's NAPIs (matched by NAPI id,
//!   which is unique machine-wide, not by ifindex, which is per namespace).
//! - **Transmitted packets/s**: the device's `IFLA_STATS64` (a server's replies), to judge
//!   a switch by its effect.
//! - **IRQs/s**: the interface's IRQ lines in /proc/interrupts (none on a veth).
//! - **NET_RX softirqs/s**: all CPUs (machine-wide; an over-estimate of wake-ups).
//! - **Busy-polled packets/s**: `TcpExt: BusyPollRxPackets` of the daemon's network
//!   namespace (/proc/net/netstat), which the policy caps at the interface's packet rate.
//!
//! A counter that went backwards (a re-created NAPI, a re-attached program, an
//! interface that came back) makes its rate missing for that interval instead of a
//! huge or negative number.

use std::{collections::BTreeMap, time::Duration};

use netmit_common::NapiPollCounters;

use crate::{control::Sample, signals::napi_poll_rates};

/// Cumulative counters of one interface, read at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IfaceReading {
    /// Interface index when read (a change means the interface was re-created).
    pub ifindex: u32,
    /// Frames seen by netmit's XDP program, all queues and verdicts (`None`: not attached
    /// or unreadable).
    pub xdp_packets: Option<u64>,
    /// The napi_poll counters of the interface's NAPIs, by NAPI id (`None`: no tracepoint
    /// source).
    pub napi: Option<BTreeMap<u32, NapiPollCounters>>,
    /// Total of the interface's IRQ lines (`None`: it has none, as a veth).
    pub irqs: Option<u64>,
    /// Packets the interface transmitted (`IFLA_STATS64`; `None`: unreadable).
    pub tx_packets: Option<u64>,
}

/// Machine- or namespace-wide cumulative counters, read at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemReading {
    /// NET_RX softirqs, all CPUs.
    pub net_rx_softirqs: Option<u64>,
    /// `TcpExt: BusyPollRxPackets` of the daemon's namespace.
    pub busy_poll_rx_packets: Option<u64>,
    /// The namespace's preloaded processes that busy-poll (`comm pid`; not a counter:
    /// the latest reading is taken as is).
    pub preloaded_busy_pollers: Vec<String>,
}

/// The rate of a counter between two readings; missing if either is, or if it went back.
fn rate(before: Option<u64>, after: Option<u64>, secs: f64) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if a >= b && secs > 0.0 => Some((a - b) as f64 / secs),
        _ => None,
    }
}

/// Builds the controller's sample of one interface from two readings `elapsed` apart.
/// Readings of a different ifindex (the interface was re-created in between) give an
/// empty sample, which the controller ignores only if `elapsed` is zero: so the caller
/// should skip such an interval (see [`comparable`]).
pub fn build_sample(
    before: (&IfaceReading, &SystemReading),
    after: (&IfaceReading, &SystemReading),
    elapsed: Duration,
) -> Sample {
    let secs = elapsed.as_secs_f64();
    let (bi, bs) = before;
    let (ai, as_) = after;
    let mut sample = Sample::new(elapsed);

    let napi = match (&bi.napi, &ai.napi) {
        (Some(b), Some(a)) => {
            let rates = napi_poll_rates(b, a, elapsed);
            // A NAPI that is new in `after` or was reset contributes only its counts since
            // then; that undercounts the interval, which is better than nothing.
            let polls: u64 = rates.values().map(|r| r.polls).sum();
            let packets: u64 = rates.values().map(|r| r.packets).sum();
            let exhausted: u64 = rates.values().map(|r| r.budget_exhausted).sum();
            Some((polls, packets, exhausted))
        }
        _ => None,
    };
    if let Some((polls, packets, exhausted)) = napi
        && secs > 0.0
    {
        sample.polls_per_sec = Some(polls as f64 / secs);
        if polls > 0 {
            sample.full_budget_fraction = Some(exhausted as f64 / polls as f64);
        }
        sample.packets_per_sec = Some(packets as f64 / secs);
    }
    // XDP counters see every frame the program ran on: preferred when there.
    if let Some(pps) = rate(bi.xdp_packets, ai.xdp_packets, secs) {
        sample.packets_per_sec = Some(pps);
    }
    sample.irqs_per_sec = rate(bi.irqs, ai.irqs, secs);
    sample.tx_packets_per_sec = rate(bi.tx_packets, ai.tx_packets, secs);
    sample.net_rx_softirqs_per_sec = rate(bs.net_rx_softirqs, as_.net_rx_softirqs, secs);
    sample.busy_poll_packets_per_sec =
        rate(bs.busy_poll_rx_packets, as_.busy_poll_rx_packets, secs);
    sample.preloaded_busy_pollers = as_.preloaded_busy_pollers.clone();
    sample
}

/// Whether two readings of an interface can be compared (same interface instance).
pub fn comparable(before: &IfaceReading, after: &IfaceReading) -> bool {
    before.ifindex == after.ifindex
}

/// The value of `TcpExt: BusyPollRxPackets` in the text of /proc/net/netstat (pairs of
/// header and value lines per group). `None` when the counter is not there.
pub fn parse_busy_poll_rx_packets(netstat: &str) -> Option<u64> {
    let mut lines = netstat.lines();
    while let (Some(header), Some(values)) = (lines.next(), lines.next()) {
        let (Some(("TcpExt", names)), Some(("TcpExt", vals))) =
            (header.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        let idx = names
            .split_whitespace()
            .position(|n| n == "BusyPollRxPackets")?;
        return vals.split_whitespace().nth(idx)?.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn napi(polls: u64, packets: u64, exhausted: u64) -> NapiPollCounters {
        NapiPollCounters {
            polls,
            packets,
            budget_exhausted: exhausted,
            ifindex: 7,
            ..Default::default()
        }
    }

    fn reading(xdp: Option<u64>, napis: &[(u32, NapiPollCounters)]) -> IfaceReading {
        IfaceReading {
            ifindex: 7,
            xdp_packets: xdp,
            napi: Some(napis.iter().copied().collect()),
            irqs: None,
            tx_packets: xdp.map(|x| x / 2),
        }
    }

    #[test]
    fn rates_from_deltas() {
        let b = reading(Some(1_000), &[(9001, napi(100, 1_000, 0))]);
        let a = reading(Some(31_000), &[(9001, napi(1_100, 31_000, 250))]);
        let sys_b = SystemReading {
            net_rx_softirqs: Some(500),
            busy_poll_rx_packets: Some(10),
            preloaded_busy_pollers: Vec::new(),
        };
        let sys_a = SystemReading {
            net_rx_softirqs: Some(2_500),
            busy_poll_rx_packets: Some(10),
            preloaded_busy_pollers: vec!["memcached 42".into()],
        };
        let s = build_sample((&b, &sys_b), (&a, &sys_a), Duration::from_millis(500));
        assert_eq!(s.interval, Duration::from_millis(500));
        assert_eq!(s.packets_per_sec, Some(60_000.0));
        assert_eq!(s.polls_per_sec, Some(2_000.0));
        assert_eq!(s.full_budget_fraction, Some(0.25));
        assert_eq!(s.net_rx_softirqs_per_sec, Some(4_000.0));
        assert_eq!(s.busy_poll_packets_per_sec, Some(0.0));
        assert_eq!(s.preloaded_busy_pollers, ["memcached 42"]);
        assert_eq!(s.irqs_per_sec, None);
        assert_eq!(s.tx_packets_per_sec, Some(30_000.0));
        assert_eq!(s.packets_per_poll(), Some(30.0));
        assert_eq!(s.wakeups().map(|w| w.0), Some(1_500.0));
    }

    #[test]
    fn napi_packets_when_xdp_is_missing() {
        let b = reading(None, &[(1, napi(10, 10, 0)), (2, napi(0, 0, 0))]);
        let a = reading(None, &[(1, napi(20, 30, 0)), (2, napi(5, 50, 5))]);
        let s = build_sample(
            (&b, &SystemReading::default()),
            (&a, &SystemReading::default()),
            Duration::from_secs(1),
        );
        assert_eq!(s.packets_per_sec, Some(70.0));
        assert_eq!(s.polls_per_sec, Some(15.0));
        assert_eq!(s.full_budget_fraction, Some(5.0 / 15.0));
        assert_eq!(s.net_rx_softirqs_per_sec, None);
    }

    #[test]
    fn new_napis_and_backward_counters() {
        // A NAPI that appeared in the interval counts from zero; a counter that went
        // backwards (re-created XDP program) gives no XDP rate, so the NAPI rate is used.
        let b = reading(Some(5_000), &[(1, napi(10, 10, 0))]);
        let a = reading(Some(100), &[(2, napi(40, 400, 0))]);
        let s = build_sample(
            (&b, &SystemReading::default()),
            (&a, &SystemReading::default()),
            Duration::from_secs(2),
        );
        assert_eq!(s.packets_per_sec, Some(200.0));
        assert_eq!(s.polls_per_sec, Some(20.0));
        // No polls: no fraction.
        let idle = reading(Some(100), &[(2, napi(40, 400, 0))]);
        let s = build_sample(
            (&idle, &SystemReading::default()),
            (&idle, &SystemReading::default()),
            Duration::from_secs(1),
        );
        assert_eq!(
            (s.packets_per_sec, s.full_budget_fraction),
            (Some(0.0), None)
        );
    }

    #[test]
    fn irqs_and_missing_sources() {
        let mut b = IfaceReading {
            ifindex: 3,
            irqs: Some(100),
            ..Default::default()
        };
        let mut a = IfaceReading {
            ifindex: 3,
            irqs: Some(1_100),
            ..Default::default()
        };
        let none = SystemReading::default();
        let s = build_sample((&b, &none), (&a, &none), Duration::from_millis(100));
        assert_eq!(s.irqs_per_sec, Some(10_000.0));
        assert_eq!(s.packets_per_sec, None);
        assert_eq!(s.polls_per_sec, None);
        assert!(comparable(&b, &a));
        a.ifindex = 4;
        assert!(!comparable(&b, &a));
        b.irqs = None;
        let s = build_sample((&b, &none), (&a, &none), Duration::ZERO);
        assert_eq!(s.irqs_per_sec, None);
    }

    #[test]
    fn busy_poll_counter_from_netstat() {
        let text = "TcpExt: SyncookiesSent BusyPollRxPackets TCPAutoCorking\n\
                    TcpExt: 0 4242 17\n\
                    IpExt: InNoRoutes InTruncatedPkts\n\
                    IpExt: 0 0\n";
        assert_eq!(parse_busy_poll_rx_packets(text), Some(4242));
        assert_eq!(parse_busy_poll_rx_packets("IpExt: A\nIpExt: 1\n"), None);
        assert_eq!(parse_busy_poll_rx_packets(""), None);
        // The live file of this namespace has it (Linux 4.5+).
        let live = std::fs::read_to_string("/proc/net/netstat").unwrap();
        assert!(parse_busy_poll_rx_packets(&live).is_some());
    }
}
