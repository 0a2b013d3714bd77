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
    Serve(ServeArgs),
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
    /// Send UDP traffic out of an interface at a fixed rate or full speed.
    ///
    /// Frames go out through BPF_PROG_TEST_RUN in live-frames mode (Linux 5.18+): an XDP
    /// program rewrites each copy of one template frame for the next flow and returns
    /// XDP_TX, which transmits it out of IFACE (up to 6.5 Mpps into a veth on one core).
    /// On a veth the peer needs native XDP or GRO on to receive.
    /// Example: netmit gen veth0 --dst-mac 02:00:00:00:00:02 --dst-ip 198.18.0.1
    /// --dport 9200-9203 --flows 8 --rate 100000 --duration 10
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
    Load(LoadArgs),
    /// Run the adaptive daemon: switch each interface's interrupt mode with its load.
    ///
    /// Every interval the daemon samples each configured interface (XDP and NAPI poll
    /// counters, IRQs, softirqs, busy polling), lets the mode controller pick interrupt,
    /// defer or suspend, and applies that mode's per-NAPI settings through the restore
    /// journal. It serves Prometheus metrics, /healthz and /status on metrics_address.
    /// SIGHUP reloads the configuration; SIGTERM/SIGINT restore every original setting and
    /// detach what the daemon attached. The configuration format is documented in
    /// `netmit_user::daemon::config`.
    /// Example: netmit daemon --config /etc/netmit/daemon.toml
    Daemon(DaemonArgs),
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the configuration (and that its interfaces exist here), print the
    /// problems with their line and key, and exit: 0 when valid.
    #[arg(long)]
    pub check_config: bool,
}

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
    #[arg(long, value_name = "PORT", default_value_t = 32768)]
    pub sport: u16,
    /// Number of flows (distinct source ports) [default: one per destination port].
    #[arg(long, value_name = "N")]
    pub flows: Option<u32>,
    /// Frame size in bytes, Ethernet header included, FCS not (64 to 1500).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
    /// Frames per second [default: --max].
    #[arg(long, value_name = "PPS", conflicts_with = "max")]
    pub rate: Option<u64>,
    /// Send as fast as possible.
    #[arg(long)]
    pub max: bool,
    /// Stop after this many frames (exact).
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Stop after this long: seconds, or with a unit (500ms) [default: until Ctrl-C].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Frames per syscall [default: ~100 us of traffic at a fixed rate, 2048 with --max].
    #[arg(long, value_name = "N")]
    pub burst: Option<u32>,
    /// Frames per live-frames batch: one transmit flush each (1 to 256).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub live_batch: u32,
    /// Print the report as JSON (with per-second samples).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("pattern").required(true).args(["rate", "closed"])))]
pub struct LoadArgs {
    /// Interface to send out of and receive on (in this network namespace).
    pub iface: String,
    /// The server's IP address and UDP port (IPv6 as [ADDR]:PORT).
    #[arg(long, value_name = "IP:PORT")]
    pub server: std::net::SocketAddr,
    /// Open loop: requests per second, whatever the replies do.
    #[arg(long, value_name = "PPS")]
    pub rate: Option<f64>,
    /// Closed loop: --window requests outstanding at all times, each reply sends the next.
    #[arg(long)]
    pub closed: bool,
    /// Closed loop: outstanding requests (one flow each).
    #[arg(long, value_name = "W", default_value_t = 16, conflicts_with = "rate")]
    pub window: u32,
    /// UDP payload bytes per request (at least 12 for the stamp; 22 for IPv4's 64-byte
    /// frames).
    #[arg(long, value_name = "BYTES", default_value_t = 22)]
    pub payload: usize,
    /// Open loop: requests per generator call [default: ~100 us of traffic, at least 16:
    /// fewer starve the receiver with per-call work, see netmit_user::load::MIN_OPEN_BURST].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub burst: Option<u32>,
    /// Open loop: flows (source ports from --sport).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 16,
        conflicts_with = "closed"
    )]
    pub flows: u32,
    /// Source port of the first flow.
    #[arg(long, value_name = "PORT", default_value_t = 40000)]
    pub sport: u16,
    /// Measured time: seconds, or with a unit (500ms).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "5")]
    pub duration: Duration,
    /// Time to run before measuring: seconds, or with a unit (0 for none).
    #[arg(long, value_name = "SECS", value_parser = parse_duration_or_secs, default_value = "1")]
    pub warmup: Duration,
    /// Pin the sending thread to this CPU.
    #[arg(long, value_name = "N")]
    pub cpu: Option<usize>,
    /// The server's MAC address [default: from the neighbour table, resolved by ARP/ND].
    #[arg(long, value_name = "MAC")]
    pub server_mac: Option<String>,
    /// Print the report as JSON (with per-second samples and the latency histogram).
    #[arg(long)]
    pub json: bool,
}

