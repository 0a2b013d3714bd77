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

use netmit_user::sys::process;

use anyhow::{Context, bail};
use tests::{
    netmit::http_get,
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
    if !netmit_user::sys::caps::is_root() {
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

    daemon_story(&tb, &iface)?;

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

/// The adaptive daemon on the same interface: load rises and falls, the daemon moves the
/// NAPI between interrupt and defer mode, and SIGTERM puts the original settings back.
fn daemon_story(tb: &Testbed, iface: &str) -> anyhow::Result<()> {
    const PORT: u16 = 9464;
    step("The adaptive daemon: load rises and falls; netmit daemon moves the NAPI between modes");
    let dir = std::env::temp_dir().join(format!("netmit-demo-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("netmit.toml");
    // Short hold and dwell times so that the story fits in a demo; the defaults are
    // documented in deploy/netmit.toml.example.
    let text = format!(
        "interval = \"200ms\"\nmetrics_address = \"127.0.0.1:{PORT}\"\n\n[[interface]]\nname = \"{iface}\"\n\
         attach = \"native\"\n\n[interface.policy]\nmin_dwell_ms = 1000\n\n[interface.policy.defer]\n\
         enter_after_ms = 600\nexit_after_ms = 1000\nenter_wakeups_per_sec = 1000\n"
    );
    std::fs::write(&config, &text)?;
    println!(
        "$ cat {}\n{text}$ netmit daemon --config {}",
        config.display(),
        config.display()
    );
    let mut daemon = tb
        .cmd(Side::A, netmit_bin(), ["daemon", "--config"])
        .arg(&config)
        .env("NETMIT_RUN_DIR", dir.join("run"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting netmit daemon")?;
    let result = (|| -> anyhow::Result<()> {
        let start = Instant::now();
        while http_get(tb, Side::A, PORT, "/healthz").is_none_or(|(code, _)| code != 200) {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("the daemon did not become healthy");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mac = tb
            .mac_a()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let ip = tb.ip_a().to_string();
        let mut last_switch = String::new();
        let t0 = Instant::now();
        for (load, pps, secs) in [
            ("low", 2_000u64, 4u64),
            ("high", 300_000, 6),
            ("low", 2_000, 7),
        ] {
            let (pps_s, secs_s) = (pps.to_string(), secs.to_string());
            let mut generator = tb
                .cmd(
                    Side::B,
                    netmit_bin(),
                    [
                        "gen",
                        tb.if_b(),
                        "--dst-mac",
                        &mac,
                        "--dst-ip",
                        &ip,
                        "--dport",
                        "7000",
                        "--size",
                        "64",
                        "--rate",
                        &pps_s,
                        "--duration",
                        &secs_s,
                    ],
                )
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("starting netmit gen")?;
            let phase = Instant::now();
            while phase.elapsed() < Duration::from_secs(secs) {
                std::thread::sleep(Duration::from_millis(500));
                let Some((200, body)) = http_get(tb, Side::A, PORT, "/status") else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(&body)?;
                let i = &v["interfaces"][0];
                let s = &i["sample"];
                let napi = &i["napis"][0];
                let num =
                    |x: &serde_json::Value| x.as_f64().map_or("-".into(), |f| format!("{f:.0}"));
                println!(
                    "[{:>5.1}s] load {load:<4} mode {:<9} {:>8} pkt/s {:>7} polls/s {:>5} pkt/poll  defer-hard-irqs {} gro-flush-timeout {} ns",
                    t0.elapsed().as_secs_f64(),
                    i["mode"].as_str().unwrap_or("?"),
                    num(&s["packets_per_sec"]),
                    num(&s["polls_per_sec"]),
                    s["packets_per_poll"]
                        .as_f64()
                        .map_or("-".into(), |f| format!("{f:.1}")),
                    napi["defer_hard_irqs"],
                    napi["gro_flush_timeout_ns"],
                );
                let t = &i["last_transition"];
                let key = t.to_string();
                if !t.is_null() && key != last_switch {
                    println!(
                        "         switch {} -> {}: {}",
                        t["from"].as_str().unwrap_or("?"),
                        t["to"].as_str().unwrap_or("?"),
                        t["reason"].as_str().unwrap_or("")
                    );
                    last_switch = key;
                }
            }
            generator.wait()?;
        }
        if let Some((200, metrics)) = http_get(tb, Side::A, PORT, "/metrics") {
            println!(
                "$ curl -s 127.0.0.1:{PORT}/metrics | grep -E '^netmit_(mode|mode_transitions_total|napi_polls_total)'"
            );
            for line in metrics.lines().filter(|l| {
                l.starts_with("netmit_mode{")
                    || l.starts_with("netmit_mode_transitions_total{")
                    || l.starts_with("netmit_napi_polls_total{")
            }) {
                println!("{line}");
            }
        }
        Ok(())
    })();
    let _ = process::signal(daemon.id(), libc::SIGTERM);
    let status = daemon.wait()?;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let dev = tb.netdev(Side::A);
    let napis = tb.in_ns(Side::A, || netmit_user::sys::napi::list(&dev))?;
    println!(
        "daemon stopped ({status}); NAPI settings now: {}",
        napis
            .iter()
            .map(|n| format!(
                "napi {} defer-hard-irqs {} gro-flush-timeout {} ns",
                n.id,
                or_unset(n.defer_hard_irqs),
                or_unset(n.gro_flush_timeout_ns)
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(())
}

/// A kernel-reported value, or "unset" when the kernel did not report it (no `None`/`Some(..)`
/// in what a user reads).
fn or_unset<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "unset".to_string(), |v| v.to_string())
}
