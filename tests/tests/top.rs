//! `netmit top` (issue 12) on a veth testbed: `--once` shows the testbed's interface with
//! the drop rate that `status --json` measures over the same steady traffic, and the live
//! view under a pseudo-terminal draws the interface and exits 0 on `q`, leaving the
//! alternate screen.

use std::{
    io::Write,
    net::{SocketAddr, UdpSocket},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tests::{
    netmit::netmit,
    support::{netmit_bin, require_root},
    testbed::{Side, Testbed},
};

const PORT: u16 = 9400;

/// Sends about 2000 datagrams/s from B to A's PORT until `stop`.
fn steady_traffic(tb: &Testbed, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let to = SocketAddr::new(tb.ip_a().into(), PORT);
    let s = tb
        .in_ns(Side::B, || UdpSocket::bind("0.0.0.0:0"))
        .expect("bind");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let _ = s.send_to(b"top", to);
            std::thread::sleep(Duration::from_micros(500));
        }
    })
}

fn cell(line: &str, col: usize) -> String {
    line.split_whitespace()
        .nth(col)
        .unwrap_or_default()
        .to_string()
}

fn parse_rate(s: &str) -> f64 {
    match s.strip_suffix('k') {
        Some(k) => k.parse::<f64>().unwrap() * 1e3,
        None => s
            .strip_suffix('M')
            .map_or_else(|| s.parse().unwrap(), |m| m.parse::<f64>().unwrap() * 1e6),
    }
}

#[test]
fn top_shows_the_testbeds_rates_and_quits_on_q() {
    if !require_root("top_shows_the_testbeds_rates_and_quits_on_q") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let rule = format!("proto=udp,dport={PORT},action=drop");
    let attach = netmit(&tb, Side::A, &["attach", tb.if_a(), "--steer", &rule]);
    assert!(attach.ok, "{}", attach.stderr);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = steady_traffic(&tb, stop.clone());

    let status = netmit(
        &tb,
        Side::A,
        &["status", tb.if_a(), "--json", "--interval", "1s"],
    );
    let v = status.json();
    let status_drop: f64 = v["interfaces"][0]["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["verdicts"]["drop"]["pps"].as_f64().unwrap_or(0.0))
        .sum();
    let top = netmit(
        &tb,
        Side::A,
        &["top", tb.if_a(), "--once", "--interval", "1"],
    );
    assert!(top.ok, "{}", top.stderr);
    assert!(
        !top.stdout.contains("Some(") && !top.stdout.contains("None"),
        "{}",
        top.stdout
    );
    let line = top
        .stdout
        .lines()
        .find(|l| l.starts_with(tb.if_a()))
        .unwrap_or_else(|| panic!("no row for {}:\n{}", tb.if_a(), top.stdout));
    // Columns: IFACE MODE(2 words without a daemon) SINCE PKT/S POLL/S PKT/POLL UNMATCHED PASS DROP.
    let top_drop = parse_rate(&cell(line, 9));
    assert!(
        status_drop > 300.0,
        "too little traffic for a comparison: {status_drop}/s"
    );
    let ratio = top_drop / status_drop;
    assert!(
        (0.6..1.6).contains(&ratio),
        "top {top_drop}/s vs status {status_drop}/s:\n{}",
        top.stdout
    );

    // The live view under a pseudo-terminal (script(1)), quit with q after a few frames.
    let command = format!(
        "stty cols 200 rows 30; {} top {} --interval 0.5",
        netmit_bin().display(),
        tb.if_a()
    );
    let mut child = tb
        .cmd(Side::A, "script", ["-qfec", command.as_str(), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn script");
    std::thread::sleep(Duration::from_secs(3));
    child.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    let out = child.wait_with_output().expect("script");
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "top under a pty: {}", out.status);
    assert!(screen.contains(tb.if_a()), "the interface was never drawn");
    assert!(
        screen.contains("\x1b[?1049l"),
        "the alternate screen was not left"
    );
    assert!(netmit(&tb, Side::A, &["detach", tb.if_a()]).ok);
}
