//! `netmit bench xdp` as a smoke test: netmit's steering program, the empty `XDP_PASS`
//! program, the minimal parser (the floor) and the peer (xdp-tools' xdp-filter, loaded
//! from Debian's objects with the equivalent rules) all run on every case: four frame
//! kinds, at 0 rules a miss, at 16 and 256 a hit on the first rule, on the last and a miss;
//! netmit takes the path its case names and xdp-filter returns the same XDP action; the
//! JSON carries every figure, the CPU model and the kernel. No timing assertions: the goals
//! are checked by `cargo xtask bench xdp` and reported in docs/benchmarks.md.

use std::process::Command;

use serde_json::Value;
use tests::support::{netmit_bin, require_root};

const XDP_DROP: u64 = 1;
const XDP_PASS: u64 = 2;

#[test]
fn every_case_is_measured_against_the_floors_and_xdp_filter_and_both_agree() {
    if !require_root("every_case_is_measured_against_the_floors_and_xdp_filter_and_both_agree") {
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
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("cpuinfo");
    let model = report["cpu_model"].as_str().expect("cpu_model");
    assert!(
        !model.is_empty() && cpuinfo.contains(model),
        "{model:?} is not /proc/cpuinfo's"
    );
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(report["kernel"].as_str(), Some(release.trim()));

    let rows = report["rows"].as_array().expect("rows");
    let mut cases: Vec<(u64, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["rules"].as_u64().unwrap(),
                r["target"].as_str().unwrap(),
                r["packet"].as_str().unwrap(),
            )
        })
        .collect();
    cases.sort_unstable();
    let mut expected = Vec::new();
    for rules in [0u64, 16, 256] {
        let targets: &[&str] = if rules == 0 {
            &["miss"]
        } else {
            &["first", "last", "miss"]
        };
        for &t in targets {
            for p in ["tcp4", "udp4", "udp6", "vlan"] {
                expected.push((rules, t, p));
            }
        }
    }
    expected.sort_unstable();
    assert_eq!(cases, expected, "{report}");

    for r in rows {
        for key in ["netmit_ns", "empty_ns", "floor_ns", "xdp_filter_ns"] {
            assert!(r[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {r}");
        }
        let f = |k: &str| r[k].as_f64().unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(
            close(f("vs_xdp_filter"), f("netmit_ns") / f("xdp_filter_ns")),
            "{r}"
        );
        assert!(close(f("vs_floor"), f("netmit_ns") / f("floor_ns")), "{r}");
        assert!(
            close(f("netmit_above_empty_ns"), f("netmit_ns") - f("empty_ns")),
            "{r}"
        );
        assert!(
            close(f("floor_above_empty_ns"), f("floor_ns") - f("empty_ns")),
            "{r}"
        );

        // Both programs classify every case: the same action, the one the case names.
        let rules = r["rules"].as_u64().unwrap();
        let (action, verdict, rule) = match r["target"].as_str().unwrap() {
            "first" => (XDP_DROP, "drop", Some(0)),
            "last" => (XDP_DROP, "drop", Some(rules - 1)),
            _ => (XDP_PASS, "unmatched", None),
        };
        assert_eq!(r["netmit_action"].as_u64(), Some(action), "{r}");
        assert_eq!(r["xdp_filter_action"].as_u64(), Some(action), "{r}");
        assert_eq!(r["verdict"].as_str(), Some(verdict), "{r}");
        assert_eq!(r["rule_id"].as_u64(), rule, "{r}");

        assert_eq!(
            r["above_empty_limit_ns"].is_null(),
            rules == 0,
            "the cost above empty is judged at 16 and 256 rules: {r}"
        );
        let met =
            r["vs_xdp_filter_met"].as_bool().unwrap() && r["above_empty_met"].as_bool().unwrap();
        assert!(!met || f("vs_xdp_filter") <= 0.5, "{r}");
    }
    let all_met = rows.iter().all(|r| {
        r["vs_xdp_filter_met"].as_bool().unwrap() && r["above_empty_met"].as_bool().unwrap()
    });
    assert_eq!(report["goals_met"].as_bool(), Some(all_met), "{report}");
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
