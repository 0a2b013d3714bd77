//! `netmit load`: load a UDP request/response server and measure each reply's latency.

use std::io::IsTerminal;

use netmit_lab::{
    r#gen::MacAddr,
    load::{
        Arrivals, LatencySummary, LoadClient, LoadConfig, LoadReport, LoadSample, Pattern, Sender,
    },
};

use crate::args::{parse_duration_or_secs, parse_secs};
use crate::output;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("pattern").required(true).args(["rate", "closed"])))]
pub struct LoadArgs {
    /// Interface to send out of and receive on (in this network namespace).
    pub iface: String,
    /// The server's IP address and UDP port (IPv6 as `[ADDR]:PORT`).
    #[arg(long, value_name = "IP:PORT")]
    pub server: std::net::SocketAddr,
    /// Open loop: requests per second, whatever the replies do.
    #[arg(long, value_name = "PPS")]
    pub rate: Option<f64>,
    /// Closed loop: --window requests outstanding at all times, each reply sends the next.
    #[arg(long)]
    pub closed: bool,
    /// Closed loop: outstanding requests (one flow each).
    #[arg(long, value_name = "W", default_value_t = 16, conflicts_with = "rate", value_parser = crate::args::whole::<u32>)]
    pub window: u32,
    /// UDP payload bytes per request (at least 12 for the stamp; 22 for IPv4's 64-byte
    /// frames).
    #[arg(long, value_name = "BYTES", default_value_t = 22, value_parser = crate::args::whole::<usize>)]
    pub payload: usize,
    /// Open loop: with --sender socket the most requests per send call [default: 4, at
    /// most 64]; with --sender generator the requests per call [default: ~0.5 ms of
    /// traffic, at least 16: fewer starve the receiver with per-call work, see
    /// netmit_lab::load::MIN_OPEN_BURST].
    #[arg(long, value_name = "N", value_parser = |s: &str| crate::args::whole_in::<u32>(s, 1, 1024))]
    pub burst: Option<u32>,
    /// Open loop: what sends the requests: kernel UDP sockets paced in user space
    /// (socket), or BPF_PROG_TEST_RUN live frames in bursts (generator).
    #[arg(long, value_enum, default_value_t = SenderArg::Socket, conflicts_with = "closed")]
    pub sender: SenderArg,
    /// Open loop: arrivals evenly spaced, or a Poisson process of the rate (socket
    /// sender only).
    #[arg(long, value_enum, default_value_t = ArrivalsArg::Even, conflicts_with = "closed")]
    pub arrivals: ArrivalsArg,
    /// Seed of the Poisson arrivals' gaps.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = crate::args::whole::<u64>)]
    pub seed: u64,
    /// Open loop: flows (source ports from --sport).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 16,
        conflicts_with = "closed"
    )]
    #[arg(value_parser = crate::args::whole::<u32>)]
    pub flows: u32,
    /// Source port of the first flow.
    #[arg(long, value_name = "PORT", default_value_t = 40000, value_parser = crate::args::whole::<u16>)]
    pub sport: u16,
    /// Measured time: seconds, or with a unit (500ms).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "5")]
    pub duration: Duration,
    /// Time to run before measuring: seconds, or with a unit (0 for none).
    #[arg(long, value_name = "SECS", value_parser = parse_duration_or_secs, default_value = "1")]
    pub warmup: Duration,
    /// Pin the sending thread to this CPU.
    #[arg(long, value_name = "N", value_parser = crate::args::whole::<usize>)]
    pub cpu: Option<usize>,
    /// The server's MAC address [default: from the neighbour table, resolved by ARP/ND].
    #[arg(long, value_name = "MAC")]
    pub server_mac: Option<String>,
    /// Print the report as JSON (with per-second samples and the latency histogram).
    #[arg(long)]
    pub json: bool,
}

/// `--sender`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SenderArg {
    Socket,
    Generator,
}

