//! Issue 15 on a veth testbed, judged by the kernel's view (NAPI settings over netdev
//! netlink) and the daemon's `/status` and `/metrics`:
//!
//! - a switch carries its rule, reason and settings in `/status` and in
//!   `netmit_mode_switches_total{iface,napi_id,from,to,reason}`;
//! - a NAPI setting changed by someone else (napi-set from the test) is left alone: not
//!   written back while the daemon runs, exported as `netmit_external_override`, and not
//!   restored over at the daemon's exit, while the daemon's other settings are restored;
//! - `--dry-run` decides to switch but changes nothing: no XDP attached, the NAPI keeps
//!   its original values.
//!
//! Every wait polls the daemon's status until a condition holds, with a bounded deadline.

use std::{
    fs,
    path::Path,
    process::{ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use netmit_user::sys::{
    napi::{self, NapiParam},
    process,
};
use serde_json::Value;
use tests::{
    netmit::kernel_xdp,
    support::{RunDir, netmit_bin, require_root},
    testbed::{NsChild, Side, Testbed},
};

const PORT: u16 = 9464;
/// Original gro-flush-timeout of A's NAPI: no mode uses it.
const ORIGINAL_GRO_FLUSH_NS: u64 = 20_000;
const DEFER: (u64, u64, u64) = (100, 200_000, 0);
const ORIGINALS: (u64, u64, u64) = (0, ORIGINAL_GRO_FLUSH_NS, 0);
/// What "someone else" writes.
const ADMIN_GRO_FLUSH_NS: u64 = 50_000;
const DEADLINE: Duration = Duration::from_secs(30);

/// The daemon's configuration for the testbed. Whether deferral batches more than the
/// interrupt path already does depends on how fast this host drains the generator's
/// bursts (on a loaded host the NAPI already polls ~32 packets at a time, and the batching
/// rule rightly takes the switch back), so the trial here only judges the load; the
/// batching rule itself is table-tested (control/effect_tests.rs).
fn config(tb: &Testbed) -> String {
    format!(
        "interval = \"100ms\"\nmetrics_address = \"127.0.0.1:{PORT}\"\n\n\
         [[interface]]\nname = \"{}\"\nattach = \"native\"\n\
         steer = [\"proto=udp,dport=9000,action=pass\"]\n\
         [interface.policy]\nmin_dwell_ms = 500\n\
         [interface.policy.defer]\nenter_after_ms = 300\nexit_after_ms = 500\n\
         enter_wakeups_per_sec = 1000\n\
         [interface.policy.suspend]\nenter_after_ms = 300\nexit_after_ms = 300\n\
         [interface.policy.effect]\njudge_after_ms = 500\n\
         max_polls_per_packet_percent = 0\n",
        tb.if_a()
    )
}

fn get(tb: &Testbed, path: &str) -> Option<String> {
    match tests::netmit::http_get(tb, Side::A, PORT, path) {
        Some((200, body)) => Some(body),
        _ => None,
    }
}

fn status(tb: &Testbed) -> Value {
    serde_json::from_str(&get(tb, "/status").expect("GET /status")).expect("status JSON")
}

/// (defer-hard-irqs, gro-flush-timeout, irq-suspend-timeout) of A's only NAPI.
fn napi_settings(tb: &Testbed) -> (u64, u64, u64) {
    let dev = tb.netdev(Side::A);
    let list = tb.in_ns(Side::A, || napi::list(&dev)).expect("napi-get");
    assert_eq!(list.len(), 1, "one NAPI: {list:?}");
    let n = &list[0];
    (
        n.value(NapiParam::DeferHardIrqs).unwrap(),
        n.value(NapiParam::GroFlushTimeout).unwrap(),
        n.value(NapiParam::IrqSuspendTimeout).unwrap(),
    )
}

fn set_gro_flush(tb: &Testbed, value: u64) {
    let dev = tb.netdev(Side::A);
    tb.in_ns(Side::A, move || {
        let id = napi::list(&dev).expect("napi list")[0].id;
        napi::set(id, NapiParam::GroFlushTimeout, value)
    })
    .expect("napi-set");
}

/// GRO on gives A's veth a NAPI; its gro-flush-timeout becomes a distinctive original.
fn prepare_originals(tb: &Testbed) {
    tb.set_gro(Side::A, true).expect("gro on");
    set_gro_flush(tb, ORIGINAL_GRO_FLUSH_NS);
    assert_eq!(napi_settings(tb), ORIGINALS);
}

struct Daemon<'tb> {
    child: Option<NsChild<'tb>>,
    log: std::path::PathBuf,
}

impl Daemon<'_> {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        process::signal(child.pid(), libc::SIGTERM).expect("kill");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "no exit:\n{}", self.log());
            thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start_daemon<'tb>(tb: &'tb Testbed, run: &RunDir, config: &Path, extra: &[&str]) -> Daemon<'tb> {
    fs::create_dir_all(&run.0).unwrap();
    let log = run.sub("daemon.log");
    let out = fs::File::create(&log).unwrap();
    let mut args = vec!["daemon", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut cmd = tb.cmd(Side::A, netmit_bin(), args);
    cmd.env("NETMIT_RUN_DIR", run.0.join("run"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let d = Daemon {
        child: Some(tb.spawn_cmd(cmd).expect("spawn daemon")),
        log,
    };
    wait_for(&d, "healthy", || get(tb, "/healthz").is_some());
    d
}

fn wait_for(d: &Daemon, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "not {what} within {DEADLINE:?}:\n{}",
            d.log()
        );
        thread::sleep(Duration::from_millis(25));
    }
}

