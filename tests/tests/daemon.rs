//! `netmit daemon` end to end on a veth testbed, judged by the kernel's own view (NAPI
//! settings over netdev netlink, the XDP state of the link, the pins) and by the daemon's
//! HTTP endpoints:
//!
//! - low load stays in interrupt, high load switches to defer within a bounded number of
//!   intervals and the NAPI carries the defer values, low load switches back; the metrics
//!   pass `promtool check metrics` and a real Prometheus server scraping the daemon
//!   answers `netmit_mode{mode="defer"} == 1`; SIGTERM exits 0 with the originals back
//!   and XDP detached, and leaves the run directory empty;
//! - kill -9 in defer, restart: the start-up restore puts the originals back before the
//!   new daemon changes anything;
//! - `--check-config` rejects bad configurations with line and key.
//!
//! The daemon runs in namespace A ([`Testbed::cmd`] enters only the network namespace, so
//! bpffs stays visible and per-NAPI netlink works) with its own run directory
//! (`NETMIT_RUN_DIR`), so tests running in parallel never share a journal or state file.
//! Its HTTP address is 127.0.0.1 inside A, reached from threads that join A. A's veth gets
//! a NAPI from GRO before the daemon starts, so that its original settings can be made
//! distinct from every mode's (gro-flush-timeout 20 us) and their return is visible.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use netmit_user::sys::{
    napi::{self, NapiParam},
    process,
};
use serde_json::Value;
use tests::{
    netmit::{kernel_xdp, pin_dir},
    support::{netmit_bin, require_root},
    testbed::{NsChild, Side, Testbed},
};

const PORT: u16 = 9464;
const PROM_PORT: u16 = 19090;
const INTERVAL_MS: u64 = 100;
/// Original gro-flush-timeout of A's NAPI: no mode uses it.
const ORIGINAL_GRO_FLUSH_NS: u64 = 20_000;
const DEFER: (u64, u64, u64) = (100, 200_000, 0);
const INTERRUPT: (u64, u64, u64) = (0, 0, 0);
const ORIGINALS: (u64, u64, u64) = (0, ORIGINAL_GRO_FLUSH_NS, 0);
/// Switches must happen within this many intervals of the load change (the policy below
/// needs 3 to enter defer and 5 to leave it, plus the generator's start and the dwell).
const MAX_INTERVALS: u64 = 30;