/// Parses seconds (`2`, `0.5`, `0`) or a duration with a unit (`500ms`).
pub fn parse_duration_or_secs(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
        Ok(_) => Err(format!("`{s}`: the duration must not be negative")),
        Err(_) => parse_duration(s),
    }
}

/// Parses seconds (`2`, `0.5`) or a duration with a unit (`500ms`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(Duration::from_secs_f64(secs)),
        Ok(_) => Err(format!("`{s}`: the duration must be positive")),
        Err(_) => parse_duration(s),
    }
}

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
    pub iface: String,
    /// RX queue to receive on.
    #[arg(long, default_value_t = 0, conflicts_with = "all_queues")]
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
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Send every UDP datagram back to its sender (a user-space UDP echo server).
    #[arg(long)]
    pub echo: bool,
    /// Stop after this many seconds (default: until Ctrl-C / SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Pin the receive threads to these CPUs, one per queue in order (e.g. 1 or 2,3).
    #[arg(long, value_delimiter = ',', value_name = "CPU,...")]
    pub cpu: Vec<usize>,
    /// Print the final report as JSON (and no live line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ServeMode {
    /// Kernel UDP socket, blocking epoll_wait: interrupt-driven.
    Epoll,
    /// Kernel UDP socket, epoll busy polling with prefer_busy_poll (IRQ suspension).
    BusyPoll,
    /// AF_XDP sockets fed by netmit's steering rules, one per RX queue.
    Xsk,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReplyArg {
    /// The reply's payload is the request's, byte for byte.
    Echo,
    /// sockperf's ping-pong protocol: answer sockperf's pong requests with the client
    /// flag cleared, as `sockperf server` does (a plain echo is ignored by sockperf).
    Sockperf,
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

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Interface (serves on its first IPv4, else global IPv6 address) or IP address.
    #[arg(value_name = "IFACE|ADDRESS")]
    pub target: String,
    /// UDP port to serve.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// How requests are received.
    #[arg(long, value_enum, default_value_t = ServeMode::Epoll)]
    pub mode: ServeMode,
    /// busy-poll mode: how long one epoll_wait (and a socket read) may busy-poll the
    /// device before sleeping, in microseconds.
    #[arg(long, value_name = "USECS", default_value_t = 64)]
    pub busy_poll_usecs: u32,
    /// busy-poll mode: packets per busy-poll round (above 64 needs CAP_NET_ADMIN).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub busy_poll_budget: u16,
    /// Server threads, each with its own SO_REUSEPORT socket and epoll instance [default:
    /// 1]. xsk mode runs one thread per RX queue instead.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Pin the threads to these CPUs, one per thread (xsk: per RX queue) in order, e.g.
    /// 2, 2,3 or 2-3.
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    pub cpu: Option<CpuList>,
    /// Stop after this long: seconds, or with a unit (500ms) [default: until Ctrl-C].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// How requests become replies.
    #[arg(long, value_enum, default_value_t = ReplyArg::Echo)]
    pub reply: ReplyArg,
    /// Datagrams per receive batch (recvmmsg/sendmmsg; frames per ring batch in xsk
    /// mode), 1 to 1024.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch: usize,
    /// Receive buffer per socket in bytes (kernel modes; 0: the kernel's default, 208
    /// KiB). Each request is charged its whole buffer, often a 4 KiB page, so the
    /// default holds only ~50 requests.
    #[arg(long, value_name = "BYTES", default_value_t = netmit_user::serve::DEFAULT_RCVBUF)]
    pub rcvbuf: usize,
    /// Print the final report as JSON (and no per-second lines).
    #[arg(long)]
    pub json: bool,
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
    #[arg(long)]
    pub server_cpu: Option<usize>,
    /// The client's CPU.
    #[arg(long, default_value_t = 0)]
    pub client_cpu: usize,
    /// Outstanding requests at saturation (closed loop).
    #[arg(long, default_value_t = 64)]
    pub closed_window: u32,
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

    #[test]
    fn serve_args() {
        let cli = Cli::try_parse_from([
            "netmit",
            "serve",
            "veth0",
            "--port",
            "9000",
            "--mode",
            "busy-poll",
            "--cpu",
            "0,2-3",
            "--duration",
            "2",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        assert!(matches!(s.mode, ServeMode::BusyPoll));
        assert_eq!(
            (s.busy_poll_usecs, s.busy_poll_budget, s.batch),
            (64, 64, 64)
        );
        assert_eq!(s.cpu, Some(CpuList(vec![0, 2, 3])));
        assert_eq!(s.threads, None);
        assert!(matches!(s.reply, ReplyArg::Echo));
        assert!(
            Cli::try_parse_from(["netmit", "serve", "veth0"]).is_err(),
            "--port is required"
        );
        assert!(Cli::try_parse_from(["netmit", "serve", "v", "--port", "0"]).is_err());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
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
