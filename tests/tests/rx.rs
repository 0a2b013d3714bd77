//! `netmit rx` on a veth testbed: every steered packet is received or counted as dropped,
//! non-steered traffic still reaches the kernel meanwhile, sockets close cleanly (the
//! XSK map slot empties, the queue can be reused at once), `--echo` answers a plain
//! kernel UDP client byte for byte, a detach under `rx` stops it with an error (or, with
//! `--wait`, it registers in the next attachment), and bad requests fail clearly.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, UdpSocket},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    netmit::{netmit, netmit_unprivileged},
    support::{netmit_bin, require_root},
    testbed::{Side, Testbed},
};

const XSK_PORT: u16 = 9100;
const KERNEL_PORT: u16 = 7000;

fn status(tb: &Testbed) -> Value {
    let run = netmit(
        tb,
        Side::A,
        &["status", tb.if_a(), "--json", "--interval", "0"],
    );
    assert!(run.ok, "{}", run.stderr);
    run.json()["interfaces"][0].clone()
}

fn verdict(s: &Value, name: &str) -> u64 {
    s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["verdicts"][name]["packets"].as_u64().unwrap())
        .sum()
}

fn attach(tb: &Testbed) {
    let run = netmit(
        tb,
        Side::A,
        &[
            "attach",
            tb.if_a(),
            "--mode",
            "native",
            "--steer",
            &format!("proto=udp,dport={XSK_PORT},action=xsk"),
        ],
    );
    assert!(run.ok, "{}", run.stderr);
}