static DIRS: AtomicU32 = AtomicU32::new(0);

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "netmit-daemon-{name}-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("run")).unwrap();
        Scratch(dir)
    }
    fn run_dir(&self) -> PathBuf {
        self.0.join("run")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn config(tb: &Testbed, interrupt_uses_originals: bool) -> String {
    format!(
        "interval = \"{INTERVAL_MS}ms\"\nmetrics_address = \"127.0.0.1:{PORT}\"\n\n\
         [[interface]]\nname = \"{}\"\nattach = \"native\"\n\
         steer = [\"proto=udp,dport=9000,action=pass\"]\n\
         [interface.policy]\nmin_dwell_ms = 500\n\
         [interface.policy.defer]\nenter_after_ms = 300\nexit_after_ms = 500\n\
         enter_wakeups_per_sec = 1000\n\
         [interface.policy.suspend]\nenter_after_ms = 300\nexit_after_ms = 300\n\
         [interface.policy.modes]\ninterrupt_uses_originals = {interrupt_uses_originals}\n",
        tb.if_a()
    )
}

/// One HTTP/1.0 GET inside namespace A: (status code, body).
fn http_get(tb: &Testbed, port: u16, path: &str) -> Option<(u16, String)> {
    tests::netmit::http_get(tb, Side::A, port, path)
}

fn status(tb: &Testbed) -> Value {
    let (code, body) = http_get(tb, PORT, "/status").expect("GET /status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// (defer-hard-irqs, gro-flush-timeout, irq-suspend-timeout) of A's only NAPI, from the
/// kernel.
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

/// GRO on gives A's veth a NAPI; its gro-flush-timeout becomes the distinctive original.
fn prepare_originals(tb: &Testbed) {
    tb.set_gro(Side::A, true).expect("gro on");
    let dev = tb.netdev(Side::A);
    tb.in_ns(Side::A, move || {
        let id = napi::list(&dev).expect("napi list")[0].id;
        napi::set(id, NapiParam::GroFlushTimeout, ORIGINAL_GRO_FLUSH_NS)
    })
    .expect("napi-set");
    assert_eq!(napi_settings(tb), ORIGINALS);
}

struct Daemon<'tb> {
    child: Option<NsChild<'tb>>,
    log: PathBuf,
}

impl Daemon<'_> {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().pid() as i32
    }

    /// Sends `sig` and waits up to 15 s for the exit.
    fn stop(&mut self, sig: i32) -> ExitStatus {
        process::signal(self.pid() as u32, sig).expect("kill");
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the daemon did not exit:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start_daemon<'tb>(tb: &'tb Testbed, scratch: &Scratch, config: &Path, log: &str) -> Daemon<'tb> {
    let log = scratch.path(log);
    let out = fs::File::create(&log).unwrap();
    let mut cmd = tb.cmd(
        Side::A,
        netmit_bin(),
        ["daemon", "--config", config.to_str().unwrap()],
    );
    cmd.env("NETMIT_RUN_DIR", scratch.run_dir())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let daemon = Daemon {
        child: Some(tb.spawn_cmd(cmd).expect("spawn daemon")),
        log,
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if http_get(tb, PORT, "/healthz").is_some_and(|(c, _)| c == 200) {
            return daemon;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("the daemon never became healthy:\n{}", daemon.log());
}

/// Traffic from B to A's UDP port 9000 at `pps`, until dropped.
fn load<'tb>(tb: &'tb Testbed, pps: u64) -> NsChild<'tb> {
    let mut cmd = tb.cmd(
        Side::B,
        netmit_bin(),
        [
            "gen",
            tb.if_b(),
            "--dst-mac",
            &mac(tb.mac_a()),
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

fn mode_of(s: &Value) -> String {
    s["interfaces"][0]["mode"].as_str().unwrap().to_string()
}

/// Waits for the daemon's mode to become `mode`; returns the intervals (ticks) it took
/// from `from_ticks`.
/// Waits until the daemon has sampled `n` more intervals: a check that nothing changes
/// then covers that many decisions, whatever the machine's speed.
fn wait_ticks(tb: &Testbed, d: &Daemon, n: u64) {
    let from = status(tb)["ticks"].as_u64().unwrap();
    let start = Instant::now();
    while status(tb)["ticks"].as_u64().unwrap() < from + n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the daemon stopped ticking:\n{}",
            d.log()
        );
        thread::sleep(Duration::from_millis(25));
    }
}

fn wait_mode(tb: &Testbed, d: &Daemon, mode: &str, from_ticks: u64) -> u64 {
    let start = Instant::now();
    loop {
        let s = status(tb);
        if mode_of(&s) == mode {
            return s["ticks"].as_u64().unwrap() - from_ticks;
        }
        let ticks = s["ticks"].as_u64().unwrap() - from_ticks;
        assert!(
            ticks <= MAX_INTERVALS && start.elapsed() < Duration::from_secs(20),
            "no switch to {mode} within {ticks} intervals; status {s}\nlog:\n{}",
            d.log()
        );
        thread::sleep(Duration::from_millis(25));
    }
}

fn promtool_check(text: &str) -> Result<(), String> {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed (cargo xtask setup installs it): check skipped");
        return Ok(());
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A Prometheus server in namespace A scraping the daemon every second.
fn start_prometheus<'tb>(tb: &'tb Testbed, scratch: &Scratch) -> Option<NsChild<'tb>> {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("prometheus not installed (cargo xtask setup installs it): query skipped");
        return None;
    }
    let config = scratch.path("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: netmit\n    static_configs:\n      \
             - targets: ['127.0.0.1:{PORT}']\n"
        ),
    )
    .unwrap();
    let data = scratch.path("prometheus-data");
    fs::create_dir_all(&data).unwrap();
    let log = fs::File::create(scratch.path("prometheus.log")).unwrap();
    let mut cmd = tb.cmd(
        Side::A,
        "prometheus",
        [
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{PROM_PORT}"),
            "--log.level=warn".to_string(),
        ],
    );
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Some(tb.spawn_cmd(cmd).expect("spawn prometheus"))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks Prometheus `query` until it returns a sample (up to `within`); the samples.
fn prometheus_query(tb: &Testbed, query: &str, within: Duration) -> Vec<Value> {
    let path = format!("/api/v1/query?query={}", url_encode(query));
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < within {
        if let Some((200, body)) = http_get(tb, PROM_PORT, &path) {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            if let Some(r) = v["data"]["result"].as_array()
                && !r.is_empty()
            {
                return r.clone();
            }
            last = body;
        }
        thread::sleep(Duration::from_millis(250));
    }
    panic!("Prometheus never answered {query} with a sample; last answer: {last}");
}

