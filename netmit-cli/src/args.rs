//! Command-line definitions: every flag is defined once here, with help that teaches.

use std::time::Duration;

use clap::{Parser, Subcommand};
use netmit_user::{duration, sys::IfName};

use crate::{
    attach::AttachArgs, classify::ClassifyArgs, daemon::DaemonArgs, detach::DetachArgs,
    generate::GenerateArgs, logs::LogsArgs, run_cmd::RunArgs, rx::RxArgs, status::StatusArgs,
    steer::SteerCommand, top::TopArgs, tune::TuneCommand,
};
#[cfg(feature = "lab")]
use crate::{bench::BenchCommand, r#gen::GenArgs, load::LoadArgs, serve::ServeArgs};

pub const RULE_HELP: &str = "Steering rule: comma-separated key=value pairs, e.g. \
`proto=udp,dport=9000-9010,action=xsk` or `dst=198.18.0.0/15,vlan=10,prio=10`. Keys: \
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
    /// Live view: per interface and NAPI the mode and since when, the last switch, packets,
    /// polls and packets per poll, verdict and per-queue steered rates.
    ///
    /// Reads the sources `status` and the daemon's metrics read (with or without the
    /// daemon). Keys: q/Esc/Ctrl-C quit, s sort, / filter, r refresh. --once prints one
    /// frame as text.
    /// Example: netmit top --sort packets
    Top(TopArgs),
    /// Print the XDP program's log: flows steered to a queue without a socket, sampled
    /// malformed frames, rule table swaps (`netmit attach --log LEVEL` turns it on).
    Logs(LogsArgs),
    /// Dry-run rules on a pcap/pcapng capture through the real XDP program.
    ///
    /// Every frame runs through the steering program with BPF_PROG_TEST_RUN (nothing is
    /// attached); prints each frame's verdict and matching rule, then a summary.
    Classify(ClassifyArgs),
    /// Probe what this kernel (and an interface) support, by trying, and the fallbacks.
    Check {
        /// Interface to probe as well (read-only probes).
        iface: Option<IfName>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Receive the steered packets with AF_XDP sockets, one per RX queue (optionally echo).
    ///
    /// The interface must be attached (`netmit attach IFACE --steer ...action=xsk`); each
    /// socket registers itself in the attached program's XSK map for its queue.
    Rx(RxArgs),
    /// Answer UDP requests (a request/response server) in one interrupt mode.
    ///
    /// Every request is answered with the same payload (--reply echo) or in sockperf's
    /// ping-pong protocol (--reply sockperf). Modes: epoll (kernel socket, blocking
    /// epoll_wait: interrupt-driven), busy-poll (epoll busy polling with
    /// prefer_busy_poll via EPIOCSPARAMS, Linux 6.9+: the server's thread polls the
    /// device, and IRQ suspension engages once the NAPI has an irq-suspend-timeout, e.g.
    /// `netmit tune set IFACE --defer-hard-irqs 100 --gro-flush-timeout 20us
    /// --irq-suspend-timeout 20ms`), xsk (AF_XDP sockets, one per RX queue; needs
    /// `netmit attach IFACE --steer 'proto=udp,dport=PORT,action=xsk'`). On exit
    /// (SIGINT, SIGTERM or --duration) prints requests, replies, bytes and rates, and in
    /// the kernel modes the rise of BusyPollRxPackets.
    /// Example: netmit serve eth1 --port 9000 --mode busy-poll --duration 10 --json
    #[cfg(feature = "lab")]
    Serve(ServeArgs),
    /// Read and change interrupt-mitigation settings; every change is journaled.
    ///
    /// Per-NAPI settings (netdev netlink), NIC coalescing (ethtool netlink) and busy-poll
    /// sysctls. The original of every setting netmit changes is written to
    /// /run/netmit/journal.json first ($NETMIT_RUN_DIR overrides /run/netmit); `netmit
    /// tune restore` puts them all back.
    #[command(subcommand)]
    Tune(TuneCommand),
    /// Benchmarks, reported as ratios to a baseline measured in the same run.
    #[command(subcommand)]
    #[cfg(feature = "lab")]
    Bench(BenchCommand),
    /// Send UDP traffic out of an interface at a fixed rate or full speed.
    ///
    /// Frames go out through BPF_PROG_TEST_RUN in live-frames mode (Linux 5.18+): an XDP
    /// program rewrites each copy of one template frame for the next flow and returns
    /// XDP_TX, which transmits it out of IFACE (up to 6.5 Mpps into a veth on one core).
    /// On a veth the peer needs native XDP or GRO on to receive.
    /// Example: netmit gen veth0 --dst-mac 02:00:00:00:00:02 --dst-ip 198.18.0.1
    /// --dport 9200-9203 --flows 8 --rate 100000 --duration 10
    #[cfg(feature = "lab")]
    Gen(GenArgs),
    /// Load a UDP request/response server and measure each reply's latency.
    ///
    /// Requests carry a send timestamp in their payload (sent with BPF_PROG_TEST_RUN live
    /// frames, like `gen`); an XDP program attached natively to IFACE for the run takes
    /// the echoed replies off the wire, records their latency in a histogram and drops
    /// them (--rate: open loop) or turns each into the flow's next request (--closed: W
    /// requests always outstanding; lost ones are re-sent after 100 ms). The server must
    /// echo the payload (`netmit serve`'s default). Prints a line per second and a
    /// summary with throughput and latency percentiles. On a veth the server's end needs
    /// GRO on or native XDP.
    /// Example: netmit load veth0 --server 198.18.0.1:9000 --closed --window 16 --json
    #[cfg(feature = "lab")]
    Load(LoadArgs),
    /// Run an unmodified epoll server (memcached, redis, nginx) with busy polling and IRQ
    /// suspension.
    ///
    /// Applies the profile's NAPI settings to --iface through the restore journal (unless a
    /// netmit daemon manages this namespace), starts CMD with libnetmit_preload.so
    /// preloaded (it sets busy_poll_usecs, busy_poll_budget and prefer_busy_poll on every
    /// epoll instance CMD creates, with EPIOCSPARAMS), passes SIGINT, SIGTERM, SIGHUP and
    /// SIGQUIT on to CMD, puts the settings back when CMD exits and exits with its status
    /// (127: CMD not found, 126: not executable, 125: netmit's own error). If netmit is
    /// killed, `netmit tune restore` puts the settings back. The library reads
    /// NETMIT_BUSY_POLL_USECS, NETMIT_BUSY_POLL_BUDGET, NETMIT_PREFER_BUSY_POLL,
    /// NETMIT_PRELOAD_MODE and NETMIT_PRELOAD_STATE_DIR (docs/unmodified-servers.md).
    /// Example: netmit run --profile suspend --iface eth1 -- memcached -U 11211 -u memcache
    Run(RunArgs),
    /// Run the adaptive daemon: switch each interface's interrupt mode with its load.
    ///
    /// Every interval the daemon samples each configured interface (XDP and NAPI poll
    /// counters, IRQs, softirqs, busy polling), lets the mode controller pick interrupt,
    /// defer or suspend, and applies that mode's per-NAPI settings through the restore
    /// journal. It serves Prometheus metrics, /healthz and /status on metrics_address.
    /// SIGHUP reloads the configuration; SIGTERM/SIGINT restore every original setting and
    /// detach what the daemon attached. Every key of the configuration, with its default,
    /// is in /usr/share/doc/netmit/netmit.toml.example (deploy/netmit.toml.example in the
    /// source) and docs/deploy.md. The restore journal and the state file live in
    /// /run/netmit ($NETMIT_RUN_DIR overrides it).
    /// Example: netmit daemon --config /etc/netmit/netmit.toml
    Daemon(DaemonArgs),
    /// Write the man pages and shell completions into a directory (used by `cargo xtask
    /// dist`).
    #[command(name = "__generate", hide = true)]
    Generate(GenerateArgs),
}

/// Parses seconds (`2`, `0.5`, `0`) or a duration with a unit (`500ms`).
pub fn parse_duration_or_secs(s: &str) -> Result<Duration, String> {
    duration::parse_secs(s).map_err(|e| e.to_string())
}

/// Parses seconds (`2`, `0.5`) or a duration with a unit (`500ms`); zero is refused.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    match duration::parse_secs(s) {
        Ok(Duration::ZERO) => Err(format!("`{s}`: the duration must be longer than zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// An unsigned integer type a command-line value can be (see [`whole`]).
pub trait Whole: Sized {
    /// The largest value.
    const MAX: u128;
    /// `v`, known to be at most [`Whole::MAX`].
    fn from_u128(v: u128) -> Self;
}

macro_rules! whole {
    ($($t:ty),*) => {$(
        impl Whole for $t {
            const MAX: u128 = <$t>::MAX as u128;
            fn from_u128(v: u128) -> Self {
                v as $t
            }
        }
    )*};
}
whole!(u8, u16, u32, u64, usize);

/// Parses a whole number as decimal digits, with errors that name the limit: negative
/// values, signs, spaces and numbers beyond the type are refused, never wrapped or clamped
/// (clap's own parser says "number too large to fit in target type" without the limit).
pub fn whole<T: Whole>(s: &str) -> Result<T, String> {
    let max = T::MAX;
    if s.is_empty() {
        return Err(format!(
            "an empty value: give a whole number from 0 to {max}"
        ));
    }
    if s.starts_with('-') {
        return Err(format!(
            "`{s}` is negative: give a whole number from 0 to {max}"
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{s}` is not a whole number: use decimal digits only, from 0 to {max}"
        ));
    }
    match s.parse::<u128>() {
        Ok(v) if v <= max => Ok(T::from_u128(v)),
        _ => Err(format!("`{s}` is too large: give at most {max}")),
    }
}

/// Parses a port to listen on or send to: 1 to 65535 in decimal digits.
pub fn port(s: &str) -> Result<u16, String> {
    match whole::<u16>(s)? {
        0 => Err("port 0 is not a port to use: give 1 to 65535".into()),
        p => Ok(p),
    }
}

/// Parses a whole number in `min..=max` (see [`whole`]).
pub fn whole_in<T: Whole + PartialOrd + Copy + std::fmt::Display>(
    s: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    let v = whole::<T>(s)?;
    if v < min || v > max {
        return Err(format!("`{s}` is out of range: give {min} to {max}"));
    }
    Ok(v)
}

/// Rewrites clap's answer to a negative value (`--defer-hard-irqs -1`), which clap takes
/// for an unknown flag and answers with a tip to write `-- -1`: wrong advice, since no
/// netmit value is negative. `argv` names the option the value was given to. Other errors
/// are returned unchanged.
pub fn negative_value_hint(e: &clap::Error, argv: &[String]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let rest = arg.strip_prefix('-')?;
    if !rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    // clap names the part it took for a flag (`-1` of `-1s`); show what the user wrote.
    let at = argv.iter().position(|a| a.starts_with(arg.as_str()));
    let given = at.map_or(arg.as_str(), |i| argv[i].as_str());
    let option = at
        .and_then(|i| i.checked_sub(1))
        .map(|i| argv[i].as_str())
        .filter(|o| o.starts_with("--"))
        .map(|o| format!(" for `{o}`"))
        .unwrap_or_default();
    Some(format!(
        "error: `{given}`{option} is a negative value: netmit takes no negative numbers or \
         durations; give 0 or more (see `--help` for each option's range)"
    ))
}

/// Parses a duration with a unit (`500ms`, `1s`, `200us`) or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

/// A CPU list: `2`, `2,3`, `0-3`, `0,2-3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Parses a CPU list (`2`, `2,3`, `0-3`, `0,2-3`).
pub fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim) {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{t}` in `{s}` is not a CPU number"))
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (num(lo)?, num(hi)?);
                if lo > hi {
                    return Err(format!("`{part}`: the range runs backwards"));
                }
                cpus.extend(lo..=hi);
            }
            None => cpus.push(num(part)?),
        }
    }
    Ok(CpuList(cpus))
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
        assert!(parse_duration("10x").is_err());
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("99999999999999999999s").is_err());
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

    #[test]
    fn whole_numbers_name_the_limit() {
        assert_eq!(whole::<u16>("080"), Ok(80));
        assert_eq!(whole::<u64>("18446744073709551615"), Ok(u64::MAX));
        for (input, want) in [
            ("", "empty"),
            ("-1", "negative"),
            ("+1", "decimal digits only"),
            (" 1", "decimal digits only"),
            ("0x10", "decimal digits only"),
            ("65536", "at most 65535"),
            ("99999999999999999999999999999999999999999", "at most 65535"),
        ] {
            let e = whole::<u16>(input).unwrap_err();
            assert!(e.contains(want), "{input}: {e}");
        }
    }

    #[test]
    fn a_negative_value_gets_netmit_advice_not_clap_tip() {
        use clap::Parser;
        for argv in [
            &["netmit", "tune", "set", "eth1", "--defer-hard-irqs", "-1"][..],
            &["netmit", "status", "--interval", "-1s"],
            &["netmit", "steer", "del", "eth1", "-3"],
        ] {
            let e = Cli::try_parse_from(argv).unwrap_err();
            let owned: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            let hint = negative_value_hint(&e, &owned).unwrap_or_else(|| panic!("{argv:?}: {e}"));
            assert!(hint.contains("negative value") && hint.contains("give 0 or more"));
            if argv[argv.len() - 2].starts_with("--") {
                let option = format!("for `{}`", argv[argv.len() - 2]);
                assert!(hint.contains(&option), "{hint}");
            }
        }
        let e = Cli::try_parse_from(["netmit", "status", "--bogus"]).unwrap_err();
        assert_eq!(negative_value_hint(&e, &[]), None);
    }
}
