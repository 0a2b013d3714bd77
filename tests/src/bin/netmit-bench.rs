//! Benchmarks that need a namespace testbed: `cargo xtask bench xsk`, `cargo xtask bench
//! xsk-latency` (see its module) and `cargo xtask bench daemon`.
//!
//! `xsk`: on a veth testbed, netmit's generator (BPF_PROG_TEST_RUN live frames, as fast as
//! it can) blasts 64-byte UDP frames from namespace B at namespace A, and one receiver at
//! a time counts what it gets for a fixed time:
//!
//! - `netmit rx --spin` (AF_XDP copy mode, fed by netmit's steering program);
//! - the libxdp reference receiver in C (bench/xsk-ref) in its `spin` mode, fed by the
//!   same program through the same XSK map. Both check their RX ring without sleeping,
//!   as xdpsock does by default: a receiver that sleeps in poll(2) must be woken by the
//!   sending core at every idle-to-busy transition, which on a veth slows the sender
//!   (that is where the XDP program and the copy into the UMEM run);
//! - a kernel UDP socket draining with recvmmsg (batches of 64), on a port no rule
//!   steers.
//!
//! Receivers run pinned to CPU 1 and the generator to CPU 0; rounds interleave the
//! receivers and the median is reported, so drift hits all of them alike.

use std::{
    net::{IpAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    sync::atomic::AtomicBool,
    time::Duration,
};

use netmit_user::sys::process;

use anyhow::{Context, bail};
use netmit_lab::r#gen::{GenConfig, Generator, MacAddr, PortRange, Rate};
use serde_json::{Value, json};
use tests::{
    recv::recvmmsg_for,
    support::netmit_bin,
    testbed::{Side, Testbed},
};

#[path = "netmit-bench/xsk_latency.rs"]
mod xsk_latency;

const XSK_PORT: u16 = 9300;
const KERNEL_PORT: u16 = 9301;
const RX_CPU: usize = 1;
const GEN_CPU: usize = 0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("xsk") => xsk(&args[1..]),
        Some("daemon") => daemon(&args[1..]),
        Some("xsk-latency") => xsk_latency::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: netmit-bench xsk [--seconds S] [--rounds N] [--json] [--no-check]\n       \
                 netmit-bench daemon [--seconds S] [--json] [--no-check]\n       \
                 netmit-bench xsk-latency [--seconds S] [--spin USECS] [--json] [--no-check]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netmit-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn flag_value(args: &[String], name: &str, default: f64) -> anyhow::Result<f64> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} needs a number")),
    }
}

fn pin(cpu: usize) {
    if let Ok(set) = netmit_user::sys::cpu::CpuSet::of(&[cpu]) {
        let _ = netmit_user::sys::cpu::pin(0, &set);
    }
}

/// Builds the C reference receiver into the target directory.
fn build_reference() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = root.join("bench/xsk-ref/xsk_ref.c");
    let out = netmit_bin().with_file_name("xsk_ref");
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .args(["-lxdp", "-lbpf"])
        .status()
        .context("running cc (cargo xtask setup installs gcc, libxdp-dev, libbpf-dev)")?;
    if !status.success() {
        bail!("building {} failed", src.display());
    }
    Ok(out)
}

/// Runs the generator in namespace B as fast as it can for `secs`, pinned to GEN_CPU.
fn blast(tb: &Testbed, port: u16, secs: f64) -> anyhow::Result<f64> {
    let (iface, mac, ip) = (
        tb.if_b().to_string(),
        MacAddr(tb.mac_a()),
        IpAddr::from(tb.ip_a()),
    );
    tb.in_ns(Side::B, move || -> anyhow::Result<f64> {
        pin(GEN_CPU);
        let mut cfg = GenConfig::new(&iface, mac, ip, PortRange { lo: port, hi: port });
        cfg.rate = Rate::Max;
        cfg.size = 64;
        cfg.flows = 1;
        cfg.duration = Some(Duration::from_secs_f64(secs));
        let mut generator = Generator::new(cfg).context("generator")?;
        let report = generator
            .run(&AtomicBool::new(false), |_| {})
            .context("generator run")?;
        Ok(report.pps)
    })
}

/// How long the generator runs before a receiver starts: loading and registering its
/// program takes a few hundred milliseconds, and every receiver must count only while the
/// traffic is at full rate.
/// The daemon benchmark's goals at 100 ms sampling (issue 16): CPU (% of one core) and
/// peak RSS.
const DAEMON_CPU_PERCENT: f64 = 0.5;
const DAEMON_RSS_MIB: f64 = 15.0;
const WARMUP: Duration = Duration::from_millis(1500);

