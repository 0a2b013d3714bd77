//! `netmit bench`: benchmarks measured as ratios against a baseline in the same run.

use anyhow::{Context, bail};
use netmit_lab::bench::xdp::{self, XdpBenchOptions};

use crate::args::parse_duration;
use crate::output;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Per-packet cost of the steering program against xdp-filter, a minimal parser and an
    /// empty XDP_PASS program (0, 16, 256 rules; IPv4, IPv6, TCP, VLAN; first rule, last
    /// rule, miss); exit 1 when a goal is missed.
    Xdp(XdpBenchArgs),
    /// The kernel vs. user-level networking comparison: one UDP request/response server
    /// under baseline interrupts, deferral, busy polling, IRQ suspension, AF_XDP and the
    /// adaptive daemon, at 10/50/90% of the baseline's saturation and at saturation.
    ///
    /// Builds a throwaway veth testbed (two network namespaces, threaded NAPI pinned to
    /// the server's and the client's core), or uses --server-iface/--client-iface, prints
    /// a table, writes modes.json and two SVG
    /// plots to --out, and checks the goals (exit 1 when one is missed, unless
    /// --no-check). About 4 minutes on 2 cores; --quick about 1.
    /// Example: netmit bench modes --quick --out /tmp/modes
    Modes(ModesBenchArgs),
    /// An unmodified server (Debian's memcached) under netmit: baseline, defer, the global
    /// busy-poll sysctls, `netmit run --profile busy-poll|suspend` and the adaptive daemon,
    /// with a memcached UDP client (ETC-like sizes, mostly gets) at 10/50/90% of the
    /// baseline's saturation and at saturation.
    ///
    /// Same veth testbed, table, plots and exit status as `bench modes`; writes app.json.
    /// The sysctls are set through the restore journal and put back after their setup.
    /// Example: netmit bench app --quick --out /tmp/app
    App(crate::bench_app::AppBenchArgs),
}

#[derive(Debug, Args)]
pub struct ModesBenchArgs {
    /// Short warm-ups and 1 s windows: a smoke test, not a measurement to quote.
    #[arg(long)]
    pub quick: bool,
    /// Setups to run, comma-separated (baseline, defer, busy-poll, suspend, xsk,
    /// adaptive); the baseline always runs, first.
    #[arg(long, value_delimiter = ',', value_name = "SETUP,...")]
    pub setups: Option<Vec<String>>,
    /// Length of each measured window [default: 5s, 1s with --quick].
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub window: Option<std::time::Duration>,
    /// The server's CPU [default: the last one].
    #[arg(long, value_parser = crate::args::whole::<usize>)]
    pub server_cpu: Option<usize>,
    /// The client's CPU.
    #[arg(long, default_value_t = 0, value_parser = crate::args::whole::<usize>)]
    pub client_cpu: usize,
    /// Outstanding requests at saturation (closed loop).
    #[arg(long, default_value_t = 64, value_parser = crate::args::whole::<u32>)]
    pub closed_window: u32,
    /// What sends the open loop's requests (see `netmit load --sender`).
    #[arg(long, value_enum, default_value_t = crate::load::SenderArg::Socket)]
    pub sender: crate::load::SenderArg,
    /// Run on this interface of the server instead of a veth testbed (with
    /// --client-iface; at least one of them in a network namespace of its own, e.g. two
    /// NIC ports cabled together). Only its per-NAPI settings change, through the restore
    /// journal, and they are restored after each setup.
    #[arg(long, value_name = "IFACE", requires = "client_iface")]
    pub server_iface: Option<String>,
    /// Network namespace of --server-iface (a name under /run/netns).
    #[arg(long, value_name = "NAME", requires = "server_iface")]
    pub server_netns: Option<String>,
    /// The load client's interface (with --server-iface); needs native XDP.
    #[arg(long, value_name = "IFACE", requires = "server_iface")]
    pub client_iface: Option<String>,
    /// Network namespace of --client-iface (a name under /run/netns).
    #[arg(long, value_name = "NAME", requires = "client_iface")]
    pub client_netns: Option<String>,
    /// Directory for modes.json, throughput-latency.svg and cpu-load.svg.
    #[arg(long, default_value = "netmit-bench-modes", value_name = "DIR")]
    pub out: PathBuf,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Report only: exit 0 even when a goal is missed.
    #[arg(long)]
    pub no_check: bool,
}