fn assert_run_dir_empty(scratch: &Scratch) {
    let left: Vec<_> = fs::read_dir(scratch.run_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the run directory is not empty: {left:?}");
}

#[test]
fn daemon_follows_the_load_and_restores_on_sigterm() {
    if !require_root("daemon_follows_the_load_and_restores_on_sigterm") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let scratch = Scratch::new("load");
    prepare_originals(&tb);
    let cfg = scratch.path("daemon.toml");
    fs::write(&cfg, config(&tb, false)).unwrap();
    let mut prometheus = start_prometheus(&tb, &scratch);
    let mut d = start_daemon(&tb, &scratch, &cfg, "daemon.log");
    assert_eq!(
        kernel_xdp(&tb, Side::A).map(|x| x.0),
        Some(1),
        "the daemon attached native XDP"
    );

    // Low load: interrupt, with interrupt's values on the NAPI.
    let low = load(&tb, 1_000);
    wait_ticks(&tb, &d, 10);
    let s = status(&tb);
    assert_eq!(mode_of(&s), "interrupt", "{s}");
    assert_eq!(s["interfaces"][0]["transitions"], 0, "{s}");
    assert_eq!(napi_settings(&tb), INTERRUPT);
    let pps = s["interfaces"][0]["sample"]["packets_per_sec"]
        .as_f64()
        .unwrap();
    assert!(
        (500.0..2_000.0).contains(&pps),
        "low load measured {pps} pps"
    );
    drop(low);

    // High load: defer within a bounded number of intervals, defer's values on the NAPI.
    let ticks = status(&tb)["ticks"].as_u64().unwrap();
    let high = load(&tb, 300_000);
    let n = wait_mode(&tb, &d, "defer", ticks);
    eprintln!("interrupt -> defer after {n} intervals of {INTERVAL_MS} ms");
    assert_eq!(napi_settings(&tb), DEFER);
    // A restore by hand while the daemon owns the settings is refused (issue 13), and
    // changes nothing.
    let out = tb
        .cmd(Side::A, netmit_bin(), ["tune", "restore"])
        .env("NETMIT_RUN_DIR", scratch.run_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("daemon") && stderr.contains("stop it"),
        "{stderr}"
    );
    assert_eq!(napi_settings(&tb), DEFER);
    let s = status(&tb);
    let t = &s["interfaces"][0]["last_transition"];
    assert_eq!(
        (t["from"].as_str(), t["to"].as_str()),
        (Some("interrupt"), Some("defer"))
    );
    assert!(t["reason"].as_str().unwrap().contains("packets"), "{t}");
    let (code, metrics) = http_get(&tb, PORT, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    let defer_line = format!("netmit_mode{{device=\"{}\",mode=\"defer\"}} 1", tb.if_a());
    assert!(metrics.lines().any(|l| l == defer_line), "{metrics}");
    assert!(
        metrics.contains("netmit_mode_transitions_total{")
            && metrics.contains("setting=\"gro_flush_timeout_seconds\"} 0.0002"),
        "{metrics}"
    );
    if let Err(e) = promtool_check(&metrics) {
        panic!("promtool check metrics failed: {e}\n{metrics}");
    }
    if prometheus.is_some() {
        let query = format!(
            "netmit_mode{{device=\"{}\",mode=\"defer\"}} == 1",
            tb.if_a()
        );
        let r = prometheus_query(&tb, &query, Duration::from_secs(30));
        eprintln!("Prometheus: {query} -> {}", r[0]);
        assert_eq!(r[0]["value"][1], "1", "{r:?}");
    }
    assert_eq!(
        mode_of(&status(&tb)),
        "defer",
        "still defer under high load"
    );
    drop(high);

    // Low again: back to interrupt, interrupt's values again.
    let ticks = status(&tb)["ticks"].as_u64().unwrap();
    let low = load(&tb, 1_000);
    let n = wait_mode(&tb, &d, "interrupt", ticks);
    eprintln!("defer -> interrupt after {n} intervals");
    assert_eq!(napi_settings(&tb), INTERRUPT);
    drop(low);
    let (code, health) = http_get(&tb, PORT, "/healthz").unwrap();
    assert_eq!((code, health.as_str()), (200, "ok\n"));

    // `netmit status` shows the daemon's mode next to the attachment.
    let out = tb
        .cmd(
            Side::A,
            netmit_bin(),
            ["status", tb.if_a(), "--json", "--interval", "0"],
        )
        .env("NETMIT_RUN_DIR", scratch.run_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["interfaces"][0]["daemon_mode"], "interrupt", "{st}");
    assert_eq!(st["daemon"]["interfaces"][0]["mode"], "interrupt", "{st}");
    assert_eq!(st["daemon"]["interfaces"][0]["transitions"], 2, "{st}");

    // SIGHUP: a broken file is refused (and counted), a good one taken.
    let reloads = |result: &str| {
        let (_, m) = http_get(&tb, PORT, "/metrics").unwrap();
        let prefix = format!("netmit_config_reloads_total{{result=\"{result}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse::<u64>().unwrap()))
            .unwrap()
    };
    let good = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, "interval = \"fast\"\n").unwrap();
    process::signal(d.pid() as u32, libc::SIGHUP).expect("kill");
    let start = Instant::now();
    while reloads("error") == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", d.log());
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        status(&tb)["interval_secs"],
        0.1,
        "the running configuration stays"
    );
    fs::write(
        &cfg,
        good.replace("interval = \"100ms\"", "interval = \"200ms\""),
    )
    .unwrap();
    process::signal(d.pid() as u32, libc::SIGHUP).expect("kill");
    while reloads("ok") == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", d.log());
        thread::sleep(Duration::from_millis(50));
    }
    wait_ticks(&tb, &d, 3);
    let s = status(&tb);
    assert_eq!(s["interval_secs"], 0.2, "{s}");
    assert_eq!(mode_of(&s), "interrupt", "the mode survives a reload");
    assert_eq!(http_get(&tb, PORT, "/healthz").unwrap().0, 200);

    // SIGTERM: exit 0, originals back, XDP detached, nothing left behind.
    let errors = status(&tb)["errors"].clone();
    let status = d.stop(libc::SIGTERM);
    let log = d.log();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert_eq!(napi_settings(&tb), ORIGINALS, "{log}");
    assert_eq!(kernel_xdp(&tb, Side::A), None, "XDP detached");
    assert!(!pin_dir(&tb, Side::A).exists(), "pins removed");
    assert_run_dir_empty(&scratch);
    for kind in ["apply", "attach", "restore", "sample"] {
        assert_eq!(errors[kind], 0, "errors of kind {kind}: {errors}\n{log}");
    }
    assert_eq!(errors["config"], 1, "the refused reload: {errors}");
    if let Some(p) = prometheus.take() {
        let _ = p.kill();
    }
}

