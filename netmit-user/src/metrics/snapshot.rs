//! What one daemon tick saw, published for readers that must not do any work of their own:
//! the metrics collector (kernel-mirrored counters) and the `/status` endpoint.
//!
//! The tick builds a new [`Snapshot`] and swaps it in under a write lock held for a
//! pointer move; a scrape takes the read lock and formats. No reader ever makes a system
//! call.

use std::{
    sync::{Arc, RwLock},
    time::Instant,
};

use serde::Serialize;

use crate::{control::Mode, preload::PreloadSummary, signals::Softirqs};

/// The snapshot shared between the tick (writer) and the HTTP handlers (readers).
pub type SharedSnapshot = Arc<RwLock<Snapshot>>;

/// A new, empty shared snapshot.
pub fn shared() -> SharedSnapshot {
    Arc::new(RwLock::new(Snapshot::default()))
}

/// The daemon's view after one tick.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Ticks completed so far.
    pub ticks: u64,
    /// Wall-clock time of the tick (seconds since the epoch).
    pub taken_at_unix: f64,
    /// Monotonic time of the tick (for /healthz).
    #[serde(skip)]
    pub taken_at: Option<Instant>,
    /// Sampling interval in seconds.
    pub interval_secs: f64,
    /// Managed interfaces, in configuration order.
    pub interfaces: Vec<IfaceSnapshot>,
    /// NET_RX and NET_TX softirqs per CPU (machine-wide).
    pub softirqs: Option<Softirqs>,
    /// Whether the napi_poll tracepoint source is running.
    pub napi_poll_source: bool,
    /// `netmit daemon --dry-run`: decisions are only reported, nothing is changed.
    pub dry_run: bool,
    /// Applications of the namespace started by `netmit run` (their state files).
    pub preload: PreloadSummary,
}

/// One managed interface.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IfaceSnapshot {
    /// Interface name.
    pub device: String,
    /// Interface index (`None` while the interface does not exist).
    pub ifindex: Option<u32>,
    /// The controller's mode.
    pub mode: Mode,
    /// The most mitigating mode the controller may reach: the lower of the configured
    /// `max_mode` and what the kernel allows (no `suspend` without per-NAPI
    /// `irq-suspend-timeout`, Linux 6.13).
    pub max_mode: Mode,
    /// When the interface entered `mode` (seconds since the epoch; `None`: since start).
    pub mode_since_unix: Option<f64>,
    /// The last switch.
    pub last_transition: Option<TransitionView>,
    /// Switches since the daemon started.
    pub transitions: u64,
    /// XDP attachment.
    pub xdp: XdpView,
    /// The last sample given to the controller.
    pub sample: Option<SampleView>,
    /// NAPI instances with their poll counters and settings as read from the kernel.
    pub napis: Vec<NapiView>,
    /// Total hardware interrupts of the interface's IRQ lines (`None`: it has none).
    pub interrupts: Option<u64>,
    /// Whether settings go through the device-wide sysfs files (no per-NAPI netlink).
    pub sysfs_fallback: bool,
    /// The last error of this interface's tick, if the last tick had one.
    pub last_error: Option<String>,
    /// Settings someone else changed: netmit leaves them alone until a reload.
    pub external_overrides: Vec<OverrideView>,
}

/// A setting someone else changed after netmit set it.
#[derive(Clone, Debug, Serialize)]
pub struct OverrideView {
    /// NAPI id.
    pub napi_id: u32,
    /// The knob (`defer-hard-irqs`, ...).
    pub setting: &'static str,
    /// What netmit had set.
    pub netmit_value: u64,
    /// What it was changed to.
    pub value: u64,
}

