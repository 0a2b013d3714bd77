//! `netmit tune show|set|profile|restore`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use netmit_user::{
    daemon::state::StateFile,
    host::{Host, System},
    sys::{
        IfName, Netdev, caps,
        coalesce::{self, CoalesceParam},
        napi::{self, DeviceParam, NapiParam},
        sysctl::Sysctl,
    },
    tune::{
        Journal, journal,
        plan::{Plan, Profile, TuneRequest},
    },
};
use serde_json::{Value, json};

use crate::args::parse_duration;
use crate::output;
use clap::{Args, Subcommand, ValueEnum};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum TuneCommand {
    /// Every knob of an interface (per NAPI, device-wide, coalescing, sysctls), marked
    /// supported or not, with IRQ lines and an irqbalance warning.
    Show {
        /// Interface.
        iface: IfName,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change settings (validated in full before anything changes).
    ///
    /// Example: netmit tune set eth1 --defer-hard-irqs 100 --gro-flush-timeout 200us
    Set(TuneSetArgs),
    /// Apply a named bundle: latency, balanced, throughput or suspend.
    Profile {
        /// Interface.
        iface: IfName,
        /// Profile name.
        #[arg(value_enum)]
        profile: ProfileName,
        /// Apply suspend even when nothing in this namespace busy-polls (no process
        /// started by `netmit run`, BusyPollRxPackets flat over 500 ms), where its
        /// settings cost throughput and CPU.
        #[arg(long, visible_alias = "yes")]
        force: bool,
    },
    /// Put back every original setting netmit changed (of one interface, if given).
    ///
    /// Refused while a netmit daemon runs in this network namespace: it owns the settings
    /// of its interfaces and restores them when it stops (SIGTERM).
    Restore {
        /// Interface (default: all).
        iface: Option<IfName>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileName {
    /// No deferral, coalescing at one frame: lowest latency.
    Latency,
    /// Light software interrupt coalescing (defer 10, gro-flush 20us).
    Balanced,
    /// Heavy software and NIC coalescing (defer 100, gro-flush 200us).
    Throughput,
    /// IRQ suspension for busy-polling applications (suspend 20ms).
    Suspend,
}

#[derive(Debug, Args)]
pub struct TuneSetArgs {
    /// Interface (not needed for --sysctl alone: those are system-wide).
    pub iface: Option<IfName>,
    /// Change only this NAPI instance (default: every NAPI of the interface).
    #[arg(long, value_name = "ID", value_parser = crate::args::whole::<u32>)]
    pub napi: Option<u32>,
    /// Empty polls before hard IRQs are re-enabled (per NAPI).
    #[arg(long, value_name = "N", value_parser = crate::args::whole::<u64>)]
    pub defer_hard_irqs: Option<u64>,
    /// NAPI watchdog timeout that replaces the IRQ while deferring, e.g. 200us.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub gro_flush_timeout: Option<Duration>,
    /// IRQ suspension timeout for busy-polling applications, e.g. 20ms.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub irq_suspend_timeout: Option<Duration>,
    /// NAPI processing in a kernel thread.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub threaded: Option<bool>,
    /// NIC coalescing: microseconds before an RX interrupt.
    #[arg(long, value_name = "N", value_parser = crate::args::whole::<u32>)]
    pub rx_usecs: Option<u32>,
    /// NIC coalescing: frames before an RX interrupt.
    #[arg(long, value_name = "N", value_parser = crate::args::whole::<u32>)]
    pub rx_frames: Option<u32>,
    /// NIC coalescing: microseconds before a TX interrupt.
    #[arg(long, value_name = "N", value_parser = crate::args::whole::<u32>)]
    pub tx_usecs: Option<u32>,
    /// NIC coalescing: frames before a TX interrupt.
    #[arg(long, value_name = "N", value_parser = crate::args::whole::<u32>)]
    pub tx_frames: Option<u32>,
    /// NIC adaptive RX coalescing (DIM).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub adaptive_rx: Option<bool>,
    /// NIC adaptive TX coalescing (DIM).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub adaptive_tx: Option<bool>,
    /// Any other coalescing parameter by its ethtool -C name, e.g. rx-usecs-irq=8.
    #[arg(long = "coalesce", value_name = "NAME=N")]
    pub coalesce: Vec<String>,
    /// A system sysctl, e.g. net.core.busy_poll=50.
    #[arg(long = "sysctl", value_name = "NAME=N")]
    pub sysctls: Vec<String>,
}

/// Parses `on`/`off` (also 1/0, true/false).
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "1" | "true" => Ok(true),
        "off" | "0" | "false" => Ok(false),
        _ => Err(format!("`{s}`: use on or off")),
    }
}

pub fn run(cmd: TuneCommand) -> anyhow::Result<()> {
    match cmd {
        TuneCommand::Show { iface, json } => show(&iface, json),
        TuneCommand::Set(args) => set(args),
        TuneCommand::Profile {
            iface,
            profile,
            force,
        } => {
            let profile = match profile {
                ProfileName::Latency => Profile::Latency,
                ProfileName::Balanced => Profile::Balanced,
                ProfileName::Throughput => Profile::Throughput,
                ProfileName::Suspend => Profile::Suspend,
            };
            let host = System::new();
            let dev = Netdev::resolve(&iface)?;
            let plan = Plan::for_device(&host, &dev, &profile.request())
                .with_context(|| format!("planning profile {} on {iface}", profile.name()))?;
            if matches!(profile, Profile::Suspend) {
                check_busy_polling(iface.as_str(), force)?;
            }
            println!("profile {}: {}", profile.name(), profile.source());
            apply(&host, &plan)
        }
        TuneCommand::Restore { iface } => restore(iface.as_ref()),
    }
}

/// IRQ suspension helps only a busy-polling application: refused (nothing changed)
/// when nothing busy-polls, unless forced, and then said.
fn check_busy_polling(iface: &str, force: bool) -> anyhow::Result<()> {
    let evidence =
        netmit_user::preload::busy_poll_evidence(&journal::run_dir(), Duration::from_millis(500));
    if evidence.busy_polls() {
        return Ok(());
    }
    let line = evidence.nothing_busy_polls(iface);
    if !force {
        bail!("{line}");
    }
    eprintln!("warning (--force): {line}");
    Ok(())
}

fn require_root(what: &str) -> anyhow::Result<()> {
    if !caps::is_root() {
        bail!(
            "{what} needs root (CAP_NET_ADMIN, and write access to /run/netmit): run it with sudo"
        );
    }
    Ok(())
}

fn set(args: TuneSetArgs) -> anyhow::Result<()> {
    let mut req = TuneRequest {
        napi: args.napi,
        ..Default::default()
    };
    // Nanoseconds, refused (not clamped) beyond what the knob takes.
    let ns = |flag: &str, d: Duration| -> anyhow::Result<u64> {
        u64::try_from(d.as_nanos()).map_err(|_| {
            anyhow::anyhow!(
                "--{flag} {}: the kernel takes at most {} ns (about 584 years)",
                netmit_user::duration::display(d),
                u64::MAX
            )
        })
    };
    if let Some(v) = args.defer_hard_irqs {
        req.napi_values.push((NapiParam::DeferHardIrqs, v));
    }
    if let Some(d) = args.gro_flush_timeout {
        req.napi_values
            .push((NapiParam::GroFlushTimeout, ns("gro-flush-timeout", d)?));
    }
    if let Some(d) = args.irq_suspend_timeout {
        req.napi_values
            .push((NapiParam::IrqSuspendTimeout, ns("irq-suspend-timeout", d)?));
    }
    if let Some(on) = args.threaded {
        req.napi_values.push((NapiParam::Threaded, on as u64));
    }
    let flags = [
        (CoalesceParam::RxUsecs, args.rx_usecs),
        (CoalesceParam::RxMaxFrames, args.rx_frames),
        (CoalesceParam::TxUsecs, args.tx_usecs),
        (CoalesceParam::TxMaxFrames, args.tx_frames),
        (
            CoalesceParam::UseAdaptiveRx,
            args.adaptive_rx.map(u32::from),
        ),
        (
            CoalesceParam::UseAdaptiveTx,
            args.adaptive_tx.map(u32::from),
        ),
    ];
    req.coalesce
        .extend(flags.into_iter().filter_map(|(p, v)| v.map(|v| (p, v))));
    for item in &args.coalesce {
        let (name, value) = item
            .split_once('=')
            .with_context(|| format!("--coalesce `{item}`: use NAME=N"))?;
        let param = CoalesceParam::from_name(name.trim()).with_context(|| {
            format!(
                "--coalesce: unknown parameter `{name}`; use one of {}",
                CoalesceParam::ALL
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let value = crate::args::whole::<u32>(value)
            .map_err(|e| anyhow::anyhow!("--coalesce {name}: {e}"))?;
        req.coalesce.push((param, value));
    }
    let mut sysctls = Vec::new();
    for item in &args.sysctls {
        let (name, value) = item
            .split_once('=')
            .with_context(|| format!("--sysctl `{item}`: use NAME=N"))?;
        let sysctl = Sysctl::from_name(name.trim()).with_context(|| {
            format!(
                "--sysctl: netmit manages {}; `{name}` is not one of them (use `sysctl -w` for \
                 others)",
                Sysctl::ALL
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let value = crate::args::whole::<u64>(value)
            .map_err(|e| anyhow::anyhow!("--sysctl {name}: {e}"))?;
        if value > sysctl.max() {
            bail!(
                "--sysctl {name}={value} is out of range: give 0 to {}",
                sysctl.max()
            );
        }
        sysctls.push((sysctl, value));
    }
    if req.napi_values.is_empty() && req.coalesce.is_empty() && sysctls.is_empty() {
        bail!("nothing to set: give at least one setting (see `netmit tune set --help`)");
    }
    let host = System::new();
    let mut plan = match &args.iface {
        Some(iface) => {
            let dev = Netdev::resolve(iface)?;
            Plan::for_device(&host, &dev, &req)
                .with_context(|| format!("checking the settings for {iface}"))?
        }
        None if req.napi_values.is_empty() && req.coalesce.is_empty() => Plan::default(),
        None => bail!(
            "name the interface these settings are for: `netmit tune set IFACE ...` (only \
             --sysctl settings, which are system-wide, need none)"
        ),
    };
    for (sysctl, value) in sysctls {
        plan.add_sysctl(&host, sysctl, value)
            .with_context(|| format!("checking {}; nothing was changed", sysctl.name()))?;
    }
    apply(&host, &plan)
}

fn apply(host: &dyn Host, plan: &Plan) -> anyhow::Result<()> {
    require_root("changing settings")?;
    let mut journal = Journal::open().context("opening the restore journal")?;
    let print = |c: &netmit_user::tune::plan::Change| {
        let clamp = if c.now != c.value {
            format!(" (the kernel set {})", c.now)
        } else {
            String::new()
        };
        println!(
            "{}: {} -> {}{clamp} (original {})",
            c.setting, c.previous, c.value, c.original
        );
    };
    match plan.apply(host, &mut journal) {
        Ok(changes) => {
            changes.iter().for_each(print);
            Ok(())
        }
        Err(e) => {
            e.done.iter().for_each(print);
            Err(e.into())
        }
    }
}

fn restore(iface: Option<&IfName>) -> anyhow::Result<()> {
    require_root("restoring settings")?;
    let host = System::new();
    let netns = host.netns()?;
    if let Some(d) = StateFile::new(&journal::run_dir(), &netns).running() {
        bail!(
            "a netmit daemon (pid {}) manages the settings here and would put its mode back on \
             the next tick; stop it instead (`kill -TERM {}` or `systemctl stop netmit`): it \
             restores every setting it changed when it exits",
            d.pid,
            d.pid
        );
    }
    let dev = iface.map(Netdev::resolve).transpose()?;
    let mut journal = Journal::open().context("opening the restore journal")?;
    let report = journal.restore(&host, dev.as_ref()).context("restoring")?;
    for (setting, value) in &report.restored {
        println!("restored {setting} = {value}");
    }
    for (setting, value) in &report.gone {
        println!("dropped {setting} = {value}: that NAPI instance no longer exists");
    }
    for (setting, value, netns) in &report.elsewhere {
        println!(
            "kept {setting} = {value}: it belongs to {} (run `netmit tune restore` there)",
            netns.describe()
        );
    }
    for (setting, now, ours) in &report.overridden {
        println!(
            "left {setting} at {now}: it was changed after netmit set {}; the change is kept",
            ours.map_or_else(|| "it".to_string(), |v| v.to_string())
        );
    }
    for (iface, param) in &report.legacy {
        println!(
            "kept an entry of netmit 0.1's journal for {iface} {param}: run `netmit tune \
             restore` in that interface's network namespace"
        );
    }
    if report.restored.is_empty()
        && report.failed.is_empty()
        && report.gone.is_empty()
        && report.elsewhere.is_empty()
        && report.overridden.is_empty()
        && report.legacy.is_empty()
    {
        println!(
            "nothing to restore{}",
            iface.map(|i| format!(" for {i}")).unwrap_or_default()
        );
    }
    for (setting, value, why) in &report.failed {
        eprintln!("netmit: could not restore {setting} = {value}: {why} (kept in the journal)");
    }
    if !report.failed.is_empty() {
        bail!(
            "{} setting(s) could not be restored; run `netmit tune restore` again once the cause is fixed",
            report.failed.len()
        );
    }
    Ok(())
}

fn show(iface: &IfName, as_json: bool) -> anyhow::Result<()> {
    let dev = Netdev::resolve(iface)?;
    let ifindex = dev.ifindex;
    let err = |e: &dyn std::error::Error| json!({"supported": false, "error": e.to_string()});

    let sysctls: BTreeMap<&str, Value> = Sysctl::ALL
        .iter()
        .map(|s| {
            (
                s.name(),
                match s.read() {
                    Ok(v) => json!({"supported": true, "value": v, "description": s.description()}),
                    Err(e) => err(&e),
                },
            )
        })
        .collect();
    let device: BTreeMap<&str, Value> = DeviceParam::ALL
        .iter()
        .map(|p| {
            (
                p.name(),
                match napi::device_read(&dev, *p) {
                    Ok(v) => json!({"supported": true, "value": v, "description": p.description()}),
                    Err(e) => err(&e),
                },
            )
        })
        .collect();
    let napis = match napi::list(&dev) {
        Ok(list) => json!({"supported": true, "instances": list}),
        Err(e) => err(&e),
    };
    let coalescing = match coalesce::get(&dev) {
        Ok(map) => {
            let params: BTreeMap<&str, Value> = CoalesceParam::ALL
                .iter()
                .map(|p| {
                    (
                        p.name(),
                        match map.get(p) {
                            Some(v) => json!({"supported": true, "value": v}),
                            None => json!({"supported": false}),
                        },
                    )
                })
                .collect();
            json!({"supported": true, "params": params})
        }
        Err(e) => err(&e),
    };
    let irqs = napi::interrupts_for(&dev).unwrap_or_default();
    let irqbalance = napi::irqbalance_running();
    let journal: Vec<Value> = Journal::peek_at(&journal::run_dir())
        .context("reading the restore journal")?
        .iter()
        .filter(|e| e.setting.dev() == Some(&dev))
        .map(|e| json!({"setting": e.setting.to_string(), "original": e.original}))
        .collect();
    let report = json!({
        "iface": iface, "ifindex": ifindex, "sysctls": sysctls, "device": device,
        "napi": napis, "coalesce": coalescing, "irqs": irqs, "irqbalance_running": irqbalance,
        "changed_by_netmit": journal,
    });
    if as_json {
        return output::print_json(&report);
    }
    println!("{iface} (ifindex {ifindex})");
    println!("  per-NAPI (netdev netlink):");
    match report["napi"]["instances"].as_array() {
        Some(list) if list.is_empty() => {
            println!("    no NAPI instances (veth: attach native XDP or turn GRO on)")
        }
        Some(list) => {
            for n in list {
                println!(
                    "    napi {:<6} rx queues {:<8} irq {:<5} defer-hard-irqs {:<6} gro-flush-timeout {:<10} irq-suspend-timeout {:<10} threaded {}",
                    n["id"],
                    n["rx_queues"].to_string(),
                    opt(&n["irq"]),
                    opt(&n["defer_hard_irqs"]),
                    fmt_ns(&n["gro_flush_timeout_ns"]),
                    fmt_ns(&n["irq_suspend_timeout_ns"]),
                    opt(&n["threaded"])
                );
            }
        }
        None => println!(
            "    unavailable: {}",
            report["napi"]["error"].as_str().unwrap_or("?")
        ),
    }
    println!("  device-wide (sysfs):");
    for (name, v) in &device {
        println!(
            "    {name:<22} {}",
            v["value"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| format!("unavailable: {}", v["error"].as_str().unwrap_or("?")))
        );
    }
    println!("  NIC coalescing (ethtool netlink):");
    match report["coalesce"]["params"].as_object() {
        Some(params) => {
            let (on, off): (Vec<_>, Vec<_>) =
                params.iter().partition(|(_, v)| v["supported"] == true);
            for (name, v) in on {
                println!("    {name:<22} {}", v["value"]);
            }
            println!(
                "    not supported by the driver: {}",
                off.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        None => println!(
            "    unavailable: {}",
            report["coalesce"]["error"].as_str().unwrap_or("?")
        ),
    }
    println!("  system-wide (the initial network namespace's sysctls, for every namespace):");
    for (name, v) in &sysctls {
        println!(
            "    {name:<28} {}",
            v["value"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| format!("unavailable: {}", v["error"].as_str().unwrap_or("?")))
        );
    }
    if !irqs.is_empty() {
        println!("  IRQ lines:");
        for l in &irqs {
            let counts: Vec<String> = l.per_cpu.iter().map(u64::to_string).collect();
            println!(
                "    {:<5} {:<30} per CPU {}",
                l.irq,
                l.name,
                counts.join(" ")
            );
        }
    }
    if irqbalance {
        println!(
            "  warning: irqbalance is running and may move the IRQs of a tuned queue to other CPUs"
        );
    }
    if !journal.is_empty() {
        println!("  changed by netmit (originals in the journal):");
        for e in &journal {
            println!(
                "    {} (original {})",
                e["setting"].as_str().unwrap_or(""),
                e["original"]
            );
        }
    }
    Ok(())
}

fn fmt_ns(v: &Value) -> String {
    match v.as_u64() {
        None => "-".into(),
        Some(0) => "0".into(),
        Some(ns) if ns % 1_000_000 == 0 => format!("{}ms", ns / 1_000_000),
        Some(ns) if ns % 1_000 == 0 => format!("{}us", ns / 1_000),
        Some(ns) => format!("{ns}ns"),
    }
}

fn opt(v: &Value) -> String {
    if v.is_null() {
        "-".into()
    } else {
        v.to_string()
    }
}
