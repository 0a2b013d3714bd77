//! `netmit gen`: send UDP traffic out of an interface with BPF_PROG_TEST_RUN live frames.

use netmit_user::r#gen::{GenConfig, GenReport, GenSample, Generator, MacAddr, Rate, parse_ip};

use crate::{args::GenArgs, output};

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
    let report = generator.run(&crate::stop::STOP, |s: &GenSample| {
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
        eprintln!(
            "netmit: warning: {} counted {} of {} frames as sent and {} as dropped: on a veth \
             the peer needs native XDP or GRO on to take frames (its ring holds 256); some NIC \
             drivers need an XDP program attached, some do not count XDP transmits",
            r.iface,
            c.tx_packets.min(r.packets),
            r.packets,
            c.tx_dropped
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
