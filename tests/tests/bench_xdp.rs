//! `netmit bench xdp` as a smoke test: the steering program, the `XDP_PASS` floor and the
//! peer (xdp-tools' xdp-filter, loaded from Debian's objects) all run on every frame and
//! rule count, the peer passes the frames (its tables hold only entries they miss), and
//! the JSON carries every figure. No timing assertions: the goals are checked by
//! `cargo xtask bench xdp` and reported in docs/benchmarks.md.

use std::process::Command;

use serde_json::Value;
use tests::support::{netmit_bin, require_root};

#[test]
fn every_case_is_measured_against_the_floor_and_xdp_filter() {
    if !require_root("every_case_is_measured_against_the_floor_and_xdp_filter") {
        return;
    }
    let out = Command::new(netmit_bin())
        .args([
            "bench",
            "xdp",
            "--repeat",
            "2000",
            "--rounds",
            "1",
            "--json",
            "--no-check",
        ])
        .output()
        .expect("run netmit bench xdp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench xdp failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 9, "3 frames x 3 rule counts: {report}");
    for r in rows {
        for key in ["steer_ns", "baseline_ns", "xdp_filter_ns"] {
            assert!(r[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {r}");
        }
        let (steer, filter) = (
            r["steer_ns"].as_f64().unwrap(),
            r["xdp_filter_ns"].as_f64().unwrap(),
        );
        assert!(
            (r["vs_xdp_filter"].as_f64().unwrap() - steer / filter).abs() < 1e-9,
            "{r}"
        );
        let rules = r["rules"].as_u64().unwrap();
        assert_eq!(
            r["goal"].is_null(),
            rules == 0,
            "goals at 16 and 256 rules: {r}"
        );
    }
    assert!(report["goals_met"].is_boolean());
}

#[test]
fn bad_arguments_are_refused() {
    let out = Command::new(netmit_bin())
        .args(["bench", "xdp", "--repeat", "-5"])
        .output()
        .expect("run netmit bench xdp");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--repeat"), "{stderr}");
}

/// xdp-filter's maps are pinned by name, so a loader honouring that would pin them at
/// `/sys/fs/bpf/<map>`, or reuse a real xdp-filter's tables found there and fill them with
/// the benchmark's deny entries. The bench loads the peer with a pin directory of its
/// own and removes it: a table planted where xdp-filter pins stays as it was, and nothing
/// new stays in bpffs. Runs in a private mount namespace with a bpffs of its own.
#[test]
fn the_peer_leaves_bpffs_and_a_real_xdp_filter_alone() {
    if !require_root("the_peer_leaves_bpffs_and_a_real_xdp_filter_alone") {
        return;
    }
    let script = "set -eu\n\
         mount -t bpf bpf /sys/fs/bpf -o mode=0700\n\
         bpftool map create /sys/fs/bpf/filter_ipv4 type percpu_hash key 4 value 8 \
         entries 10000 name filter_ipv4\n\
         $NETMIT bench xdp --repeat 200 --rounds 1 --json --no-check >/dev/null\n\
         echo \"entries: $(bpftool map dump pinned /sys/fs/bpf/filter_ipv4 | grep -c key || true)\"\n\
         echo \"bpffs: $(ls -A /sys/fs/bpf | tr '\\n' ' ')\"";
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("NETMIT", netmit_bin())
        .output()
        .expect("unshare");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("entries: 0\n"),
        "the planted table was written: {text}"
    );
    let listing = text
        .lines()
        .find_map(|l| l.strip_prefix("bpffs: "))
        .unwrap_or_default();
    // maps.debug and progs.debug are the kernel's own (bpf_preload), in every bpffs.
    let mut left: Vec<&str> = listing
        .split_whitespace()
        .filter(|e| !e.ends_with(".debug"))
        .collect();
    left.sort_unstable();
    // netmit/ is the pin root the steering program's loader made; it must be empty.
    assert!(
        left == ["filter_ipv4"] || left == ["filter_ipv4", "netmit"],
        "left in bpffs: {left:?} ({text})"
    );
}
