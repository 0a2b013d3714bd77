//! `netmit bench app`: an unmodified memcached under netmit (netmit_lab::bench::app).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use netmit_lab::bench::app::{self, AppConfig, AppSetup};

use crate::{args::parse_duration, output};

#[derive(Debug, Args)]
pub struct AppBenchArgs {
    /// Short warm-ups and 0.5 s windows: a smoke test, not a measurement to quote.
    #[arg(long)]
    pub quick: bool,
    /// Setups to run, comma-separated (baseline, defer, sysctl, busy-poll, suspend,
    /// adaptive); the baseline always runs, first.
    #[arg(long, value_delimiter = ',', value_name = "SETUP,...")]
    pub setups: Option<Vec<String>>,
    /// Length of each measured window [default: 5s, 500ms with --quick].
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub window: Option<std::time::Duration>,
    /// The server's CPU [default: the last one].
    #[arg(long, value_parser = crate::args::whole::<usize>)]
    pub server_cpu: Option<usize>,
    /// The client's CPU.
    #[arg(long, default_value_t = 0, value_parser = crate::args::whole::<usize>)]
    pub client_cpu: usize,
    /// Requests in flight at saturation (closed loop).
    #[arg(long, default_value_t = 32, value_parser = crate::args::whole::<u32>)]
    pub closed_window: u32,
    /// net.core.busy_poll and net.core.busy_read of the sysctl setup, microseconds.
    #[arg(long, default_value_t = 50, value_parser = crate::args::whole::<u64>)]
    pub sysctl_usecs: u64,
    /// The memcached binary.
    #[arg(long, default_value = "memcached", value_name = "PATH")]
    pub memcached: PathBuf,
    /// Directory for app.json, throughput-latency.svg and cpu-load.svg.
    #[arg(long, default_value = "netmit-bench-app", value_name = "DIR")]
    pub out: PathBuf,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Report only: exit 0 even when a goal is missed.
    #[arg(long)]
    pub no_check: bool,
}

pub fn run(args: AppBenchArgs) -> anyhow::Result<()> {
    let mut cfg = if args.quick {
        AppConfig::quick()
    } else {
        AppConfig::full()
    };
    if let Some(names) = &args.setups {
        cfg.setups = names
            .iter()
            .map(|n| {
                AppSetup::from_name(n.trim()).with_context(|| {
                    format!(
                        "unknown setup {n:?}: use {}",
                        AppSetup::ALL.map(AppSetup::name).join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(w) = args.window {
        cfg.window = w;
    }
    if let Some(c) = args.server_cpu {
        cfg.server_cpu = c;
    }
    cfg.client_cpu = args.client_cpu;
    cfg.closed_window = args.closed_window;
    cfg.sysctl_usecs = args.sysctl_usecs;
    cfg.memcached = args.memcached.clone();
    cfg.validate()?;
    if !netmit_user::sys::caps::is_root() {
        bail!(
            "netmit bench app needs root (it builds a veth testbed, sets NAPI settings and \
             the busy-poll sysctls): run it with sudo"
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the output directory {}", args.out.display()))?;
    crate::stop::install()?;

    let bar = crate::bench::progress_bar(cfg.steps());
    let report = app::run(&cfg, netmit_user::sys::signal::stop_flag(), |p| {
        bar.set_position(p.done as u64);
        bar.set_message(p.what.clone());
        if let Some(r) = &p.last {
            bar.println(format!(
                "{:<10} {:>5}  {:>9.0} replies/s  p50 {:>7.1} us  p99 {:>7.1} us  cpu {:>5.1}%  \
                 busy-polled {}{}",
                r.setup.name(),
                r.load.label(),
                r.achieved_pps,
                r.p50_us,
                r.p99_us,
                r.server_cpu_percent,
                r.busy_poll_rx_per_packet
                    .map(|b| format!("{:.0}%", b * 100.0))
                    .unwrap_or_else(|| "-".into()),
                r.daemon_mode
                    .as_ref()
                    .map(|m| format!("  daemon: {m}"))
                    .unwrap_or_default()
            ));
        }
    });
    bar.finish_and_clear();
    let report = report.context("running the unmodified-server comparison")?;

    let json = serde_json::to_value(&report)?;
    crate::bench::write_outputs(
        &args.out,
        "app.json",
        &json,
        &report.report.latency_plot(),
        &report.report.cpu_plot(),
    )?;
    if args.json {
        output::print_json(&json)?;
    } else {
        let r = &report.report;
        println!(
            "netmit bench app: {} on Linux {}, server CPU {}, client CPU {}, {} s windows{}",
            r.testbed,
            r.kernel,
            cfg.server_cpu,
            r.client_cpu,
            r.window_secs,
            if r.quick { " (--quick)" } else { "" }
        );
        for (setup, what) in &r.setups {
            println!("  {:<10} {what}", setup.name());
        }
        println!(
            "baseline saturation: {:.0} replies/s; load points are fractions of it\n",
            r.baseline_saturation_pps
        );
        print!("{}", report.table());
        for note in &r.notes {
            println!("note: {note}");
        }
        println!(
            "\nwrote {0}/app.json, {0}/throughput-latency.svg, {0}/cpu-load.svg ({1:.0} s)",
            args.out.display(),
            r.elapsed_secs
        );
    }
    if !report.goals_met() && !args.no_check {
        bail!("a goal of the comparison was missed (see above; --no-check only reports)");
    }
    Ok(())
}
