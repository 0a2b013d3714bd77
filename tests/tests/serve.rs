//! `netmit serve` on veth testbeds: every mode answers a plain kernel UDP client byte for
//! byte; sockperf (Debian's package, a client nobody here wrote) measures latency against
//! it in every mode; busy-poll mode with the veth's NAPI present and IRQ suspension set
//! up really busy-polls (the kernel's own `BusyPollRxPackets` moves); bad requests fail
//! with one clear line.
//!
//! The server runs until SIGTERM (not `--duration`): sockperf takes a second or two to
//! start, and a server that stops on a timer could end in the middle of its run. Tune
//! settings go through a private journal (`NETMIT_RUN_DIR` in a scratch directory) and
//! are restored by a guard, also when a test fails.

use std::{
    fs,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use netmit_user::sys::process;

use serde_json::Value;
use tests::{
    netmit::{netmit, netmit_unprivileged},
    sockperf::{Sockperf, parse_sockperf},
    support::{netmit_bin, require_root},
    testbed::{NsChild, Side, Testbed},
};

/// The kernel modes' port (passed to the kernel by netmit's program).
const KERNEL_PORT: u16 = 9300;
/// The xsk mode's port (steered to AF_XDP).
const XSK_PORT: u16 = 9310;

fn attach(tb: &Testbed, steer_xsk: bool) {
    let rule = format!("proto=udp,dport={XSK_PORT},action=xsk");
    let mut args = vec!["attach", tb.if_a(), "--mode", "native"];
    if steer_xsk {
        args.extend(["--steer", &rule]);
    }
    let run = netmit(tb, Side::A, &args);
    assert!(run.ok, "netmit attach: {}", run.stderr);
}

/// A `netmit serve --json` running in A until [`Server::finish`].
struct Server<'tb> {
    child: NsChild<'tb>,
    to: SocketAddr,
}

impl<'tb> Server<'tb> {
    fn start(tb: &'tb Testbed, target: &str, port: u16, extra: &[&str]) -> Server<'tb> {
        let port_s = port.to_string();
        let mut args = vec!["serve", target, "--port", &port_s, "--json"];
        args.extend_from_slice(extra);
        let mut cmd = tb.cmd(Side::A, netmit_bin(), &args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = tb.spawn_cmd(cmd).expect("spawn netmit serve");
        // An address stands for itself; an interface for its IPv4 address.
        let ip: IpAddr = target.parse().unwrap_or(tb.ip_a().into());
        let server = Server {
            child,
            to: SocketAddr::new(ip, port),
        };
        server.wait_ready(tb);
        server
    }

    /// Probes until the server answers (a sockperf pong request: both reply formats
    /// answer it).
    fn wait_ready(&self, tb: &Testbed) {
        let probe = sockperf_request(0);
        let s = client(tb, self.to);
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 64];
        while start.elapsed() < Duration::from_secs(10) {
            s.send_to(&probe, self.to).unwrap();
            if s.recv_from(&mut buf).is_ok() {
                return;
            }
        }
        panic!("netmit serve on {} never answered", self.to);
    }

    /// SIGTERM, then the JSON report.
    fn finish(self) -> Value {
        let pid = self.child.pid() as libc::pid_t;
        process::signal(pid as u32, libc::SIGTERM).expect("kill");
        let out: Output = self.child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "netmit serve failed: {stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "serve --json printed no JSON ({e}): {}\nstderr: {stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(report["stopped"], true, "{report}");
        assert_eq!(
            report["replies"].as_u64().unwrap() + report["unanswered"].as_u64().unwrap(),
            report["requests"].as_u64().unwrap(),
            "every request answered or deliberately not: {report}"
        );
        assert_eq!(report["send_failed"], 0, "{report}");
        report
    }
}

/// A sockperf ping-pong request: sequence number, flags client|pong, length.
fn sockperf_request(seq: u64) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&3u16.to_be_bytes());
    m.extend_from_slice(&14u32.to_be_bytes());
    m
}

