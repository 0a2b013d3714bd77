//! `xsk-latency`: sockperf ping-pong against `netmit serve` in busy-poll mode (a kernel
//! UDP socket, epoll busy polling with IRQ suspension) and in xsk mode with each AF_XDP
//! wait strategy (`--xsk-wait sleep|spin|spin-then-sleep`), at full ping-pong rate and at
//! about 10% of the busy-poll server's rate (sockperf `--mps`).
//!
//! Method: one veth testbed, netmit attached in native mode (the veth gets its NAPI)
//! with `proto=udp,dport=XSK_PORT,action=xsk`; the kernel server listens on a port no
//! rule steers. The server is pinned to CPU 1, sockperf (Debian's package, 64-byte
//! messages) to CPU 0; on a veth the receive NAPI of the server's side runs on the
//! sender's CPU (0), and the reply's on the server's. For the busy-poll runs the veth's
//! NAPI gets the settings busy polling needs (`netmit tune set --defer-hard-irqs 100
//! --gro-flush-timeout 20us --irq-suspend-timeout 20ms`, the serve test's), restored
//! before the xsk runs. The server's CPU is utime + stime from /proc/PID/stat over the
//! sockperf run, as a share of one core.
//!
//! `--spin USECS` runs spin-then-sleep with that spin instead of netmit's default (for
//! choosing the default: see docs/benchmarks.md).
//!
//! Goals (exit 1 when missed, `--no-check` to only report): the best xsk strategy's
//! average and p99 at full rate are at most the busy-poll server's; at 10% load,
//! spin-then-sleep's average is at most 1.2x busy-poll's at less than half its CPU.

use std::{
    fs,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use netmit_user::sys::process;
use serde_json::{Value, json};
use tests::{
    sockperf::{Sockperf, parse_sockperf},
    support::netmit_bin,
    testbed::{NsChild, Side, Testbed},
};

use super::flag_value;

const KERNEL_PORT: u16 = 9320;
const XSK_PORT: u16 = 9330;
const SERVER_CPU: usize = 1;
const CLIENT_CPU: usize = 0;
/// The light load, as a share of the busy-poll server's ping-pong rate.
const LIGHT: f64 = 0.10;

/// One server set-up: a serve mode and, in xsk mode, a wait strategy.
#[derive(Clone)]
struct Setup {
    name: String,
    mode: &'static str,
    wait: Option<String>,
}

impl Setup {
    fn busy_poll() -> Self {
        Self {
            name: "busy-poll".into(),
            mode: "busy-poll",
            wait: None,
        }
    }

    /// The xsk set-ups: sleep, spin and spin-then-sleep (with `spin` µs, or netmit's
    /// default).
    fn xsk(spin: Option<u64>) -> Vec<Self> {
        let sts = match spin {
            Some(u) => format!("spin-then-sleep:{u}"),
            None => "spin-then-sleep".into(),
        };
        ["sleep", "spin", sts.as_str()]
            .into_iter()
            .map(|w| Self {
                name: format!("xsk {w}"),
                mode: "xsk",
                wait: Some(w.to_string()),
            })
            .collect()
    }

    fn is_spin_then_sleep(&self) -> bool {
        self.wait
            .as_deref()
            .is_some_and(|w| w.starts_with("spin-then-sleep"))
    }
}

/// One measured run.
struct Row {
    setup: Setup,
    mps: Option<u64>,
    sockperf: Sockperf,
    /// Server CPU over the run, as a share of one core.
    cpu: f64,
    /// How long the sockperf run took, its start-up and warm-up included (the CPU
    /// share is over this time).
    run_secs: f64,
    report: Value,
}

impl Row {
    fn json(&self) -> Value {
        json!({
            "server": self.setup.name, "mode": self.setup.mode, "wait": self.setup.wait,
            "mps": self.mps, "avg_usec": self.sockperf.avg_usec,
            "p50_usec": self.sockperf.p50, "p99_usec": self.sockperf.p99,
            "observations": self.sockperf.observations, "server_cpu": self.cpu,
            "run_secs": self.run_secs,
            "serve_report": self.report,
        })
    }
}

/// Settings made with `netmit tune set` through a private journal, restored (and the
/// journal removed) on drop, also when the benchmark fails.
struct Tuned<'tb> {
    tb: &'tb Testbed,
    dir: PathBuf,
}

