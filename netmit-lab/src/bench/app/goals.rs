//! The goals of `netmit bench app` (issue 14), each a ratio or difference to a setup
//! measured in the same run: suspend through `netmit run` against the baseline and
//! against the global busy-poll sysctls, the adaptive daemon against the best static
//! setup, and busy polling actually happening.

use std::fmt::Write;

use super::{AppReport, AppSetup};
use crate::bench::modes::{Goal, LoadPoint, report::missing};

/// The static setups the adaptive daemon is compared against.
const STATIC: [AppSetup; 5] = [
    AppSetup::Baseline,
    AppSetup::Defer,
    AppSetup::Sysctl,
    AppSetup::BusyPoll,
    AppSetup::Suspend,
];

/// Share of requests busy-polled at saturation under the preloaded busy-poll setups.
const BUSY_POLLED_SHARE: f64 = 0.5;

impl AppReport {
    /// Checks the goals against the measurements.
    pub fn check_goals(&mut self) {
        let r = &self.report;
        let sat = LoadPoint::Saturation;
        let low = LoadPoint::Fraction { of_baseline: 0.1 };
        let pair = |s: AppSetup, l: LoadPoint| r.point(AppSetup::Baseline, l).zip(r.point(s, l));
        let mut goals = Vec::new();

        let (name, target) = ("suspend throughput at saturation", ">= 1.15x baseline");
        goals.push(match pair(AppSetup::Suspend, sat) {
            Some((b, s)) => {
                let x = s.achieved_pps / b.achieved_pps.max(1.0);
                goal(
                    name,
                    target,
                    format!(
                        "{:.0} vs {:.0} req/s = {x:.2}x",
                        s.achieved_pps, b.achieved_pps
                    ),
                    x >= 1.15,
                )
            }
            None => missing(name, target),
        });
        for load in r.loads() {
            let LoadPoint::Fraction { .. } = load else {
                continue;
            };
            let name = format!("suspend p99 latency at {}", load.label());
            let target = "<= baseline";
            goals.push(match pair(AppSetup::Suspend, load) {
                Some((b, s)) => goal(
                    &name,
                    target,
                    format!(
                        "{:.1} vs {:.1} us = {:.2}x",
                        s.p99_us,
                        b.p99_us,
                        s.p99_us / b.p99_us.max(1e-9)
                    ),
                    s.p99_us <= b.p99_us,
                ),
                None => missing(&name, target),
            });
        }
        let (name, target) = ("suspend CPU at 10% load", "<= baseline + 5 points");
        goals.push(match pair(AppSetup::Suspend, low) {
            Some((b, s)) => goal(
                name,
                target,
                format!(
                    "{:.1}% vs {:.1}% ({:+.1} points)",
                    s.server_cpu_percent,
                    b.server_cpu_percent,
                    s.server_cpu_percent - b.server_cpu_percent
                ),
                s.server_cpu_percent <= b.server_cpu_percent + 5.0,
            ),
            None => missing(name, target),
        });
        let (name, target) = (
            "suspend vs global sysctls at 10% load",
            ">= 30 points less CPU, >= 0.99x their throughput",
        );
        goals.push(
            match r
                .point(AppSetup::Sysctl, low)
                .zip(r.point(AppSetup::Suspend, low))
            {
                Some((g, s)) => {
                    let less = g.server_cpu_percent - s.server_cpu_percent;
                    let x = s.achieved_pps / g.achieved_pps.max(1.0);
                    goal(
                        name,
                        target,
                        format!(
                            "{:.1}% vs {:.1}% ({less:.1} points less), {:.0} vs {:.0} req/s = \
                             {x:.3}x",
                            s.server_cpu_percent,
                            g.server_cpu_percent,
                            s.achieved_pps,
                            g.achieved_pps
                        ),
                        less >= 30.0 && x >= 0.99,
                    )
                }
                None => missing(name, target),
            },
        );
        for setup in [AppSetup::BusyPoll, AppSetup::Suspend] {
            let name = format!("{setup}: requests busy-polled at saturation");
            let target = format!(">= {:.0}% (BusyPollRxPackets)", BUSY_POLLED_SHARE * 100.0);
            goals.push(
                match r.point(setup, sat).and_then(|p| p.busy_poll_rx_per_packet) {
                    Some(share) => goal(
                        &name,
                        &target,
                        format!("{:.1}%", share * 100.0),
                        share >= BUSY_POLLED_SHARE,
                    ),
                    None => missing(&name, &target),
                },
            );
        }
        for load in r.loads() {
            let name = format!("adaptive throughput at {}", load.label());
            let target = "within 5% of the best static setup";
            let best = STATIC
                .iter()
                .filter_map(|&s| r.point(s, load))
                .max_by(|a, b| a.achieved_pps.total_cmp(&b.achieved_pps));
            goals.push(match best.zip(r.point(AppSetup::Adaptive, load)) {
                Some((best, a)) => {
                    let x = a.achieved_pps / best.achieved_pps.max(1.0);
                    goal(
                        &name,
                        target,
                        format!(
                            "{:.0} vs {:.0} req/s ({}) = {:.1}%, p99 {:.1} vs {:.1} us",
                            a.achieved_pps,
                            best.achieved_pps,
                            best.setup,
                            x * 100.0,
                            a.p99_us,
                            best.p99_us
                        ),
                        x >= 0.95,
                    )
                }
                None => missing(&name, target),
            });
        }
        self.report.goals = goals;
    }

    /// Whether every goal that could be checked was met.
    pub fn goals_met(&self) -> bool {
        self.report.goals_met()
    }

    /// The table and goals of [`crate::bench::modes::ModesReport::table`], then the
    /// settings read back after the setups.
    pub fn table(&self) -> String {
        let mut s = self.report.table();
        let _ = writeln!(s);
        let changed = self.restored.iter().filter(|c| c.before != c.after).count();
        let _ = writeln!(
            s,
            "restored: {} settings read back after their setups, {changed} differ{}",
            self.restored.len(),
            self.restored
                .iter()
                .filter(|c| c.setting.starts_with("net."))
                .map(|c| format!("; {} {} -> {}", c.setting, c.before, c.after))
                .collect::<String>()
        );
        s
    }
}

fn goal(name: &str, target: &str, measured: String, met: bool) -> Goal {
    Goal {
        name: name.into(),
        target: target.into(),
        measured,
        met: Some(met),
    }
}
