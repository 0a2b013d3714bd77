//! What `netmit top` shows, computed from two readings of the same sources `netmit
//! status` and the daemon's metrics use: netmit's per-queue verdict counters (pins), the
//! daemon's view of its interfaces (mode, since when, last switch), the NAPI instances
//! with their settings (netdev netlink), the napi_poll tracepoint counters and
//! BusyPollRxPackets. Pure apart from [`Reading::take`], so the table is unit-tested.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use netmit_common::{NapiPollCounters, Verdict};
use netmit_user::{
    ebpf::PinRoot,
    signals::{NapiPollSource, napi_poll_rates},
    status::{self, Report, fmt_rate},
    sys::{Netdev, napi::NapiInfo},
    tune::journal,
};

/// One reading of every source.
#[derive(Clone, Debug)]
pub struct Reading {
    pub at: Instant,
    pub report: Report,
    /// NAPI instances by interface name.
    pub napis: BTreeMap<String, Vec<NapiInfo>>,
    /// napi_poll counters by NAPI id (`None`: no tracepoint source).
    pub polls: Option<BTreeMap<u32, NapiPollCounters>>,
    /// `TcpExt: BusyPollRxPackets` of this namespace.
    pub busy_poll: Option<u64>,
}

impl Reading {
    /// Reads everything once (totals; rates come from two readings).
    pub fn take(only: Option<&Netdev>, source: Option<&NapiPollSource>) -> anyhow::Result<Reading> {
        let report = status::gather(
            &PinRoot::default(),
            &journal::run_dir(),
            only,
            Duration::ZERO,
        )?;
        let mut napis = BTreeMap::new();
        for name in names(&report) {
            if let Ok(dev) = Netdev::resolve(&name.parse()?) {
                napis.insert(name, netmit_user::sys::napi::list(&dev).unwrap_or_default());
            }
        }
        let polls = source.and_then(|s| s.snapshot().ok());
        let busy_poll = std::fs::read_to_string("/proc/net/netstat")
            .ok()
            .and_then(|t| netmit_user::daemon::sample::parse_busy_poll_rx_packets(&t));
        Ok(Reading {
            at: Instant::now(),
            report,
            napis,
            polls,
            busy_poll,
        })
    }
}

/// Interface names in a report: attached ones and the daemon's.
fn names(report: &Report) -> Vec<String> {
    let mut v: Vec<String> = report.interfaces.iter().map(|i| i.iface.clone()).collect();
    if let Some(d) = &report.daemon {
        v.extend(d.interfaces.iter().map(|i| i.device.clone()));
    }
    v.sort();
    v.dedup();
    v
}

/// The column the interfaces are sorted by (`s` cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    Name,
    Packets,
    Polls,
}

impl SortKey {
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Name => SortKey::Packets,
            SortKey::Packets => SortKey::Polls,
            SortKey::Polls => SortKey::Name,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Packets => "packets/s",
            SortKey::Polls => "polls/s",
        }
    }
}

/// How to show the table.
#[derive(Clone, Debug)]
pub struct View {
    pub sort: SortKey,
    /// Only interfaces whose name contains this.
    pub filter: String,
}

/// The verdicts shown as columns (per second).
const VERDICTS: [Verdict; 4] = [
    Verdict::Unmatched,
    Verdict::Pass,
    Verdict::Drop,
    Verdict::Xsk,
];

pub const HEADER: [&str; 12] = [
    "IFACE/NAPI",
    "MODE",
    "SINCE",
    "PKT/S",
    "POLL/S",
    "PKT/POLL",
    "UNMATCHED/S",
    "PASS/S",
    "DROP/S",
    "XSK/S",
    "SETTINGS",
    "LAST SWITCH",
];

/// A computed frame: a title line and the table's rows (cells as strings).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frame {
    pub title: String,
    pub rows: Vec<Vec<String>>,
    /// Per interface (sorted and filtered) its packets/s, for tests and sorting.
    pub iface_pps: Vec<(String, Option<f64>)>,
}

fn ago(unix: Option<f64>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    match unix {
        None => "-".into(),
        Some(t) => {
            let s = (now - t).max(0.0) as u64;
            match s {
                0..60 => format!("{s}s ago"),
                60..3600 => format!("{}m{:02}s ago", s / 60, s % 60),
                _ => format!("{}h{:02}m ago", s / 3600, (s % 3600) / 60),
            }
        }
    }
}

