//! `netmit gen`: send UDP traffic out of an interface with BPF_PROG_TEST_RUN live frames.

use netmit_lab::r#gen::{GenConfig, GenReport, GenSample, Generator, MacAddr, Rate, parse_ip};

use crate::args::parse_secs;
use crate::output;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Interface to send out of (in this network namespace).
    pub iface: String,
    /// Destination MAC address: the receiver's (nothing resolves it).
    #[arg(long, value_name = "MAC")]
    pub dst_mac: String,
    /// Destination IPv4 or IPv6 address.
    #[arg(long, value_name = "IP")]
    pub dst_ip: String,
    /// Source IP address [default: IFACE's first address of the destination's family].
    #[arg(long, value_name = "IP")]
    pub src_ip: Option<String>,
    /// Source MAC address [default: IFACE's].
    #[arg(long, value_name = "MAC")]
    pub src_mac: Option<String>,
    /// Destination port or range; flow i goes to LO + i % (number of ports).
    #[arg(long, value_name = "PORT[-PORT]")]
    pub dport: String,
    /// Source port of the first flow; flow i comes from SPORT + i.
    #[arg(long, value_name = "PORT", default_value_t = 32768, value_parser = crate::args::whole::<u16>)]
    pub sport: u16,
    /// Number of flows (distinct source ports) [default: one per destination port].
    #[arg(long, value_name = "N", value_parser = crate::args::whole::<u32>)]
    pub flows: Option<u32>,
    /// Frame size in bytes, Ethernet header included, FCS not (64 to 1500).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = crate::args::whole::<usize>)]
    pub size: usize,
    /// Frames per second [default: --max].
    #[arg(long, value_name = "PPS", conflicts_with = "max", value_parser = crate::args::whole::<u64>)]
    pub rate: Option<u64>,
    /// Send as fast as possible.
    #[arg(long)]
    pub max: bool,
    /// Stop after this many frames (exact).
    #[arg(long, value_name = "N", conflicts_with = "duration", value_parser = crate::args::whole::<u64>)]
    pub count: Option<u64>,
    /// Stop after this long: seconds, or with a unit (500ms) [default: until Ctrl-C].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Frames per syscall [default: ~100 us of traffic at a fixed rate, 2048 with --max].
    #[arg(long, value_name = "N", value_parser = crate::args::whole::<u32>)]
    pub burst: Option<u32>,
    /// Frames per live-frames batch: one transmit flush each (1 to 256).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = crate::args::whole::<u32>)]
    pub live_batch: u32,
    /// Print the report as JSON (with per-second samples).
    #[arg(long)]
    pub json: bool,
}

fn config(args: &GenArgs) -> anyhow::Result<GenConfig> {
    let mut cfg = GenConfig::new(
        &args.iface,
        args.dst_mac.parse()?,
        parse_ip(&args.dst_ip)?,
        args.dport.parse()?,
    );
    cfg.src_mac = args
        .src_mac
        .as_deref()
        .map(str::parse::<MacAddr>)
        .transpose()?;
    cfg.src_ip = args.src_ip.as_deref().map(parse_ip).transpose()?;
    cfg.src_port = args.sport;
    if let Some(f) = args.flows {
        cfg.flows = f;
    }
    cfg.size = args.size;
    cfg.rate = match args.rate {
        Some(pps) if !args.max => Rate::Pps(pps),
        _ => Rate::Max,
    };
    cfg.count = args.count;
    cfg.duration = args.duration;
    cfg.burst = args.burst;
    cfg.live_batch = args.live_batch;
    Ok(cfg)
}

