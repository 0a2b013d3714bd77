//! The results of `netmit bench modes`: one row per (setup, load point), the goals of the
//! comparison checked against them, a text table and the two plots.

use std::fmt::{self, Write};

use serde::Serialize;

use super::{
    setup::Setup,
    svg::{LineChart, Scale, Series},
};

/// A kind of setup a report compares: [`Setup`] for `bench modes` (netmit's own server),
/// [`crate::bench::app::AppSetup`] for `bench app` (an unmodified server). The table,
/// the JSON and the plots only need its name and the order of all its values.
pub trait SetupKind: Copy + PartialEq + Serialize + fmt::Display + 'static {
    /// Every value, in run and legend order.
    fn all() -> &'static [Self];
    /// Name on the command line and in reports.
    fn label(self) -> &'static str;
}

impl SetupKind for Setup {
    fn all() -> &'static [Self] {
        &Setup::ALL
    }
    fn label(self) -> &'static str {
        self.name()
    }
}

/// A load point: a fraction of the baseline's saturation throughput (open loop), or
/// saturation itself (closed loop).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LoadPoint {
    /// Open loop at this fraction (0-1) of the baseline's saturation throughput.
    Fraction {
        /// The fraction.
        of_baseline: f64,
    },
    /// Closed loop: as fast as the server answers.
    Saturation,
}

impl LoadPoint {
    /// Short label: `10%`, `sat`.
    pub fn label(self) -> String {
        match self {
            LoadPoint::Fraction { of_baseline } => format!("{:.0}%", of_baseline * 100.0),
            LoadPoint::Saturation => "sat".into(),
        }
    }

    /// Position on the CPU-vs-load plot's x axis (percent of baseline saturation; the
    /// saturation point is drawn at 110).
    fn x(self) -> f64 {
        match self {
            LoadPoint::Fraction { of_baseline } => of_baseline * 100.0,
            LoadPoint::Saturation => 110.0,
        }
    }
}

/// The measurement of one setup at one load point.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(bound = "")]
pub struct PointResult<S: SetupKind = Setup> {
    /// The setup.
    pub setup: S,
    /// The load point.
    pub load: LoadPoint,
    /// Offered requests per second (open loop only).
    pub offered_pps: Option<f64>,
    /// Replies per second the client received in the window.
    pub achieved_pps: f64,
    /// Requests sent in the window.
    pub sent: u64,
    /// Replies received in the window.
    pub received: u64,
    /// Requests without a reply.
    pub lost: u64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Utilisation of the server's cores, percent (0-100 per core, averaged).
    pub server_cpu_percent: f64,
    /// NAPI polls of the server interface per reply.
    pub napi_polls_per_packet: f64,
    /// NET_RX softirq runs on the server's cores per reply.
    pub net_rx_per_packet: f64,
    /// `BusyPollRxPackets` (/proc/net/netstat of the server's namespace) per reply: the
    /// share of requests the server busy-polled (`None` where it was not read).
    pub busy_poll_rx_per_packet: Option<f64>,
    /// Open loop: what sent the requests (`socket`, `generator`); `None` elsewhere.
    pub sender: Option<String>,
    /// Open loop: the most requests one send call carried.
    pub burst_max: Option<u32>,
    /// Open loop: requests per send call on average.
    pub burst_mean: Option<f64>,
    /// Open loop, socket sender: p99 of send time minus due time, µs.
    pub send_error_p99_us: Option<f64>,
    /// The daemon's mode at the end of the window (adaptive setup only).
    pub daemon_mode: Option<String>,
    /// The daemon's mode switches since it started, at the end of the window.
    pub daemon_transitions: Option<u64>,
}

/// One goal of the comparison, checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Goal {
    /// What is compared.
    pub name: String,
    /// The target, in words.
    pub target: String,
    /// The measured figures.
    pub measured: String,
    /// Whether the target was met; `None` when a point it needs was not measured.
    pub met: Option<bool>,
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
#[serde(bound = "")]
pub struct ModesReport<S: SetupKind = Setup> {
    /// netmit version.
    pub version: &'static str,
    /// `uname -r`.
    pub kernel: String,
    /// Where the run happened (`veth testbed`, or the interfaces named).
    pub testbed: String,
    /// Server and client cores.
    pub server_cpus: Vec<usize>,
    /// Client core.
    pub client_cpu: usize,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// Warm-up before each window, seconds.
    pub warmup_secs: f64,
    /// Length of each window, seconds.
    pub window_secs: f64,
    /// Outstanding requests in the closed-loop (saturation) points.
    pub window_requests: u32,
    /// Request payload, bytes.
    pub payload_len: usize,
    /// The setups, with what each one sets.
    pub setups: Vec<(S, String)>,
    /// The baseline's saturation throughput, which sets the other load points.
    pub baseline_saturation_pps: f64,
    /// Every measurement.
    pub points: Vec<PointResult<S>>,
    /// The goals, checked.
    pub goals: Vec<Goal>,
    /// Things the reader should know (a counter that could not be read, ...).
    pub notes: Vec<String>,
    /// Wall-clock time of the whole run, seconds.
    pub elapsed_secs: f64,
}

