//! `netmit bench app --quick` as a smoke test: memcached runs under every setup on the
//! benchmark's own veth testbed, every point has every figure, the JSON and the plots are
//! written, the NAPI settings read back as before after each setup, and the global
//! busy-poll sysctls are back at their previous values. No timing assertions: the goals
//! are checked by `cargo xtask bench app` and reported in docs/benchmarks.md.

use std::{
    fs,
    process::{Command, Stdio},
};

use serde_json::Value;
use tests::support::{RunDir, netmit_bin, require_root, require_tool};

fn sysctl(name: &str) -> String {
    fs::read_to_string(format!("/proc/sys/net/core/{name}"))
        .expect("read sysctl")
        .trim()
        .to_string()
}

#[test]
fn quick_app_comparison_runs_every_setup_and_restores_everything() {
    if !require_root("quick_app_comparison_runs_every_setup_and_restores_everything") {
        return;
    }
    require_tool("memcached");
    let before = (sysctl("busy_poll"), sysctl("busy_read"));
    let out_dir = RunDir::new("bench-app-out");
    let out = &out_dir.0;
    // A private journal for the sysctls: the machine's own stays untouched.
    let run = RunDir::new("bapp");
    let proc = Command::new(netmit_bin())
        .args(["bench", "app", "--quick", "--no-check", "--json", "--out"])
        .arg(out)
        .env("NETMIT_RUN_DIR", &run.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netmit bench app");
    let pid = proc.id();
    let child = proc.wait_with_output().expect("wait for netmit bench app");
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert_eq!(
        (sysctl("busy_poll"), sysctl("busy_read")),
        before,
        "the busy-poll sysctls were not put back"
    );
    assert!(
        child.status.success(),
        "netmit bench app --quick failed: {stderr}"
    );
    let report: Value = serde_json::from_slice(&child.stdout).expect("JSON on stdout");
    let on_disk: Value =
        serde_json::from_slice(&fs::read(out.join("app.json")).expect("app.json written"))
            .expect("app.json is JSON");
    assert_eq!(report, on_disk, "stdout and app.json differ");

    let setups = [
        "baseline",
        "defer",
        "sysctl",
        "busy-poll",
        "suspend",
        "adaptive",
    ];
    let points = report["points"].as_array().expect("points");
    assert_eq!(points.len(), setups.len() * 4, "6 setups x 4 load points");
    assert!(report["baseline_saturation_pps"].as_f64().unwrap() > 0.0);
    for setup in setups {
        let mine: Vec<&Value> = points.iter().filter(|p| p["setup"] == setup).collect();
        assert_eq!(mine.len(), 4, "{setup}: {mine:?}");
        for p in mine {
            let what = format!("{setup} at {}", p["load"]);
            assert!(
                p["received"].as_u64().unwrap() > 0,
                "{what}: no replies: {p}"
            );
            let (p50, p99) = (p["p50_us"].as_f64().unwrap(), p["p99_us"].as_f64().unwrap());
            assert!(p50 > 0.0 && p99 >= p50, "{what}: percentiles {p50} / {p99}");
            let cpu = p["server_cpu_percent"].as_f64().unwrap();
            assert!((0.0..=100.5).contains(&cpu), "{what}: cpu {cpu}");
            assert!(
                p["napi_polls_per_packet"].as_f64().unwrap() > 0.0,
                "{what}: the server's NAPI never polled: {p}"
            );
            assert!(
                p["busy_poll_rx_per_packet"].as_f64().is_some(),
                "{what}: BusyPollRxPackets not read: {p}"
            );
            if setup == "adaptive" {
                assert!(p["daemon_mode"].is_string(), "{what}: daemon mode unknown");
            }
        }
    }
    // Busy polling happened under the preloaded suspend setup (not a timing claim: some
    // request of the saturation window was polled by memcached's own thread).
    let sat = points
        .iter()
        .find(|p| p["setup"] == "suspend" && p["load"]["kind"] == "saturation")
        .expect("suspend at saturation");
    assert!(
        sat["busy_poll_rx_per_packet"].as_f64().unwrap() > 0.0,
        "{sat}"
    );
    // Every setting was read back, unchanged: the NAPI settings after each setup, the two
    // sysctls after theirs.
    let restored = report["restored"].as_array().expect("restored");
    for setup in setups {
        assert!(
            restored.iter().any(|c| c["setup"] == setup),
            "{setup}: nothing read back"
        );
    }
    for name in ["busy_poll", "busy_read"] {
        assert!(
            restored
                .iter()
                .any(|c| c["setting"].as_str().is_some_and(|s| s.ends_with(name))),
            "{name} not checked: {restored:?}"
        );
    }
    assert!(
        restored.iter().all(|c| c["before"] == c["after"]),
        "{restored:?}"
    );
    let goals = report["goals"].as_array().expect("goals");
    assert!(goals.len() >= 11, "{goals:?}");
    for plot in ["throughput-latency.svg", "cpu-load.svg"] {
        let svg = fs::read_to_string(out.join(plot)).expect(plot);
        assert_eq!(svg.matches("<polyline").count(), setups.len(), "{plot}");
    }
    // Nothing left behind: the testbed's namespaces and the benchmark's processes.
    let prefix = format!("nmb{pid}x");
    let left: Vec<String> = fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