/// Traffic from B to A's UDP port 9000 at `pps`, until dropped.
fn load<'tb>(tb: &'tb Testbed, pps: u64) -> NsChild<'tb> {
    let mac: Vec<String> = tb.mac_a().iter().map(|b| format!("{b:02x}")).collect();
    let mut cmd = tb.cmd(
        Side::B,
        netmit_bin(),
        [
            "gen",
            tb.if_b(),
            "--dst-mac",
            &mac.join(":"),
            "--dst-ip",
            &tb.ip_a().to_string(),
            "--dport",
            "9000",
            "--rate",
            &pps.to_string(),
        ],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    tb.spawn_cmd(cmd).expect("spawn gen")
}

fn mode(s: &Value) -> &str {
    s["interfaces"][0]["mode"].as_str().unwrap_or("?")
}

fn setup(tag: &str) -> Option<(Testbed, RunDir, std::path::PathBuf)> {
    if !require_root(tag) {
        return None;
    }
    let tb = Testbed::new().expect("testbed");
    prepare_originals(&tb);
    let run = RunDir::new(tag);
    fs::create_dir_all(&run.0).unwrap();
    let cfg = run.0.join("daemon.toml");
    fs::write(&cfg, config(&tb)).unwrap();
    Some((tb, run, cfg))
}

#[test]
fn a_switch_shows_its_reason_in_metrics_and_status_and_an_admin_change_is_left_alone() {
    let Some((tb, run, cfg)) = setup("daemon-explain") else {
        return;
    };
    let mut d = start_daemon(&tb, &run, &cfg, &[]);
    let _high = load(&tb, 300_000);
    wait_for(&d, "in defer", || mode(&status(&tb)) == "defer");
    let s = status(&tb);
    let t = &s["interfaces"][0]["last_transition"];
    assert_eq!(t["rule"], "load_high", "{s}");
    assert!(
        t["reason"].as_str().unwrap().contains(">= 20000/s"),
        "signal values against thresholds: {t}"
    );
    assert!(
        t["set"].as_str().unwrap().contains("defer-hard-irqs=100"),
        "{t}"
    );
    assert!(
        s["interfaces"][0]["mode_since_unix"].as_f64().is_some(),
        "{s}"
    );
    let metrics = get(&tb, "/metrics").expect("metrics");
    let line = format!(
        "netmit_mode_switches_total{{iface=\"{}\",napi_id=\"all\",from=\"interrupt\",to=\"defer\",reason=\"load_high\"}} 1",
        tb.if_a()
    );
    assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    assert!(
        d.log().contains("interrupt -> defer [load_high]"),
        "{}",
        d.log()
    );
    // The trial (open-loop load, deferral batching) keeps the switch.
    wait_for(&d, "judged", || {
        d.log().contains("kept after judging its effect")
    });
    assert_eq!(mode(&status(&tb)), "defer");
    assert_eq!(napi_settings(&tb), DEFER);

    // Someone else changes gro-flush-timeout.
    set_gro_flush(&tb, ADMIN_GRO_FLUSH_NS);
    wait_for(&d, "reporting the override", || {
        status(&tb)["interfaces"][0]["external_overrides"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let o = &status(&tb)["interfaces"][0]["external_overrides"][0];
    assert_eq!(o["setting"], "gro-flush-timeout", "{o}");
    assert_eq!(o["value"], ADMIN_GRO_FLUSH_NS, "{o}");
    assert!(
        get(&tb, "/metrics")
            .unwrap()
            .contains("netmit_external_override{"),
        "exported"
    );
    // Ten more ticks: still the administrator's value.
    let from = status(&tb)["ticks"].as_u64().unwrap();
    wait_for(&d, "ticking", || {
        status(&tb)["ticks"].as_u64().unwrap() >= from + 10
    });
    assert_eq!(napi_settings(&tb), (DEFER.0, ADMIN_GRO_FLUSH_NS, 0));
    assert_eq!(
        d.log().matches("someone else changed it").count(),
        1,
        "logged once:\n{}",
        d.log()
    );

    // Exit: netmit's own settings restored, the administrator's left alone.
    let st = d.stop();
    assert!(st.success(), "exit {st:?}:\n{}", d.log());
    assert_eq!(napi_settings(&tb), (0, ADMIN_GRO_FLUSH_NS, 0));
    assert_eq!(kernel_xdp(&tb, Side::A), None, "XDP detached");
}

#[test]
fn dry_run_decides_but_changes_nothing() {
    let Some((tb, run, cfg)) = setup("daemon-dry-run") else {
        return;
    };
    let mut d = start_daemon(&tb, &run, &cfg, &["--dry-run"]);
    wait_for(&d, "ticking", || status(&tb)["ticks"].as_u64() > Some(0));
    assert_eq!(status(&tb)["dry_run"], true);
    let _high = load(&tb, 300_000);
    wait_for(&d, "deciding defer", || mode(&status(&tb)) == "defer");
    let s = status(&tb);
    let t = &s["interfaces"][0]["last_transition"];
    assert_eq!(t["applied"], false, "{t}");
    assert!(
        d.log().contains("dry run: would switch interrupt -> defer"),
        "{}",
        d.log()
    );
    // A few more ticks, then the kernel's view: nothing changed.
    let from = s["ticks"].as_u64().unwrap();
    wait_for(&d, "ticking", || {
        status(&tb)["ticks"].as_u64().unwrap() >= from + 10
    });
    assert_eq!(napi_settings(&tb), ORIGINALS, "settings untouched");
    assert_eq!(kernel_xdp(&tb, Side::A), None, "no XDP attached");
    assert!(
        !run.0.join("run/journal.json").exists(),
        "nothing journaled"
    );
    let st = d.stop();
    assert!(st.success(), "exit {st:?}:\n{}", d.log());
    assert_eq!(napi_settings(&tb), ORIGINALS);
}