/// One measurement: (receiver pps, generator pps, receiver JSON). The generator starts
/// first and outlasts the receiver, whose whole window lies inside the traffic.
fn measure(
    tb: &Testbed,
    which: &str,
    reference: &Path,
    secs: f64,
) -> anyhow::Result<(f64, f64, Value)> {
    let gen_secs = WARMUP.as_secs_f64() + secs + 1.5;
    let port = if which == "kernel" {
        KERNEL_PORT
    } else {
        XSK_PORT
    };
    std::thread::scope(|scope| {
        let generator = scope.spawn(|| blast(tb, port, gen_secs));
        std::thread::sleep(WARMUP);
        let received = receive(tb, which, reference, secs);
        let gen_pps = generator
            .join()
            .map_err(|_| anyhow::anyhow!("generator panicked"))??;
        let (pps, detail) = received?;
        Ok((pps, gen_pps, detail))
    })
}

/// The pin of netmit's AF_XDP socket map for A's interface (keyed by namespace and
/// ifindex: resolved inside A's namespace), for the C reference to register in.
fn xsks_pin(tb: &Testbed) -> anyhow::Result<PathBuf> {
    let name = tb.if_a().to_string();
    tb.in_ns(Side::A, move || -> anyhow::Result<PathBuf> {
        let dev = netmit_user::sys::Netdev::resolve(&netmit_user::sys::IfName::new(&name)?)?;
        let layout = netmit_user::ebpf::PinRoot::default()
            .find(&dev)?
            .with_context(|| format!("netmit is not attached to {name}"))?;
        Ok(layout.map(netmit_common::names::MAP_XSKS))
    })
}

/// Runs one receiver for `secs`: (pps over its own window, its report).
fn receive(tb: &Testbed, which: &str, reference: &Path, secs: f64) -> anyhow::Result<(f64, Value)> {
    let secs_arg = secs.to_string();
    let cpu = RX_CPU.to_string();
    let mut cmd = match which {
        "netmit" => tb.cmd(
            Side::A,
            netmit_bin(),
            [
                "rx",
                tb.if_a(),
                "--mode",
                "copy",
                "--spin",
                "--json",
                "--duration",
                &secs_arg,
                "--cpu",
                &cpu,
            ],
        ),
        "libxdp" => {
            let pin = xsks_pin(tb)?;
            let mut c = tb.cmd(Side::A, "taskset", ["-c", &cpu]);
            c.arg(reference)
                .args([tb.if_a(), "0", &secs_arg, "copy", "spin"])
                .arg(pin);
            c
        }
        "kernel" => {
            let ip = tb.ip_a();
            let sock = tb.in_ns(Side::A, move || UdpSocket::bind((ip, KERNEL_PORT)))?;
            pin(RX_CPU);
            let got = recvmmsg_for(&sock, 64, Duration::from_secs_f64(secs))?;
            let pps = got.packets as f64 / got.elapsed.as_secs_f64();
            let detail =
                json!({"packets": got.packets, "seconds": got.elapsed.as_secs_f64(), "pps": pps});
            return Ok((pps, detail));
        }
        _ => unreachable!("receiver names are fixed"),
    };
    let out = cmd.output().context("running the receiver")?;
    if !out.status.success() {
        bail!(
            "{which} receiver failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).with_context(|| format!("{which} output"))?;
    Ok((v["pps"].as_f64().unwrap_or(0.0), v))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn xsk(args: &[String]) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if !netmit_user::sys::caps::is_root() {
        bail!("needs root (namespaces, BPF, AF_XDP): run `sudo cargo xtask bench xsk`");
    }
    let secs = flag_value(args, "--seconds", 3.0)?;
    let rounds = flag_value(args, "--rounds", 5.0)? as usize;
    let as_json = args.iter().any(|a| a == "--json");
    let check = !args.iter().any(|a| a == "--no-check");

    let reference = build_reference()?;
    let tb = Testbed::new()?;
    let attach = tb
        .cmd(
            Side::A,
            netmit_bin(),
            [
                "attach",
                tb.if_a(),
                "--mode",
                "native",
                "--steer",
                &format!("proto=udp,dport={XSK_PORT},action=xsk"),
            ],
        )
        .output()?;
    if !attach.status.success() {
        bail!("netmit attach: {}", String::from_utf8_lossy(&attach.stderr));
    }
    let receivers = ["netmit", "libxdp", "kernel"];
    let mut results: Vec<(Vec<f64>, Vec<f64>, Vec<Value>)> =
        vec![Default::default(); receivers.len()];
    for round in 0..rounds.max(1) {
        for (i, which) in receivers.iter().enumerate() {
            let (pps, gen_pps, detail) = measure(&tb, which, &reference, secs)?;
            if !as_json {
                eprintln!(
                    "round {}: {which:<7} {:>12.0} pps (generator {:>10.0} pps)",
                    round + 1,
                    pps,
                    gen_pps
                );
            }
            results[i].0.push(pps);
            results[i].1.push(gen_pps);
            results[i].2.push(detail);
        }
    }
    let med: Vec<f64> = results.iter().map(|r| median(r.0.clone())).collect();
    let (netmit, libxdp, kernel) = (med[0], med[1], med[2]);
    let vs_ref = netmit / libxdp;
    let vs_kernel = netmit / kernel;
    let met = vs_ref >= 1.0 && vs_kernel >= 2.0;
    let report = json!({
        "seconds": secs, "rounds": rounds, "frame_size": 64,
        "netmit_pps": netmit, "libxdp_pps": libxdp, "kernel_pps": kernel,
        "netmit_vs_libxdp": vs_ref, "netmit_vs_kernel": vs_kernel,
        "goals": {"netmit_vs_libxdp_min": 1.0, "netmit_vs_kernel_min": 2.0, "met": met},
        "details": receivers.iter().zip(&results).map(|(n, r)| json!({"receiver": n, "pps": r.0, "generator_pps": r.1, "runs": r.2})).collect::<Vec<_>>(),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "AF_XDP receive, 64-byte UDP from netmit gen, {secs} s x {rounds} rounds (median), receivers on CPU {RX_CPU}"
        );
        println!("  netmit rx (copy mode)      {netmit:>12.0} pps");
        println!(
            "  libxdp reference (C)      {libxdp:>12.0} pps   netmit = {vs_ref:.2}x   (goal >= 1.0x)"
        );
        println!(
            "  kernel UDP + recvmmsg     {kernel:>12.0} pps   netmit = {vs_kernel:.2}x   (goal >= 2.0x)"
        );
    }
    if check && !met {
        bail!("a goal was missed (pass --no-check to only report)");
    }
    Ok(())
}

/// CPU time (user + system, in clock ticks) and resident set size (KiB) of a process.
fn cpu_and_rss(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').context("malformed /proc/PID/stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    Ok((ticks, rss))
}

/// Where a process's resident memory is (KiB, from /proc/PID/smaps_rollup) and how many
/// threads it has: what the daemon benchmark reports next to its peak RSS.
fn memory_breakdown(pid: u32) -> anyhow::Result<Value> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> u64 {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let (rss, anon) = (field("Rss:"), field("Anonymous:"));
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))?.count();
    Ok(
        json!({"rss_kib": rss, "anonymous_kib": anon, "file_kib": rss.saturating_sub(anon),
              "threads": threads}),
    )
}

