//! The XDP program's log (issue 11): off by default, and with `attach --log warn` a flow
//! steered to a queue without a socket is logged as its count doubles, which
//! `netmit logs` forwards to stderr.

use std::net::{SocketAddr, UdpSocket};

use serde_json::Value;
use tests::{
    netmit::netmit,
    support::require_root,
    testbed::{Side, Testbed},
};

const PORT: u16 = 9300;

fn send(tb: &Testbed, n: usize) {
    let to = SocketAddr::new(tb.ip_a().into(), PORT);
    let s = tb
        .in_ns(Side::B, || UdpSocket::bind("0.0.0.0:0"))
        .expect("bind");
    for i in 0..n {
        s.send_to(format!("datagram {i}").as_bytes(), to)
            .expect("send");
    }
}

/// Waits until the program counted `n` packets as xsk_fallback (traffic crosses the veth
/// asynchronously), from `netmit status --json`.
fn wait_fallback(tb: &Testbed, n: u64) {
    for _ in 0..200 {
        let run = netmit(
            tb,
            Side::A,
            &["status", tb.if_a(), "--json", "--interval", "0"],
        );
        let v: Value = run.json();
        let got: u64 = v["interfaces"][0]["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                q["verdicts"]["xsk_fallback"]["packets"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        if got >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the program never counted {n} fallbacks");
}

fn run_case(log: &str) -> String {
    let tb = Testbed::new().expect("testbed");
    let rule = format!("proto=udp,dport={PORT},action=xsk");
    let attach = netmit(
        &tb,
        Side::A,
        &[
            "attach",
            tb.if_a(),
            "--mode",
            "native",
            "--steer",
            &rule,
            "--log",
            log,
        ],
    );
    assert!(attach.ok, "{}", attach.stderr);
    send(&tb, 20);
    wait_fallback(&tb, 20);
    let logs = netmit(&tb, Side::A, &["logs", tb.if_a()]);
    assert!(logs.ok, "{}", logs.stderr);
    assert!(netmit(&tb, Side::A, &["detach", tb.if_a()]).ok);
    logs.stderr
}

#[test]
fn fallback_is_logged_when_asked_and_only_then() {
    if !require_root("fallback_is_logged_when_asked_and_only_then") {
        return;
    }
    let logged = run_case("warn");
    let lines: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("has no socket there"))
        .collect();
    // Counts 1, 2, 4, 8 and 16 of one CPU (more lines if the packets spread over CPUs).
    assert!(
        (5..=10).contains(&lines.len()),
        "expected a line per doubling, got:\n{logged}"
    );
    assert!(lines[0].contains("queue 0"), "{}", lines[0]);
    let quiet = run_case("off");
    assert!(
        !quiet.contains("has no socket"),
        "logging off logged:\n{quiet}"
    );
    let bad = netmit(
        &Testbed::new().unwrap(),
        Side::A,
        &["attach", "lo", "--log", "loud"],
    );
    assert!(
        !bad.ok && bad.stderr.contains("is not a log level"),
        "{}",
        bad.stderr
    );
}