/// The mode a NAPI's settings stand for (what the daemon's modes set).
fn settings_mode(n: &NapiInfo) -> &'static str {
    if n.irq_suspend_timeout_ns.unwrap_or(0) > 0 {
        "suspend"
    } else if n.defer_hard_irqs.unwrap_or(0) > 0 {
        "defer"
    } else {
        "interrupt"
    }
}

fn settings(n: &NapiInfo) -> String {
    let v = |x: Option<u64>| x.map_or("-".to_string(), |x| x.to_string());
    format!(
        "defer={} gro={}ns suspend={}ns{}",
        v(n.defer_hard_irqs.map(u64::from)),
        v(n.gro_flush_timeout_ns),
        v(n.irq_suspend_timeout_ns),
        if n.threaded.unwrap_or(0) > 0 {
            " threaded"
        } else {
            ""
        }
    )
}

fn rate(before: Option<u64>, after: Option<u64>, secs: f64) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if a >= b && secs > 0.0 => Some((a - b) as f64 / secs),
        _ => None,
    }
}

/// Verdict packet totals of one interface by (queue, verdict name).
fn verdict_totals(r: &Reading, iface: &str) -> BTreeMap<(u32, String), u64> {
    r.report
        .interfaces
        .iter()
        .filter(|i| i.iface == iface)
        .flat_map(|i| i.queues.iter())
        .flat_map(|q| {
            q.verdicts
                .iter()
                .map(|(v, s)| ((q.queue, v.clone()), s.packets))
        })
        .collect()
}

