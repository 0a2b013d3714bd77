//! The server configurations `netmit bench modes` compares, and the settings each one
//! stands for, defined once so that the table, the docs and the daemon's mode tables
//! (for the adaptive setup) agree.

use std::fmt;

use serde::Serialize;

use crate::serve::{BusyPollParams, Mode as ServeMode};
use netmit_user::{sys::napi::NapiParam, tune::plan::Profile};

/// One server configuration of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Setup {
    /// Kernel UDP socket, blocking `epoll_wait`, NAPI defaults: every request that finds
    /// the NAPI idle schedules it (an interrupt on a NIC), and wakes the server.
    Baseline,
    /// As the baseline, with hard-IRQ deferral (`defer-hard-irqs`, `gro-flush-timeout`:
    /// the `throughput` profile): software interrupt coalescing.
    Defer,
    /// Epoll busy polling (`EPIOCSPARAMS`, `prefer_busy_poll`, 200 µs per `epoll_wait`)
    /// on top of deferral: the server's thread polls the device. Burns its core while
    /// requests keep coming, even slowly.
    BusyPoll,
    /// IRQ suspension (Linux 6.13): `prefer_busy_poll` with no busy-wait time
    /// (`busy_poll_usecs` 0: one poll pass when `epoll_wait` finds nothing), and the
    /// `suspend` profile (`irq-suspend-timeout` 20 ms). While `epoll_wait` keeps finding
    /// requests, interrupts stay off and the server polls; when it finds none, it sleeps
    /// and deferral, then interrupts, take over.
    Suspend,
    /// AF_XDP: netmit's XDP program steers the requests into an AF_XDP socket and the
    /// server answers from the UMEM frame (`netmit serve --mode xsk`); no kernel stack.
    Xsk,
    /// The suspend-mode server with `netmit daemon` choosing interrupt, defer or suspend
    /// from the load it observes (the daemon's mode tables are the static setups' values).
    Adaptive,
}

impl Setup {
    /// Every setup, in the order they run and are reported. The baseline goes first: its
    /// saturation throughput sets the load points of all the others.
    pub const ALL: [Setup; 6] = [
        Setup::Baseline,
        Setup::Defer,
        Setup::BusyPoll,
        Setup::Suspend,
        Setup::Xsk,
        Setup::Adaptive,
    ];