#[test]
fn kill_9_then_restart_restores_the_originals() {
    if !require_root("kill_9_then_restart_restores_the_originals") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let scratch = Scratch::new("kill9");
    prepare_originals(&tb);
    let cfg = scratch.path("daemon.toml");
    // Interrupt means "the originals": a restarted daemon at low load changes nothing.
    fs::write(&cfg, config(&tb, true)).unwrap();
    let mut d = start_daemon(&tb, &scratch, &cfg, "first.log");
    wait_ticks(&tb, &d, 3);
    assert_eq!(napi_settings(&tb), ORIGINALS, "interrupt = originals");

    let ticks = status(&tb)["ticks"].as_u64().unwrap();
    let high = load(&tb, 300_000);
    wait_mode(&tb, &d, "defer", ticks);
    assert_eq!(napi_settings(&tb), DEFER);
    let killed = d.stop(libc::SIGKILL);
    assert!(!killed.success());
    drop(high);
    // The crash left defer's values, the journal, the state file and XDP behind.
    assert_eq!(napi_settings(&tb), DEFER);
    assert!(scratch.run_dir().join("journal.json").exists());
    assert!(
        state_file(&scratch.run_dir()).is_some(),
        "the state file stays"
    );
    assert!(kernel_xdp(&tb, Side::A).is_some());

    let low = load(&tb, 1_000);
    let mut d = start_daemon(&tb, &scratch, &cfg, "second.log");
    // Healthy means the start-up restore is done; at low load nothing else changes.
    assert_eq!(napi_settings(&tb), ORIGINALS, "{}", d.log());
    assert!(d.log().contains("start-up restore"), "{}", d.log());
    wait_ticks(&tb, &d, 5);
    assert_eq!(mode_of(&status(&tb)), "interrupt");
    assert_eq!(napi_settings(&tb), ORIGINALS);
    drop(low);
    let exit = d.stop(libc::SIGTERM);
    assert!(exit.success(), "{}", d.log());
    assert_eq!(napi_settings(&tb), ORIGINALS);
    // The restarted daemon adopted the crashed one's attachment and detached it.
    assert_eq!(kernel_xdp(&tb, Side::A), None, "{}", d.log());
    assert_run_dir_empty(&scratch);
}

