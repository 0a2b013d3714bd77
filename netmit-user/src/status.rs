//! `netmit status`: what netmit's program on each device counted (rules, per-queue
//! verdicts, rates over an interval) and what the daemon of this network namespace says
//! about the devices it manages.
//!
//! Gathering ([`gather`]) reads the pins and asks the daemon; rendering ([`render`]) is a
//! pure function of the [`Report`], so the text output is unit-tested without root. The
//! report's JSON form is `netmit status --json`.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use netmit_common::{Counter, QueueStats, Verdict};
use serde::Serialize;

use crate::{
    daemon::state::{self, StateFile},
    ebpf::{PinError, PinRoot, SteerTables, TableError},
    preload::{self, PreloadSummary, PreloadWatch},
    steer::compile::ranked,
    sys::{Netdev, NetdevError, bpf, link},
};

/// Errors gathering a status report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The device has no netmit attachment (and no daemon manages it).
    #[error("netmit is not attached to {iface}; run `netmit attach {iface}` first")]
    NotAttached {
        /// Interface name.
        iface: String,
    },
    /// Reading the pins needs privileges.
    #[error("reading netmit's maps needs root (CAP_BPF or CAP_SYS_ADMIN): run it with sudo")]
    NotPermitted,
    /// The pin directories.
    #[error(transparent)]
    Pins(#[from] PinError),
    /// The maps.
    #[error("reading the pins of {iface}")]
    Tables {
        /// Interface name.
        iface: String,
        /// The error.
        #[source]
        source: TableError,
    },
    /// A device.
    #[error(transparent)]
    Netdev(#[from] NetdevError),
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// One entry per device netmit is attached to (or the one asked for).
    pub interfaces: Vec<IfaceStatus>,
    /// The daemon of this namespace, if one runs.
    pub daemon: Option<DaemonView>,
    /// Applications of this namespace started by `netmit run` (their state files).
    pub preload: PreloadSummary,
    /// Why the preloaded applications' state files could not be read, if so.
    pub preload_error: Option<String>,
}

/// One device.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IfaceStatus {
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// Whether netmit's program is attached.
    pub attached: bool,
    /// Always true: the report covers the caller's namespace only (kept for scripts
    /// written against netmit 0.1).
    pub in_this_namespace: bool,
    /// XDP mode (`native`, `generic`), when attached.
    pub mode: Option<String>,
    /// Program id in the pinned link.
    pub prog_id: Option<u32>,
    /// Link id.
    pub link_id: Option<u32>,
    /// The program the kernel reports on the device.
    pub kernel_xdp_prog_id: Option<u32>,
    /// Active rule generation.
    pub generation: Option<u32>,
    /// Rules, best-ranked first.
    pub rules: Vec<RuleStatus>,
    /// Per RX queue verdict counters.
    pub queues: Vec<QueueStatus>,
    /// Length of the rate interval in seconds (0: totals only).
    pub interval_secs: f64,
    /// The daemon's mode for this device, if it manages it.
    pub daemon_mode: Option<String>,
}

/// One rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RuleStatus {
    /// Rule id.
    pub id: u16,
    /// The rule as written.
    pub rule: String,
    /// Its priority.
    pub prio: u16,
    /// Packets it matched.
    pub packets: u64,
    /// Bytes it matched.
    pub bytes: u64,
    /// Packets per second over the interval.
    pub pps: Option<f64>,
}

/// One RX queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueStatus {
    /// Queue index.
    pub queue: u32,
    /// By verdict name.
    pub verdicts: BTreeMap<String, VerdictStatus>,
}

/// Counters of one verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct VerdictStatus {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Packets per second.
    pub pps: Option<f64>,
    /// Bits per second.
    pub bps: Option<f64>,
}

/// What the daemon says.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DaemonView {
    /// Its pid.
    pub pid: u32,
    /// Its HTTP address.
    pub address: String,
    /// Its health (`None` when it could not be asked).
    pub healthy: Option<bool>,
    /// Why it could not be asked.
    pub error: Option<String>,
    /// The devices it manages.
    pub interfaces: Vec<DaemonIface>,
}

/// One device the daemon manages.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DaemonIface {
    /// Interface name.
    pub device: String,
    /// Mode.
    pub mode: String,
    /// Since when (seconds since the epoch).
    pub mode_since_unix: Option<f64>,
    /// The last switch, as the daemon reports it.
    pub last_transition: Option<serde_json::Value>,
    /// Switches so far.
    pub transitions: u64,
}

