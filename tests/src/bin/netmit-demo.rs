//! `cargo xtask demo`: netmit's main job on a throwaway veth testbed.
//!
//! Two network namespaces joined by a veth pair; netmit attaches its steering program to
//! one end, the other end sends traffic, and `netmit status` shows what the program does
//! with it. Everything is removed at the end, also when a step fails.

use std::{
    net::{SocketAddr, UdpSocket},
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tests::{
    packet::{self, PacketBuilder},
    support::netmit_bin,
    testbed::{Side, Testbed},
};

fn step(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

/// Runs `netmit ARGS` in namespace A, echoing the command line and streaming its output.
fn netmit(tb: &Testbed, args: &[&str]) -> anyhow::Result<()> {
    println!(
        "$ netmit {}",
        args.iter()
            .map(|a| if a.contains(',') {
                format!("'{a}'")
            } else {
                a.to_string()
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    let status = tb
        .cmd(Side::A, netmit_bin(), args)
        .status()
        .context("running netmit")?;
    if !status.success() {
        bail!("netmit {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn main() -> ExitCode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("netmit-demo: needs root (network namespaces, BPF): run `sudo cargo xtask demo`");
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netmit-demo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    step("Building a throwaway testbed: two network namespaces joined by a veth pair");
    let tb = Testbed::new()?;
    println!(
        "server namespace {} ({} {}), client namespace {} ({} {})",
        tb.ns_a(),
        tb.if_a(),
        tb.ip_a(),
        tb.ns_b(),
        tb.if_b(),
        tb.ip_b()
    );
    let iface = tb.if_a().to_string();

    step("Attaching netmit's XDP steering program to the server's interface");
    netmit(
        &tb,
        &[
            "attach",
            &iface,
            "--steer",
            "proto=udp,dport=9000,action=drop",
            "--steer",
            "proto=udp,dport=9100-9199,action=xsk",
            "--steer",
            "proto=tcp,dport=80,action=pass,prio=10",
        ],
    )?;
    netmit(&tb, &["steer", "list", &iface])?;

    step(
        "Client sends UDP to ports 9000 (dropped), 9150 (AF_XDP, no socket yet: kernel) and 7000 (no rule)",
    );
    let server = tb.ip_a();
    let stop = AtomicBool::new(false);
    let sender = tb
        .in_ns(Side::B, || UdpSocket::bind("0.0.0.0:0"))
        .context("client socket")?;
    let rx = tb
        .in_ns(Side::A, move || UdpSocket::bind((server, 7000)))
        .context("server socket")?;
    std::thread::scope(|s| -> anyhow::Result<()> {
        s.spawn(|| {
            let start = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(10) {
                for port in [9000, 9150, 9150, 7000] {
                    let _ = sender.send_to(b"netmit demo", SocketAddr::new(server.into(), port));
                }
                i += 1;
                if i.is_multiple_of(50) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        s.spawn(|| {
            let mut buf = [0u8; 64];
            rx.set_read_timeout(Some(Duration::from_millis(200))).ok();
            while !stop.load(Ordering::Relaxed) {
                let _ = rx.recv_from(&mut buf);
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        step("netmit status while the traffic flows (rates over one second)");
        let result = netmit(&tb, &["status", &iface, "--interval", "1s"]);
        stop.store(true, Ordering::Relaxed);
        result
    })?;
    println!(
        "ping through the program (no rule matches ICMP): {}",
        if tb.ping(Side::B, server, 2) {
            "ok"
        } else {
            "FAILED"
        }
    );

    step(
        "An AF_XDP socket takes the steered flow: netmit rx in the server, netmit gen in the client",
    );
    let mac = tb
        .mac_a()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let ip = server.to_string();
    let gen_args = [
        "gen",
        tb.if_b(),
        "--dst-mac",
        &mac,
        "--dst-ip",
        &ip,
        "--dport",
        "9150",
        "--flows",
        "4",
        "--size",
        "64",
        "--rate",
        "300000",
        "--duration",
        "3",
    ];
    println!(
        "$ netmit {}   (in the client namespace)",
        gen_args.join(" ")
    );
    let generator = tb
        .cmd(Side::B, netmit_bin(), gen_args)
        .spawn()
        .context("starting netmit gen")?;
    std::thread::sleep(Duration::from_millis(500));
    let rx_result = netmit(&tb, &["rx", &iface, "--duration", "2"]);
    let gen_status = generator
        .wait_with_output()
        .context("waiting for netmit gen")?
        .status;
    rx_result?;
    if !gen_status.success() {
        bail!("netmit gen failed ({gen_status})");
    }
    netmit(&tb, &["status", &iface, "--interval", "0"])?;

    step("Dry run: the same rules on a capture, through the real program (BPF_PROG_TEST_RUN)");
    let dir = std::env::temp_dir().join(format!("netmit-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pcap = dir.join("sample.pcap");
    let frames = vec![
        PacketBuilder::new()
            .ipv4(tb.ip_b(), server)
            .udp(5000, 9000)
            .payload(b"drop me".to_vec())
            .build(),
        PacketBuilder::new()
            .vlan(10)
            .ipv4(tb.ip_b(), server)
            .udp(5000, 9150)
            .build(),
        PacketBuilder::new()
            .ipv6(tb.ip6_b(), tb.ip6_a())
            .udp(5000, 9100)
            .build(),
        PacketBuilder::new()
            .ipv4(tb.ip_b(), server)
            .tcp(40000, 80)
            .build(),
        PacketBuilder::new()
            .ipv4(tb.ip_b(), server)
            .ipv4_fragment(185, false)
            .udp(5000, 9000)
            .build(),
        PacketBuilder::new()
            .ipv4(tb.ip_b(), server)
            .udp(5000, 9000)
            .truncate(30)
            .build(),
    ];
    packet::write_pcap(&pcap, &frames)?;
    let pcap_arg = pcap.display().to_string();
    let classify = netmit(
        &tb,
        &[
            "classify",
            "--pcap",
            &pcap_arg,
            "--steer",
            "proto=udp,dport=9000,action=drop",
            "--steer",
            "proto=udp,dport=9100-9199,action=xsk",
            "--steer",
            "proto=tcp,dport=80,action=pass,prio=10",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    classify?;

    step("Detaching and checking the kernel's view");
    netmit(&tb, &["detach", &iface])?;
    let link = tb.run(Side::A, "ip", ["-d", "link", "show", "dev", &iface])?;
    let text = String::from_utf8_lossy(&link.stdout);
    println!(
        "ip -d link show {iface}: {}",
        if text.contains("prog/xdp") {
            "XDP program still attached!"
        } else {
            "no XDP program"
        }
    );

    step("Removing the testbed");
    drop(tb);
    println!("done: namespaces, veth and pins are gone");
    Ok(())
}
