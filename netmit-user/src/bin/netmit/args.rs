//! Command-line definitions: every flag is defined once here, with help that teaches.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use netmit_user::steer::Rule;

const RULE_HELP: &str = "Steering rule: comma-separated key=value pairs, e.g. \
`proto=udp,dport=9000-9010,dst=198.18.0.0/15,vlan=10,action=xsk,prio=10`. Keys: \
proto=udp|tcp|any (default any), dport=N|LO-HI (default all), dst=ADDR[/LEN] (default any), \
vlan=0-4095 (outer tag), action=xsk|pass|drop (default xsk), prio=0-65535 (default 1000; \
lowest wins, ties go to the rule added first).";

/// netmit: take interrupt overhead out of Linux networking.
///
/// netmit attaches an XDP program that classifies packets and steers chosen flows into
/// AF_XDP sockets (one per RX queue), passing everything else to the kernel. Its state
/// lives in bpffs under /sys/fs/bpf/netmit/IFACE, so every command (and the daemon)
/// sees the same attachment.
#[derive(Debug, Parser)]
#[command(name = "netmit", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the steering program, attach it to an interface and pin it.
    ///
    /// Refuses to replace an XDP program that netmit did not attach unless --force.
    /// Example: netmit attach eth1 --steer proto=udp,dport=9000,action=xsk
    Attach(AttachArgs),
    /// Detach netmit's program from an interface and remove its pins.
    Detach(DetachArgs),
    /// List, add or delete steering rules of an attached interface (live).
    #[command(subcommand)]
    Steer(SteerCommand),
    /// Show attach mode, program, rules and per-queue counters with rates.
    Status(StatusArgs),
    /// Dry-run rules on a pcap/pcapng capture through the real XDP program.
    ///
    /// Every frame runs through the steering program with BPF_PROG_TEST_RUN (nothing is
    /// attached); prints each frame's verdict and matching rule, then a summary.
    Classify(ClassifyArgs),
    /// Probe what this kernel (and an interface) support, by trying, and the fallbacks.
    Check {
        /// Interface to probe as well (read-only probes).
        iface: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read and change interrupt-mitigation settings; every change is journaled.
    ///
    /// Per-NAPI settings (netdev netlink), NIC coalescing (ethtool netlink) and busy-poll
    /// sysctls. The original of every setting netmit changes is written to
    /// /run/netmit/journal.json first; `netmit tune restore` puts them all back.
    #[command(subcommand)]
    Tune(TuneCommand),
    /// Benchmarks, reported as ratios to a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum TuneCommand {
    /// Every knob of an interface (per NAPI, device-wide, coalescing, sysctls), marked
    /// supported or not, with IRQ lines and an irqbalance warning.
    Show {
        /// Interface.
        iface: String,
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
        iface: String,
        /// Profile name.
        #[arg(value_enum)]
        profile: ProfileName,
    },
    /// Put back every original setting netmit changed (of one interface, if given).
    Restore {
        /// Interface (default: all).
        iface: Option<String>,
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
    /// Interface.
    pub iface: String,
    /// Change only this NAPI instance (default: every NAPI of the interface).
    #[arg(long, value_name = "ID")]
    pub napi: Option<u32>,
    /// Empty polls before hard IRQs are re-enabled (per NAPI).
    #[arg(long, value_name = "N")]
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
    #[arg(long, value_name = "N")]
    pub rx_usecs: Option<u32>,
    /// NIC coalescing: frames before an RX interrupt.
    #[arg(long, value_name = "N")]
    pub rx_frames: Option<u32>,
    /// NIC coalescing: microseconds before a TX interrupt.
    #[arg(long, value_name = "N")]
    pub tx_usecs: Option<u32>,
    /// NIC coalescing: frames before a TX interrupt.
    #[arg(long, value_name = "N")]
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

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Per-packet cost of the steering program (0, 16, 256 rules) vs. an XDP_PASS program.
    Xdp(XdpBenchArgs),
}

#[derive(Debug, Args)]
pub struct XdpBenchArgs {
    /// Program runs per measurement (BPF_PROG_TEST_RUN repeat).
    #[arg(long, default_value_t = 1_000_000)]
    pub repeat: u32,
    /// Measurements per case; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Report only: exit 0 even when a goal is missed.
    #[arg(long)]
    pub no_check: bool,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Mode {
    /// Native (driver) XDP if available, else generic.
    #[default]
    Auto,
    /// Native (driver) XDP only.
    Native,
    /// Generic (skb) XDP only: works on every device, slower.
    Generic,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Interface to attach to.
    pub iface: String,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// A steering rule (repeatable).
    #[arg(long = "steer", value_name = "RULE", help = RULE_HELP)]
    pub rules: Vec<Rule>,
    /// Replace an XDP program that netmit did not attach.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Interface to detach from.
    pub iface: String,
}

#[derive(Debug, Subcommand)]
pub enum SteerCommand {
    /// List the rules, best-ranked first, with their ids and hit counts.
    List {
        /// Interface.
        iface: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add one or more rules.
    Add {
        /// Interface.
        iface: String,
        /// Rules to add.
        #[arg(required = true, value_name = "RULE", help = RULE_HELP)]
        rules: Vec<Rule>,
    },
    /// Delete a rule by id (from `steer list`) or by its exact text.
    Del {
        /// Interface.
        iface: String,
        /// Rule id, or the rule text.
        rule: String,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Interface (default: every interface netmit is attached to in this namespace).
    pub iface: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Sampling interval for rates, e.g. 1s or 500ms; 0 shows totals only.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Capture to classify (pcap or pcapng, Ethernet).
    #[arg(long)]
    pub pcap: PathBuf,
    /// A steering rule (repeatable); ids are given in order from 0.
    #[arg(long = "steer", value_name = "RULE", help = RULE_HELP)]
    pub rules: Vec<Rule>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Print only the summary.
    #[arg(long)]
    pub summary: bool,
}

/// Parses `500ms`, `1s`, `200us`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("`{s}` needs a unit: ns, us, ms or s (e.g. 200us, 1s)"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a number with a unit"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{s}`: use ns, us, ms or s"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200us").unwrap(), Duration::from_micros(200));
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10h").is_err());
    }

    #[test]
    fn cli_parses_and_rejects_bad_rules() {
        Cli::command_for_test();
        let ok = Cli::try_parse_from(["netmit", "attach", "eth1", "--steer", "proto=udp,dport=53"]);
        assert!(ok.is_ok());
        let err = Cli::try_parse_from(["netmit", "attach", "eth1", "--steer", "proto=icmp"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("proto") && err.contains("udp, tcp, any"),
            "{err}"
        );
    }

    impl Cli {
        fn command_for_test() {
            use clap::CommandFactory;
            Cli::command().debug_assert();
        }
    }
}