struct Sample {
    at: Instant,
    queues: BTreeMap<u32, QueueStats>,
    hits: BTreeMap<u16, Counter>,
}

fn sample(tables: &SteerTables, ids: &[u16]) -> Result<Sample, TableError> {
    Ok(Sample {
        at: Instant::now(),
        queues: tables
            .queue_counters(None)?
            .into_iter()
            .map(|q| (q.queue, q.stats))
            .collect(),
        hits: tables.rule_hits(ids.iter().copied())?,
    })
}

/// Gathers the report for `only` (or every device attached in the caller's namespace),
/// with rates over `interval` (zero: totals only).
///
/// # Errors
///
/// [`StatusError::NotAttached`] for a device that is neither attached nor managed by the
/// daemon; the errors of reading pins and maps.
pub fn gather(
    root: &PinRoot,
    run_dir: &Path,
    only: Option<&Netdev>,
    interval: Duration,
) -> Result<Report, StatusError> {
    // The pins are root's (mode 0700): say so rather than what the directory check finds.
    if !bpf::has_bpf_privileges() {
        return Err(StatusError::NotPermitted);
    }
    let netns = crate::sys::NetnsId::current().map_err(NetdevError::from)?;
    let daemon = daemon_view(&StateFile::new(run_dir, &netns), only);
    let managed = |dev: &Netdev| {
        daemon.as_ref().and_then(|d| {
            d.interfaces
                .iter()
                .find(|i| i.device == dev.name.as_str())
                .map(|i| i.mode.clone())
        })
    };
    let devs: Vec<Netdev> = match only {
        Some(dev) => vec![dev.clone()],
        None => root
            .attached(&netns)?
            .into_iter()
            .filter_map(|ifindex| Netdev::by_index(ifindex).ok())
            .collect(),
    };
    let mut interfaces = Vec::new();
    for dev in devs {
        let Some(layout) = root.find(&dev)? else {
            if let Some(mode) = managed(&dev) {
                interfaces.push(IfaceStatus {
                    iface: dev.name.to_string(),
                    ifindex: dev.ifindex,
                    in_this_namespace: true,
                    daemon_mode: Some(mode),
                    ..IfaceStatus::default()
                });
                continue;
            }
            return Err(StatusError::NotAttached {
                iface: dev.name.to_string(),
            });
        };
        let iface = dev.name.to_string();
        let tables_err = |source| StatusError::Tables {
            iface: iface.clone(),
            source,
        };
        let tables = SteerTables::from_pins(&layout).map_err(tables_err)?;
        let cfg = tables.config().map_err(tables_err)?;
        let rules = tables.rules().map_err(tables_err)?;
        let ids: Vec<u16> = rules.iter().map(|r| r.id).collect();
        let first = sample(&tables, &ids).map_err(tables_err)?;
        let last = if interval.is_zero() {
            None
        } else {
            std::thread::sleep(interval);
            Some(sample(&tables, &ids).map_err(tables_err)?)
        };
        let secs = last
            .as_ref()
            .map_or(0.0, |s| s.at.duration_since(first.at).as_secs_f64());
        let now = last.as_ref().unwrap_or(&first);
        let rate = |before: u64, after: u64| {
            last.as_ref()
                .map(|_| after.saturating_sub(before) as f64 / secs)
        };
        let link = bpf::pinned_link_info(&layout.link()).ok();
        let xdp = link::xdp_state(&dev).ok().flatten();
        let rule_rows = ranked(&rules)
            .iter()
            .map(|r| {
                let (b, a) = (first.hits[&r.id], now.hits[&r.id]);
                RuleStatus {
                    id: r.id,
                    rule: r.rule.to_string(),
                    prio: r.rule.prio,
                    packets: a.packets,
                    bytes: a.bytes,
                    pps: rate(b.packets, a.packets),
                }
            })
            .collect();
        let queue_rows = now
            .queues
            .iter()
            .map(|(q, stats)| {
                let before = first.queues.get(q).copied().unwrap_or_default();
                let verdicts = Verdict::ALL
                    .iter()
                    .map(|v| {
                        let (b, a) = (before.verdicts[*v as usize], stats.verdicts[*v as usize]);
                        let status = VerdictStatus {
                            packets: a.packets,
                            bytes: a.bytes,
                            pps: rate(b.packets, a.packets),
                            bps: rate(b.bytes, a.bytes).map(|r| r * 8.0),
                        };
                        (v.name().to_string(), status)
                    })
                    .collect();
                QueueStatus {
                    queue: *q,
                    verdicts,
                }
            })
            .collect();
        interfaces.push(IfaceStatus {
            iface,
            ifindex: dev.ifindex,
            attached: true,
            in_this_namespace: true,
            mode: Some(mode_name(cfg.attach_mode).into()),
            prog_id: link.map(|l| l.prog_id),
            link_id: link.map(|l| l.id),
            kernel_xdp_prog_id: xdp.map(|x| x.prog_id),
            generation: Some(cfg.active),
            rules: rule_rows,
            queues: queue_rows,
            interval_secs: secs,
            daemon_mode: managed(&dev),
        });
    }
    let (preload, preload_error) =
        match PreloadWatch::new(preload::state_dir(run_dir), Some(netns.inode)).refresh() {
            Ok(p) => (p, None),
            Err(e) => (PreloadSummary::default(), Some(crate::error::chain(&e))),
        };
    Ok(Report {
        interfaces,
        daemon,
        preload,
        preload_error,
    })
}

