//! Exposition tests: every documented name is exported after registering and publishing
//! a synthetic snapshot, in both formats, and `promtool check metrics` accepts the text.

use std::{io::Write, process::Stdio, time::Duration};

use super::{
    snapshot::{IfaceSnapshot, NapiView, QueueView, VerdictCount, XdpView},
    *,
};
use crate::signals::Softirqs;

/// The names of docs/metrics.md (the table's first column), kept here as well so the test
/// does not depend on a file that is written elsewhere.
const DOCUMENTED: &[&str] = &[
    "netmit_build_info",
    "netmit_xdp_packets_total",
    "netmit_xdp_bytes_total",
    "netmit_napi_polls_total",
    "netmit_napi_packets_total",
    "netmit_napi_budget_exhausted_polls_total",
    "netmit_napi_empty_polls_total",
    "netmit_napi_work_per_poll",
    "netmit_interrupts_total",
    "netmit_softirqs_total",
    "netmit_mode",
    "netmit_mode_transitions_total",
    "netmit_mode_switches_total",
    "netmit_external_override",
    "netmit_napi_setting",
    "netmit_daemon_ticks_total",
    "netmit_daemon_tick_duration_seconds",
    "netmit_errors_total",
    "netmit_config_reloads_total",
    "netmit_preload_processes",
    "netmit_preload_busy_polling_processes",
    "netmit_preload_epoll_sets",
    "netmit_preload_sockets",
    "netmit_preload_mixed_napi_sets",
    "netmit_preload_napi_epoll_sets",
];

/// Metric names in the first column of the table in docs/metrics.md, if the file is there.
fn names_in_docs() -> Option<Vec<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter(|n| n.starts_with("netmit_"))
            .map(str::to_string)
            .collect(),
    )
}

fn synthetic() -> (Exposition, Metrics) {
    let shared = snapshot::shared();
    let (expo, metrics) = Exposition::new(shared.clone());
    metrics.set_mode("veth0", Mode::Interrupt);
    metrics.record_transition("veth0", Mode::Interrupt, Mode::Defer);
    metrics.record_switch(
        "veth0",
        "all",
        Mode::Interrupt,
        Mode::Defer,
        crate::control::Rule::LoadHigh,
    );
    metrics.set_override("veth0", 8193, "gro-flush-timeout", true);
    metrics.observe_tick(Duration::from_micros(800));
    metrics.count_error(ErrorKind::Apply);
    metrics.count_reload(true);
    let mut hist = [0u64; netmit_common::NAPI_WORK_BUCKETS];
    hist[1] = 90;
    hist[7] = 10;
    *shared.write().unwrap() = Snapshot {
        ticks: 1,
        interfaces: vec![IfaceSnapshot {
            device: "veth0".into(),
            ifindex: Some(7),
            mode: Mode::Defer,
            max_mode: Mode::Suspend,
            xdp: XdpView {
                configured: "native".into(),
                attached: true,
                attached_by_daemon: true,
                queues: vec![QueueView {
                    queue: 0,
                    verdicts: vec![
                        VerdictCount {
                            verdict: "pass",
                            packets: 100,
                            bytes: 6_400,
                        },
                        VerdictCount {
                            verdict: "xsk",
                            packets: 5,
                            bytes: 320,
                        },
                    ],
                }],
            },
            napis: vec![NapiView {
                napi_id: 8193,
                polls: Some(100),
                packets: Some(90 + 640),
                budget_exhausted: Some(10),
                empty: Some(0),
                work_hist: Some(hist),
                defer_hard_irqs: Some(100),
                gro_flush_timeout_ns: Some(200_000),
                irq_suspend_timeout_ns: Some(0),
                threaded: Some(0),
            }],
            interrupts: Some(12_345),
            ..Default::default()
        }],
        softirqs: Some(Softirqs {
            net_rx: vec![10, 20],
            net_tx: vec![1, 2],
        }),
        preload: crate::preload::PreloadSummary {
            processes: 2,
            busy_polling: 1,
            epoll_sets: 3,
            sockets: 5,
            mixed_sets: 1,
            napi_sets: [(8193, 2), (8194, 1)].into(),
            list: Vec::new(),
        },
        ..Default::default()
    };
    (expo, metrics)
}

/// Names that have a `# TYPE` line (histograms and counters by their family name).
fn exported(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn has_series(text: &str, name: &str) -> bool {
    let names = exported(text);
    names.iter().any(|n| {
        n == name
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| n.strip_suffix(s) == Some(name))
    })
}

