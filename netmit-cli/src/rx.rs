//! `netmit rx`: receive steered packets with one AF_XDP socket and thread per queue.

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use netmit_user::{
    ebpf::PinRoot,
    sys::{
        IfName, Netdev, cpu,
        napi::{self, QueueKind},
    },
    xsk::{
        BindMode, BusyPoll, RegistrationState, RegistrationWatch, WatchEvent, XskConfig, XskSocket,
        XskStats, echo::udp_reply_in_place,
    },
};
use serde_json::json;

use crate::args::parse_secs;
use crate::output;
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum XskMode {
    /// Copy mode: works with every driver.
    Copy,
    /// Zero-copy: needs driver support; fails otherwise.
    Zerocopy,
    /// Zero-copy if the driver supports it, else copy.
    Auto,
}

#[derive(Debug, Args)]
pub struct RxArgs {
    /// Interface netmit is attached to.
    pub iface: IfName,
    /// RX queue to receive on.
    #[arg(long, default_value_t = 0, conflicts_with = "all_queues", value_parser = crate::args::whole::<u32>)]
    pub queue: u32,
    /// One socket and thread per RX queue of the interface.
    #[arg(long)]
    pub all_queues: bool,
    /// AF_XDP bind mode.
    #[arg(long, value_enum, default_value_t = XskMode::Auto)]
    pub mode: XskMode,
    /// Busy-poll the queue (SO_PREFER_BUSY_POLL, SO_BUSY_POLL 20us, budget 64) instead of
    /// sleeping in poll(2).
    #[arg(long)]
    pub busy_poll: bool,
    /// Never sleep: check the RX ring in a loop (one core at 100%), as xdpsock does by
    /// default. Saves the wake-up the kernel otherwise sends for every idle-to-busy
    /// transition, at the cost of the core.
    #[arg(long, conflicts_with = "busy_poll")]
    pub spin: bool,
    /// Frames taken from the RX ring per batch.
    #[arg(long, default_value_t = 64, value_parser = crate::args::whole::<usize>)]
    pub batch: usize,
    /// Send every UDP datagram back to its sender (a user-space UDP echo server).
    #[arg(long)]
    pub echo: bool,
    /// Stop after this long: seconds, or with a unit (500ms) [default: until Ctrl-C].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Pin the receive threads to these CPUs, one per queue in order (e.g. 1 or 2,3).
    #[arg(long, value_delimiter = ',', value_name = "CPU,...", value_parser = crate::args::whole::<usize>)]
    pub cpu: Vec<usize>,
    /// Print the final report as JSON (and no live line).
    #[arg(long)]
    pub json: bool,
    /// When netmit is detached from the interface, wait for it to be attached again and
    /// register anew, instead of stopping with an error.
    #[arg(long)]
    pub wait: bool,
}

/// Live counters a receive thread publishes for the rate line.
#[derive(Default)]
struct Live {
    packets: AtomicU64,
    bytes: AtomicU64,
}

struct QueueResult {
    queue: u32,
    mode: BindMode,
    stats: XskStats,
    elapsed: Duration,
    /// Why the thread stopped early: netmit was detached (or attached anew) under it.
    lost: Option<RegistrationState>,
}