/// `native`, `generic` or `unknown` for the attachment mode stored in the config map.
pub fn mode_name(mode: u32) -> &'static str {
    use netmit_common::AttachMode;
    match mode {
        m if m == AttachMode::Native as u32 => "native",
        m if m == AttachMode::Generic as u32 => "generic",
        _ => "unknown",
    }
}

/// The running daemon's view (state file, then `GET /status`), for the devices asked
/// about; `None` when no daemon runs in this namespace.
fn daemon_view(file: &StateFile, only: Option<&Netdev>) -> Option<DaemonView> {
    let st = file.running()?;
    let mut view = DaemonView {
        pid: st.pid,
        address: st.metrics_address.clone(),
        ..DaemonView::default()
    };
    let status = match state::query_status(&st, Duration::from_millis(500)) {
        Ok(s) => s,
        Err(e) => {
            view.error = Some(crate::error::chain(&e));
            return Some(view);
        }
    };
    view.healthy = status["healthy"].as_bool();
    view.interfaces = status["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| only.is_none_or(|d| i["device"] == d.name.as_str()))
        .map(|i| DaemonIface {
            device: i["device"].as_str().unwrap_or_default().to_string(),
            mode: i["mode"].as_str().unwrap_or_default().to_string(),
            mode_since_unix: i["mode_since_unix"].as_f64(),
            last_transition: Some(i["last_transition"].clone()).filter(|v| !v.is_null()),
            transitions: i["transitions"].as_u64().unwrap_or(0),
        })
        .collect();
    Some(view)
}

/// A rate for people: `1.25M`, `12.3k`, `850`, or `-` without one.
pub fn fmt_rate(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(r) if r >= 1e6 => format!("{:.2}M", r / 1e6),
        Some(r) if r >= 1e3 => format!("{:.1}k", r / 1e3),
        Some(r) => format!("{r:.0}"),
    }
}

/// The report as text for people.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if report.interfaces.is_empty() {
        out.push_str("netmit is not attached to any interface in this network namespace\n");
    }
    for r in &report.interfaces {
        render_iface(&mut out, r);
    }
    if let Some(d) = &report.daemon {
        let _ = writeln!(out, "daemon (pid {}, http://{}):", d.pid, d.address);
        if let Some(e) = &d.error {
            let _ = writeln!(out, "  not reachable: {e}");
        }
        for i in &d.interfaces {
            let last = match &i.last_transition {
                None => String::new(),
                Some(t) => format!(
                    " (last switch {} -> {} [{}]: {}; set {})",
                    t["from"].as_str().unwrap_or("?"),
                    t["to"].as_str().unwrap_or("?"),
                    t["rule"].as_str().unwrap_or("?"),
                    t["reason"].as_str().unwrap_or(""),
                    t["set"].as_str().unwrap_or("?")
                ),
            };
            let since = i
                .mode_since_unix
                .map(|t| format!(" since {t:.0} (unix time)"))
                .unwrap_or_else(|| " since start".into());
            let _ = writeln!(out, "  {:<15} mode {}{since}{last}", i.device, i.mode);
        }
    }
    render_preload(&mut out, &report.preload);
    if let Some(e) = &report.preload_error {
        let _ = writeln!(out, "preloaded applications: not readable: {e}");
    }
    out
}