impl From<SenderArg> for Sender {
    fn from(s: SenderArg) -> Sender {
        match s {
            SenderArg::Socket => Sender::Socket,
            SenderArg::Generator => Sender::Generator,
        }
    }
}

/// `--arrivals`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArrivalsArg {
    Even,
    Poisson,
}

fn config(args: &LoadArgs) -> anyhow::Result<LoadConfig> {
    let pattern = match (args.closed, args.rate) {
        (true, _) => Pattern::Closed {
            window: args.window,
        },
        (false, Some(rate_pps)) => Pattern::Open { rate_pps },
        (false, None) => anyhow::bail!("give --rate PPS (open loop) or --closed"),
    };
    let mut cfg = LoadConfig::new(&args.iface, args.server, pattern);
    cfg.payload_len = args.payload;
    cfg.burst = args.burst;
    cfg.sender = args.sender.into();
    cfg.arrivals = match args.arrivals {
        ArrivalsArg::Even => Arrivals::Even,
        ArrivalsArg::Poisson => Arrivals::Poisson { seed: args.seed },
    };
    cfg.flows = args.flows;
    cfg.sport_base = args.sport;
    cfg.duration = args.duration;
    cfg.warmup = args.warmup;
    cfg.cpu = args.cpu;
    cfg.server_mac = args
        .server_mac
        .as_deref()
        .map(str::parse::<MacAddr>)
        .transpose()?;
    Ok(cfg)
}

pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let cfg = config(&args)?;
    let mut client = LoadClient::new(cfg)?;
    crate::stop::install()?;
    let live = !args.json && std::io::stdout().is_terminal();
    let report = client.run(netmit_user::sys::signal::stop_flag(), |s: &LoadSample| {
        if live {
            print_sample(s);
        }
    })?;
    if args.json {
        output::print_json(&serde_json::to_value(&report)?)?;
    } else {
        print_summary(&client, &report);
    }
    Ok(())
}

/// `850 ns`, `12.3 us`, `1.25 ms`, `2.00 s`.
fn ns(v: f64) -> String {
    match v {
        v if v < 1e3 => format!("{v:.0} ns"),
        v if v < 1e6 => format!("{:.1} us", v / 1e3),
        v if v < 1e9 => format!("{:.2} ms", v / 1e6),
        v => format!("{:.2} s", v / 1e9),
    }
}

fn latency_line(l: &LatencySummary) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ns(l.p50_ns as f64),
        ns(l.p90_ns as f64),
        ns(l.p99_ns as f64),
        ns(l.p999_ns as f64),
        ns(l.max_ns as f64)
    )
}

fn print_sample(s: &LoadSample) {
    println!(
        "{:>7.2} s{} sent {:>10.0}/s  replies {:>10.0}/s  {}{}",
        s.at_secs,
        if s.warmup { " (warmup)" } else { "         " },
        s.sent_pps,
        s.received_pps,
        latency_line(&s.latency),
        if s.reseeded > 0 {
            format!("  re-seeded {}", s.reseeded)
        } else {
            String::new()
        }
    );
}

