//! `netmit load`: load a UDP request/response server and measure each reply's latency.

use std::io::IsTerminal;

use netmit_user::{
    r#gen::MacAddr,
    load::{LatencySummary, LoadClient, LoadConfig, LoadReport, LoadSample, Pattern},
};

use crate::{args::LoadArgs, output};

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
    let report = client.run(&crate::stop::STOP, |s: &LoadSample| {
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
    use super::*;

    #[test]
    fn units() {
        assert_eq!(ns(850.0), "850 ns");
        assert_eq!(ns(12_345.0), "12.3 us");
        assert_eq!(ns(1_250_000.0), "1.25 ms");
        assert_eq!(ns(2e9), "2.00 s");
    }
}