pub fn run(args: RxArgs) -> anyhow::Result<()> {
    if !netmit_user::sys::caps::is_root() {
        bail!("netmit rx needs root (AF_XDP sockets, the pinned XSK map): run it with sudo");
    }
    let dev = Netdev::resolve(&args.iface)?;
    if PinRoot::default().find(&dev)?.is_none() {
        bail!(
            "netmit is not attached to {0}; run `netmit attach {0} --steer 'proto=udp,dport=...,action=xsk'` first",
            args.iface
        );
    }
    let queues: Vec<u32> = if args.all_queues {
        let mut q: Vec<u32> = napi::queues(&dev)
            .with_context(|| format!("listing the RX queues of {}", args.iface))?
            .into_iter()
            .filter(|q| q.kind == QueueKind::Rx)
            .map(|q| q.id)
            .collect();
        q.sort_unstable();
        if q.is_empty() {
            bail!("{} reports no RX queues", args.iface);
        }
        q
    } else {
        vec![args.queue]
    };
    if !args.cpu.is_empty() && args.cpu.len() != queues.len() {
        bail!(
            "--cpu lists {} CPU(s) for {} queue(s): give one per queue",
            args.cpu.len(),
            queues.len()
        );
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let cfg = XskConfig {
        mode: match args.mode {
            XskMode::Copy => BindMode::Copy,
            XskMode::Zerocopy => BindMode::ZeroCopy,
            XskMode::Auto => BindMode::Auto,
        },
        busy_poll: args.busy_poll.then_some(BusyPoll {
            usecs: 20,
            budget: 64,
            prefer: true,
        }),
        ..XskConfig::default()
    };
    // Open every socket first, so that a bad queue or mode fails before anything runs.
    let mut sockets = Vec::new();
    for &q in &queues {
        let s = XskSocket::open_registered(&dev, q, &cfg)
            .with_context(|| format!("opening an AF_XDP socket on {} queue {q}", args.iface))?;
        sockets.push(s);
    }
    crate::stop::install()?;
    let deadline = args
        .duration
        // A duration beyond what the clock can add is as good as none.
        .and_then(|d| Instant::now().checked_add(d));
    let live: Vec<Arc<Live>> = queues.iter().map(|_| Arc::new(Live::default())).collect();
    let live_line = !args.json && std::io::stderr().is_terminal();

    let results = std::thread::scope(|scope| -> anyhow::Result<Vec<QueueResult>> {
        let mut handles = Vec::new();
        for (i, mut sock) in sockets.into_iter().enumerate() {
            let live = Arc::clone(&live[i]);
            let cpu = args.cpu.get(i).copied();
            let (batch, echo, spin) = (args.batch, args.echo, args.spin);
            let mut watch = RegistrationWatch::new(args.wait);
            handles.push(scope.spawn(move || -> anyhow::Result<QueueResult> {
                if let Some(cpu) = cpu {
                    pin_to_cpu(cpu)?;
                }
                let start = Instant::now();
                let mut idle = 0u32;
                let mut lost = None;
                while !crate::stop::requested()
                    && (idle & 0xfff != 0 || deadline.is_none_or(|d| Instant::now() < d))
                {
                    if idle & 0xfff == 0 {
                        match watch.check(&mut sock)? {
                            WatchEvent::Quiet => {}
                            WatchEvent::Lost(state) => {
                                lost = Some(state);
                                break;
                            }
                            WatchEvent::Waiting(state) => eprintln!(
                                "rx: queue {}: {}; waiting for `netmit attach {}` (--wait)",
                                sock.queue(),
                                state.describe(sock.iface()),
                                sock.iface()
                            ),
                            WatchEvent::Registered => eprintln!(
                                "rx: queue {}: registered in the new attachment",
                                sock.queue()
                            ),
                        }
                    }
                    if spin {
                        // Spinning never sleeps. An idle ring is checked through its
                        // producer index alone; every 4096 idle turns recv_batch runs
                        // anyway to refill the fill ring and wake the kernel if asked.
                        if sock.rx_pending() == 0 {
                            idle = idle.wrapping_add(1);
                            if idle & 0xfff != 0 {
                                std::hint::spin_loop();
                                continue;
                            }
                        }
                    } else if !sock.poll(Duration::from_millis(100))? {
                        continue;
                    }
                    if echo {
                        sock.echo_batch(batch, udp_reply_in_place)?;
                    } else {
                        sock.recv_batch(batch, |_| {})?;
                    }
                    let c = sock.counters();
                    live.packets.store(c.rx_packets, Ordering::Relaxed);
                    live.bytes.store(c.rx_bytes, Ordering::Relaxed);
                }
                Ok(QueueResult {
                    queue: sock.queue(),
                    mode: sock.bound_mode(),
                    stats: sock.statistics()?,
                    elapsed: start.elapsed(),
                    lost,
                })
            }));
        }
        if live_line {
            let mut last = (Instant::now(), 0u64);
            while !handles.iter().all(|h| h.is_finished()) {
                std::thread::sleep(Duration::from_millis(200));
                if last.0.elapsed() >= Duration::from_secs(1) {
                    let total: u64 = live.iter().map(|l| l.packets.load(Ordering::Relaxed)).sum();
                    let rate = (total - last.1) as f64 / last.0.elapsed().as_secs_f64();
                    eprint!("\rrx: {rate:>10.0} pps  {total:>12} packets  ");
                    let _ = std::io::stderr().flush();
                    last = (Instant::now(), total);
                }
            }
            eprintln!();
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a receive thread panicked"))?
            })
            .collect()
    })?;
    report(&args, &results)?;
    if let Some(r) = results.iter().find(|r| r.lost.is_some()) {
        let state = r.lost.expect("checked");
        bail!(
            "{}: stopped receiving on queue {}. Attach it again and restart `netmit rx`, or \
             pass --wait to wait for a new attachment",
            state.describe(args.iface.as_str()),
            r.queue
        );
    }
    Ok(())
}

fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    let set = cpu::CpuSet::of(&[cpu])?;
    cpu::pin(0, &set).with_context(|| format!("pinning to CPU {cpu}"))
}

fn report(args: &RxArgs, results: &[QueueResult]) -> anyhow::Result<()> {
    let rows: Vec<_> = results
        .iter()
        .map(|r| {
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            let c = r.stats.counters;
            json!({
                "queue": r.queue, "mode": r.mode.as_str(), "seconds": secs,
                "packets": c.rx_packets, "bytes": c.rx_bytes,
                "pps": c.rx_packets as f64 / secs, "bps": c.rx_bytes as f64 * 8.0 / secs,
                "tx_packets": c.tx_packets, "tx_completed": c.tx_completed, "wakeups": c.wakeups,
                "rx_dropped": r.stats.rx_dropped, "rx_ring_full": r.stats.rx_ring_full,
                "rx_fill_ring_empty": r.stats.rx_fill_ring_empty_descs,
                "rx_invalid_descs": r.stats.rx_invalid_descs, "tx_invalid_descs": r.stats.tx_invalid_descs,
                "tx_ring_empty": r.stats.tx_ring_empty_descs,
            })
        })
        .collect();
    let packets: u64 = results.iter().map(|r| r.stats.counters.rx_packets).sum();
    let bytes: u64 = results.iter().map(|r| r.stats.counters.rx_bytes).sum();
    let secs = results
        .iter()
        .map(|r| r.elapsed.as_secs_f64())
        .fold(0.0, f64::max)
        .max(1e-9);
    if args.json {
        return output::print_json(&json!({
            "iface": args.iface, "echo": args.echo, "queues": rows,
            "packets": packets, "bytes": bytes, "seconds": secs, "pps": packets as f64 / secs,
        }));
    }
    for r in &rows {
        println!(
            "queue {} ({} mode): {} packets, {} bytes, {:.0} pps; rx_dropped {} rx_ring_full {} fill_ring_empty {} invalid {}/{}{}",
            r["queue"],
            r["mode"].as_str().unwrap_or("?"),
            r["packets"],
            r["bytes"],
            r["pps"].as_f64().unwrap_or(0.0),
            r["rx_dropped"],
            r["rx_ring_full"],
            r["rx_fill_ring_empty"],
            r["rx_invalid_descs"],
            r["tx_invalid_descs"],
            if args.echo {
                format!("; echoed {}", r["tx_completed"])
            } else {
                String::new()
            }
        );
    }
    println!(
        "total: {packets} packets, {bytes} bytes in {secs:.2} s = {:.0} pps",
        packets as f64 / secs
    );
    Ok(())
}
