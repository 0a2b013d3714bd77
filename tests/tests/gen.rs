//! `netmit gen` on veth testbeds, judged by the receiving side's kernel: exact counts
//! against namespace A's IP, UDP and link counters, checksums through A's UDP stack
//! (`Udp.InCsumErrors`), flows by the source and destination ports A's sockets see, the
//! rate by A's counters sampled during the run, and one-line errors.
//!
//! The generator sends with BPF_PROG_TEST_RUN live frames and XDP_TX out of B's veth
//! end; a veth hands such frames to its peer only if the peer has a NAPI instance, so A
//! gets GRO turned on (the tests that need delivery say so).
//!
//! Every test takes [`SERIAL`]: the rate test must not share the two cores with a test
//! sending at full speed, and, less obviously, with any generator starting or stopping.
//! A generator keeps its program in the kernel's XDP dispatcher (see
//! `netmit_user::gen`), and every change of the dispatcher holds its mutex for an RCU
//! grace period; every `BPF_PROG_TEST_RUN` of an XDP program takes that mutex, so another
//! test's `netmit gen` starting up stalled the paced sender for 10-120 ms.

use std::{
    collections::BTreeMap,
    fs,
    net::{SocketAddr, UdpSocket},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use netmit_lab::r#gen::{GenConfig, Generator, MacAddr, PortRange, Rate};
use serde_json::Value;
use tests::{
    netmit::{Run, netmit, netmit_unprivileged},
    support::require_root,
    testbed::{Side, Testbed},
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn mac(m: [u8; 6]) -> String {
    MacAddr(m).to_string()
}

/// A UDP socket in A with room for everything a test sends (root may exceed rmem_max).
fn receiver(tb: &Testbed, port: u16) -> UdpSocket {
    let addr = SocketAddr::new(tb.ip_a().into(), port);
    let s = tb
        .in_ns(Side::A, move || UdpSocket::bind(addr))
        .expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    netmit_user::sys::socket::set_int(
        std::os::fd::AsFd::as_fd(&s),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        256 << 20,
    )
    .expect("SO_RCVBUFFORCE");
    s
}

/// Receives until the socket stays quiet; counts datagrams per source port.
fn drain(s: &UdpSocket) -> BTreeMap<u16, u64> {
    let mut buf = [0u8; 2048];
    let mut ports = BTreeMap::new();
    while let Ok((_, from)) = s.recv_from(&mut buf) {
        *ports.entry(from.port()).or_insert(0) += 1;
    }
    ports
}

/// (rx_packets, rx_dropped) of `side`'s veth end, from `ip -s -j link`.
fn link_rx(tb: &Testbed, side: Side) -> (u64, u64) {
    let out = tb
        .run(
            side,
            "ip",
            ["-s", "-j", "link", "show", "dev", tb.ifname(side)],
        )
        .expect("ip -s link");
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    let rx = &v[0]["stats64"]["rx"];
    (
        rx["packets"].as_u64().unwrap(),
        rx["dropped"].as_u64().unwrap(),
    )
}

/// The receive-side counters the tests compare: IPv4 packets in, UDP datagrams
/// delivered, UDP checksum errors, UDP receive-buffer drops, and the link's own count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Rx {
    /// Every counter of A's /proc/net/snmp and netstat, for the failure message.
    all: BTreeMap<String, u64>,
    ip_in: u64,
    udp_in: u64,
    csum_errors: u64,
    rcvbuf_errors: u64,
    link: u64,
    link_dropped: u64,
}

fn rx(tb: &Testbed) -> Rx {
    let c = tb.proc_net_counters(Side::A, "snmp").expect("snmp");
    let mut all: BTreeMap<String, u64> = c.iter().map(|(k, v)| (k.clone(), *v)).collect();
    all.extend(tb.proc_net_counters(Side::A, "netstat").expect("netstat"));
    let (link, link_dropped) = link_rx(tb, Side::A);
    Rx {
        all,
        ip_in: c["Ip.InReceives"],
        udp_in: c["Udp.InDatagrams"],
        csum_errors: c["Udp.InCsumErrors"],
        rcvbuf_errors: c["Udp.RcvbufErrors"],
        link,
        link_dropped,
    }
}

/// Waits (up to two seconds) until A's IP layer has seen `n` more packets than `before`.
fn wait_ip_in(tb: &Testbed, before: &Rx, n: u64) -> Rx {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = rx(tb);
        if now.ip_in - before.ip_in >= n || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn gen_args<'a>(tb: &'a Testbed, mac_a: &'a str, ip_a: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["gen", tb.if_b(), "--dst-mac", mac_a, "--dst-ip", ip_a];
    args.extend_from_slice(rest);
    args
}

#[test]
fn exact_count_reaches_the_receiver() {
    if !require_root("exact_count_reaches_the_receiver") {
        return;
    }
    let _serial = serial();
    let tb = Testbed::new().expect("testbed");
    tb.set_gro(Side::A, true)
        .expect("GRO on A gives its veth a NAPI");
    let sock = receiver(&tb, 9200);
    let (mac_a, ip_a) = (mac(tb.mac_a()), tb.ip_a().to_string());
    let before = rx(&tb);

    // Drain while sending: at full speed the datagrams would otherwise pile up.
    let received = thread::scope(|s| {
        let reader = s.spawn(|| drain_until(&sock, 20_000, Duration::from_secs(10)));
        let run = netmit(
            &tb,
            Side::B,
            &gen_args(
                &tb,
                &mac_a,
                &ip_a,
                &[
                    "--dport", "9200", "--flows", "4", "--size", "64", "--max", "--count", "20000",
                    "--json",
                ],
            ),
        );
        assert!(run.ok, "gen failed: {}", run.stderr);
        let report = run.json();
        assert_eq!(report["packets"], 20_000, "{report}");
        assert_eq!(report["program_packets"], 20_000, "{report}");
        assert_eq!(report["bytes"], 20_000 * 64);
        assert_eq!(report["stopped"], false);
        let tx = report["interface"]["tx_packets"].as_u64().unwrap();
        assert!(
            tx >= 20_000,
            "B's veth counted {tx} frames as sent: {report}"
        );
        assert_eq!(report["interface"]["tx_dropped"], 0, "{report}");
        assert!(report["pps"].as_f64().unwrap() > 0.0);
        reader.join().unwrap()
    });
    let after = wait_ip_in(&tb, &before, 20_000);
    let d = |f: fn(&Rx) -> u64| f(&after) - f(&before);
    eprintln!(
        "A: ip_in +{}, udp_in +{}, link rx +{} dropped +{}, socket {}",
        d(|r| r.ip_in),
        d(|r| r.udp_in),
        d(|r| r.link),
        d(|r| r.link_dropped),
        received.values().sum::<u64>()
    );
    // Where the datagrams went when they did not all reach the socket.
    let moved: Vec<String> = after
        .all
        .iter()
        .filter_map(|(k, v)| {
            let was = before.all.get(k).copied().unwrap_or(0);
            (*v != was).then(|| format!("{k} +{}", v.wrapping_sub(was)))
        })
        .collect();
    // And A's UDP sockets (queues and drops) as the kernel sees them.
    let sockets = tb
        .in_ns(Side::A, || {
            std::fs::read_to_string("/proc/thread-self/net/udp")
        })
        .unwrap_or_default();
    // B's kernel sends A no IPv4 of its own, so A's IPv4 count is exactly the generator's.
    assert_eq!(
        d(|r| r.ip_in),
        20_000,
        "A's IPv4 InReceives; moved: {moved:?}; sockets:\n{sockets}"
    );
    assert_eq!(
        d(|r| r.udp_in),
        20_000,
        "A's UDP InDatagrams; moved: {moved:?}; sockets:\n{sockets}"
    );
    assert_eq!(d(|r| r.csum_errors), 0, "every UDP checksum verified");
    assert_eq!(d(|r| r.rcvbuf_errors), 0);
    assert_eq!(received.values().sum::<u64>(), 20_000, "socket count");
    // Round robin over 4 flows: 5000 datagrams from each source port.
    assert_eq!(
        received,
        (32768..32772)
            .map(|p| (p, 5000))
            .collect::<BTreeMap<_, _>>(),
        "4 flows"
    );
    // The link counts everything delivered or dropped on receive, including B's own
    // IPv6 housekeeping (router solicitations, MLD) that may fall into the window.
    let link = d(|r| r.link) + d(|r| r.link_dropped);
    assert!(
        (20_000..=20_020).contains(&link),
        "A's veth received + dropped {link}, sent 20000"
    );
}

/// Receives until `n` datagrams arrived or `limit` passed; counts per source port.
fn drain_until(s: &UdpSocket, n: u64, limit: Duration) -> BTreeMap<u16, u64> {
    let start = Instant::now();
    let mut ports = BTreeMap::new();
    let mut total = 0;
    let mut buf = [0u8; 2048];
    let mut errors = BTreeMap::new();
    while total < n && start.elapsed() < limit {
        match s.recv_from(&mut buf) {
            Ok((_, from)) => {
                *ports.entry(from.port()).or_insert(0) += 1;
                total += 1;
            }
            Err(e) => *errors.entry(e.to_string()).or_insert(0u64) += 1,
        }
    }
    if total < n {
        eprintln!("drain: {total} of {n} datagrams; receive errors: {errors:?}");
    }
    ports
}

#[test]
fn flows_spread_over_source_and_destination_ports() {
    if !require_root("flows_spread_over_source_and_destination_ports") {
        return;
    }
    let _serial = serial();
    let tb = Testbed::new().expect("testbed");
    tb.set_gro(Side::A, true).unwrap();
    let (s0, s1) = (receiver(&tb, 9200), receiver(&tb, 9201));
    let (mac_a, ip_a) = (mac(tb.mac_a()), tb.ip_a().to_string());
    let run = netmit(
        &tb,
        Side::B,
        &gen_args(
            &tb,
            &mac_a,
            &ip_a,
            &[
                "--dport",
                "9200-9201",
                "--flows",
                "4",
                "--sport",
                "40000",
                "--size",
                "200",
                "--rate",
                "20000",
                "--count",
                "400",
                "--json",
            ],
        ),
    );
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.json()["packets"], 400);
    // Flow i is source port 40000 + i to destination port 9200 + i % 2, round robin.
    let expect = |ports: [u16; 2]| ports.iter().map(|&p| (p, 100)).collect::<BTreeMap<_, _>>();
    assert_eq!(drain(&s0), expect([40000, 40002]), "port 9200");
    assert_eq!(drain(&s1), expect([40001, 40003]), "port 9201");
}