/// A kernel UDP socket in B of the family of `to`.
fn client(tb: &Testbed, to: SocketAddr) -> UdpSocket {
    let any = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let s = tb.in_ns(Side::B, || UdpSocket::bind(any)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// 200 requests of 1 to 1400 bytes from a kernel UDP socket in B, each answered byte for
/// byte from the server's address and port.
fn echo_200(tb: &Testbed, server: &Server) {
    let s = client(tb, server.to);
    let mut buf = [0u8; 2048];
    for i in 0..200usize {
        let len = 1 + i * 7 % 1400;
        let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
        s.send_to(&payload, server.to).unwrap();
        let (n, from) = s
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no reply to request {i} ({len} bytes): {e}"));
        assert_eq!(from, server.to, "the reply comes from the server's address");
        assert_eq!(&buf[..n], &payload[..], "request {i} ({len} bytes) echoed");
    }
}

/// Checks the report of an echo run: 200 requests and the probes, all answered.
fn check_echo_report(report: &Value, mode: &str) {
    assert_eq!(report["mode"], mode, "{report}");
    assert_eq!(report["reply"], "echo");
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests >= 200, "{report}");
    assert_eq!(report["replies"].as_u64().unwrap(), requests, "{report}");
    let sizes: u64 = (0..200u64).map(|i| 1 + i * 7 % 1400).sum();
    assert!(report["bytes"].as_u64().unwrap() >= sizes, "{report}");
}

#[test]
fn epoll_mode_echoes_byte_for_byte() {
    if !require_root("epoll_mode_echoes_byte_for_byte") {
        return;
    }
    let tb = Testbed::new().unwrap();
    // By interface name: serves on its IPv4 address.
    let server = Server::start(&tb, tb.if_a(), KERNEL_PORT, &["--mode", "epoll"]);
    echo_200(&tb, &server);
    let report = server.finish();
    check_echo_report(&report, "epoll");
    assert_eq!(report["address"], tb.ip_a().to_string());
    assert_eq!(report["iface"], tb.if_a());
    assert!(report["busy_poll"].is_null());
}

#[test]
fn epoll_mode_serves_ipv6() {
    if !require_root("epoll_mode_serves_ipv6") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let ip6 = tb.ip6_a().to_string();
    let server = Server::start(&tb, &ip6, KERNEL_PORT, &["--mode", "epoll"]);
    echo_200(&tb, &server);
    let report = server.finish();
    check_echo_report(&report, "epoll");
    assert_eq!(report["address"], ip6);
}

#[test]
fn busy_poll_mode_echoes_byte_for_byte() {
    if !require_root("busy_poll_mode_echoes_byte_for_byte") {
        return;
    }
    let tb = Testbed::new().unwrap();
    attach(&tb, false);
    // By address, with two SO_REUSEPORT threads.
    let ip = tb.ip_a().to_string();
    let server = Server::start(
        &tb,
        &ip,
        KERNEL_PORT,
        &["--mode", "busy-poll", "--threads", "2"],
    );
    echo_200(&tb, &server);
    let report = server.finish();
    check_echo_report(&report, "busy-poll");
    assert_eq!(
        report["iface"],
        tb.if_a(),
        "the interface holding the address"
    );
    assert_eq!(report["threads"], 2);
    let bp = &report["busy_poll"];
    assert_eq!(
        (&bp["usecs"], &bp["budget"], &bp["prefer_busy_poll"]),
        (&Value::from(64), &Value::from(64), &Value::from(true)),
        "{report}"
    );
    // Native XDP gives the veth a NAPI: the socket was served by it.
    let napis: Vec<u64> = report["per_thread"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["requests"].as_u64().unwrap() > 0)
        .map(|t| t["napi_id"].as_u64().unwrap())
        .collect();
    assert!(
        !napis.is_empty() && napis.iter().all(|&id| id > 0),
        "{report}"
    );
}

#[test]
fn xsk_mode_echoes_byte_for_byte() {
    if !require_root("xsk_mode_echoes_byte_for_byte") {
        return;
    }
    let tb = Testbed::new().unwrap();
    attach(&tb, true);
    let server = Server::start(&tb, tb.if_a(), XSK_PORT, &["--mode", "xsk"]);
    echo_200(&tb, &server);
    // Meanwhile UDP to other ports still goes to the kernel's sockets.
    let kernel = tb.udp_socket(Side::A, SocketAddr::new(tb.ip_a().into(), KERNEL_PORT));
    let to_kernel = SocketAddr::new(tb.ip_a().into(), KERNEL_PORT);
    client(&tb, to_kernel)
        .send_to(b"kernel", to_kernel)
        .unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = kernel
        .recv_from(&mut buf)
        .expect("kernel socket gets its datagram");
    assert_eq!(&buf[..n], b"kernel");
    let report = server.finish();
    check_echo_report(&report, "xsk");
    let t = &report["per_thread"][0];
    assert_eq!(t["xsk"]["queue"], 0);
    assert_eq!(t["xsk"]["bind_mode"], "copy", "veth has no zero-copy");
    assert_eq!(t["other_frames"], 0);
    assert!(report["busy_poll_rx_packets"].is_null());
}

#[test]
fn xsk_mode_stops_when_detached_unless_told_to_wait() {
    if !require_root("xsk_mode_stops_when_detached_unless_told_to_wait") {
        return;
    }
    let tb = Testbed::new().unwrap();
    attach(&tb, true);
    let mut server = Server::start(&tb, tb.if_a(), XSK_PORT, &["--mode", "xsk"]);
    let detach = |tb: &Testbed| {
        let run = netmit(tb, Side::A, &["detach", tb.if_a()]);
        assert!(run.ok, "{}", run.stderr);
    };
    detach(&tb);
    let end = Instant::now() + Duration::from_secs(10);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "serve kept running after the detach");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = server.child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("netmit was detached from") && stderr.contains("--wait"),
        "{stderr}"
    );

    // With --wait it registers in the next attachment and serves again.
    attach(&tb, true);
    let server = Server::start(&tb, tb.if_a(), XSK_PORT, &["--mode", "xsk", "--wait"]);
    detach(&tb);
    let s = client(&tb, server.to);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.send_to(b"while detached", server.to).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        s.recv_from(&mut buf).is_err(),
        "nothing is steered to the server while netmit is detached"
    );
    attach(&tb, true);
    server.wait_ready(&tb);
    echo_200(&tb, &server);
    let report = server.finish();
    assert!(report["requests"].as_u64().unwrap() >= 200, "{report}");
}