fn print_summary(client: &LoadClient, r: &LoadReport) {
    let (src_mac, src_ip) = client.source();
    let pattern = match r.pattern {
        Pattern::Open { rate_pps } => format!("open loop at {rate_pps:.0} requests/s"),
        Pattern::Closed { window } => format!("closed loop, window {window}"),
    };
    println!(
        "{} {} ({}) -> {} ({}), {}, {} flows, {}-byte payloads ({}-byte frames)",
        r.iface,
        src_ip,
        src_mac,
        r.server,
        client.server_mac(),
        pattern,
        r.flows,
        r.payload_len,
        r.frame_len
    );
    println!(
        "{:.2} s measured after {:.2} s of warmup{}: sent {}, received {}, lost {}{}",
        r.seconds,
        r.warmup_secs,
        if r.stopped { " (stopped)" } else { "" },
        r.sent,
        r.received,
        r.lost,
        match r.pattern {
            Pattern::Closed { .. } => format!(", re-seeded {}, stale {}", r.reseeded, r.stale),
            Pattern::Open { .. } => String::new(),
        }
    );
    println!("throughput: {:.0} replies/s", r.achieved_pps);
    if let Some(s) = &r.send {
        println!(
            "sent by {} ({} arrivals): {} calls, {:.2} requests per call on average, at most {}{}",
            s.sender.name(),
            match s.arrivals {
                Arrivals::Poisson { .. } => "Poisson",
                _ => "even",
            },
            s.calls,
            s.burst_mean,
            s.burst_max,
            if s.refused > 0 {
                format!(", {} refused by the kernel (not sent)", s.refused)
            } else {
                String::new()
            }
        );
        if let Some(e) = &s.send_error {
            println!(
                "send time - due time: p50 {}  p99 {}  max {}",
                ns(e.p50_ns as f64),
                ns(e.p99_ns as f64),
                ns(e.max_ns as f64)
            );
        }
    }
    if r.behind_schedule > 0 {
        eprintln!(
            "netmit: warning: the generator fell behind the offered rate and gave up {} requests \
             of its schedule",
            r.behind_schedule
        );
    }
    let l = &r.latency;
    if l.samples > 0 {
        println!(
            "latency ({} replies): min {}  mean {}  {}",
            l.samples,
            ns(l.min_ns as f64),
            ns(l.mean_ns),
            latency_line(l)
        );
    } else {
        println!("latency: no replies");
    }
    if r.foreign > 0 {
        println!(
            "{} frames from the server's port were not replies to this client (passed to the kernel)",
            r.foreign
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    #[test]
    fn units() {
        assert_eq!(ns(850.0), "850 ns");
        assert_eq!(ns(12_345.0), "12.3 us");
        assert_eq!(ns(1_250_000.0), "1.25 ms");
        assert_eq!(ns(2e9), "2.00 s");
    }

    #[test]
    fn load_args() {
        let base = ["netmit", "load", "veth0", "--server", "198.18.0.1:9000"];
        let parse = |rest: &[&str]| Cli::try_parse_from(base.iter().chain(rest));
        let Command::Load(l) = parse(&["--rate", "20000", "--warmup", "0"])
            .unwrap()
            .command
        else {
            panic!("not load")
        };
        assert_eq!(
            (l.rate, l.closed, l.payload, l.flows),
            (Some(20000.0), false, 22, 16)
        );
        assert_eq!(
            (l.duration, l.warmup),
            (Duration::from_secs(5), Duration::ZERO)
        );
        let Command::Load(l) = parse(&["--closed", "--window", "8"]).unwrap().command else {
            panic!("not load")
        };
        assert!(l.closed && l.window == 8 && l.rate.is_none());
        assert_eq!(
            (l.sender, l.arrivals),
            (SenderArg::Socket, ArrivalsArg::Even)
        );
        let Command::Load(l) = parse(&["--rate", "1", "--arrivals", "poisson", "--seed", "9"])
            .unwrap()
            .command
        else {
            panic!("not load")
        };
        let cfg = config(&l).unwrap();
        assert_eq!(cfg.arrivals, Arrivals::Poisson { seed: 9 });
        assert!(parse(&["--closed", "--sender", "generator"]).is_err());
        assert!(parse(&[]).is_err(), "--rate or --closed is required");
        assert!(parse(&["--rate", "1", "--closed"]).is_err());
        assert!(
            parse(&["--rate", "1", "--window", "4"]).is_err(),
            "--window is for --closed"
        );
        assert!(parse(&["--closed", "--flows", "4"]).is_err());
        assert!(
            Cli::try_parse_from(["netmit", "load", "v", "--server", "198.18.0.1", "--closed"])
                .is_err(),
            "the port is required"
        );
        let Command::Load(l) = Cli::try_parse_from([
            "netmit",
            "load",
            "v",
            "--server",
            "[2001:db8::1]:9000",
            "--closed",
        ])
        .unwrap()
        .command
        else {
            panic!("not load")
        };
        assert!(l.server.is_ipv6());
    }
}
