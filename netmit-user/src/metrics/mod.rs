//! The daemon's Prometheus metrics: definitions apart from the control logic.
//!
//! Two kinds, with different owners (the names are in `docs/metrics.md`):
//!
//! - **The daemon's own** (mode, transitions, ticks, errors, reloads): registered once by
//!   [`Metrics::register`] and changed through semantic methods
//!   ([`Metrics::record_transition`], [`Metrics::count_error`], ...), so control code
//!   never names a metric or a label.
//! - **Mirrors of kernel counters** (XDP verdicts, NAPI polls, IRQs, softirqs, per-NAPI
//!   settings): exported with the kernel's own cumulative values by a
//!   [`Collector`](prometheus_client::collector::Collector) over the [`Snapshot`] the last
//!   tick published. A scrape formats what is there; it never reads a map, a netlink socket
//!   or a /proc file, so scraping cannot slow the daemon down or make it do work at the
//!   scraper's rate. Their timestamps are the
//!   tick's, at most one interval old.
//!
//! [`Exposition`] holds the registry, built once and read-only afterwards, and encodes it
//! in the Prometheus text format (0.0.4) or OpenMetrics 1.0.

pub mod collector;
pub mod snapshot;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::Registry,
};

pub use collector::SnapshotCollector;
pub use snapshot::{SharedSnapshot, Snapshot};

use crate::control::{Mode, Rule};

/// Content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Content type of OpenMetrics text.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What failed, for `netmit_errors_total{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading counters or building a sample.
    Sample,
    /// Applying a setting.
    Apply,
    /// Attaching or detaching XDP.
    Attach,
    /// Restoring an original setting.
    Restore,
    /// Loading a configuration (start-up or reload).
    Config,
}