/// Runs `sockperf ping-pong` for two seconds from B against `to`.
fn sockperf(tb: &Testbed, to: SocketAddr) -> Sockperf {
    let (ip, port) = (to.ip().to_string(), to.port().to_string());
    let args = [
        "ping-pong",
        "-i",
        &ip,
        "-p",
        &port,
        "-t",
        "2",
        "--msg-size",
        "64",
    ];
    let out = tb
        .cmd(Side::B, "sockperf", args)
        .stdin(Stdio::null())
        .output()
        .expect("sockperf is missing: run `cargo xtask setup` (Debian package sockperf)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sockperf failed:\n{text}");
    parse_sockperf(&text).unwrap_or_else(|| panic!("no latency summary from sockperf:\n{text}"))
}

fn check_sockperf(mode: &str, s: &Sockperf, report: &Value) {
    eprintln!(
        "sockperf ping-pong vs netmit serve --mode {mode}: avg {:.3} us, p50 {:?}, p99 {:?}, \
         {} observations; server: {} requests, BusyPollRxPackets +{}",
        s.avg_usec,
        s.p50,
        s.p99,
        s.observations,
        report["requests"],
        report["busy_poll_rx_packets"]
    );
    assert!(s.avg_usec > 0.0, "{mode}: {s:?}");
    assert!(s.observations > 0, "{mode}: {s:?}");
    assert_eq!(report["reply"], "sockperf");
    assert!(
        report["replies"].as_u64().unwrap() >= s.observations,
        "{mode}: the server answered every observation: {report}"
    );
}

static SCRATCH: AtomicU32 = AtomicU32::new(0);

/// A private tune journal (`NETMIT_RUN_DIR`) whose settings are restored, and whose
/// directory is removed, when the guard drops.
struct TuneJournal<'tb> {
    tb: &'tb Testbed,
    dir: PathBuf,
}

impl<'tb> TuneJournal<'tb> {
    fn new(tb: &'tb Testbed) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "netmit-serve-{}-{}",
            std::process::id(),
            SCRATCH.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self { tb, dir }
    }