#[derive(Debug, Args)]
pub struct XdpBenchArgs {
    /// Program runs per measurement (BPF_PROG_TEST_RUN repeat).
    #[arg(long, default_value_t = 1_000_000, value_parser = crate::args::whole::<u32>)]
    pub repeat: u32,
    /// Measurements per case; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = crate::args::whole::<usize>)]
    pub rounds: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Report only: exit 0 even when a goal is missed.
    #[arg(long)]
    pub no_check: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Xdp(a) => run_xdp(a),
        BenchCommand::Modes(a) => run_modes(a),
        BenchCommand::App(a) => crate::bench_app::run(a),
    }
}

fn run_modes(args: ModesBenchArgs) -> anyhow::Result<()> {
    use netmit_lab::bench::modes::{self, ModesConfig, Setup};

    let mut cfg = if args.quick {
        ModesConfig::quick()
    } else {
        ModesConfig::full()
    };
    if let Some(names) = &args.setups {
        cfg.setups = names
            .iter()
            .map(|n| {
                Setup::from_name(n.trim()).with_context(|| {
                    format!(
                        "unknown setup {n:?}: use {}",
                        Setup::ALL.map(Setup::name).join(", ")
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
    if let (Some(server), Some(client)) = (&args.server_iface, &args.client_iface) {
        cfg.interfaces = Some((
            modes::Endpoint {
                iface: client.clone(),
                netns: args.client_netns.clone(),
            },
            modes::Endpoint {
                iface: server.clone(),
                netns: args.server_netns.clone(),
            },
        ));
    }
    cfg.closed_window = args.closed_window;
    cfg.sender = args.sender.into();
    cfg.validate()?;
    if !netmit_user::sys::caps::is_root() {
        bail!(
            "netmit bench modes needs root (it builds a veth testbed in two network \
             namespaces and loads BPF programs): run it with sudo"
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the output directory {}", args.out.display()))?;
    crate::stop::install()?;

    let bar = progress_bar(cfg.steps());
    let report = modes::run(&cfg, netmit_user::sys::signal::stop_flag(), |p| {
        bar.set_position(p.done as u64);
        bar.set_message(p.what.clone());
        if let Some(r) = &p.last {
            bar.println(format!(
                "{:<10} {:>5}  {:>9.0} replies/s  p50 {:>7.1} us  p99 {:>7.1} us  cpu {:>5.1}%{}",
                r.setup.name(),
                r.load.label(),
                r.achieved_pps,
                r.p50_us,
                r.p99_us,
                r.server_cpu_percent,
                r.daemon_mode
                    .as_ref()
                    .map(|m| format!("  daemon: {m}"))
                    .unwrap_or_default()
            ));
        }
    });
    bar.finish_and_clear();
    let report = report.context("running the mode comparison")?;

    let json = serde_json::to_value(&report)?;
    write_outputs(
        &args.out,
        "modes.json",
        &json,
        &report.latency_plot(),
        &report.cpu_plot(),
    )?;
    if args.json {
        output::print_json(&json)?;
    } else {
        println!(
            "netmit bench modes: {} on Linux {}, server CPU {}, client CPU {}, {} s windows{}",
            report.testbed,
            report.kernel,
            report
                .server_cpus
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            report.client_cpu,
            report.window_secs,
            if report.quick { " (--quick)" } else { "" }
        );
        for (setup, what) in &report.setups {
            println!("  {:<10} {what}", setup.name());
        }
        println!(
            "baseline saturation: {:.0} replies/s; load points are fractions of it\n",
            report.baseline_saturation_pps
        );
        print!("{}", report.table());
        for note in &report.notes {
            println!("note: {note}");
        }
        println!(
            "\nwrote {0}/modes.json, {0}/throughput-latency.svg, {0}/cpu-load.svg ({1:.0} s)",
            args.out.display(),
            report.elapsed_secs
        );
    }
    if !report.goals_met() && !args.no_check {
        bail!("a goal of the comparison was missed (see above; --no-check only reports)");
    }
    Ok(())
}

/// The progress bar of a comparison with `steps` measurements.
pub(crate) fn progress_bar(steps: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Writes a comparison's JSON report and its two plots into `out`.
pub(crate) fn write_outputs(
    out: &std::path::Path,
    json_name: &str,
    json: &serde_json::Value,
    latency_svg: &str,
    cpu_svg: &str,
) -> anyhow::Result<()> {
    let write = |name: &str, body: &[u8]| {
        let path = out.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))
    };
    write(json_name, serde_json::to_string_pretty(json)?.as_bytes())?;
    write("throughput-latency.svg", latency_svg.as_bytes())?;
    write("cpu-load.svg", cpu_svg.as_bytes())
}

fn run_xdp(args: XdpBenchArgs) -> anyhow::Result<()> {
    let opts = XdpBenchOptions {
        repeat: args.repeat,
        rounds: args.rounds,
        ..Default::default()
    };
    let report = xdp::run(&opts).context("running the XDP benchmark")?;
    let missed = report.rows.iter().filter(|r| !r.goals_met()).count();
    if args.json {
        output::print_json(&serde_json::to_value(&report)?)?;
    } else {
        print_xdp_table(&report);
    }
    if missed > 0 && !args.no_check {
        bail!(
            "{missed} case(s) missed a goal (more than {:.1}x xdp-filter, or too far above the \
             empty program; pass --no-check to only report)",
            report.goals.max_vs_xdp_filter
        );
    }
    Ok(())
}

fn print_xdp_table(report: &xdp::XdpBenchReport) {
    let g = &report.goals;
    println!(
        "XDP per-packet cost, BPF_PROG_TEST_RUN, {} runs x {} rounds (median), on {} (Linux {})",
        report.repeat, report.rounds, report.cpu_model, report.kernel
    );
    println!(
        "  netmit: the steering program; empty: XDP_PASS alone; floor: minimal parser + one \
         lookup; filter: xdp-filter (xdpfilt_alw_all, equivalent rules)"
    );
    println!(
        "  goals: netmit <= {:.1}x filter on every case; at {} rules netmit - empty <= {:.0} ns, \
         or <= {:.1}x floor - empty where that is over {:.0} ns",
        g.max_vs_xdp_filter,
        xdp::Goals::ABOVE_EMPTY_RULES
            .map(|n| n.to_string())
            .join(" and "),
        g.max_above_empty_ns,
        g.max_above_vs_floor,
        g.max_above_empty_ns
    );
    println!(
        "{:<6} {:>5} {:<5} {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} | {:>6} {:>6} {:>6}  {:<6} verdict",
        "packet",
        "rules",
        "case",
        "netmit",
        "floor",
        "filter",
        "empty",
        "+netmit",
        "+floor",
        "limit",
        "/filt",
        "/floor",
        "+/+",
        "goals"
    );
    for r in &report.rows {
        let verdict = match r.rule_id {
            Some(id) => format!("{} (rule {id})", r.verdict),
            None => r.verdict.to_string(),
        };
        let limit = r
            .above_empty_limit_ns
            .map(|l| format!("{l:.1}"))
            .unwrap_or_else(|| "-".into());
        // Below a nanosecond the floor's cost above empty is noise, and so the ratio.
        let above_vs_floor = if r.floor_above_empty_ns >= 1.0 {
            format!("{:.2}x", r.above_vs_floor)
        } else {
            "-".into()
        };
        let status = match (r.vs_xdp_filter_met, r.above_empty_met) {
            (true, true) => "met",
            (false, true) => "FILTER",
            (true, false) => "ABOVE",
            (false, false) => "BOTH",
        };
        println!(
            "{:<6} {:>5} {:<5} {:>7.1} {:>7.1} {:>7.1} {:>7.1} | {:>7.1} {:>7.1} {:>7} | {:>5.2}x {:>5.2}x {:>6}  {:<6} {verdict}",
            r.packet,
            r.rules,
            r.target.name(),
            r.netmit_ns,
            r.floor_ns,
            r.xdp_filter_ns,
            r.empty_ns,
            r.netmit_above_empty_ns,
            r.floor_above_empty_ns,
            limit,
            r.vs_xdp_filter,
            r.vs_floor,
            above_vs_floor,
            status
        );
    }
    println!(
        "(ns per packet; +X = X - empty; /filt, /floor = netmit's cost over theirs; +/+ = \
         netmit's cost above empty over the floor's)"
    );
}