/// Builds the frame from two readings (`before` older).
pub fn frame(before: &Reading, after: &Reading, view: &View) -> Frame {
    let secs = after.at.duration_since(before.at).as_secs_f64();
    let napi_rates = match (&before.polls, &after.polls) {
        (Some(b), Some(a)) => Some(napi_poll_rates(b, a, after.at.duration_since(before.at))),
        _ => None,
    };
    let busy = rate(before.busy_poll, after.busy_poll, secs);
    let daemon = after.report.daemon.as_ref();
    let title = format!(
        "netmit top: {} s interval; busy-polled packets/s (this namespace): {}; polls: {}; daemon: {}; sort: {}{}",
        format_args!("{secs:.1}"),
        fmt_rate(busy),
        if napi_rates.is_some() {
            "napi_poll tracepoint"
        } else {
            "unavailable (needs the napi_poll tracepoint: run as root)"
        },
        match daemon {
            None => "not running".to_string(),
            Some(d) => match &d.error {
                Some(e) => format!("pid {} not answering ({e})", d.pid),
                None => format!("pid {} on {}", d.pid, d.address),
            },
        },
        view.sort.name(),
        if view.filter.is_empty() {
            String::new()
        } else {
            format!("; filter: {}", view.filter)
        },
    );

    struct Iface {
        name: String,
        pps: Option<f64>,
        polls: Option<f64>,
        rows: Vec<Vec<String>>,
    }
    let mut ifaces = Vec::new();
    for name in names(&after.report) {
        if !name.contains(&view.filter) {
            continue;
        }
        let status = after.report.interfaces.iter().find(|i| i.iface == name);
        let managed = daemon.and_then(|d| d.interfaces.iter().find(|i| i.device == name));
        let (b, a) = (verdict_totals(before, &name), verdict_totals(after, &name));
        let attached = status.is_some_and(|s| s.attached);
        let vrate = |queue: Option<u32>, verdict: &str| -> Option<f64> {
            if !attached {
                return None;
            }
            let sum = |m: &BTreeMap<(u32, String), u64>| {
                m.iter()
                    .filter(|((q, v), _)| v == verdict && queue.is_none_or(|x| x == *q))
                    .map(|(_, n)| *n)
                    .sum::<u64>()
            };
            rate(Some(sum(&b)), Some(sum(&a)), secs)
        };
        let xdp_pps = attached.then(|| {
            Verdict::ALL
                .iter()
                .filter_map(|v| vrate(None, v.name()))
                .sum::<f64>()
        });
        let napis = after.napis.get(&name).cloned().unwrap_or_default();
        let napi_row_rates: Vec<_> = napis
            .iter()
            .map(|n| napi_rates.as_ref().and_then(|r| r.get(&n.id)).cloned())
            .collect();
        let poll_sum = napi_rates.as_ref().map(|_| {
            napi_row_rates
                .iter()
                .flatten()
                .map(|r| r.polls_per_sec)
                .sum::<f64>()
        });
        let napi_pps = napi_rates.as_ref().map(|_| {
            napi_row_rates
                .iter()
                .flatten()
                .map(|r| r.packets_per_sec)
                .sum::<f64>()
        });
        let pps = xdp_pps.or(napi_pps);
        let ppp = match (napi_pps, poll_sum) {
            (Some(p), Some(q)) if q > 0.0 => format!("{:.1}", p / q),
            _ => "-".into(),
        };
        let mode = match (managed, status.and_then(|s| s.mode.as_ref())) {
            (Some(m), _) => m.mode.clone(),
            (None, _) => napis
                .first()
                .map_or("-".into(), |n| format!("{} (settings)", settings_mode(n))),
        };
        let xdp = status
            .and_then(|s| s.mode.clone())
            .map_or(String::new(), |m| format!("xdp {m}"));
        let last = managed
            .and_then(|m| m.last_transition.as_ref())
            .map_or("-".to_string(), |t| {
                format!(
                    "{} -> {}: {}",
                    t["from"].as_str().unwrap_or("?"),
                    t["to"].as_str().unwrap_or("?"),
                    t["reason"].as_str().unwrap_or("")
                )
            });
        let mut rows = vec![vec![
            name.clone(),
            mode,
            ago(managed.and_then(|m| m.mode_since_unix)),
            fmt_rate(pps),
            fmt_rate(poll_sum),
            ppp,
            fmt_rate(vrate(None, Verdict::Unmatched.name())),
            fmt_rate(vrate(None, Verdict::Pass.name())),
            fmt_rate(vrate(None, Verdict::Drop.name())),
            fmt_rate(vrate(None, Verdict::Xsk.name())),
            xdp,
            last,
        ]];
        for (n, r) in napis.iter().zip(&napi_row_rates) {
            let r = r.as_ref();
            rows.push(vec![
                format!("  napi {}", n.id),
                settings_mode(n).into(),
                "-".into(),
                fmt_rate(r.map(|r| r.packets_per_sec)),
                fmt_rate(r.map(|r| r.polls_per_sec)),
                r.filter(|r| r.polls > 0)
                    .map_or("-".into(), |r| format!("{:.1}", r.packets_per_poll)),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                settings(n),
                String::new(),
            ]);
        }
        // Steered flows per queue: the xsk verdicts of each RX queue.
        let queues: Vec<u32> = status
            .map(|s| s.queues.iter().map(|q| q.queue).collect())
            .unwrap_or_default();
        for q in queues {
            let cells: Vec<String> = VERDICTS
                .iter()
                .map(|v| fmt_rate(vrate(Some(q), v.name())))
                .collect();
            let total = Verdict::ALL
                .iter()
                .filter_map(|v| vrate(Some(q), v.name()))
                .sum::<f64>();
            let mut row = vec![
                format!("  queue {q}"),
                String::new(),
                String::new(),
                fmt_rate(Some(total)),
                String::new(),
                String::new(),
            ];
            row.extend(cells);
            row.extend([String::new(), String::new()]);
            rows.push(row);
        }
        ifaces.push(Iface {
            name,
            pps,
            polls: poll_sum,
            rows,
        });
    }
    match view.sort {
        SortKey::Name => ifaces.sort_by(|a, b| a.name.cmp(&b.name)),
        SortKey::Packets => {
            ifaces.sort_by(|a, b| b.pps.unwrap_or(-1.0).total_cmp(&a.pps.unwrap_or(-1.0)))
        }
        SortKey::Polls => {
            ifaces.sort_by(|a, b| b.polls.unwrap_or(-1.0).total_cmp(&a.polls.unwrap_or(-1.0)))
        }
    }
    Frame {
        title,
        iface_pps: ifaces.iter().map(|i| (i.name.clone(), i.pps)).collect(),
        rows: ifaces.into_iter().flat_map(|i| i.rows).collect(),
    }
}