fn render_preload(out: &mut String, p: &PreloadSummary) {
    use std::fmt::Write;
    if p.list.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "preloaded applications (netmit run): {} process(es), {} busy-polling, {} epoll set(s), \
         {} mixed-NAPI",
        p.processes, p.busy_polling, p.epoll_sets, p.mixed_sets
    );
    for s in &p.list {
        let napis = if s.napi_ids.is_empty() {
            "no NAPI seen yet".to_string()
        } else {
            let ids: Vec<String> = s.napi_ids.iter().map(u32::to_string).collect();
            format!("NAPI {}", ids.join(" "))
        };
        let mixed = match s.mixed_sets {
            0 => String::new(),
            n => format!(
                "; {n} set(s) span several NAPIs: busy polling reaches one of them \
                 (one epoll set per RX queue with SO_REUSEPORT fixes it)"
            ),
        };
        let _ = writeln!(
            out,
            "  {} (pid {}): {}, busy-poll {} us, budget {}, prefer {}; {} epoll set(s), \
             {} socket(s), {napis}{mixed}",
            s.comm,
            s.pid,
            s.mechanism,
            s.busy_poll_usecs,
            s.busy_poll_budget,
            s.prefer_busy_poll,
            s.epoll_sets,
            s.sockets
        );
    }
}

