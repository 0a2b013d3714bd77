//! The collector of kernel-mirrored counters: formats the last published [`Snapshot`]
//! at scrape time and does nothing else (no system call, no allocation beyond the labels).

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use super::snapshot::{SharedSnapshot, Snapshot};

/// Upper bounds of the napi_poll work histogram buckets (`netmit_common::napi_work_bucket`:
/// 0, 1, 2-3, 4-7, 8-15, 16-31, 32-63, 64+).
pub const WORK_BUCKET_BOUNDS: [f64; netmit_common::NAPI_WORK_BUCKETS] =
    [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, f64::INFINITY];

/// Exports the kernel counters of the snapshot the last tick published.
#[derive(Debug)]
pub struct SnapshotCollector {
    snapshot: SharedSnapshot,
}

impl SnapshotCollector {
    /// A collector over `snapshot`.
    pub fn new(snapshot: SharedSnapshot) -> Self {
        SnapshotCollector { snapshot }
    }
}

type Labels<'a> = Vec<(&'static str, String)>;

fn family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    rows: impl IntoIterator<Item = (Labels<'a>, Value)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in rows {
        let enc = metric.encode_family(&labels)?;
        value.encode(enc)?;
    }
    Ok(())
}

enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

impl Value {
    fn encode(self, mut enc: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Value::Counter(v) => ConstCounter::new(v).encode(enc),
            Value::Gauge(v) => ConstGauge::new(v).encode(enc),
            Value::Histogram {
                sum,
                count,
                buckets,
            } => enc.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            ),
        }
    }
}

fn encode_snapshot(s: &Snapshot, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let dev = |d: &str| ("device", d.to_string());
    let xdp_rows = |bytes: bool| {
        s.interfaces.iter().flat_map(move |i| {
            i.xdp.queues.iter().flat_map(move |q| {
                q.verdicts.iter().map(move |v| {
                    (
                        vec![
                            dev(&i.device),
                            ("queue", q.queue.to_string()),
                            ("verdict", v.verdict.to_string()),
                        ],
                        Value::Counter(if bytes { v.bytes } else { v.packets }),
                    )
                })
            })
        })
    };
    family(
        encoder,
        "netmit_xdp_packets",
        "Frames by steering verdict (netmit's XDP program counters)",
        MetricType::Counter,
        xdp_rows(false),
    )?;
    family(
        encoder,
        "netmit_xdp_bytes",
        "Bytes of the frames by steering verdict",
        MetricType::Counter,
        xdp_rows(true),
    )?;

    let napis = || {
        s.interfaces
            .iter()
            .flat_map(|i| i.napis.iter().map(move |n| (i.device.as_str(), n)))
    };
    let napi_labels = |d: &str, id: u32| vec![dev(d), ("napi_id", id.to_string())];
    type Field = fn(&super::snapshot::NapiView) -> Option<u64>;
    let counters: [(&str, &str, Field); 4] = [
        (
            "netmit_napi_polls",
            "NAPI polls (napi:napi_poll tracepoint)",
            |n| n.polls,
        ),
        (
            "netmit_napi_packets",
            "Packets processed by those polls (sum of work)",
            |n| n.packets,
        ),
        (
            "netmit_napi_budget_exhausted_polls",
            "NAPI polls that used the whole budget",
            |n| n.budget_exhausted,
        ),
        (
            "netmit_napi_empty_polls",
            "NAPI polls that found no work",
            |n| n.empty,
        ),
    ];
    for (name, help, field) in counters {
        family(
            encoder,
            name,
            help,
            MetricType::Counter,
            napis()
                .filter_map(|(d, n)| Some((napi_labels(d, n.napi_id), Value::Counter(field(n)?)))),
        )?;
    }
    family(
        encoder,
        "netmit_napi_work_per_poll",
        "Packets per NAPI poll",
        MetricType::Histogram,
        napis().filter_map(|(d, n)| {
            let hist = n.work_hist?;
            Some((
                napi_labels(d, n.napi_id),
                Value::Histogram {
                    sum: n.packets? as f64,
                    count: hist.iter().sum(),
                    buckets: WORK_BUCKET_BOUNDS.iter().copied().zip(hist).collect(),
                },
            ))
        }),
    )?;
    family(
        encoder,
        "netmit_interrupts",
        "Hardware interrupts of the device's IRQ lines (/proc/interrupts)",
        MetricType::Counter,
        s.interfaces
            .iter()
            .filter_map(|i| Some((vec![dev(&i.device)], Value::Counter(i.interrupts?)))),
    )?;
    let softirq_rows = s.softirqs.iter().flat_map(|si| {
        let rx = si
            .net_rx
            .iter()
            .enumerate()
            .map(|(cpu, v)| (cpu, "net_rx", *v));
        let tx = si
            .net_tx
            .iter()
            .enumerate()
            .map(|(cpu, v)| (cpu, "net_tx", *v));
        rx.chain(tx).map(|(cpu, kind, v)| {
            (
                vec![("cpu", cpu.to_string()), ("kind", kind.to_string())],
                Value::Counter(v),
            )
        })
    });
    family(
        encoder,
        "netmit_softirqs",
        "Network softirqs per CPU (/proc/softirqs)",
        MetricType::Counter,
        softirq_rows,
    )?;
    let setting_rows = napis().flat_map(|(d, n)| {
        let settings: [(&str, Option<f64>); 4] = [
            ("defer_hard_irqs", n.defer_hard_irqs.map(|v| v as f64)),
            (
                "gro_flush_timeout_seconds",
                n.gro_flush_timeout_ns.map(|v| v as f64 / 1e9),
            ),
            (
                "irq_suspend_timeout_seconds",
                n.irq_suspend_timeout_ns.map(|v| v as f64 / 1e9),
            ),
            ("threaded", n.threaded.map(|v| v as f64)),
        ];
        settings.into_iter().filter_map(move |(setting, v)| {
            let mut labels = napi_labels(d, n.napi_id);
            labels.push(("setting", setting.to_string()));
            Some((labels, Value::Gauge(v?)))
        })
    });
    family(
        encoder,
        "netmit_napi_setting",
        "Current per-NAPI settings as read from the kernel (seconds for timeouts)",
        MetricType::Gauge,
        setting_rows,
    )?;
    encode_preload(&s.preload, encoder)
}