    fn netmit(&self, args: &[&str]) -> Output {
        self.tb
            .cmd(Side::A, netmit_bin(), args)
            .env("NETMIT_RUN_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("spawn netmit")
    }

    fn set(&self, args: &[&str]) {
        let mut full = vec!["tune", "set", self.tb.if_a()];
        full.extend_from_slice(args);
        let out = self.netmit(&full);
        assert!(
            out.status.success(),
            "netmit tune set: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn restore(&self) -> Output {
        self.netmit(&["tune", "restore"])
    }
}

impl Drop for TuneJournal<'_> {
    fn drop(&mut self) {
        let out = self.restore();
        if !out.status.success() {
            eprintln!(
                "netmit tune restore: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// THE MUST-SHOW: a client nobody here wrote, sockperf, measures latency against `netmit
/// serve` in every mode: epoll; busy-poll with the veth's NAPI present (native XDP) and
/// IRQ suspension set up, where the kernel's own BusyPollRxPackets must move; and xsk.
#[test]
fn sockperf_ping_pong_measures_every_mode() {
    if !require_root("sockperf_ping_pong_measures_every_mode") {
        return;
    }
    let tb = Testbed::new().unwrap();
    // Native XDP gives the veth its NAPI; the rule sends only XSK_PORT to AF_XDP.
    attach(&tb, true);
    let sockperf_reply = ["--reply", "sockperf"];

    let server = Server::start(
        &tb,
        tb.if_a(),
        KERNEL_PORT,
        &["--mode", "epoll", sockperf_reply[0], sockperf_reply[1]],
    );
    let epoll = sockperf(&tb, server.to);
    let report = server.finish();
    check_sockperf("epoll", &epoll, &report);

    let journal = TuneJournal::new(&tb);
    journal.set(&[
        "--defer-hard-irqs",
        "100",
        "--gro-flush-timeout",
        "20us",
        "--irq-suspend-timeout",
        "20ms",
    ]);
    let server = Server::start(
        &tb,
        tb.if_a(),
        KERNEL_PORT,
        &["--mode", "busy-poll", sockperf_reply[0], sockperf_reply[1]],
    );
    let busy = sockperf(&tb, server.to);
    let report = server.finish();
    check_sockperf("busy-poll", &busy, &report);
    let busy_polled = report["busy_poll_rx_packets"].as_u64().unwrap();
    assert!(
        busy_polled > 0,
        "BusyPollRxPackets did not move in busy-poll mode: {report}"
    );
    assert!(report["per_thread"][0]["napi_id"].as_u64().unwrap() > 0);
    let restored = journal.restore();
    assert!(
        restored.status.success(),
        "netmit tune restore: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    drop(journal);

    let server = Server::start(
        &tb,
        tb.if_a(),
        XSK_PORT,
        &["--mode", "xsk", sockperf_reply[0], sockperf_reply[1]],
    );
    let xsk = sockperf(&tb, server.to);
    let report = server.finish();
    check_sockperf("xsk", &xsk, &report);
    assert_eq!(report["busy_poll_rx_packets"], Value::Null);
}

/// Each AF_XDP wait strategy (`--xsk-wait`) answers sockperf's ping-pong requests
/// correctly: 300 pong requests of 64 bytes from a kernel socket, one at a time with gaps
/// (so that spin-then-sleep goes to sleep between some of them), each answered with the
/// same message and only the client flag cleared; a warm-up message gets no reply; the
/// report names the strategy. Correctness only: latency is the benchmark's business
/// (`cargo xtask bench xsk-latency`).
#[test]
fn xsk_mode_answers_sockperf_with_every_wait_strategy() {
    if !require_root("xsk_mode_answers_sockperf_with_every_wait_strategy") {
        return;
    }
    let tb = Testbed::new().unwrap();
    attach(&tb, true);
    for (wait, name, spin) in [
        ("sleep", "sleep", None),
        ("spin", "spin", None),
        ("spin-then-sleep:50", "spin-then-sleep", Some(50)),
        ("spin-then-sleep", "spin-then-sleep", Some(20)),
    ] {
        let server = Server::start(
            &tb,
            tb.if_a(),
            XSK_PORT,
            &["--mode", "xsk", "--reply", "sockperf", "--xsk-wait", wait],
        );
        let s = client(&tb, server.to);
        let mut buf = [0u8; 256];
        for seq in 1..=300u64 {
            let mut req = sockperf_request(seq);
            req.resize(64, (seq % 251) as u8);
            s.send_to(&req, server.to).unwrap();
            let (n, from) = s
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("--xsk-wait {wait}: no reply to {seq}: {e}"));
            assert_eq!(from, server.to, "--xsk-wait {wait}");
            let mut want = req.clone();
            want[9] &= !1; // MASK_CLIENT cleared, all else as sent
            assert_eq!(&buf[..n], &want[..], "--xsk-wait {wait}: reply to {seq}");
            if seq % 50 == 0 {
                // Longer than any spin: the next request finds the thread asleep.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // A warm-up message (MASK_WARMUP) is not answered.
        let mut warmup = sockperf_request(999);
        warmup[9] |= 4;
        s.send_to(&warmup, server.to).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(
            s.recv_from(&mut buf).is_err(),
            "--xsk-wait {wait}: a warm-up message was answered"
        );
        let report = server.finish();
        assert_eq!(report["mode"], "xsk", "{report}");
        assert!(report["replies"].as_u64().unwrap() >= 300, "{report}");
        assert!(report["unanswered"].as_u64().unwrap() >= 1, "{report}");
        let x = &report["per_thread"][0]["xsk"];
        assert_eq!(x["wait"], name, "{report}");
        assert_eq!(x["spin_usecs"].as_u64(), spin, "{report}");
    }
}

#[test]
fn serve_errors_are_one_line() {
    if !require_root("serve_errors_are_one_line") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let port = KERNEL_PORT.to_string();
    // `serve TARGET --port 9300 EXTRA... --duration 0.2`
    let args = |target: &str, extra: &[&str]| -> Vec<String> {
        ["serve", target, "--port", &port]
            .iter()
            .chain(extra)
            .chain(&["--duration", "0.2"])
            .map(|s| s.to_string())
            .collect()
    };
    let fails = |privileged: bool, v: &[String], needle: &str| {
        let a: Vec<&str> = v.iter().map(String::as_str).collect();
        let r = if privileged {
            netmit(&tb, Side::A, &a)
        } else {
            netmit_unprivileged(&tb, Side::A, &a)
        };
        assert!(!r.ok, "{a:?} succeeded");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{a:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{a:?}: `{needle}` not in {}",
            r.stderr
        );
    };
    fails(true, &args("nmnosuch0", &[]), "neither an interface");
    fails(
        true,
        &args("198.18.255.77", &[]),
        "is not an address of this network namespace",
    );
    // The port is taken by another socket in A.
    let holder = tb
        .in_ns(Side::A, || UdpSocket::bind((tb.ip_a(), KERNEL_PORT)))
        .unwrap();
    fails(
        true,
        &args(tb.if_a(), &["--mode", "busy-poll"]),
        "is in use by another socket",
    );
    fails(
        true,
        &args(tb.if_a(), &["--threads", "3"]),
        "is in use by another socket",
    );
    drop(holder);
    fails(true, &args(tb.if_a(), &["--mode", "xsk"]), "not attached");
    attach(&tb, false);
    fails(
        true,
        &args(tb.if_a(), &["--mode", "xsk"]),
        "no steering rule",
    );
    fails(
        true,
        &args("0.0.0.0", &["--mode", "xsk"]),
        "needs an interface",
    );
    fails(
        true,
        &args(tb.if_a(), &["--mode", "xsk", "--threads", "2"]),
        "one thread per RX queue",
    );
    fails(
        true,
        &args(tb.if_a(), &["--threads", "2", "--cpu", "1"]),
        "one CPU per thread",
    );
    // Without privileges: busy-poll budgets above 64 and xsk mode need them.
    fails(
        false,
        &args(
            tb.if_a(),
            &["--mode", "busy-poll", "--busy-poll-budget", "128"],
        ),
        "CAP_NET_ADMIN",
    );
    fails(false, &args(tb.if_a(), &["--mode", "xsk"]), "needs root");
    // Unprivileged busy-poll with the default budget works: the socket options, which
    // need CAP_NET_ADMIN, are left out and the report says so.
    let v = args(tb.if_a(), &["--mode", "busy-poll", "--json"]);
    let a: Vec<&str> = v.iter().map(String::as_str).collect();
    let r = netmit_unprivileged(&tb, Side::A, &a);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.json()["busy_poll"]["socket_options"], false);
    assert!(r.stderr.contains("CAP_NET_ADMIN"), "{}", r.stderr);
}