impl ErrorKind {
    /// Every kind (all are exported from the start, at 0).
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Sample,
        ErrorKind::Apply,
        ErrorKind::Attach,
        ErrorKind::Restore,
        ErrorKind::Config,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Sample => "sample",
            ErrorKind::Apply => "apply",
            ErrorKind::Attach => "attach",
            ErrorKind::Restore => "restore",
            ErrorKind::Config => "config",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModeLabels {
    device: String,
    mode: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransitionLabels {
    device: String,
    from: &'static str,
    to: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SwitchLabels {
    iface: String,
    napi_id: String,
    from: &'static str,
    to: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OverrideLabels {
    iface: String,
    napi_id: String,
    setting: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// The daemon's own metrics. Cheap to clone (every field is a shared handle).
#[derive(Clone, Debug)]
pub struct Metrics {
    mode: Family<ModeLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    switches: Family<SwitchLabels, Counter>,
    overrides: Family<OverrideLabels, Gauge>,
    ticks: Counter,
    tick_duration: Histogram,
    errors: Family<KindLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
}

impl Metrics {
    /// Registers the daemon's metrics (and `netmit_build_info`) in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        registry.register(
            "netmit_build",
            "The daemon's version",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let m = Metrics {
            mode: Family::default(),
            transitions: Family::default(),
            switches: Family::default(),
            overrides: Family::default(),
            ticks: Counter::default(),
            // 100 us .. ~3.3 s.
            tick_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            errors: Family::default(),
            reloads: Family::default(),
        };
        registry.register(
            "netmit_mode",
            "1 for the interface's current interrupt mode, 0 for the others",
            m.mode.clone(),
        );
        registry.register(
            "netmit_mode_transitions",
            "Mode switches",
            m.transitions.clone(),
        );
        registry.register(
            "netmit_mode_switches",
            "Mode switches by the rule that fired (reason)",
            m.switches.clone(),
        );
        registry.register(
            "netmit_external_override",
            "1 for a setting someone else changed: netmit no longer manages it (until SIGHUP)",
            m.overrides.clone(),
        );
        registry.register(
            "netmit_daemon_ticks",
            "Sampling intervals completed",
            m.ticks.clone(),
        );
        registry.register(
            "netmit_daemon_tick_duration_seconds",
            "Time one sampling tick took",
            m.tick_duration.clone(),
        );
        registry.register(
            "netmit_errors",
            "Failed operations by kind (sample, apply, attach, restore, config)",
            m.errors.clone(),
        );
        registry.register(
            "netmit_config_reloads",
            "Configuration reloads (SIGHUP) by result",
            m.reloads.clone(),
        );
        for kind in ErrorKind::ALL {
            let _ = m.errors.get_or_create(&KindLabels { kind: kind.name() });
        }
        for result in ["ok", "error"] {
            let _ = m.reloads.get_or_create(&ResultLabels { result });
        }
        m
    }

    /// Sets the current mode of `device` (1 for it, 0 for the other modes).
    pub fn set_mode(&self, device: &str, current: Mode) {
        for mode in Mode::ALL {
            self.mode
                .get_or_create(&ModeLabels {
                    device: device.to_string(),
                    mode: mode.name(),
                })
                .set(i64::from(mode == current));
        }
    }

    /// Counts a switch of `device` and sets its mode.
    pub fn record_transition(&self, device: &str, from: Mode, to: Mode) {
        self.transitions
            .get_or_create(&TransitionLabels {
                device: device.to_string(),
                from: from.name(),
                to: to.name(),
            })
            .inc();
        self.set_mode(device, to);
    }

    /// Counts a switch of `iface` (`napi_id`: the NAPI decided for, or `all`) by its rule.
    pub fn record_switch(&self, iface: &str, napi_id: &str, from: Mode, to: Mode, rule: Rule) {
        self.switches
            .get_or_create(&SwitchLabels {
                iface: iface.to_string(),
                napi_id: napi_id.to_string(),
                from: from.name(),
                to: to.name(),
                reason: rule.name(),
            })
            .inc();
    }

    /// Marks `setting` of `iface`/`napi_id` as changed by someone else (or, with
    /// `active` false, managed again).
    pub fn set_override(&self, iface: &str, napi_id: u32, setting: &'static str, active: bool) {
        let labels = OverrideLabels {
            iface: iface.to_string(),
            napi_id: napi_id.to_string(),
            setting,
        };
        if active {
            self.overrides.get_or_create(&labels).set(1);
        } else {
            self.overrides.remove(&labels);
        }
    }

    /// Removes every series of `device` (it left the configuration).
    pub fn forget_device(&self, device: &str) {
        for mode in Mode::ALL {
            self.mode.remove(&ModeLabels {
                device: device.to_string(),
                mode: mode.name(),
            });
            for to in Mode::ALL {
                self.transitions.remove(&TransitionLabels {
                    device: device.to_string(),
                    from: mode.name(),
                    to: to.name(),
                });
            }
        }
    }

    /// Counts one completed tick and its duration.
    pub fn observe_tick(&self, duration: std::time::Duration) {
        self.ticks.inc();
        self.tick_duration.observe(duration.as_secs_f64());
    }

    /// Counts one failed operation.
    pub fn count_error(&self, kind: ErrorKind) {
        self.errors
            .get_or_create(&KindLabels { kind: kind.name() })
            .inc();
    }

    /// Counts a configuration reload.
    pub fn count_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// The count of errors of `kind` so far.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors
            .get_or_create(&KindLabels { kind: kind.name() })
            .get()
    }
}

/// The registry, built once, and its encoders.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// Registers the daemon's metrics and a collector over `snapshot`.
    pub fn new(snapshot: SharedSnapshot) -> (Exposition, Metrics) {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        registry.register_collector(Box::new(SnapshotCollector::new(snapshot)));
        (Exposition { registry }, metrics)
    }

    /// Encodes every metric: OpenMetrics 1.0 text with `openmetrics`, else the Prometheus
    /// text format 0.0.4. Returns the body and its content type.
    pub fn encode(&self, openmetrics: bool) -> (String, &'static str) {
        let mut body = String::new();
        let result = if openmetrics {
            prometheus_client::encoding::text::encode(&mut body, &self.registry)
                .map(|()| OPENMETRICS_TEXT)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut body, &self.registry)
                .map(|()| PROMETHEUS_TEXT)
        };
        // Writing to a String cannot fail; a collector error would be a bug.
        let content_type = result.unwrap_or_else(|_| {
            log::error!("encoding metrics failed");
            PROMETHEUS_TEXT
        });
        (body, content_type)
    }

    /// Whether an `Accept` header asks for OpenMetrics.
    pub fn wants_openmetrics(accept: Option<&str>) -> bool {
        accept.is_some_and(|a| a.contains("application/openmetrics-text"))
    }
}

#[cfg(test)]
mod tests;