fn spawn_rx(tb: &Testbed, extra: &[&str]) -> Child {
    let mut args = vec!["rx", tb.if_a(), "--json"];
    args.extend_from_slice(extra);
    tb.cmd(Side::A, netmit_bin(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rx")
}

fn client(tb: &Testbed) -> UdpSocket {
    let s = tb.in_ns(Side::B, || UdpSocket::bind("0.0.0.0:0")).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Sends probes until the program redirects one to a socket (the rx process registered).
fn wait_registered(tb: &Testbed, sender: &UdpSocket) {
    let to = SocketAddr::new(tb.ip_a().into(), XSK_PORT);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        sender.send_to(b"probe", to).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        if verdict(&status(tb), "xsk") > 0 {
            return;
        }
    }
    panic!("netmit rx never registered its socket");
}

/// Waits until the verdict counter `name` reaches `n` (delivery through veth's NAPI is
/// asynchronous to `send_to`).
fn wait_verdict(tb: &Testbed, name: &str, n: u64) -> u64 {
    let start = Instant::now();
    loop {
        let v = verdict(&status(tb), name);
        if v >= n || start.elapsed() > Duration::from_secs(5) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Forwards a child's stderr lines to a channel, so a test can wait for one.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line from `lines` that contains `needle`, within `timeout`.
fn wait_line(lines: &mpsc::Receiver<String>, needle: &str, timeout: Duration) -> String {
    let end = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    panic!("no stderr line with `{needle}` within {timeout:?}; saw {seen:?}");
}

fn detach(tb: &Testbed) {
    let run = netmit(tb, Side::A, &["detach", tb.if_a()]);
    assert!(run.ok, "{}", run.stderr);
}

fn finish(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rx failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rx --json")
}

#[test]
fn rx_receives_every_steered_packet_or_counts_it() {
    if !require_root("rx_receives_every_steered_packet_or_counts_it") {
        return;
    }
    let tb = Testbed::new().unwrap();
    attach(&tb);
    let kernel_rx = tb
        .in_ns(Side::A, || UdpSocket::bind((tb.ip_a(), KERNEL_PORT)))
        .unwrap();
    kernel_rx
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let rx = spawn_rx(&tb, &["--duration", "4"]);
    let sender = client(&tb);
    wait_registered(&tb, &sender);
    let before = verdict(&status(&tb), "xsk");

    let xsk_to = SocketAddr::new(tb.ip_a().into(), XSK_PORT);
    let kernel_to = SocketAddr::new(tb.ip_a().into(), KERNEL_PORT);
    let mut kernel_got = 0;
    for i in 0..2000 {
        sender.send_to(&[i as u8; 32], xsk_to).unwrap();
        if i % 10 == 0 {
            sender.send_to(b"to the kernel", kernel_to).unwrap();
        }
        if i % 100 == 99 {
            let mut buf = [0u8; 64];
            while kernel_rx.recv_from(&mut buf).is_ok() {
                kernel_got += 1;
                kernel_rx
                    .set_read_timeout(Some(Duration::from_millis(1)))
                    .unwrap();
            }
        }
    }
    assert!(
        tb.ping(Side::B, tb.ip_a(), 2),
        "ping must work while rx runs"
    );
    let report = finish(rx);
    let mut buf = [0u8; 64];
    kernel_rx
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while kernel_rx.recv_from(&mut buf).is_ok() {
        kernel_got += 1;
    }
    assert_eq!(
        kernel_got, 200,
        "non-steered UDP reaches the kernel socket meanwhile"
    );

    let s = status(&tb);
    let redirected = verdict(&s, "xsk");
    assert_eq!(
        redirected - before,
        2000,
        "the program redirected every datagram sent"
    );
    let q = &report["queues"][0];
    let received = q["packets"].as_u64().unwrap();
    let dropped = q["rx_dropped"].as_u64().unwrap() + q["rx_ring_full"].as_u64().unwrap();
    assert_eq!(
        received + dropped,
        redirected,
        "sent = received + counted drops: {report}"
    );

    // The socket is gone from the XSK map: the next datagrams fall back to the kernel.
    let fallback = verdict(&s, "xsk_fallback");
    for _ in 0..10 {
        sender.send_to(b"after rx", xsk_to).unwrap();
    }
    assert_eq!(
        wait_verdict(&tb, "xsk_fallback", fallback + 10),
        fallback + 10
    );

    // A new rx on the same queue works right away (the kernel's EBUSY window is retried).
    let again = spawn_rx(&tb, &["--duration", "2"]);
    wait_registered(&tb, &sender);
    for _ in 0..100 {
        sender.send_to(b"again", xsk_to).unwrap();
    }
    let again = finish(again);
    assert!(again["packets"].as_u64().unwrap() >= 100, "{again}");
}

#[test]
fn rx_echo_answers_a_kernel_udp_client() {
    if !require_root("rx_echo_answers_a_kernel_udp_client") {
        return;
    }
    let tb = Testbed::new().unwrap();
    attach(&tb);
    let rx = spawn_rx(&tb, &["--echo", "--duration", "3"]);
    let sock = client(&tb);
    wait_registered(&tb, &sock);
    // Drain echoes of the probes.
    let mut buf = [0u8; 2048];
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while sock.recv_from(&mut buf).is_ok() {}
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let to = SocketAddr::new(tb.ip_a().into(), XSK_PORT);
    for i in 0..200usize {
        let payload: Vec<u8> = (0..(1 + i * 7 % 1400))
            .map(|j| (i * 31 + j) as u8)
            .collect();
        sock.send_to(&payload, to).unwrap();
        let (n, from) = sock.recv_from(&mut buf).expect("echo reply");
        assert_eq!(
            from, to,
            "the reply comes from the server's address and port"
        );
        assert_eq!(&buf[..n], &payload[..], "payload {i} echoed byte for byte");
    }
    let report = finish(rx);
    assert!(report["queues"][0]["tx_completed"].as_u64().unwrap() >= 200);
}

#[test]
fn rx_stops_with_an_error_when_detached_under_it() {
    if !require_root("rx_stops_with_an_error_when_detached_under_it") {
        return;
    }
    let tb = Testbed::new().unwrap();
    attach(&tb);
    let mut rx = spawn_rx(&tb, &[]);
    let sender = client(&tb);
    wait_registered(&tb, &sender);
    let detached_at = Instant::now();
    detach(&tb);
    let end = Instant::now() + Duration::from_secs(10);
    while rx.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            rx.kill().unwrap();
            panic!("rx kept running after the detach");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let noticed = detached_at.elapsed();
    let out = rx.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("netmit was detached from") && stderr.contains("--wait"),
        "the error names the cause and the choices: {stderr}"
    );
    // The report of what was received still comes first.
    let report: Value = serde_json::from_slice(&out.stdout).expect("rx --json report");
    assert!(report["packets"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        noticed < Duration::from_secs(5),
        "noticed after {noticed:?}"
    );
}

#[test]
fn rx_wait_registers_in_the_next_attachment() {
    if !require_root("rx_wait_registers_in_the_next_attachment") {
        return;
    }
    let tb = Testbed::new().unwrap();
    attach(&tb);
    let mut rx = spawn_rx(&tb, &["--wait", "--duration", "20"]);
    let lines = stderr_lines(&mut rx);
    let sender = client(&tb);
    wait_registered(&tb, &sender);
    detach(&tb);
    wait_line(&lines, "waiting for `netmit attach", Duration::from_secs(5));
    attach(&tb);
    wait_line(
        &lines,
        "registered in the new attachment",
        Duration::from_secs(5),
    );
    // The new program redirects to the same process again.
    wait_registered(&tb, &sender);
    let to = SocketAddr::new(tb.ip_a().into(), XSK_PORT);
    for _ in 0..100 {
        sender.send_to(b"after re-attach", to).unwrap();
    }
    let redirected = wait_verdict(&tb, "xsk", 101);
    assert!(redirected >= 101, "{}", status(&tb));
    interrupt(&rx);
    let report = finish(rx);
    assert!(
        report["packets"].as_u64().unwrap() >= redirected,
        "the packets of both attachments were received: {report}"
    );
}

/// Ends a running `netmit rx` the way Ctrl-C does.
fn interrupt(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT");
}

#[test]
fn rx_errors() {
    if !require_root("rx_errors") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let one_line = |args: &[&str], needle: &str| {
        let r = netmit(&tb, Side::A, args);
        assert!(!r.ok, "{args:?} succeeded");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{args:?}: `{needle}` not in {}",
            r.stderr
        );
    };
    one_line(&["rx", tb.if_a(), "--duration", "1"], "not attached");
    attach(&tb);
    one_line(
        &["rx", tb.if_a(), "--queue", "5", "--duration", "1"],
        "queue",
    );
    one_line(
        &["rx", tb.if_a(), "--mode", "zerocopy", "--duration", "1"],
        "zero-copy",
    );
    one_line(&["rx", "nmnosuch0", "--duration", "1"], "does not exist");
    let r = netmit_unprivileged(&tb, Side::A, &["rx", tb.if_a(), "--duration", "1"]);
    assert!(!r.ok && r.stderr.contains("root"), "{}", r.stderr);
    // Nothing was left registered: steered traffic still falls back to the kernel.
    let sender = client(&tb);
    sender
        .send_to(b"x", SocketAddr::new(tb.ip_a().into(), XSK_PORT))
        .unwrap();
    assert_eq!(wait_verdict(&tb, "xsk_fallback", 1), 1);
    let s = status(&tb);
    assert_eq!(verdict(&s, "xsk"), 0);
    assert_eq!(verdict(&s, "xsk_fallback"), 1);
}

#[test]
fn generator_to_rx_every_frame_accounted() {
    if !require_root("generator_to_rx_every_frame_accounted") {
        return;
    }
    let tb = Testbed::new().unwrap();
    attach(&tb);
    let rx = spawn_rx(&tb, &["--duration", "4"]);
    wait_registered(&tb, &client(&tb));
    let before = verdict(&status(&tb), "xsk");
    let mac = tb
        .mac_a()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let ip = tb.ip_a().to_string();
    let sent = netmit(
        &tb,
        Side::B,
        &[
            "gen",
            tb.if_b(),
            "--dst-mac",
            &mac,
            "--dst-ip",
            &ip,
            "--dport",
            &XSK_PORT.to_string(),
            "--flows",
            "8",
            "--size",
            "64",
            "--rate",
            "200000",
            "--count",
            "100000",
            "--json",
        ],
    );
    assert!(sent.ok, "gen failed: {}", sent.stderr);
    let sent = sent.json();
    assert_eq!(sent["packets"], 100_000, "{sent}");
    let report = finish(rx);
    let redirected = verdict(&status(&tb), "xsk") - before;
    let q = &report["queues"][0];
    let received = q["packets"].as_u64().unwrap();
    let xsk_drops = q["rx_dropped"].as_u64().unwrap() + q["rx_ring_full"].as_u64().unwrap();
    // Every frame the generator sent reached the program and was redirected...
    assert_eq!(redirected, 100_000, "status: {}", status(&tb));
    // ...and each redirected frame was received, or dropped and counted by the socket
    // (the probes sent by wait_registered are part of `received` too).
    let probes = before;
    assert_eq!(
        received + xsk_drops,
        redirected + probes,
        "rx report: {report}"
    );
}