/// A mode switch.
#[derive(Clone, Debug, Serialize)]
pub struct TransitionView {
    /// The mode left.
    pub from: Mode,
    /// The mode entered.
    pub to: Mode,
    /// The rule that fired (the `reason` label of `netmit_mode_switches_total`).
    pub rule: &'static str,
    /// The controller's reason, with its numbers against their thresholds.
    pub reason: String,
    /// What the switch put on the device.
    pub set: String,
    /// When (seconds since the epoch).
    pub at_unix: f64,
    /// Whether the new mode's settings were all applied.
    pub applied: bool,
}

/// XDP state of an interface.
#[derive(Clone, Debug, Default, Serialize)]
pub struct XdpView {
    /// What the configuration asks (`native`, `generic`, `auto`, `none`).
    pub configured: String,
    /// netmit's program is attached (its pins are live).
    pub attached: bool,
    /// The daemon attached it (and detaches it on exit unless told to keep it).
    pub attached_by_daemon: bool,
    /// Per RX queue, the frames and bytes of each verdict.
    pub queues: Vec<QueueView>,
}

/// The verdict counters of one RX queue.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueView {
    /// RX queue index.
    pub queue: u32,
    /// `(verdict, packets, bytes)` for every verdict.
    pub verdicts: Vec<VerdictCount>,
}

/// Frames and bytes of one verdict.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerdictCount {
    /// Verdict name (`pass`, `xsk`, ...).
    pub verdict: &'static str,
    /// Frames.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The rates the controller saw (see [`crate::control::Sample`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SampleView {
    /// Interval in seconds.
    pub interval_secs: f64,
    /// Packets per second.
    pub packets_per_sec: Option<f64>,
    /// NAPI polls per second.
    pub polls_per_sec: Option<f64>,
    /// Packets per poll.
    pub packets_per_poll: Option<f64>,
    /// Fraction of polls that used the whole budget.
    pub full_budget_fraction: Option<f64>,
    /// Hardware interrupts per second.
    pub irqs_per_sec: Option<f64>,
    /// NET_RX softirqs per second (all CPUs).
    pub net_rx_softirqs_per_sec: Option<f64>,
    /// Busy-polled packets per second (namespace-wide).
    pub busy_poll_packets_per_sec: Option<f64>,
    /// Transmitted packets per second.
    pub tx_packets_per_sec: Option<f64>,
}

impl From<&crate::control::Sample> for SampleView {
    fn from(s: &crate::control::Sample) -> Self {
        SampleView {
            interval_secs: s.interval.as_secs_f64(),
            packets_per_sec: s.packets_per_sec,
            polls_per_sec: s.polls_per_sec,
            packets_per_poll: s.packets_per_poll(),
            full_budget_fraction: s.full_budget_fraction,
            irqs_per_sec: s.irqs_per_sec,
            net_rx_softirqs_per_sec: s.net_rx_softirqs_per_sec,
            busy_poll_packets_per_sec: s.busy_poll_packets_per_sec,
            tx_packets_per_sec: s.tx_packets_per_sec,
        }
    }
}

/// One NAPI instance.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NapiView {
    /// NAPI id.
    pub napi_id: u32,
    /// Polls (cumulative, napi_poll tracepoint; `None` without the source).
    pub polls: Option<u64>,
    /// Packets processed by those polls.
    pub packets: Option<u64>,
    /// Polls that used the whole budget.
    pub budget_exhausted: Option<u64>,
    /// Polls that found no work.
    pub empty: Option<u64>,
    /// Polls by work: 0, 1, 2-3, 4-7, 8-15, 16-31, 32-63, 64+.
    pub work_hist: Option<[u64; netmit_common::NAPI_WORK_BUCKETS]>,
    /// defer-hard-irqs as read from the kernel.
    pub defer_hard_irqs: Option<u64>,
    /// gro-flush-timeout in nanoseconds.
    pub gro_flush_timeout_ns: Option<u64>,
    /// irq-suspend-timeout in nanoseconds.
    pub irq_suspend_timeout_ns: Option<u64>,
    /// threaded mode.
    pub threaded: Option<u64>,
}