/// Applications started by `netmit run` (the library's state files, read by the tick).
fn encode_preload(
    p: &crate::preload::PreloadSummary,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let totals: [(&str, &str, u32); 5] = [
        (
            "netmit_preload_processes",
            "Live processes running with libnetmit_preload.so (netmit run) in this namespace",
            p.processes,
        ),
        (
            "netmit_preload_busy_polling_processes",
            "Those the library made busy-poll",
            p.busy_polling,
        ),
        (
            "netmit_preload_epoll_sets",
            "Epoll sets the library configured, all preloaded processes",
            p.epoll_sets,
        ),
        (
            "netmit_preload_sockets",
            "Sockets in those epoll sets",
            p.sockets,
        ),
        (
            "netmit_preload_mixed_napi_sets",
            "Epoll sets whose sockets several NAPI instances served (busy polling reaches one)",
            p.mixed_sets,
        ),
    ];
    for (name, help, v) in totals {
        family(
            encoder,
            name,
            help,
            MetricType::Gauge,
            [(Vec::new(), Value::Gauge(f64::from(v)))],
        )?;
    }
    family(
        encoder,
        "netmit_preload_napi_epoll_sets",
        "Preloaded epoll sets with a socket that this NAPI instance served",
        MetricType::Gauge,
        p.napi_sets.iter().map(|(id, n)| {
            (
                vec![("napi_id", id.to_string())],
                Value::Gauge(f64::from(*n)),
            )
        }),
    )?;
    Ok(())
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A writer that panicked left a whole snapshot (it only swaps): keep serving it.
        let snapshot = self.snapshot.read().unwrap_or_else(|p| p.into_inner());
        encode_snapshot(&snapshot, &mut encoder)
    }
}