    /// Name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Setup::Baseline => "baseline",
            Setup::Defer => "defer",
            Setup::BusyPoll => "busy-poll",
            Setup::Suspend => "suspend",
            Setup::Xsk => "xsk",
            Setup::Adaptive => "adaptive",
        }
    }

    /// Parses [`Setup::name`].
    pub fn from_name(name: &str) -> Option<Setup> {
        Setup::ALL.into_iter().find(|s| s.name() == name)
    }

    /// How the server receives requests.
    pub fn serve_mode(self) -> ServeMode {
        match self {
            Setup::Baseline | Setup::Defer => ServeMode::Epoll,
            Setup::BusyPoll | Setup::Suspend | Setup::Adaptive => ServeMode::BusyPoll,
            Setup::Xsk => ServeMode::Xsk,
        }
    }

    /// Epoll busy-poll parameters (busy-poll server modes only).
    pub fn busy_poll(self) -> BusyPollParams {
        let usecs = match self {
            Setup::BusyPoll => BUSY_POLL_USECS,
            _ => 0,
        };
        BusyPollParams {
            usecs,
            budget: 64,
            socket_options: true,
        }
    }

    /// The per-NAPI settings of the server's interface during this setup (the adaptive
    /// setup starts from the baseline's and lets the daemon change them).
    pub fn napi(self) -> NapiSettings {
        match self {
            Setup::Baseline | Setup::Xsk | Setup::Adaptive => NapiSettings::of(Profile::Latency),
            Setup::Defer | Setup::BusyPoll => NapiSettings::of(Profile::Throughput),
            Setup::Suspend => SUSPEND_NAPI,
        }
    }

    /// Whether the setup runs `netmit daemon` on the server's interface.
    pub fn runs_daemon(self) -> bool {
        self == Setup::Adaptive
    }

    /// One line for the report: what the server does and the NAPI settings.
    pub fn describe(self) -> String {
        let n = self.napi();
        let server = match self {
            Setup::Baseline | Setup::Defer => "epoll".to_string(),
            Setup::BusyPoll | Setup::Suspend | Setup::Adaptive => format!(
                "epoll busy poll ({} us, prefer_busy_poll)",
                self.busy_poll().usecs
            ),
            Setup::Xsk => "AF_XDP (netmit steering program, native XDP)".to_string(),
        };
        let napi = format!(
            "defer-hard-irqs {}, gro-flush-timeout {} us, irq-suspend-timeout {} ms",
            n.defer_hard_irqs,
            n.gro_flush_timeout_ns / 1000,
            n.irq_suspend_timeout_ns / 1_000_000
        );
        if self.runs_daemon() {
            format!("{server}; netmit daemon picks the NAPI settings (starts at {napi})")
        } else {
            format!("{server}; {napi}")
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long one `epoll_wait` busy-polls in the busy-poll setup, in microseconds.
pub const BUSY_POLL_USECS: u32 = 200;

/// The NAPI settings of the suspend setup (and of the adaptive daemon's suspend mode).
///
/// The kernel's documentation of IRQ suspension (Documentation/networking/napi.rst) asks
/// for `gro_flush_timeout` and `napi_defer_hard_irqs` to be set "to low values": they
/// only govern what happens when `epoll_wait` stops finding requests. With the
/// `suspend` tuning profile's 100 deferred polls, each pause of the server left the NAPI
/// watchdog re-polling every 20 µs for up to 2 ms; on this testbed, where each watchdog
/// poll wakes the NAPI thread, that cost 18% of the server's core at 10% load (baseline:
/// 2.5%) and tripled p99. Two deferred polls keep the safety net (40 µs) without it.
pub const SUSPEND_NAPI: NapiSettings = NapiSettings {
    defer_hard_irqs: 2,
    gro_flush_timeout_ns: 20_000,
    irq_suspend_timeout_ns: 20_000_000,
};

/// The three per-NAPI interrupt-mitigation values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NapiSettings {
    /// `defer-hard-irqs`.
    pub defer_hard_irqs: u64,
    /// `gro-flush-timeout`, nanoseconds.
    pub gro_flush_timeout_ns: u64,
    /// `irq-suspend-timeout`, nanoseconds.
    pub irq_suspend_timeout_ns: u64,
}

impl NapiSettings {
    /// The values of a `netmit tune profile` (the daemon's modes use the same ones).
    pub fn of(profile: Profile) -> Self {
        let r = profile.request();
        let value = |p: NapiParam| {
            r.napi_values
                .iter()
                .find(|(q, _)| *q == p)
                .map_or(0, |&(_, v)| v)
        };
        Self {
            defer_hard_irqs: value(NapiParam::DeferHardIrqs),
            gro_flush_timeout_ns: value(NapiParam::GroFlushTimeout),
            irq_suspend_timeout_ns: value(NapiParam::IrqSuspendTimeout),
        }
    }

    /// The values as (parameter, value) pairs, in the order they are applied.
    pub fn values(self) -> [(NapiParam, u64); 3] {
        [
            (NapiParam::DeferHardIrqs, self.defer_hard_irqs),
            (NapiParam::GroFlushTimeout, self.gro_flush_timeout_ns),
            (NapiParam::IrqSuspendTimeout, self.irq_suspend_timeout_ns),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_baseline_runs_first() {
        for s in Setup::ALL {
            assert_eq!(Setup::from_name(s.name()), Some(s));
        }
        assert_eq!(Setup::ALL[0], Setup::Baseline);
        assert_eq!(Setup::from_name("nope"), None);
    }

    #[test]
    fn suspend_setup_suspends_and_baseline_does_not() {
        let s = Setup::Suspend.napi();
        assert!(s.irq_suspend_timeout_ns > s.gro_flush_timeout_ns && s.defer_hard_irqs > 0);
        assert_eq!(Setup::Suspend.busy_poll().usecs, 0);
        let b = Setup::Baseline.napi();
        assert_eq!((b.defer_hard_irqs, b.irq_suspend_timeout_ns), (0, 0));
    }
}