#[test]
fn check_config_rejects_bad_configs() {
    if !require_root("check_config_rejects_bad_configs") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let scratch = Scratch::new("check");
    let if_a = tb.if_a();
    let check = |name: &str, text: &str| {
        let path = scratch.path(name);
        fs::write(&path, text).unwrap();
        let out = tb
            .cmd(
                Side::A,
                netmit_bin(),
                [
                    "daemon",
                    "--config",
                    path.to_str().unwrap(),
                    "--check-config",
                ],
            )
            .env("NETMIT_RUN_DIR", scratch.run_dir())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = check("good.toml", &config(&tb, false));
    assert!(ok, "{out}");
    assert!(out.contains("valid (1 interface(s)"), "{out}");
    for (name, text, wanted) in [
        (
            "unknown-iface.toml",
            "[[interface]]\nname = \"nmnosuch0\"\n".to_string(),
            "line 2, key interface[0].name: interface `nmnosuch0` does not exist in network namespace",
        ),
        (
            "bad-rule.toml",
            format!("[[interface]]\nname = \"{if_a}\"\nsteer = [\"proto=udp\", \"dport=70000\"]\n"),
            "line 3, key interface[0].steer[1]: malformed rule `dport=70000`",
        ),
        (
            "duplicate.toml",
            format!("[[interface]]\nname = \"{if_a}\"\n\n[[interface]]\nname = \"{if_a}\"\n"),
            "line 5, key interface[1].name: duplicate interface",
        ),
        (
            "bad-duration.toml",
            "interval = \"100\"\n".to_string(),
            "line 1, key interval: `100` needs a unit",
        ),
        (
            "unknown-key.toml",
            format!("[[interface]]\nname = \"{if_a}\"\nkeep_attached = true\n"),
            "line 3, key interface[0].keep_attached: unknown field `keep_attached`",
        ),
    ] {
        let (ok, out) = check(name, &text);
        assert!(!ok, "{name} accepted:\n{out}");
        assert!(
            out.contains(wanted),
            "{name}: expected {wanted:?} in:\n{out}"
        );
    }
    // Under `ip netns exec`, which remounts /sys and hides bpffs, a configuration that
    // attaches is refused with the real cause and the fix (issue 13).
    let hidden = scratch.path("hidden.toml");
    fs::write(&hidden, config(&tb, false)).unwrap();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", tb.ns_a()])
        .arg(netmit_bin())
        .args(["daemon", "--check-config", "--config"])
        .arg(&hidden)
        .env("NETMIT_RUN_DIR", scratch.run_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "accepted under ip netns exec: {text}"
    );
    assert!(
        text.contains("attach = \"native\" needs netmit's pins") && text.contains("nsenter --net"),
        "{text}"
    );
    // Nothing was changed or left behind by checking.
    assert_eq!(kernel_xdp(&tb, Side::A), None);
    assert_run_dir_empty(&scratch);
}

/// The NAPI of A's veth (GRO off) exists only while XDP is attached: detaching it by hand
/// destroys the NAPI, the daemon attaches again (the configuration wants it) and the new
/// NAPI, with a new id, gets the current mode; the originals journaled for the old id carry
/// over to the new one, so leaving defer puts the true originals back on it.
#[test]
fn recreated_napi_gets_the_mode_and_its_originals() {
    if !require_root("recreated_napi_gets_the_mode_and_its_originals") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let scratch = Scratch::new("recreate");
    let cfg = scratch.path("daemon.toml");
    fs::write(&cfg, config(&tb, true)).unwrap();
    let mut d = start_daemon(&tb, &scratch, &cfg, "daemon.log");
    let dev = tb.netdev(Side::A);
    let napi_id = || tb.in_ns(Side::A, || napi::list(&dev)).unwrap()[0].id;
    let first = napi_id();
    // An administrator's value, not journaled: the daemon must treat it as the original.
    tb.in_ns(Side::A, move || {
        napi::set(first, NapiParam::GroFlushTimeout, ORIGINAL_GRO_FLUSH_NS)
    })
    .unwrap();

    let ticks = status(&tb)["ticks"].as_u64().unwrap();
    let high = load(&tb, 300_000);
    wait_mode(&tb, &d, "defer", ticks);
    assert_eq!(napi_settings(&tb), DEFER);

    let run = tests::netmit::netmit(&tb, Side::A, &["detach", tb.if_a()]);
    assert!(run.ok, "{}", run.stderr);
    let start = Instant::now();
    let second = loop {
        let list = tb.in_ns(Side::A, || napi::list(&dev)).unwrap();
        if let Some(n) = list.first()
            && n.id != first
            && n.value(NapiParam::DeferHardIrqs) == Some(DEFER.0)
            && n.value(NapiParam::GroFlushTimeout) == Some(DEFER.1)
            && status(&tb)["interfaces"][0]["napis"][0]["napi_id"] == n.id
        {
            break n.id;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no re-created NAPI in defer: {list:?}\n{}",
            d.log()
        );
        thread::sleep(Duration::from_millis(50));
    };
    eprintln!("napi {first} re-created as {second}, in defer");
    assert!(kernel_xdp(&tb, Side::A).is_some(), "re-attached");
    // The new NAPI got defer's settings (checked above). The mode itself is not asserted
    // here: while the veth had no NAPI the load could not arrive, and a gap longer than
    // the test policy's 500 ms exit hold rightly takes the daemon back to interrupt
    // (seen once in four CI runs).
    drop(high);

    let ticks = status(&tb)["ticks"].as_u64().unwrap();
    let low = load(&tb, 1_000);
    wait_mode(&tb, &d, "interrupt", ticks);
    assert_eq!(napi_settings(&tb), ORIGINALS, "{}", d.log());
    drop(low);

    let exit = d.stop(libc::SIGTERM);
    assert!(exit.success(), "{}", d.log());
    assert_eq!(kernel_xdp(&tb, Side::A), None);
    assert!(
        state_file(&scratch.run_dir()).is_none(),
        "the state file is removed"
    );
    // What remains are the entries of the vanished NAPI, which the journal cannot forget.
    if let Ok(text) = fs::read_to_string(scratch.run_dir().join("journal.json")) {
        let j: Value = serde_json::from_str(&text).unwrap();
        for e in j["entries"].as_array().unwrap() {
            assert_eq!(
                e["setting"]["napi_id"], first,
                "only the vanished NAPI's: {e}"
            );
        }
    }
}

/// The daemon's state file in `run_dir` (`daemon-netns-<cookie>.json`), if there is one.
fn state_file(run_dir: &std::path::Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(run_dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("daemon-netns-") && n.ends_with(".json"))
        })
}