#[test]
fn every_documented_name_is_exported() {
    let (expo, _) = synthetic();
    let (text, ctype) = expo.encode(false);
    assert_eq!(ctype, PROMETHEUS_TEXT);
    let (om, octype) = expo.encode(true);
    assert_eq!(octype, OPENMETRICS_TEXT);
    assert!(om.ends_with("# EOF\n"), "{om}");
    let mut wanted: Vec<String> = DOCUMENTED.iter().map(|s| s.to_string()).collect();
    if let Some(docs) = names_in_docs() {
        assert_eq!(
            docs, wanted,
            "docs/metrics.md and this test disagree on the metric names"
        );
        wanted = docs;
    }
    for name in &wanted {
        assert!(has_series(&text, name), "{name} missing from:\n{text}");
        // OpenMetrics names counters' families without `_total`, the samples with it.
        assert!(
            has_series(&om, name),
            "{name} missing from OpenMetrics:\n{om}"
        );
    }
    // Nothing exported that is not documented.
    for name in exported(&text) {
        assert!(
            wanted.iter().any(|w| name == *w
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(w.as_str()))),
            "undocumented metric {name}"
        );
    }
}

#[test]
fn values_are_the_snapshot_and_the_semantic_methods() {
    let (expo, metrics) = synthetic();
    let (text, _) = expo.encode(false);
    for line in [
        "netmit_build_info{version=\"",
        "netmit_xdp_packets_total{device=\"veth0\",queue=\"0\",verdict=\"pass\"} 100",
        "netmit_xdp_bytes_total{device=\"veth0\",queue=\"0\",verdict=\"xsk\"} 320",
        "netmit_napi_polls_total{device=\"veth0\",napi_id=\"8193\"} 100",
        "netmit_napi_budget_exhausted_polls_total{device=\"veth0\",napi_id=\"8193\"} 10",
        "netmit_napi_work_per_poll_bucket{device=\"veth0\",napi_id=\"8193\",le=\"0\"} 0",
        "netmit_napi_work_per_poll_bucket{device=\"veth0\",napi_id=\"8193\",le=\"1\"} 90",
        "netmit_napi_work_per_poll_bucket{device=\"veth0\",napi_id=\"8193\",le=\"63\"} 90",
        "netmit_napi_work_per_poll_bucket{device=\"veth0\",napi_id=\"8193\",le=\"+Inf\"} 100",
        "netmit_napi_work_per_poll_count{device=\"veth0\",napi_id=\"8193\"} 100",
        "netmit_interrupts_total{device=\"veth0\"} 12345",
        "netmit_softirqs_total{cpu=\"1\",kind=\"net_rx\"} 20",
        "netmit_mode{device=\"veth0\",mode=\"defer\"} 1",
        "netmit_mode{device=\"veth0\",mode=\"interrupt\"} 0",
        "netmit_mode_transitions_total{device=\"veth0\",from=\"interrupt\",to=\"defer\"} 1",
        "netmit_napi_setting{device=\"veth0\",napi_id=\"8193\",setting=\"gro_flush_timeout_seconds\"} 0.0002",
        "netmit_napi_setting{device=\"veth0\",napi_id=\"8193\",setting=\"defer_hard_irqs\"} 100",
        "netmit_daemon_ticks_total 1",
        "netmit_daemon_tick_duration_seconds_count 1",
        "netmit_errors_total{kind=\"apply\"} 1",
        "netmit_errors_total{kind=\"restore\"} 0",
        "netmit_config_reloads_total{result=\"ok\"} 1",
        "netmit_config_reloads_total{result=\"error\"} 0",
        "netmit_preload_processes 2",
        "netmit_preload_busy_polling_processes 1",
        "netmit_preload_epoll_sets 3",
        "netmit_preload_sockets 5",
        "netmit_preload_mixed_napi_sets 1",
        "netmit_preload_napi_epoll_sets{napi_id=\"8193\"} 2",
        "netmit_preload_napi_epoll_sets{napi_id=\"8194\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "no line starting with {line:?} in:\n{text}"
        );
    }
    assert_eq!(metrics.errors(ErrorKind::Apply), 1);
    metrics.forget_device("veth0");
    let (text, _) = expo.encode(false);
    assert!(!text.contains("netmit_mode{"), "{text}");
}

#[test]
fn accept_header() {
    assert!(Exposition::wants_openmetrics(Some(
        "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
    )));
    assert!(!Exposition::wants_openmetrics(Some("text/plain")));
    assert!(!Exposition::wants_openmetrics(None));
}

/// `promtool check metrics` on the Prometheus text format, when promtool is installed
/// (Debian package `prometheus`, installed by `cargo xtask setup`). promtool (2.42) reads
/// only that format: it rejects OpenMetrics' `info` type, which the Prometheus server's
/// OpenMetrics parser accepts.
#[test]
fn promtool_accepts_the_exposition() {
    let Some(promtool) = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("SKIP promtool_accepts_the_exposition: promtool is not installed");
        return;
    };
    let (expo, _) = synthetic();
    let (text, _) = expo.encode(false);
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