/// The frame as plain text (`--once`), columns padded to their widest cell.
pub fn render_text(f: &Frame) -> String {
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for row in &f.rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = format!("{}\n", f.title);
    out.push_str(&line(HEADER.to_vec()));
    out.push('\n');
    for row in &f.rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    if f.rows.is_empty() {
        out.push_str(
            "(no interface: netmit is attached nowhere in this namespace and no daemon runs)\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmit_user::status::{IfaceStatus, QueueStatus, VerdictStatus};

    fn reading(at: Instant, xsk_packets: u64, polls: u64, packets: u64) -> Reading {
        let mut verdicts = BTreeMap::new();
        for v in Verdict::ALL {
            let n = if v == Verdict::Xsk { xsk_packets } else { 0 };
            verdicts.insert(
                v.name().to_string(),
                VerdictStatus {
                    packets: n,
                    bytes: n * 64,
                    pps: None,
                    bps: None,
                },
            );
        }
        let report = Report {
            interfaces: vec![IfaceStatus {
                iface: "veth1".into(),
                attached: true,
                mode: Some("native".into()),
                queues: vec![QueueStatus { queue: 0, verdicts }],
                ..IfaceStatus::default()
            }],
            daemon: None,
            preload: Default::default(),
            preload_error: None,
        };
        let napi = NapiInfo {
            id: 8193,
            ifindex: 5,
            irq: None,
            pid: None,
            defer_hard_irqs: Some(100),
            gro_flush_timeout_ns: Some(200_000),
            irq_suspend_timeout_ns: Some(0),
            threaded: Some(0),
            rx_queues: vec![],
            tx_queues: vec![],
        };
        let counters = NapiPollCounters {
            ifindex: 5,
            polls,
            packets,
            ..NapiPollCounters::default()
        };
        Reading {
            at,
            report,
            napis: [("veth1".to_string(), vec![napi])].into(),
            polls: Some([(8193, counters)].into()),
            busy_poll: Some(packets),
        }
    }

    #[test]
    fn rates_per_interface_napi_and_queue() {
        let t0 = Instant::now();
        let a = reading(t0, 1000, 10, 1000);
        let b = reading(t0 + Duration::from_secs(2), 21_000, 110, 21_000);
        let view = View {
            sort: SortKey::Name,
            filter: String::new(),
        };
        let f = frame(&a, &b, &view);
        assert_eq!(f.iface_pps, vec![("veth1".to_string(), Some(10_000.0))]);
        let text = render_text(&f);
        assert!(
            text.contains("busy-polled packets/s (this namespace): 10.0k"),
            "{text}"
        );
        let iface = text.lines().find(|l| l.starts_with("veth1")).unwrap();
        // packets/s, polls/s (100 polls / 2 s), packets per poll, xsk/s.
        for want in ["defer (settings)", "10.0k", "50", "200.0", "xdp native"] {
            assert!(iface.contains(want), "`{want}` not in `{iface}`");
        }
        let napi = text.lines().find(|l| l.contains("napi 8193")).unwrap();
        assert!(napi.contains("defer=100 gro=200000ns"), "{napi}");
        let queue = text.lines().find(|l| l.contains("queue 0")).unwrap();
        assert!(queue.contains("10.0k"), "{queue}");
        assert!(!text.contains("Some(") && !text.contains("None"), "{text}");
        let hidden = frame(
            &a,
            &b,
            &View {
                sort: SortKey::Packets,
                filter: "lo".into(),
            },
        );
        assert!(hidden.rows.is_empty());
    }

    #[test]
    fn a_counter_that_went_back_has_no_rate() {
        let t0 = Instant::now();
        let a = reading(t0, 5000, 10, 5000);
        let b = reading(t0 + Duration::from_secs(1), 100, 20, 100);
        let f = frame(
            &a,
            &b,
            &View {
                sort: SortKey::Name,
                filter: String::new(),
            },
        );
        let queue = f.rows.iter().find(|r| r[0].contains("queue 0")).unwrap();
        assert_eq!(queue[9], "-");
    }
}