fn render_iface(out: &mut String, r: &IfaceStatus) {
    use std::fmt::Write;
    let opt = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    if !r.attached {
        let _ = writeln!(
            out,
            "{} (ifindex {}): netmit's XDP program is not attached; the daemon manages it in mode {}",
            r.iface,
            r.ifindex,
            r.daemon_mode.as_deref().unwrap_or("?")
        );
        return;
    }
    let agree = r.prog_id == r.kernel_xdp_prog_id;
    let _ = writeln!(
        out,
        "{} (ifindex {}): {} XDP, program {}, link {}{}",
        r.iface,
        r.ifindex,
        r.mode.as_deref().unwrap_or("?"),
        opt(r.prog_id),
        opt(r.link_id),
        if agree {
            String::new()
        } else {
            format!(" (kernel reports program {})", opt(r.kernel_xdp_prog_id))
        }
    );
    if r.rules.is_empty() {
        out.push_str("  no rules: every packet goes to the kernel\n");
    } else {
        let _ = writeln!(out, "  {:>4} {:>12} {:>10}  rule", "id", "packets", "pps");
        for rule in &r.rules {
            let _ = writeln!(
                out,
                "  {:>4} {:>12} {:>10}  {}",
                rule.id,
                rule.packets,
                fmt_rate(rule.pps),
                rule.rule
            );
        }
    }
    for q in &r.queues {
        let _ = writeln!(out, "  queue {}:", q.queue);
        for (name, c) in &q.verdicts {
            if c.packets == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "    {:<13} {:>12} pkts {:>14} bytes {:>10} pps",
                name,
                c.packets,
                c.bytes,
                fmt_rate(c.pps)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attached() -> IfaceStatus {
        let mut verdicts = BTreeMap::new();
        verdicts.insert(
            "xsk".to_string(),
            VerdictStatus {
                packets: 2000,
                bytes: 128_000,
                pps: Some(1500.0),
                bps: Some(768_000.0),
            },
        );
        verdicts.insert("drop".to_string(), VerdictStatus::default());
        IfaceStatus {
            iface: "eth1".into(),
            ifindex: 7,
            attached: true,
            in_this_namespace: true,
            mode: Some("native".into()),
            prog_id: Some(42),
            link_id: Some(9),
            kernel_xdp_prog_id: Some(42),
            generation: Some(1),
            rules: vec![RuleStatus {
                id: 0,
                rule: "proto=udp,dport=9000,action=xsk".into(),
                prio: 1000,
                packets: 2000,
                bytes: 128_000,
                pps: Some(1_250_000.0),
            }],
            queues: vec![QueueStatus { queue: 0, verdicts }],
            interval_secs: 1.0,
            daemon_mode: None,
        }
    }

    #[test]
    fn renders_rules_queues_and_skips_empty_verdicts() {
        let text = render(&Report {
            interfaces: vec![attached()],
            daemon: None,
            ..Report::default()
        });
        assert_eq!(
            text,
            "eth1 (ifindex 7): native XDP, program 42, link 9\n\
             \x20   id      packets        pps  rule\n\
             \x20    0         2000      1.25M  proto=udp,dport=9000,action=xsk\n\
             \x20 queue 0:\n\
             \x20   xsk                   2000 pkts         128000 bytes       1.5k pps\n"
        );
        assert!(!text.contains("Some("), "no debug formatting");
    }

    #[test]
    fn a_program_mismatch_and_the_daemon_are_shown() {
        let mut i = attached();
        i.kernel_xdp_prog_id = Some(43);
        let managed = IfaceStatus {
            iface: "eth2".into(),
            ifindex: 8,
            in_this_namespace: true,
            daemon_mode: Some("defer".into()),
            ..IfaceStatus::default()
        };
        let text = render(&Report {
            interfaces: vec![i, managed],
            daemon: Some(DaemonView {
                pid: 99,
                address: "127.0.0.1:9464".into(),
                healthy: Some(true),
                error: None,
                interfaces: vec![DaemonIface {
                    device: "eth2".into(),
                    mode: "defer".into(),
                    mode_since_unix: Some(1_700_000_000.0),
                    last_transition: Some(serde_json::json!({
                        "from": "interrupt", "to": "defer", "rule": "load_high",
                        "reason": "packets 72000/s >= 20000/s", "set": "defer-hard-irqs=100 on napi 5"
                    })),
                    transitions: 1,
                }],
            }),
            ..Report::default()
        });
        assert!(text.contains("(kernel reports program 43)"), "{text}");
        assert!(
            text.contains("eth2 (ifindex 8): netmit's XDP program is not attached; the daemon manages it in mode defer"),
            "{text}"
        );
        assert!(
            text.contains(
                "eth2            mode defer since 1700000000 (unix time) (last switch interrupt -> \
                 defer [load_high]: packets 72000/s >= 20000/s; set defer-hard-irqs=100 on napi 5)"
            ),
            "{text}"
        );
    }

    #[test]
    fn preloaded_applications_are_listed_with_their_mixed_sets() {
        let proc_ = |pid: u32, comm: &str, mixed: u32, ids: Vec<u32>| preload::ProcessState {
            version: 1,
            pid,
            start_time: 1,
            comm: comm.into(),
            mechanism: "epoll-params".into(),
            busy_poll_usecs: 64,
            busy_poll_budget: 64,
            prefer_busy_poll: 1,
            epoll_sets: 1,
            sockets: 2,
            mixed_sets: mixed,
            napi_ids: ids,
            sets: Vec::new(),
        };
        let report = Report {
            preload: PreloadSummary::of(vec![
                proc_(10, "memcached", 1, vec![8193, 8194]),
                proc_(11, "redis-server", 0, vec![]),
            ]),
            ..Report::default()
        };
        let text = render(&report);
        assert!(
            text.contains(
                "preloaded applications (netmit run): 2 process(es), 2 busy-polling, 2 epoll set(s), 1 mixed-NAPI\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  memcached (pid 10): epoll-params, busy-poll 64 us, budget 64, prefer 1; 1 epoll set(s), 2 socket(s), NAPI 8193 8194; 1 set(s) span several NAPIs"),
            "{text}"
        );
        assert!(
            text.contains("redis-server (pid 11)") && text.contains("no NAPI seen yet"),
            "{text}"
        );
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["preload"]["processes"], 2);
        assert_eq!(v["preload"]["mixed_sets"], 1);
        assert_eq!(v["preload"]["list"][0]["comm"], "memcached");
        assert!(v["preload_error"].is_null());
        // Nothing preloaded: no section.
        assert!(!render(&Report::default()).contains("preloaded"));
    }

    #[test]
    fn empty_report_and_rates() {
        assert_eq!(
            render(&Report::default()),
            "netmit is not attached to any interface in this network namespace\n"
        );
        assert_eq!(fmt_rate(None), "-");
        assert_eq!(fmt_rate(Some(850.0)), "850");
        assert_eq!(fmt_rate(Some(12_345.0)), "12.3k");
    }

    #[test]
    fn json_keeps_the_field_names_scripts_use() {
        let v = serde_json::to_value(Report {
            interfaces: vec![attached()],
            daemon: None,
            ..Report::default()
        })
        .unwrap();
        let i = &v["interfaces"][0];
        for key in [
            "iface",
            "ifindex",
            "mode",
            "prog_id",
            "link_id",
            "kernel_xdp_prog_id",
            "generation",
            "rules",
            "queues",
            "interval_secs",
            "daemon_mode",
            "in_this_namespace",
        ] {
            assert!(i.get(key).is_some(), "{key}");
        }
        assert_eq!(i["queues"][0]["verdicts"]["xsk"]["pps"], 1500.0);
        assert!(v["daemon"].is_null());
    }
}
