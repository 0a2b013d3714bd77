//! Which path a veth hands UDP socket traffic to, against the kernel: the receiving
//! server's `SO_INCOMING_NAPI_ID` (0 when its datagrams came through no NAPI, i.e. the
//! sender's backlog) must agree with `Offloads::udp_reaches_peer_napi`, the model
//! `bench modes` and docs/modes.md rely on, for every combination that matters.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Stdio,
    time::{Duration, Instant},
};

use netmit_user::sys::process;

use netmit_lab::testbed::Offloads;
use serde_json::Value;
use tests::{
    netmit::netmit,
    support::{netmit_bin, require_root},
    testbed::{Side, Testbed},
};

const PORT: u16 = 9450;

fn ethtool(tb: &Testbed, side: Side, args: &[&str]) {
    let mut all = vec!["-K", tb.ifname(side)];
    all.extend_from_slice(args);
    tb.run(side, "ethtool", &all).expect("ethtool -K");
}

/// Runs `netmit serve` on A, sends datagrams from a kernel socket in B until one is
/// answered plus 20 more, and returns the NAPI id the server's socket saw last.
fn napi_id_seen(tb: &Testbed) -> u32 {
    let port = PORT.to_string();
    let mut cmd = tb.cmd(
        Side::A,
        netmit_bin(),
        ["serve", tb.if_a(), "--port", &port, "--json"],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = tb.spawn_cmd(cmd).expect("spawn serve");
    let to = SocketAddr::new(tb.ip_a().into(), PORT);
    let s = tb.in_ns(Side::B, || UdpSocket::bind("0.0.0.0:0")).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 64];
    let start = Instant::now();
    loop {
        s.send_to(b"which path", to).unwrap();
        if s.recv_from(&mut buf).is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "serve never answered"
        );
    }
    for _ in 0..20 {
        s.send_to(b"which path", to).unwrap();
        s.recv_from(&mut buf).expect("a reply");
    }
    let pid = child.pid() as libc::pid_t;
    process::signal(pid as u32, libc::SIGTERM).expect("kill");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("serve --json");
    report["per_thread"][0]["napi_id"].as_u64().unwrap_or(0) as u32
}

#[test]
fn udp_socket_traffic_reaches_the_peer_napi_as_the_model_says() {
    if !require_root("udp_socket_traffic_reaches_the_peer_napi_as_the_model_says") {
        return;
    }
    let tb = Testbed::new().unwrap();
    tb.set_gro(Side::A, true).unwrap();
    // (sender B's tso, receiver A's rx-udp-gro-forwarding, netmit attached on A)
    let cases = [
        ("on", "off", false),
        ("off", "off", false),
        ("on", "on", false),
        ("on", "off", true),
    ];
    for (tso, fwd, xdp) in cases {
        ethtool(&tb, Side::B, &["tso", tso]);
        ethtool(&tb, Side::A, &["rx-udp-gro-forwarding", fwd]);
        if xdp {
            let r = netmit(&tb, Side::A, &["attach", tb.if_a(), "--mode", "native"]);
            assert!(r.ok, "{}", r.stderr);
        }
        let (sender, receiver) = (tb.offloads(Side::B).unwrap(), tb.offloads(Side::A).unwrap());
        // Native XDP on a veth end takes the software GSO features (TSO among them)
        // from its peer: they read `off [fixed]` while the program is attached.
        assert_eq!(sender.tso, tso == "on" && !xdp, "{sender:?}");
        assert_eq!(receiver.udp_gro_forwarding, fwd == "on");
        assert!(receiver.gro);
        let predicted = sender.udp_reaches_peer_napi(&receiver, xdp);
        let napi_id = napi_id_seen(&tb);
        assert_eq!(
            napi_id != 0,
            predicted,
            "sender tso {tso}, receiver rx-udp-gro-forwarding {fwd}, XDP {xdp}: the server \
             saw NAPI id {napi_id}, the model predicted {}",
            if predicted { "a NAPI" } else { "the backlog" }
        );
        if xdp {
            let r = netmit(&tb, Side::A, &["detach", tb.if_a()]);
            assert!(r.ok, "{}", r.stderr);
        }
    }
    // Without GRO and XDP a veth has no NAPI at all.
    tb.set_gro(Side::A, false).unwrap();
    ethtool(&tb, Side::B, &["tso", "off"]);
    let receiver: Offloads = tb.offloads(Side::A).unwrap();
    assert!(
        !tb.offloads(Side::B)
            .unwrap()
            .udp_reaches_peer_napi(&receiver, false)
    );
    assert_eq!(napi_id_seen(&tb), 0);
}