impl<'tb> Tuned<'tb> {
    fn set(tb: &'tb Testbed, args: &[&str]) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("netmit-bench-xsk-latency-{}", std::process::id()));
        // A directory of our own (created here, 0700), never one found in place.
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
            .create(&dir)
            .with_context(|| {
                format!(
                    "creating {} (left by another run? remove it)",
                    dir.display()
                )
            })?;
        let tuned = Self { tb, dir };
        let mut full = vec!["tune", "set", tb.if_a()];
        full.extend_from_slice(args);
        let out = tuned.netmit(&full)?;
        if !out.status.success() {
            bail!("netmit tune set: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(tuned)
    }

    fn netmit(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.tb
            .cmd(Side::A, netmit_bin(), args)
            .env("NETMIT_RUN_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .context("running netmit")
    }
}

impl Drop for Tuned<'_> {
    fn drop(&mut self) {
        match self.netmit(&["tune", "restore"]) {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "netmit tune restore: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("netmit tune restore: {e:#}"),
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A sockperf ping-pong request: sequence number, flags client|pong, length.
fn probe() -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&0u64.to_be_bytes());
    m.extend_from_slice(&3u16.to_be_bytes());
    m.extend_from_slice(&14u32.to_be_bytes());
    m
}

/// Probes from B until the server answers.
fn wait_ready(tb: &Testbed, to: SocketAddr) -> anyhow::Result<()> {
    let s = tb.in_ns(Side::B, || UdpSocket::bind("0.0.0.0:0"))?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let start = Instant::now();
    let mut buf = [0u8; 64];
    while start.elapsed() < Duration::from_secs(10) {
        s.send_to(&probe(), to)?;
        if s.recv_from(&mut buf).is_ok() {
            return Ok(());
        }
    }
    bail!("netmit serve on {to} never answered")
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').context("malformed /proc/PID/stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        f.get(i)
            .context("short /proc/PID/stat")?
            .parse()
            .context("/proc/PID/stat")
    };
    Ok(field(11)? + field(12)?)
}

/// Starts the server, runs sockperf against it for `secs`, stops the server.
fn run_one(tb: &Testbed, setup: Setup, mps: Option<u64>, secs: f64) -> anyhow::Result<Row> {
    let port = if setup.mode == "xsk" {
        XSK_PORT
    } else {
        KERNEL_PORT
    };
    let (port_s, cpu_s) = (port.to_string(), SERVER_CPU.to_string());
    let mut args = vec![
        "serve",
        tb.if_a(),
        "--port",
        &port_s,
        "--mode",
        setup.mode,
        "--reply",
        "sockperf",
        "--cpu",
        &cpu_s,
        "--json",
    ];
    if let Some(w) = &setup.wait {
        args.extend(["--xsk-wait", w.as_str()]);
    }
    let mut cmd = tb.cmd(Side::A, netmit_bin(), &args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child: NsChild = tb.spawn_cmd(cmd).context("starting netmit serve")?;
    let pid = child.pid();
    let to = SocketAddr::new(tb.ip_a().into(), port);
    wait_ready(tb, to)?;

    let hz = process::clock_ticks_per_second() as f64;
    let (ip, secs_s) = (tb.ip_a().to_string(), format!("{secs}"));
    let client_cpu = CLIENT_CPU.to_string();
    let mut sargs = vec![
        "-c",
        &client_cpu,
        "sockperf",
        "ping-pong",
        "-i",
        &ip,
        "-p",
        &port_s,
        "-t",
        &secs_s,
        "--msg-size",
        "64",
    ];
    let mps_s = mps.map(|m| m.to_string());
    if let Some(m) = &mps_s {
        sargs.extend(["--mps", m]);
    }
    let t0 = cpu_ticks(pid)?;
    let start = Instant::now();
    let out = tb
        .cmd(Side::B, "taskset", &sargs)
        .stdin(Stdio::null())
        .output()
        .context("running sockperf (cargo xtask setup installs it)")?;
    let elapsed = start.elapsed().as_secs_f64();
    let t1 = cpu_ticks(pid)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    process::signal(pid, libc::SIGTERM).context("stopping netmit serve")?;
    let served = child.wait_with_output()?;
    if !out.status.success() {
        bail!("sockperf against {} failed:\n{text}", setup.name);
    }
    let sockperf = parse_sockperf(&text)
        .with_context(|| format!("no latency summary from sockperf ({}):\n{text}", setup.name))?;
    if !served.status.success() {
        bail!(
            "netmit serve ({}) failed: {}",
            setup.name,
            String::from_utf8_lossy(&served.stderr)
        );
    }
    let report: Value = serde_json::from_slice(&served.stdout)
        .with_context(|| format!("netmit serve ({}) printed no JSON", setup.name))?;
    if report["replies"].as_u64().unwrap_or(0) < sockperf.observations {
        bail!(
            "{}: the server answered fewer requests than sockperf measured: {report}",
            setup.name
        );
    }
    Ok(Row {
        setup,
        mps,
        sockperf,
        cpu: (t1 - t0) as f64 / hz / elapsed,
        run_secs: elapsed,
        report,
    })
}

fn print_row(r: &Row) {
    let p = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    println!(
        "  {:<22} {:>9} {:>9.2} {:>9} {:>9} {:>7.0}%",
        r.setup.name,
        r.mps.map_or("max".to_string(), |m| m.to_string()),
        r.sockperf.avg_usec,
        p(r.sockperf.p50),
        p(r.sockperf.p99),
        r.cpu * 100.0
    );
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    if !netmit_user::sys::caps::is_root() {
        bail!("needs root (namespaces, BPF, AF_XDP): run `sudo cargo xtask bench xsk-latency`");
    }
    let secs = flag_value(args, "--seconds", 2.0)?;
    if !(0.5..=60.0).contains(&secs) {
        bail!("--seconds must be between 0.5 and 60");
    }
    let as_json = args.iter().any(|a| a == "--json");
    let check = !args.iter().any(|a| a == "--no-check");
    let spin = match args.iter().position(|a| a == "--spin") {
        None => None,
        Some(i) => Some(
            args.get(i + 1)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|u| (1..=1_000_000).contains(u))
                .context("--spin needs microseconds from 1 to 1000000")?,
        ),
    };

    let tb = Testbed::new()?;
    let rule = format!("proto=udp,dport={XSK_PORT},action=xsk");
    let attach = tb
        .cmd(
            Side::A,
            netmit_bin(),
            ["attach", tb.if_a(), "--mode", "native", "--steer", &rule],
        )
        .output()?;
    if !attach.status.success() {
        bail!("netmit attach: {}", String::from_utf8_lossy(&attach.stderr));
    }
    let say = |r: &Row| {
        if !as_json {
            eprintln!(
                "{:<22} mps {:>7}: avg {:.2} us, p99 {} us, server CPU {:.0}% of {:.2} s",
                r.setup.name,
                r.mps.map_or("max".to_string(), |m| m.to_string()),
                r.sockperf.avg_usec,
                r.sockperf
                    .p99
                    .map_or("-".to_string(), |p| format!("{p:.2}")),
                r.cpu * 100.0,
                r.run_secs
            );
        }
    };
    let (busy_full, busy_light, light_mps) = {
        let _tuned = Tuned::set(
            &tb,
            &[
                "--defer-hard-irqs",
                "100",
                "--gro-flush-timeout",
                "20us",
                "--irq-suspend-timeout",
                "20ms",
            ],
        )?;
        let full = run_one(&tb, Setup::busy_poll(), None, secs)?;
        say(&full);
        // sockperf's latency is half the round trip.
        let rate = 1e6 / (2.0 * full.sockperf.avg_usec);
        let light_mps = ((rate * LIGHT).round() as u64).max(1);
        let light = run_one(&tb, Setup::busy_poll(), Some(light_mps), secs)?;
        say(&light);
        (full, light, light_mps)
    };
    let mut xsk_full = Vec::new();
    for s in Setup::xsk(spin) {
        let r = run_one(&tb, s, None, secs)?;
        say(&r);
        xsk_full.push(r);
    }
    let mut xsk_light = Vec::new();
    for s in Setup::xsk(spin) {
        let r = run_one(&tb, s, Some(light_mps), secs)?;
        say(&r);
        xsk_light.push(r);
    }

    let best = xsk_full
        .iter()
        .min_by(|a, b| a.sockperf.avg_usec.total_cmp(&b.sockperf.avg_usec))
        .context("no xsk runs")?;
    let p99 = |r: &Row| r.sockperf.p99.unwrap_or(f64::INFINITY);
    let best_met =
        best.sockperf.avg_usec <= busy_full.sockperf.avg_usec && p99(best) <= p99(&busy_full);
    let sts = xsk_light
        .iter()
        .find(|r| r.setup.is_spin_then_sleep())
        .context("no spin-then-sleep run")?;
    let light_met = sts.sockperf.avg_usec <= 1.2 * busy_light.sockperf.avg_usec
        && sts.cpu < 0.5 * busy_light.cpu;
    let met = best_met && light_met;
    let all: Vec<&Row> = [&busy_full]
        .into_iter()
        .chain(&xsk_full)
        .chain([&busy_light])
        .chain(&xsk_light)
        .collect();
    if as_json {
        let report = json!({
            "seconds": secs, "msg_size": 64, "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU,
            "light_mps": light_mps,
            "runs": all.iter().map(|r| r.json()).collect::<Vec<_>>(),
            "goals": {
                "best_xsk": best.setup.name,
                "best_xsk_le_busy_poll": best_met,
                "spin_then_sleep_light_avg_max_ratio": 1.2,
                "spin_then_sleep_light_cpu_max_ratio": 0.5,
                "spin_then_sleep_light": light_met,
                "met": met,
            },
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "sockperf ping-pong, 64-byte messages, {secs} s per run; server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}"
        );
        println!(
            "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "server", "mps", "avg us", "p50 us", "p99 us", "CPU"
        );
        for r in &all {
            print_row(r);
        }
        println!(
            "  best xsk ({}) avg and p99 <= busy-poll's: {}",
            best.setup.name,
            if best_met { "met" } else { "MISSED" }
        );
        println!(
            "  spin-then-sleep at {light_mps} mps: avg {:.2} <= 1.2 x {:.2} us and CPU {:.0}% < half of {:.0}%: {}",
            sts.sockperf.avg_usec,
            busy_light.sockperf.avg_usec,
            sts.cpu * 100.0,
            busy_light.cpu * 100.0,
            if light_met { "met" } else { "MISSED" }
        );
    }
    if check && !met {
        bail!("a goal was missed (pass --no-check to only report)");
    }
    Ok(())
}