/// `daemon`: the daemon's own cost. For each sampling interval (1 s, 100 ms) the daemon
/// runs on a veth testbed under generator load (200k pps into a steered port) for
/// `--seconds`; its CPU time is read from /proc before and after (after a warm-up), and
/// its peak RSS sampled every 100 ms, with the breakdown (anonymous and file-backed RSS,
/// threads) at the peak. Goal (issue 16): at most 0.5% of one core and 15 MiB at 100 ms.
fn daemon(args: &[String]) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if !netmit_user::sys::caps::is_root() {
        bail!("needs root: run `sudo cargo xtask bench daemon`");
    }
    let secs = flag_value(args, "--seconds", 10.0)?;
    let as_json = args.iter().any(|a| a == "--json");
    let check = !args.iter().any(|a| a == "--no-check");
    // SAFETY: sysconf has no preconditions.
    let hz = process::clock_ticks_per_second() as f64;
    let mut rows = Vec::new();
    for interval in ["1s", "100ms"] {
        let tb = Testbed::new()?;
        let dir = std::env::temp_dir().join(format!("netmit-bench-daemon-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("netmit.toml");
        std::fs::write(
            &config,
            format!(
                "interval = \"{interval}\"\nmetrics_address = \"127.0.0.1:9464\"\n\n\
                 [[interface]]\nname = \"{}\"\nattach = \"native\"\nsteer = [\"proto=udp,dport={XSK_PORT},action=pass\"]\n",
                tb.if_a()
            ),
        )?;
        let mut child = tb
            .cmd(Side::A, netmit_bin(), ["daemon", "--config"])
            .arg(&config)
            .env("NETMIT_RUN_DIR", dir.join("run"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting netmit daemon")?;
        let pid = child.id();
        let measure = || -> anyhow::Result<(f64, u64, Value)> {
            std::thread::scope(|scope| -> anyhow::Result<(f64, u64, Value)> {
                let total = WARMUP.as_secs_f64() + secs + 1.0;
                let tb = &tb;
                let generator = scope.spawn(move || blast_rate(tb, XSK_PORT, 200_000, total));
                std::thread::sleep(WARMUP);
                let (t0, _) = cpu_and_rss(pid)?;
                let start = std::time::Instant::now();
                let (mut peak, mut breakdown) = (0, Value::Null);
                while start.elapsed().as_secs_f64() < secs {
                    std::thread::sleep(Duration::from_millis(100));
                    let rss = cpu_and_rss(pid)?.1;
                    if rss > peak || breakdown.is_null() {
                        peak = rss;
                        breakdown = memory_breakdown(pid)?;
                    }
                }
                let (t1, _) = cpu_and_rss(pid)?;
                let cpu = (t1 - t0) as f64 / hz / start.elapsed().as_secs_f64() * 100.0;
                generator
                    .join()
                    .map_err(|_| anyhow::anyhow!("generator panicked"))??;
                Ok((cpu, peak, breakdown))
            })
        };
        let result = measure();
        let _ = process::signal(pid, libc::SIGTERM);
        let status = child.wait()?;
        let _ = std::fs::remove_dir_all(&dir);
        let (cpu, rss_kib, breakdown) = result?;
        if !status.success() {
            bail!("the daemon did not exit cleanly on SIGTERM ({status})");
        }
        let mib = |key: &str| breakdown[key].as_u64().unwrap_or(0) as f64 / 1024.0;
        let (anon_mib, file_mib) = (mib("anonymous_kib"), mib("file_kib"));
        let threads = breakdown["threads"].as_u64().unwrap_or(0);
        if !as_json {
            eprintln!(
                "interval {interval}: {cpu:.2}% of one core, peak RSS {:.1} MiB \
                 ({anon_mib:.1} anonymous, {file_mib:.1} file-backed, {threads} threads)",
                rss_kib as f64 / 1024.0
            );
        }
        rows.push(json!({"interval": interval, "cpu_percent": cpu,
                         "peak_rss_mib": rss_kib as f64 / 1024.0,
                         "at_peak": {"anonymous_mib": anon_mib, "file_mib": file_mib,
                                     "threads": threads}}));
    }
    let at_100ms = &rows[1];
    let met = at_100ms["cpu_percent"].as_f64().unwrap_or(f64::MAX) <= DAEMON_CPU_PERCENT
        && at_100ms["peak_rss_mib"].as_f64().unwrap_or(f64::MAX) <= DAEMON_RSS_MIB;
    let report = json!({"seconds": secs, "load_pps": 200_000, "rows": rows,
                        "goal": {"cpu_percent_at_most": DAEMON_CPU_PERCENT,
                                 "rss_mib_at_most": DAEMON_RSS_MIB, "at": "100ms", "met": met}});
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("netmit daemon under 200k pps, {secs} s per interval");
        for r in &rows {
            let p = &r["at_peak"];
            println!(
                "  interval {:>6}: {:>5.2}% of one core, peak RSS {:>5.1} MiB \
                 ({:.1} anonymous, {:.1} file-backed, {} threads)",
                r["interval"].as_str().unwrap_or(""),
                r["cpu_percent"].as_f64().unwrap_or(0.0),
                r["peak_rss_mib"].as_f64().unwrap_or(0.0),
                p["anonymous_mib"].as_f64().unwrap_or(0.0),
                p["file_mib"].as_f64().unwrap_or(0.0),
                p["threads"].as_u64().unwrap_or(0)
            );
        }
        println!(
            "  goal at 100 ms: <= {DAEMON_CPU_PERCENT}% of one core and <= {DAEMON_RSS_MIB} MiB: {}",
            if met { "met" } else { "MISSED" }
        );
    }
    if check && !met {
        bail!("a goal was missed (pass --no-check to only report)");
    }
    Ok(())
}

/// Runs the generator in namespace B at a fixed rate for `secs`.
fn blast_rate(tb: &Testbed, port: u16, pps: u64, secs: f64) -> anyhow::Result<f64> {
    let (iface, mac, ip) = (
        tb.if_b().to_string(),
        MacAddr(tb.mac_a()),
        IpAddr::from(tb.ip_a()),
    );
    tb.in_ns(Side::B, move || -> anyhow::Result<f64> {
        pin(GEN_CPU);
        let mut cfg = GenConfig::new(&iface, mac, ip, PortRange { lo: port, hi: port });
        cfg.rate = Rate::Pps(pps);
        cfg.size = 64;
        cfg.duration = Some(Duration::from_secs_f64(secs));
        let mut generator = Generator::new(cfg).context("generator")?;
        Ok(generator
            .run(&AtomicBool::new(false), |_| {})
            .context("generator run")?
            .pps)
    })
}
