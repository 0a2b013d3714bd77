//! `netmit bench modes --quick` as a smoke test: the whole comparison runs end to end on
//! its own veth testbed, every setup answers at every load point, the report, the JSON
//! and the plots are complete, and nothing is left behind. No timing assertions: the
//! figures of a 1-second window on a busy CI machine mean nothing; the goals are checked
//! by `cargo xtask bench modes` and reported in docs/modes.md.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use netmit_user::sys::process;

use serde_json::Value;
use tests::support::{netmit_bin, require_root};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netmit-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Namespaces whose names the benchmark's testbeds use (`nmb<pid>x…`).
fn bench_namespaces(pid: u32) -> Vec<String> {
    let prefix = format!("nmb{pid}x");
    fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn quick_comparison_runs_every_setup_at_every_load() {
    if !require_root("quick_comparison_runs_every_setup_at_every_load") {
        return;
    }
    let out = scratch("bench-modes");
    let started = Instant::now();
    let proc = Command::new(netmit_bin())
        .args(["bench", "modes", "--quick", "--no-check", "--json", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netmit bench modes");
    let pid = proc.id();
    let child = proc
        .wait_with_output()
        .expect("wait for netmit bench modes");
    let stderr = String::from_utf8_lossy(&child.stderr);
    eprintln!("netmit bench modes --quick took {:.0?}", started.elapsed());
    assert!(
        child.status.success(),
        "netmit bench modes --quick failed: {stderr}"
    );
    let report: Value = serde_json::from_slice(&child.stdout).expect("JSON on stdout");
    let on_disk: Value =
        serde_json::from_slice(&fs::read(out.join("modes.json")).expect("modes.json written"))
            .expect("modes.json is JSON");
    assert_eq!(report, on_disk, "stdout and modes.json differ");

    let setups = [
        "baseline",
        "defer",
        "busy-poll",
        "suspend",
        "xsk",
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
            // Every setup really served: replies came back, with latencies measured.
            assert!(
                p["received"].as_u64().unwrap() > 0,
                "{what}: no replies: {p}"
            );
            let (p50, p99) = (p["p50_us"].as_f64().unwrap(), p["p99_us"].as_f64().unwrap());
            assert!(p50 > 0.0 && p99 >= p50, "{what}: percentiles {p50} / {p99}");
            let cpu = p["server_cpu_percent"].as_f64().unwrap();
            assert!((0.0..=100.5).contains(&cpu), "{what}: cpu {cpu}");
            // The server's NAPI was polled (threaded or busy polling) in kernel setups.
            if setup != "xsk" {
                assert!(
                    p["napi_polls_per_packet"].as_f64().unwrap() > 0.0,
                    "{what}: no NAPI polls counted: {p}"
                );
            }
            if setup == "adaptive" {
                assert!(p["daemon_mode"].is_string(), "{what}: daemon mode unknown");
            }
        }
    }
    // The offloads the veth paths depend on are read and explained.
    let notes = report["notes"].as_array().expect("notes");
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .is_some_and(|n| n.starts_with("veth offloads:") && n.contains("server end tso"))),
        "{notes:?}"
    );
    let goals = report["goals"].as_array().expect("goals");
    assert!(
        goals.len() >= 7,
        "3 suspend goals and one adaptive goal per load"
    );
    for plot in ["throughput-latency.svg", "cpu-load.svg"] {
        let svg = fs::read_to_string(out.join(plot)).expect(plot);
        assert_eq!(svg.matches("<polyline").count(), setups.len(), "{plot}");
    }
    // Nothing left behind: the run's namespaces and the daemon's run directory.
    assert!(
        !std::env::temp_dir()
            .join(format!("netmit-bench-{pid}"))
            .exists(),
        "the adaptive setup's daemon directory was left behind"
    );
    assert!(
        bench_namespaces(pid).is_empty(),
        "leftover namespaces: {:?}",
        bench_namespaces(pid)
    );
    fs::remove_dir_all(&out).unwrap();
}

