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

/// Runs `netmit top IFACE` under script(1), waits (up to 30 s) until the interface's name
/// is on the screen, sends `key`, and returns the exit status and everything drawn.
fn live_view(tb: &Testbed, key: &[u8]) -> (std::process::ExitStatus, String) {
    use std::{io::Read, sync::mpsc};
    let command = format!(
        "stty cols 200 rows 30; {} top {} --interval 0.5",
        netmit_bin().display(),
        tb.if_a()
    );
    let mut cmd = tb.cmd(Side::A, "script", ["-qfec", command.as_str(), "/dev/null"]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    // An NsChild: a failing assertion below still kills script and top with their group.
    let mut child = tb.spawn_cmd(cmd).expect("spawn script");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&screen).contains(tb.if_a()) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => screen.extend(chunk),
            Err(_) => break,
        }
    }
    child.stdin.as_mut().unwrap().write_all(key).unwrap();
    // The key must end it; a view that ignores it is killed (and fails the test).
    let quit_by = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("script") {
            break status;
        }
        if std::time::Instant::now() > quit_by {
            break child.kill().expect("killing script");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    screen.extend(rx.try_iter().flatten());
    (status, String::from_utf8_lossy(&screen).into_owned())
}

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

    // The live view under a pseudo-terminal (script(1)): once quit with q, once with
    // Ctrl-C, each key sent once the interface's row is on the screen.
    for (key, name) in [(b"q", "q"), (b"\x03", "Ctrl-C")] {
        let (status, screen) = live_view(&tb, key);
        assert!(status.success(), "top under a pty, {name}: {status}");
        assert!(
            screen.contains(tb.if_a()),
            "{name}: the interface was never drawn"
        );
        assert!(
            screen.contains("\x1b[?1049l"),
            "{name}: the alternate screen was not left"
        );
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    assert!(netmit(&tb, Side::A, &["detach", tb.if_a()]).ok);
}