pub fn run(args: GenArgs) -> anyhow::Result<()> {
    let cfg = config(&args)?;
    let mut generator = Generator::new(cfg)?;
    crate::stop::install()?;
    let json = args.json;
    let report = generator.run(netmit_user::sys::signal::stop_flag(), |s: &GenSample| {
        if !json {
            println!(
                "{:>7.2} s  {:>12.0} pps  {:>9.1} Mbit/s",
                s.at_secs, s.pps, s.mbit_per_sec
            );
        }
    })?;
    warn_about_delivery(&report, generator.config().max_lag);
    if json {
        output::print_json(&serde_json::to_value(&report)?)?;
    } else {
        print_summary(&generator, &report);
    }
    Ok(())
}

/// Frames the interface dropped were counted as sent by the syscall: say so.
fn warn_about_delivery(r: &GenReport, max_lag: std::time::Duration) {
    if let Some(c) = r.interface
        && (c.tx_dropped > 0 || c.tx_packets < r.packets)
    {
        let sent = c.tx_packets.min(r.packets);
        // All (or nearly all) lost: the peer takes none. Some lost: it takes them, slower.
        let why = if sent * 10 < r.packets {
            "on a veth the peer takes frames only with native XDP or GRO on; some NIC drivers \
             need an XDP program attached, some do not count XDP transmits"
        } else {
            "the receiver did not keep up (a veth peer's ring holds 256 frames): lower --rate, \
             or give the peer's NAPI a core of its own (threaded NAPI)"
        };
        eprintln!(
            "netmit: warning: {} counted {sent} of {} frames as sent and {} as dropped: {why}",
            r.iface, r.packets, c.tx_dropped
        );
    }
    if r.behind_schedule > 0 {
        eprintln!(
            "netmit: warning: fell more than {max_lag:?} behind the asked rate; gave up {} \
             slots of the schedule",
            r.behind_schedule
        );
    }
}

fn print_summary(g: &Generator, r: &GenReport) {
    let cfg = g.config();
    let (src_mac, src_ip) = g.source();
    println!(
        "{} -> {} ({} -> {}), dport {}, {} flows from sport {}, {}-byte frames, {}",
        src_ip,
        cfg.dst_ip,
        src_mac,
        cfg.dst_mac,
        cfg.dst_ports,
        cfg.flows,
        cfg.src_port,
        r.frame_size,
        match r.target_pps {
            Some(p) => format!("{p} pps asked"),
            None => "full speed".to_string(),
        }
    );
    println!(
        "sent {} frames ({} bytes) in {:.3} s: {:.0} pps, {:.1} Mbit/s ({:.1} Mbit/s on the wire){}",
        r.packets,
        r.bytes,
        r.duration_secs,
        r.pps,
        r.mbit_per_sec,
        r.wire_mbit_per_sec,
        if r.stopped { ", stopped" } else { "" }
    );
    if let Some(c) = r.interface {
        println!(
            "{}: tx_packets +{}, tx_dropped +{}, tx_errors +{}",
            r.iface, c.tx_packets, c.tx_dropped, c.tx_errors
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
    fn gen_args() {
        let cli = Cli::try_parse_from([
            "netmit",
            "gen",
            "veth0",
            "--dst-mac",
            "02:00:00:00:00:02",
            "--dst-ip",
            "198.18.0.1",
            "--dport",
            "9200-9201",
            "--rate",
            "5000",
            "--duration",
            "1.5",
        ])
        .unwrap();
        let Command::Gen(g) = cli.command else {
            panic!("not gen")
        };
        assert_eq!((g.rate, g.max, g.size), (Some(5000), false, 64));
        assert_eq!(g.duration, Some(Duration::from_millis(1500)));
        assert_eq!(parse_secs("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_secs("0").is_err());
        let both = [
            "netmit",
            "gen",
            "v",
            "--dst-mac",
            "m",
            "--dst-ip",
            "i",
            "--dport",
            "1",
        ];
        assert!(Cli::try_parse_from(both.iter().chain(&["--rate", "1", "--max"])).is_err());
        assert!(
            Cli::try_parse_from(both.iter().chain(&["--count", "1", "--duration", "1"])).is_err()
        );
    }
}