/// The kernel-socket setups the adaptive daemon is compared against: it adapts the
/// kernel path, so AF_XDP, a different application architecture, is not its target.
const STATIC_KERNEL: [Setup; 4] = [
    Setup::Baseline,
    Setup::Defer,
    Setup::BusyPoll,
    Setup::Suspend,
];

impl<S: SetupKind> ModesReport<S> {
    /// The measurement of `setup` at `load`.
    pub fn point(&self, setup: S, load: LoadPoint) -> Option<&PointResult<S>> {
        self.points
            .iter()
            .find(|p| p.setup == setup && p.load == load)
    }

    /// The distinct load points, in measurement order.
    pub fn loads(&self) -> Vec<LoadPoint> {
        let mut out: Vec<LoadPoint> = Vec::new();
        for p in &self.points {
            if !out.contains(&p.load) {
                out.push(p.load);
            }
        }
        out.sort_by(|a, b| a.x().total_cmp(&b.x()));
        out
    }

    /// Whether every goal that could be checked was met.
    pub fn goals_met(&self) -> bool {
        self.goals.iter().all(|g| g.met != Some(false))
    }

    /// The results as a text table, then the goals.
    pub fn table(&self) -> String {
        let mut s = String::new();
        // The busy-polled share is a column only where it was read (bench app).
        let bp = self
            .points
            .iter()
            .any(|p| p.busy_poll_rx_per_packet.is_some());
        let _ = writeln!(
            s,
            "{:<10} {:>5} {:>10} {:>10} {:>8} {:>8} {:>9} {:>6} {:>10} {:>9}{} {:>9}  lost",
            "setup",
            "load",
            "offered/s",
            "replies/s",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "cpu%",
            "polls/pkt",
            "NET_RX/pkt",
            if bp { " busy-polled" } else { "" },
            "burst"
        );
        for p in &self.points {
            let _ = writeln!(
                s,
                "{:<10} {:>5} {:>10} {:>10.0} {:>8.1} {:>8.1} {:>9.1} {:>6.1} {:>10.3} {:>9.3}{} {:>9}  {}{}",
                p.setup.label(),
                p.load.label(),
                p.offered_pps
                    .map(|o| format!("{o:.0}"))
                    .unwrap_or_else(|| "closed".into()),
                p.achieved_pps,
                p.p50_us,
                p.p99_us,
                p.p999_us,
                p.server_cpu_percent,
                p.napi_polls_per_packet,
                p.net_rx_per_packet,
                match (bp, p.busy_poll_rx_per_packet) {
                    (false, _) => String::new(),
                    (true, Some(b)) => format!(" {:>10.1}%", b * 100.0),
                    (true, None) => format!(" {:>11}", "-"),
                },
                match (p.burst_max, p.burst_mean) {
                    (Some(m), Some(a)) => format!("{a:.2}/{m}"),
                    _ => "-".into(),
                },
                p.lost,
                p.daemon_mode
                    .as_ref()
                    .map(|m| format!(
                        "  (daemon: {m}, {} switches so far)",
                        p.daemon_transitions.unwrap_or(0)
                    ))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "burst: requests per send call of the open loop, mean/max{}",
            self.points
                .iter()
                .find_map(|p| p.sender.as_deref())
                .map(|x| format!(" (sender: {x})"))
                .unwrap_or_default()
        );
        let _ = writeln!(s);
        for g in &self.goals {
            let verdict = match g.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            let _ = writeln!(
                s,
                "goal: {:<38} {:<42} {:<13} {}",
                g.name, g.target, verdict, g.measured
            );
        }
        s
    }

    /// Throughput against p99 latency, one line per setup through its load points.
    pub fn latency_plot(&self) -> String {
        let series = S::all()
            .iter()
            .filter_map(|&setup| {
                let mut pts: Vec<(f64, f64)> = self
                    .points
                    .iter()
                    .filter(|p| p.setup == setup)
                    .map(|p| (p.achieved_pps / 1000.0, p.p99_us))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                (!pts.is_empty()).then(|| Series {
                    name: setup.label().into(),
                    points: pts,
                })
            })
            .collect();
        LineChart {
            title: format!("Throughput vs. p99 latency ({})", self.testbed),
            x_label: "replies per second (thousands)".into(),
            y_label: "p99 latency (us, log)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Log,
            x_ticks: None,
            series,
        }
        .render()
    }

    /// Server CPU utilisation against load.
    pub fn cpu_plot(&self) -> String {
        let loads = self.loads();
        let series = S::all()
            .iter()
            .filter_map(|&setup| {
                let pts: Vec<(f64, f64)> = loads
                    .iter()
                    .filter_map(|&l| self.point(setup, l).map(|p| (l.x(), p.server_cpu_percent)))
                    .collect();
                (!pts.is_empty()).then(|| Series {
                    name: setup.label().into(),
                    points: pts,
                })
            })
            .collect();
        LineChart {
            title: "Server CPU vs. load".into(),
            x_label: "load (% of the baseline's saturation throughput; sat = closed loop)".into(),
            y_label: "server core utilisation (%)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            x_ticks: Some(loads.iter().map(|l| (l.x(), l.label())).collect()),
            series,
        }
        .render()
    }
}

impl ModesReport<Setup> {
    /// Checks the comparison's goals (Cai and Karsten's headline results, and the
    /// daemon's promise) against the measurements.
    pub fn check_goals(&mut self) {
        let mut goals = Vec::new();
        let sat = LoadPoint::Saturation;
        let low = LoadPoint::Fraction { of_baseline: 0.1 };
        let pair = |s: Setup, l: LoadPoint| self.point(Setup::Baseline, l).zip(self.point(s, l));

        goals.push(match pair(Setup::Suspend, sat) {
            Some((b, s)) => {
                let r = s.achieved_pps / b.achieved_pps.max(1.0);
                Goal {
                    name: "suspend throughput at saturation".into(),
                    target: ">= 1.45x baseline".into(),
                    measured: format!(
                        "{:.0} vs {:.0} req/s = {r:.2}x",
                        s.achieved_pps, b.achieved_pps
                    ),
                    met: Some(r >= 1.45),
                }
            }
            None => missing("suspend throughput at saturation", ">= 1.45x baseline"),
        });
        goals.push(match pair(Setup::Suspend, low) {
            Some((b, s)) => {
                let r = s.p99_us / b.p99_us.max(1e-9);
                Goal {
                    name: "suspend p99 latency at 10% load".into(),
                    target: "<= 1.1x baseline".into(),
                    measured: format!("{:.1} vs {:.1} us = {r:.2}x", s.p99_us, b.p99_us),
                    met: Some(r <= 1.1),
                }
            }
            None => missing("suspend p99 latency at 10% load", "<= 1.1x baseline"),
        });
        goals.push(match pair(Setup::Suspend, low) {
            Some((b, s)) => Goal {
                name: "suspend CPU at 10% load".into(),
                target: "<= baseline + 10 points".into(),
                measured: format!(
                    "{:.1}% vs {:.1}% ({:+.1} points)",
                    s.server_cpu_percent,
                    b.server_cpu_percent,
                    s.server_cpu_percent - b.server_cpu_percent
                ),
                met: Some(s.server_cpu_percent <= b.server_cpu_percent + 10.0),
            },
            None => missing("suspend CPU at 10% load", "<= baseline + 10 points"),
        });
        let half = LoadPoint::Fraction { of_baseline: 0.5 };
        let name = "baseline at 50% load: loss and p99";
        let target = "0 lost, p99 <= 3x p50";
        goals.push(match self.point(Setup::Baseline, half) {
            Some(b) => {
                let r = b.p99_us / b.p50_us.max(1e-9);
                Goal {
                    name: name.into(),
                    target: target.into(),
                    measured: format!(
                        "{} lost, p99 {:.1} us = {r:.2}x p50 {:.1} us, burst {}",
                        b.lost,
                        b.p99_us,
                        b.p50_us,
                        match (b.burst_mean, b.burst_max) {
                            (Some(a), Some(m)) => format!("{a:.2} mean, {m} max"),
                            _ => "not reported".into(),
                        }
                    ),
                    met: Some(b.lost == 0 && r <= 3.0),
                }
            }
            None => missing(name, target),
        });
        for load in self.loads() {
            let name = format!("adaptive throughput at {}", load.label());
            let target = "within 5% of the best static kernel setup".to_string();
            let best = STATIC_KERNEL
                .iter()
                .filter_map(|&s| self.point(s, load))
                .max_by(|a, b| a.achieved_pps.total_cmp(&b.achieved_pps));
            goals.push(match (best, self.point(Setup::Adaptive, load)) {
                (Some(best), Some(a)) => {
                    let r = a.achieved_pps / best.achieved_pps.max(1.0);
                    Goal {
                        name,
                        target,
                        measured: format!(
                            "{:.0} vs {:.0} req/s ({}) = {:.1}%, p99 {:.1} vs {:.1} us",
                            a.achieved_pps,
                            best.achieved_pps,
                            best.setup,
                            r * 100.0,
                            a.p99_us,
                            best.p99_us
                        ),
                        met: Some(r >= 0.95),
                    }
                }
                _ => missing(&name, &target),
            });
        }
        self.goals = goals;
    }
}

pub(crate) fn missing(name: &str, target: &str) -> Goal {
    Goal {
        name: name.into(),
        target: target.into(),
        measured: "not measured in this run".into(),
        met: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(setup: Setup, load: LoadPoint, pps: f64, p99: f64, cpu: f64) -> PointResult {
        PointResult {
            setup,
            load,
            offered_pps: None,
            achieved_pps: pps,
            sent: 0,
            received: 0,
            lost: 0,
            p50_us: p99 / 2.0,
            p99_us: p99,
            p999_us: p99 * 2.0,
            mean_us: p99 / 2.0,
            server_cpu_percent: cpu,
            napi_polls_per_packet: 0.0,
            net_rx_per_packet: 0.0,
            busy_poll_rx_per_packet: None,
            sender: None,
            burst_max: None,
            burst_mean: None,
            send_error_p99_us: None,
            daemon_mode: None,
            daemon_transitions: None,
        }
    }

    fn report(points: Vec<PointResult>) -> ModesReport {
        ModesReport {
            version: "test",
            kernel: String::new(),
            testbed: "test".into(),
            server_cpus: vec![1],
            client_cpu: 0,
            quick: true,
            warmup_secs: 0.0,
            window_secs: 0.0,
            window_requests: 0,
            payload_len: 0,
            setups: vec![],
            baseline_saturation_pps: 0.0,
            points,
            goals: vec![],
            notes: vec![],
            elapsed_secs: 0.0,
        }
    }

    #[test]
    fn goals_are_checked_against_the_right_points() {
        let sat = LoadPoint::Saturation;
        let low = LoadPoint::Fraction { of_baseline: 0.1 };
        let mut r = report(vec![
            point(Setup::Baseline, low, 100.0, 40.0, 20.0),
            point(Setup::Baseline, sat, 1000.0, 900.0, 100.0),
            point(Setup::Suspend, low, 100.0, 43.0, 25.0),
            point(Setup::Suspend, sat, 1500.0, 500.0, 100.0),
            point(Setup::Adaptive, low, 99.0, 40.0, 20.0),
            point(Setup::Adaptive, sat, 1400.0, 500.0, 100.0),
        ]);
        r.check_goals();
        let met: Vec<_> = r.goals.iter().map(|g| (g.name.as_str(), g.met)).collect();
        assert_eq!(
            met,
            vec![
                ("suspend throughput at saturation", Some(true)),
                ("suspend p99 latency at 10% load", Some(true)),
                ("suspend CPU at 10% load", Some(true)),
                ("baseline at 50% load: loss and p99", None),
                ("adaptive throughput at 10%", Some(true)),
                // 1400 / 1500 = 93% of the best static setup (suspend).
                ("adaptive throughput at sat", Some(false)),
            ]
        );
        assert!(!r.goals_met());
        assert!(r.table().contains("MISSED"));
    }

    #[test]
    fn the_open_loop_goal_wants_no_loss_and_a_tight_p99() {
        let half = LoadPoint::Fraction { of_baseline: 0.5 };
        let goal = |lost: u64, p50: f64, p99: f64| {
            let mut p = point(Setup::Baseline, half, 500.0, p99, 50.0);
            (p.lost, p.p50_us, p.burst_max, p.burst_mean) = (lost, p50, Some(4), Some(1.5));
            let mut r = report(vec![p]);
            r.check_goals();
            let g = r
                .goals
                .iter()
                .find(|g| g.name.starts_with("baseline at 50%"));
            g.cloned().unwrap()
        };
        let g = goal(0, 20.0, 59.0);
        assert_eq!(g.met, Some(true), "{g:?}");
        assert!(
            g.measured.contains("1.50 mean, 4 max"),
            "the burst is stated: {g:?}"
        );
        assert_eq!(goal(0, 20.0, 61.0).met, Some(false));
        assert_eq!(goal(1, 20.0, 30.0).met, Some(false));
    }

    #[test]
    fn missing_points_are_not_measured_rather_than_met() {
        let mut r = report(vec![]);
        r.check_goals();
        assert!(r.goals.iter().all(|g| g.met.is_none()));
        assert!(r.goals_met());
    }

    #[test]
    fn plots_have_a_line_per_measured_setup() {
        let low = LoadPoint::Fraction { of_baseline: 0.1 };
        let r = report(vec![
            point(Setup::Baseline, low, 100.0, 40.0, 20.0),
            point(Setup::Baseline, LoadPoint::Saturation, 1000.0, 900.0, 100.0),
            point(Setup::Xsk, low, 100.0, 30.0, 10.0),
        ]);
        assert_eq!(r.latency_plot().matches("<polyline").count(), 2);
        assert_eq!(r.cpu_plot().matches("<polyline").count(), 2);
    }
}
