//! Integration tests on veth testbeds: attach in native and generic mode, real UDP, TCP and
//! ICMP traffic from the peer namespace, counters against what was sent (as the sending
//! namespace's own SNMP counters report it), live rule changes, and detach checked
//! against the kernel.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    netmit::{kernel_xdp, netmit, pin_dir, wait_prog_gone},
    support::require_root,
    testbed::{Side, Testbed},
};

const DROP_PORT: u16 = 9000;
const XSK_PORT: u16 = 9100;
const TCP_PORT: u16 = 8000;
const OTHER_PORT: u16 = 7000;

/// Sends `n` datagrams from `side` to `to`.
fn send_udp(tb: &Testbed, side: Side, to: SocketAddr, n: usize) {
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .unwrap();
    let s = tb
        .in_ns(side, move || UdpSocket::bind(bind))
        .expect("bind sender");
    for i in 0..n {
        s.send_to(format!("datagram {i}").as_bytes(), to)
            .expect("send");
        if i % 64 == 63 {
            // Stay below the receiver's socket buffer so that no datagram is lost there.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Counts datagrams until the socket stays quiet.
fn drain(s: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while s.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

fn status(tb: &Testbed) -> Value {
    let run = netmit(
        tb,
        Side::A,
        &["status", tb.if_a(), "--json", "--interval", "0"],
    );
    assert!(run.ok, "status failed: {}", run.stderr);
    run.json()["interfaces"][0].clone()
}

fn rule_packets(status: &Value, id: u64) -> u64 {
    status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("rule {id} in {status}"))["packets"]
        .as_u64()
        .unwrap()
}

fn verdict_packets(status: &Value, verdict: &str) -> u64 {
    status["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["verdicts"][verdict]["packets"].as_u64().unwrap())
        .sum()
}

/// Waits until `f` holds, for up to two seconds (counters of in-flight TCP segments).
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn steering_on_veth(mode: &str, kernel_mode: u64) {
    let tb = Testbed::new().expect("testbed");
    let a = tb.ip_a();

    let attach = netmit(
        &tb,
        Side::A,
        &[
            "attach",
            tb.if_a(),
            "--mode",
            mode,
            "--json",
            "--steer",
            &format!("proto=udp,dport={DROP_PORT},action=drop"),
            "--steer",
            &format!("proto=udp,dport={XSK_PORT},action=xsk"),
            "--steer",
            &format!("proto=tcp,dport={TCP_PORT},action=xsk"),
        ],
    );
    assert!(attach.ok, "attach failed: {}", attach.stderr);
    let attach = attach.json();
    assert_eq!(attach["mode"], mode);
    assert_eq!(attach["rule_ids"], serde_json::json!([0, 1, 2]));
    let prog_id = attach["prog_id"].as_u64().unwrap();
    assert_eq!(
        kernel_xdp(&tb, Side::A),
        Some((kernel_mode, prog_id)),
        "kernel's view after attach"
    );
    assert!(pin_dir(&tb, Side::A).join("link").exists());

    // Receivers in A, counters of B before sending.
    let drop_rx = tb.udp_socket(Side::A, SocketAddr::new(a.into(), DROP_PORT));
    let drop_rx6 = tb.udp_socket(Side::A, SocketAddr::new(tb.ip6_a().into(), DROP_PORT));
    let xsk_rx = tb.udp_socket(Side::A, SocketAddr::new(a.into(), XSK_PORT));
    let other_rx = tb.udp_socket(Side::A, SocketAddr::new(a.into(), OTHER_PORT));
    let listener = tb
        .in_ns(Side::A, move || TcpListener::bind((a, TCP_PORT)))
        .unwrap();
    let udp_out_before = tb.snmp_counter(Side::B, "Udp", "OutDatagrams").unwrap();

    send_udp(&tb, Side::B, SocketAddr::new(a.into(), DROP_PORT), 500);
    send_udp(
        &tb,
        Side::B,
        SocketAddr::new(tb.ip6_a().into(), DROP_PORT),
        100,
    );
    send_udp(&tb, Side::B, SocketAddr::new(a.into(), XSK_PORT), 400);
    send_udp(&tb, Side::B, SocketAddr::new(a.into(), OTHER_PORT), 300);
    // (IPv6 datagrams are counted in snmp6, not here.)
    let udp_sent = tb.snmp_counter(Side::B, "Udp", "OutDatagrams").unwrap() - udp_out_before;
    assert_eq!(udp_sent, 1200, "B's own count of IPv4 datagrams sent");

    // TCP echo through the xsk rule (no socket bound, so every segment falls back).
    let tcp_out_before = tb.snmp_counter(Side::B, "Tcp", "OutSegs").unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        conn.read_to_end(&mut buf).unwrap();
        conn.write_all(&buf).unwrap();
    });
    let mut client = tb
        .in_ns(Side::B, move || {
            TcpStream::connect_timeout(&SocketAddr::new(a.into(), TCP_PORT), Duration::from_secs(2))
        })
        .expect("tcp connect through the steering program");
    client.write_all(b"hello through xdp").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    client.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed, b"hello through xdp");
    server.join().unwrap();
    drop(client);

    assert!(tb.ping(Side::B, a, 3), "ping (no rule) must still flow");
    assert!(
        tb.ping(Side::B, tb.ip6_a(), 3),
        "ping6 (no rule) must still flow"
    );

    assert_eq!(drain(&drop_rx), 0, "dropped datagrams must not arrive");
    assert_eq!(
        drain(&drop_rx6),
        0,
        "dropped IPv6 datagrams must not arrive"
    );
    assert_eq!(drain(&xsk_rx), 400, "xsk fallback goes to the kernel");
    assert_eq!(
        drain(&other_rx),
        300,
        "unmatched traffic goes to the kernel"
    );

    let s = status(&tb);
    assert_eq!(s["mode"], mode);
    assert_eq!(s["prog_id"].as_u64(), Some(prog_id));
    assert_eq!(rule_packets(&s, 0), 600);
    assert_eq!(rule_packets(&s, 1), 400);
    assert_eq!(verdict_packets(&s, "drop"), 600);
    // Every TCP segment B sent went to port 8000 and hit rule 2.
    assert!(
        eventually(|| {
            let sent = tb.snmp_counter(Side::B, "Tcp", "OutSegs").unwrap() - tcp_out_before;
            rule_packets(&status(&tb), 2) == sent
        }),
        "TCP segments counted by rule 2 must equal B's OutSegs"
    );
    let s = status(&tb);
    assert_eq!(
        verdict_packets(&s, "xsk_fallback"),
        400 + rule_packets(&s, 2)
    );
    assert_eq!(verdict_packets(&s, "xsk"), 0);
    assert!(
        verdict_packets(&s, "unmatched") >= 300 + 6,
        "UDP to 7000 and pings"
    );
    assert_eq!(verdict_packets(&s, "malformed"), 0);

    // Live rule change: drop port 7000 first, then delete the rule again by its text.
    let add = netmit(
        &tb,
        Side::A,
        &[
            "steer",
            "add",
            tb.if_a(),
            &format!("proto=udp,dport={OTHER_PORT},action=drop,prio=1"),
        ],
    );
    assert!(add.ok, "{}", add.stderr);
    send_udp(&tb, Side::B, SocketAddr::new(a.into(), OTHER_PORT), 50);
    assert_eq!(drain(&other_rx), 0, "the new drop rule applies at once");
    let list = netmit(&tb, Side::A, &["steer", "list", tb.if_a(), "--json"]).json();
    assert_eq!(list["rules"][0]["id"], 3, "prio 1 ranks first");
    assert_eq!(list["rules"][0]["packets"], 50);
    let del = netmit(
        &tb,
        Side::A,
        &[
            "steer",
            "del",
            tb.if_a(),
            &format!("proto=udp,dport={OTHER_PORT},action=drop,prio=1"),
        ],
    );
    assert!(del.ok, "{}", del.stderr);
    send_udp(&tb, Side::B, SocketAddr::new(a.into(), OTHER_PORT), 50);
    assert_eq!(
        drain(&other_rx),
        50,
        "deleting the rule lets traffic through again"
    );

    // Detach, then check the kernel: no XDP program, the program freed, no pins.
    let detach = netmit(&tb, Side::A, &["detach", tb.if_a()]);
    assert!(detach.ok, "detach failed: {}", detach.stderr);
    assert_eq!(kernel_xdp(&tb, Side::A), None, "ip -d link still shows XDP");
    assert!(
        wait_prog_gone(prog_id),
        "program {prog_id} still loaded after detach"
    );
    assert!(!pin_dir(&tb, Side::A).exists(), "pins left behind");
    send_udp(&tb, Side::B, SocketAddr::new(a.into(), DROP_PORT), 20);
    assert_eq!(drain(&drop_rx), 20, "after detach nothing is dropped");
}

#[test]
fn steering_on_veth_native() {
    if require_root("steering_on_veth_native") {
        steering_on_veth("native", 1);
    }
}

#[test]
fn steering_on_veth_generic() {
    if require_root("steering_on_veth_generic") {
        steering_on_veth("generic", 2);
    }
}

#[test]
fn auto_mode_gets_native_on_veth() {
    if !require_root("auto_mode_gets_native_on_veth") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let run = netmit(&tb, Side::A, &["attach", tb.if_a(), "--json"]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.json()["mode"], "native");
    assert_eq!(kernel_xdp(&tb, Side::A).map(|x| x.0), Some(1));
    assert!(netmit(&tb, Side::A, &["detach", tb.if_a()]).ok);
    assert_eq!(kernel_xdp(&tb, Side::A), None);
    let _ = IpAddr::from(tb.ip_a());
}