#[test]
fn ipv6_frames_have_valid_checksums() {
    if !require_root("ipv6_frames_have_valid_checksums") {
        return;
    }
    let _serial = serial();
    let tb = Testbed::new().expect("testbed");
    tb.set_gro(Side::A, true).unwrap();
    let addr = SocketAddr::new(tb.ip6_a().into(), 9300);
    let sock = tb.in_ns(Side::A, move || UdpSocket::bind(addr)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (mac_a, ip6_a) = (mac(tb.mac_a()), tb.ip6_a().to_string());
    let csum_before = snmp6(&tb, "Udp6InCsumErrors");
    let run = netmit(
        &tb,
        Side::B,
        &gen_args(
            &tb,
            &mac_a,
            &ip6_a,
            &[
                "--dport", "9300", "--flows", "3", "--size", "1500", "--rate", "10000", "--count",
                "30", "--json",
            ],
        ),
    );
    assert!(run.ok, "{}", run.stderr);
    let got = drain(&sock);
    assert_eq!(got.values().sum::<u64>(), 30, "{got:?}");
    assert_eq!(got.len(), 3);
    assert_eq!(snmp6(&tb, "Udp6InCsumErrors"), csum_before);
}

fn snmp6(tb: &Testbed, name: &str) -> u64 {
    let text = tb
        .in_ns(Side::A, || {
            fs::read_to_string("/proc/thread-self/net/snmp6")
        })
        .expect("snmp6");
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next()? == name).then(|| it.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in snmp6"))
}

/// A's IPv4 InReceives, read on a thread inside A (`/proc/thread-self/net/snmp`).
fn ip_in_receives() -> u64 {
    let text = fs::read_to_string("/proc/thread-self/net/snmp").expect("snmp");
    let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "InReceives")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// The library from a thread of namespace B at 50,000 pps for two seconds. The
/// generator's own pacing must hold within 5%; A's counter, sampled every 20 ms during
/// the run, must see the same frames (exactly) and the rate within 10% (a wider band:
/// the samples are timed by a thread that shares two cores with sender and receiver).
#[test]
fn fixed_rate_holds() {
    if !require_root("fixed_rate_holds") {
        return;
    }
    let _serial = serial();
    let tb = Testbed::new().expect("testbed");
    tb.set_gro(Side::A, true).unwrap();
    let sock = receiver(&tb, 9200);
    const RATE: u64 = 50_000;
    let mut cfg = GenConfig::new(
        tb.if_b(),
        MacAddr(tb.mac_a()),
        tb.ip_a().into(),
        PortRange::single(9200),
    );
    cfg.flows = 8;
    cfg.rate = Rate::Pps(RATE);
    cfg.duration = Some(Duration::from_secs(2));

    let done = AtomicBool::new(false);
    let ip_before = tb.in_ns(Side::A, ip_in_receives);
    let (report, samples) = thread::scope(|s| {
        // A server reads what it receives. (Unread datagrams pin the pages of the
        // generator's page pools, whose release the kernel then retries from a
        // workqueue, which competes with the sender for the two cores.)
        s.spawn(|| drain_until(&sock, u64::MAX, Duration::from_secs(3)));
        let poller = s.spawn(|| {
            tb.in_ns(Side::A, || {
                let mut samples = Vec::new();
                let start = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    let t0 = start.elapsed();
                    let n = ip_in_receives();
                    let t1 = start.elapsed();
                    // A sample whose read was itself descheduled has no precise time.
                    if t1 - t0 < Duration::from_millis(2) {
                        samples.push(((t0 + t1) / 2, n));
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                samples
            })
        });
        let report = tb.in_ns(Side::B, || {
            let mut g = Generator::new(cfg).expect("generator");
            g.run(&AtomicBool::new(false), |_| {}).expect("run")
        });
        thread::sleep(Duration::from_millis(100));
        done.store(true, Ordering::Relaxed);
        (report, poller.join().unwrap())
    });
    let ip_after = tb.in_ns(Side::A, ip_in_receives);

    let within = |x: f64, band: f64| (x / RATE as f64 - 1.0).abs() <= band;
    eprintln!(
        "generator: {} frames in {:.4} s = {:.0} pps, behind {}, samples {:?}",
        report.packets,
        report.duration_secs,
        report.pps,
        report.behind_schedule,
        report
            .samples
            .iter()
            .map(|s| s.pps.round())
            .collect::<Vec<_>>()
    );
    assert!(within(report.pps, 0.05), "generator rate {:.0}", report.pps);
    assert!(
        within(report.packets as f64 / 2.0, 0.05),
        "{} frames in 2 s",
        report.packets
    );
    for s in report.samples.iter().filter(|s| s.secs > 0.5) {
        assert!(within(s.pps, 0.05), "generator sample {s:?}");
    }
    assert_eq!(
        ip_after - ip_before,
        report.packets,
        "A received what B sent"
    );

    // Rate seen by A: between the first sample after traffic started and the last one
    // before it ended, so that the window lies inside the run.
    let total = ip_after;
    let inside: Vec<_> = samples
        .iter()
        .filter(|(_, n)| *n > ip_before && *n < total)
        .collect();
    assert!(
        inside.len() >= 20,
        "too few receiver samples: {}",
        inside.len()
    );
    let ((t1, n1), (t2, n2)) = (inside[0], inside[inside.len() - 1]);
    let seen = (n2 - n1) as f64 / (*t2 - *t1).as_secs_f64();
    eprintln!("receiver: {seen:.0} pps over {:?}", *t2 - *t1);
    assert!(within(seen, 0.10), "receiver saw {seen:.0} pps");
}

/// Without a NAPI on the peer, a veth drops XDP frames silently: the syscall succeeds,
/// so the generator must say so from the interface's counters.
#[test]
fn undelivered_frames_are_reported() {
    if !require_root("undelivered_frames_are_reported") {
        return;
    }
    let _serial = serial();
    let tb = Testbed::new().expect("testbed");
    let (mac_a, ip_a) = (mac(tb.mac_a()), tb.ip_a().to_string());
    let before = rx(&tb);
    let run = netmit(
        &tb,
        Side::B,
        &gen_args(
            &tb,
            &mac_a,
            &ip_a,
            &[
                "--dport", "9200", "--count", "1000", "--rate", "100000", "--json",
            ],
        ),
    );
    assert!(run.ok, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["packets"], 1000);
    assert!(
        report["interface"]["tx_packets"].as_u64().unwrap() < 1000,
        "{report}"
    );
    assert!(
        run.stderr
            .contains("peer takes frames only with native XDP or GRO on"),
        "{}",
        run.stderr
    );
    assert_eq!(rx(&tb).ip_in, before.ip_in, "nothing reached A's IP layer");
}

fn assert_error(run: &Run, needle: &str) {
    assert!(!run.ok, "expected failure, got success: {}", run.stdout);
    let err = run.stderr.trim();
    assert_eq!(err.lines().count(), 1, "error is not one line: {err}");
    assert!(err.contains(needle), "error lacks `{needle}`: {err}");
}

/// `netmit gen IFACE --dst-mac MAC --dst-ip IP --count 1 EXTRA...` (`--dport 9200` unless
/// EXTRA has one).
fn gen_cmd(iface: &str, mac: &str, ip: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "gen",
        iface,
        "--dst-mac",
        mac,
        "--dst-ip",
        ip,
        "--count",
        "1",
    ];
    if !extra.contains(&"--dport") {
        args.extend_from_slice(&["--dport", "9200"]);
    }
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn bad_input_gives_one_line_errors() {
    if !require_root("bad_input_gives_one_line_errors") {
        return;
    }
    let _serial = serial();
    let tb = Testbed::new().expect("testbed");
    let (mac_a, ip_a, if_b) = (mac(tb.mac_a()), tb.ip_a().to_string(), tb.if_b());
    let before = rx(&tb);
    for (args, needle) in [
        (gen_cmd("nmnosuch0", &mac_a, &ip_a, &[]), "does not exist"),
        (
            gen_cmd(if_b, &mac_a, &ip_a, &["--size", "20"]),
            "frame size 20 is out of range",
        ),
        (
            gen_cmd(if_b, "02:00:00:00:00", &ip_a, &[]),
            "is not a MAC address",
        ),
        (
            gen_cmd(if_b, &mac_a, "198.18.0.300", &[]),
            "is not an IPv4 or IPv6 address",
        ),
        (
            gen_cmd(if_b, &mac_a, &ip_a, &["--src-ip", "2001:db8::1"]),
            "same address family",
        ),
        (
            gen_cmd(if_b, &mac_a, &ip_a, &["--flows", "70000"]),
            "beyond 65535",
        ),
        (
            gen_cmd(if_b, &mac_a, &ip_a, &["--dport", "9300-9200"]),
            "not a port or port range",
        ),
    ] {
        assert_error(&netmit(&tb, Side::B, &strs(&args)), needle);
    }
    let args = gen_cmd(if_b, &mac_a, &ip_a, &[]);
    assert_error(
        &netmit_unprivileged(&tb, Side::B, &strs(&args)),
        "needs root",
    );
    assert_eq!(rx(&tb).ip_in, before.ip_in, "nothing was sent");
}
