//! The server configurations `netmit bench app` compares. The server is always the same
//! unmodified memcached binary; what differs is how it is started and what is set around it.

use std::fmt;

use serde::Serialize;

use crate::bench::modes::SetupKind;

/// One configuration of the unmodified server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AppSetup {
    /// memcached as shipped, NAPI defaults: every request that finds the NAPI idle wakes
    /// the NAPI thread on the server's core, then memcached.
    Baseline,
    /// `netmit run --profile defer`: hard-IRQ deferral only (no preload).
    Defer,
    /// What an administrator tries first: the global `net.core.busy_poll` and
    /// `net.core.busy_read` sysctls (system-wide: the client's socket busy-polls too),
    /// NAPI defaults. Restored when the setup ends, also on error.
    Sysctl,
    /// `netmit run --profile busy-poll`: the preload library sets busy polling and
    /// `prefer_busy_poll` on memcached's epoll sets; deferral as the watchdog.
    BusyPoll,
    /// `netmit run --profile suspend`: the same with IRQ suspension.
    Suspend,
    /// `netmit daemon` on the server's interface and `netmit run --profile suspend`,
    /// which then only preloads: the daemon picks the NAPI settings.
    Adaptive,
}

impl AppSetup {
    /// Every setup, in run order (the baseline first: it sets the load points).
    pub const ALL: [AppSetup; 6] = [
        AppSetup::Baseline,
        AppSetup::Defer,
        AppSetup::Sysctl,
        AppSetup::BusyPoll,
        AppSetup::Suspend,
        AppSetup::Adaptive,
    ];

    /// Name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            AppSetup::Baseline => "baseline",
            AppSetup::Defer => "defer",
            AppSetup::Sysctl => "sysctl",
            AppSetup::BusyPoll => "busy-poll",
            AppSetup::Suspend => "suspend",
            AppSetup::Adaptive => "adaptive",
        }
    }

    /// Parses [`AppSetup::name`].
    pub fn from_name(name: &str) -> Option<AppSetup> {
        AppSetup::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The `netmit run --profile` the server is started under, if any.
    pub fn run_profile(self) -> Option<&'static str> {
        match self {
            AppSetup::Baseline | AppSetup::Sysctl => None,
            AppSetup::Defer => Some("defer"),
            AppSetup::BusyPoll => Some("busy-poll"),
            AppSetup::Suspend | AppSetup::Adaptive => Some("suspend"),
        }
    }

    /// Whether the setup runs `netmit daemon` on the server's interface.
    pub fn runs_daemon(self) -> bool {
        self == AppSetup::Adaptive
    }

    /// Whether the server's epoll sets busy-poll (so `BusyPollRxPackets` should rise).
    pub fn busy_polls(self) -> bool {
        matches!(
            self,
            AppSetup::Sysctl | AppSetup::BusyPoll | AppSetup::Suspend | AppSetup::Adaptive
        )
    }

    /// One line for the report.
    pub fn describe(self, sysctl_usecs: u64) -> String {
        match self {
            AppSetup::Baseline => "memcached as shipped; NAPI defaults".into(),
            AppSetup::Defer => {
                "netmit run --profile defer (defer-hard-irqs 100, gro-flush-timeout 200 us; \
                 no preload)"
                    .into()
            }
            AppSetup::Sysctl => format!(
                "memcached as shipped with net.core.busy_poll = net.core.busy_read = \
                 {sysctl_usecs} us (system-wide, restored afterwards); NAPI defaults"
            ),
            AppSetup::BusyPoll => {
                "netmit run --profile busy-poll (preload: busy poll 64 us, prefer_busy_poll; \
                 defer-hard-irqs 100, gro-flush-timeout 200 us)"
                    .into()
            }
            AppSetup::Suspend => {
                "netmit run --profile suspend (preload: busy poll 64 us, prefer_busy_poll; \
                 defer-hard-irqs 100, gro-flush-timeout 20 us, irq-suspend-timeout 20 ms)"
                    .into()
            }
            AppSetup::Adaptive => {
                "netmit daemon on the server's interface + netmit run --profile suspend \
                 (preload only; the daemon picks the NAPI settings)"
                    .into()
            }
        }
    }
}

impl fmt::Display for AppSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl SetupKind for AppSetup {
    fn all() -> &'static [Self] {
        &AppSetup::ALL
    }
    fn label(self) -> &'static str {
        self.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_profiles_match_run() {
        for s in AppSetup::ALL {
            assert_eq!(AppSetup::from_name(s.name()), Some(s));
        }
        assert_eq!(AppSetup::ALL[0], AppSetup::Baseline);
        assert_eq!(AppSetup::Baseline.run_profile(), None);
        assert_eq!(AppSetup::Adaptive.run_profile(), Some("suspend"));
        assert!(AppSetup::Sysctl.busy_polls() && !AppSetup::Defer.busy_polls());
    }
}