/// Ctrl-C in the middle of a run stops it with an error and still removes the testbed,
/// the steering program and the daemon (whichever setup was running).
#[test]
fn interrupted_comparison_leaves_nothing_behind() {
    if !require_root("interrupted_comparison_leaves_nothing_behind") {
        return;
    }
    let out = scratch("bench-modes-int");
    let proc = Command::new(netmit_bin())
        .args(["bench", "modes", "--quick", "--no-check", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netmit bench modes");
    let pid = proc.id();
    // Let it build the testbed and start measuring.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while bench_namespaces(pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !bench_namespaces(pid).is_empty(),
        "the testbed never appeared"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = process::signal(pid, libc::SIGINT);
    let child = proc.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(!child.status.success(), "an interrupted run must fail");
    assert!(stderr.contains("interrupted"), "stderr: {stderr}");
    assert!(
        bench_namespaces(pid).is_empty(),
        "leftover namespaces: {:?}",
        bench_namespaces(pid)
    );
    let _ = fs::remove_dir_all(&out);
}

/// Bad input is refused before anything is built, with a line that names the fix.
#[test]
fn bad_arguments_are_refused_before_anything_is_built() {
    for (args, expect) in [
        (vec!["--setups", "baseline,nope"], "unknown setup \"nope\""),
        (vec!["--server-cpu", "4095"], "this machine has CPUs 0-"),
        (vec!["--closed-window", "0"], "closed-loop window 0"),
    ] {
        let proc = Command::new(netmit_bin())
            .args(["bench", "modes", "--quick"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run netmit bench modes");
        let pid = proc.id();
        let out = proc.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(bench_namespaces(pid).is_empty(), "{args:?} built a testbed");
    }
}

/// On interfaces the user names (here: a testbed this test built, standing in for two
/// NIC ports in two namespaces), the comparison changes only the server interface's NAPI
/// settings, through a journal, and puts back the values it found, not the defaults.
#[test]
fn named_interfaces_get_their_settings_back() {
    use netmit_lab::testbed::{Side, Testbed};
    use netmit_user::sys::napi::{self, NapiParam};
    if !require_root("named_interfaces_get_their_settings_back") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    tb.set_gro(Side::B, true).expect("GRO on the server end");
    // The open loop's UDP datagrams reach the server end's NAPI only with TSO off at
    // the client's end (docs/modes.md, "Which path a veth takes").
    tb.run(Side::A, "ethtool", ["-K", tb.if_a(), "tso", "off"])
        .expect("TSO off on the client end");
    let dev = tb.netdev(Side::B);
    let napis = |tb: &Testbed| tb.in_ns(Side::B, || napi::list(&dev).expect("napi list"));
    let id = napis(&tb)[0].id;
    // A value that is nobody's default, so a restore to defaults would show.
    tb.in_ns(Side::B, || napi::set(id, NapiParam::DeferHardIrqs, 7))
        .expect("napi-set");
    let run_dir = scratch("bench-modes-journal");
    let out = scratch("bench-modes-named");
    let proc = Command::new(netmit_bin())
        .args(["bench", "modes", "--quick", "--no-check", "--json"])
        .args(["--setups", "baseline,suspend", "--out"])
        .arg(&out)
        .args(["--server-iface", tb.if_b(), "--server-netns", tb.ns_b()])
        .args(["--client-iface", tb.if_a(), "--client-netns", tb.ns_a()])
        .env("NETMIT_RUN_DIR", &run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netmit bench modes");
    let pid = proc.id();
    let child = proc.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success(),
        "bench modes on named interfaces: {stderr}"
    );
    let report: Value = serde_json::from_slice(&child.stdout).expect("JSON");
    let points = report["points"].as_array().unwrap();
    assert_eq!(points.len(), 2 * 4);
    assert!(
        points.iter().all(|p| p["received"].as_u64().unwrap() > 0),
        "{points:?}"
    );
    assert!(report["testbed"].as_str().unwrap().contains(tb.if_b()));
    assert!(
        bench_namespaces(pid).is_empty(),
        "it built a testbed anyway"
    );
    // The settings it found are back, and the journal is empty.
    let after = napis(&tb)
        .into_iter()
        .find(|n| n.id == id)
        .expect("same NAPI");
    assert_eq!(after.defer_hard_irqs, Some(7), "{after:?}");
    assert_eq!(after.gro_flush_timeout_ns, Some(0), "{after:?}");
    assert_eq!(after.irq_suspend_timeout_ns, Some(0), "{after:?}");
    assert!(
        !run_dir.join("journal.json").exists(),
        "journal left: {:?}",
        fs::read_to_string(run_dir.join("journal.json"))
    );
    let _ = fs::remove_dir_all(&out);
    let _ = fs::remove_dir_all(&run_dir);
}

/// A benchmark killed with SIGKILL cannot clean up; the next run removes what it left
/// (namespaces, veths, pins of a dead process) before it builds its own testbed.
#[test]
fn the_next_run_sweeps_what_a_killed_run_left() {
    if !require_root("the_next_run_sweeps_what_a_killed_run_left") {
        return;
    }
    let out = scratch("bench-modes-kill");
    let start = |extra: &[&str]| {
        Command::new(netmit_bin())
            .args(["bench", "modes", "--quick", "--no-check", "--out"])
            .arg(&out)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run netmit bench modes")
    };
    let mut killed = start(&["--setups", "baseline,xsk"]);
    let pid = killed.id();
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while bench_namespaces(pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    killed.kill().expect("SIGKILL");
    killed.wait().expect("reap");
    assert!(
        !bench_namespaces(pid).is_empty(),
        "SIGKILL left nothing to sweep"
    );

    let next = start(&["--setups", "baseline", "--window", "200ms"]);
    let next_pid = next.id();
    let done = next.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "the next run failed: {stderr}");
    // (Another test's run may have swept them first: tests of this file run in parallel.)
    assert!(
        bench_namespaces(pid).is_empty(),
        "{:?}",
        bench_namespaces(pid)
    );
    assert!(bench_namespaces(next_pid).is_empty());
    let pins = std::path::Path::new("/sys/fs/bpf/netmit");
    if let Ok(entries) = fs::read_dir(pins) {
        let left: Vec<_> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("nmb{pid}x")))
            .collect();
        assert!(left.is_empty(), "pins left: {left:?}");
    }
    let _ = fs::remove_dir_all(&out);
}
