//! `netmit serve`: a UDP request/response server in epoll, busy-poll or xsk mode.

use netmit_lab::serve::{Mode, ReplyFormat, ServeConfig, ServeReport, ServeSample, Server};

use crate::args::{CpuList, parse_cpu_list, parse_secs};
use crate::output;
use clap::{Args, ValueEnum};
use netmit_user::xsk::WaitStrategy;
use std::time::Duration;

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

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Interface (serves on its first IPv4, else global IPv6 address) or IP address.
    #[arg(value_name = "IFACE|ADDRESS")]
    pub target: String,
    /// UDP port to serve.
    #[arg(long, value_name = "PORT", value_parser = crate::args::port)]
    pub port: u16,
    /// How requests are received.
    #[arg(long, value_enum, default_value_t = ServeMode::Epoll)]
    pub mode: ServeMode,
    /// busy-poll mode: how long one epoll_wait (and a socket read) may busy-poll the
    /// device before sleeping, in microseconds.
    #[arg(long, value_name = "USECS", default_value_t = 64, value_parser = crate::args::whole::<u32>)]
    pub busy_poll_usecs: u32,
    /// busy-poll mode: packets per busy-poll round (above 64 needs CAP_NET_ADMIN).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = crate::args::whole::<u16>)]
    pub busy_poll_budget: u16,
    /// Server threads, each with its own SO_REUSEPORT socket and epoll instance [default:
    /// 1]. xsk mode runs one thread per RX queue instead.
    #[arg(long, value_name = "N", value_parser = crate::args::whole::<usize>)]
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
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = crate::args::whole::<usize>)]
    pub batch: usize,
    /// Receive buffer per socket in bytes (kernel modes; 0: the kernel's default, 208
    /// KiB). Each request is charged its whole buffer, often a 4 KiB page, so the
    /// default holds only ~50 requests.
    #[arg(long, value_name = "BYTES", default_value_t = netmit_lab::serve::DEFAULT_RCVBUF, value_parser = crate::args::whole::<usize>)]
    pub rcvbuf: usize,
    /// xsk mode: when netmit is detached from the interface, wait for it to be attached
    /// again and register anew, instead of stopping with an error.
    #[arg(long)]
    pub wait: bool,
    /// xsk mode: how a thread waits for requests on its RX ring: sleep (poll(2), no CPU
    /// while idle, a wake-up per request), spin (check the ring in a loop: lowest
    /// latency, a whole core at any load) or spin-then-sleep[:USECS] (spin up to USECS
    /// after the last request, default 20, then sleep; the AF_XDP counterpart of
    /// --busy-poll-usecs).
    #[arg(long, value_name = "STRATEGY", default_value_t = WaitStrategy::default())]
    pub xsk_wait: WaitStrategy,
    /// Print the final report as JSON (and no per-second lines).
    #[arg(long)]
    pub json: bool,
}

fn config(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut cfg = ServeConfig::new(&args.target, args.port);
    cfg.mode = match args.mode {
        ServeMode::Epoll => Mode::Epoll,
        ServeMode::BusyPoll => Mode::BusyPoll,
        ServeMode::Xsk => Mode::Xsk,
    };
    if cfg.mode == Mode::Xsk && args.threads.is_some_and(|t| t != 1) {
        anyhow::bail!(
            "--threads applies to the epoll and busy-poll modes: xsk mode runs one thread \
             per RX queue of the interface"
        );
    }
    cfg.threads = args.threads.unwrap_or(1);
    cfg.busy_poll.usecs = args.busy_poll_usecs;
    cfg.busy_poll.budget = args.busy_poll_budget;
    cfg.cpus = args.cpu.clone().map(|c| c.0).unwrap_or_default();
    cfg.duration = args.duration;
    cfg.reply = match args.reply {
        ReplyArg::Echo => ReplyFormat::Echo,
        ReplyArg::Sockperf => ReplyFormat::Sockperf,
    };
    cfg.batch = args.batch;
    cfg.rcvbuf = args.rcvbuf;
    if args.wait && cfg.mode != Mode::Xsk {
        anyhow::bail!(
            "--wait applies to xsk mode (it waits for netmit to be attached again); the \
             kernel modes do not depend on netmit's program"
        );
    }
    cfg.xsk_wait = args.wait;
    if cfg.mode != Mode::Xsk && args.xsk_wait != WaitStrategy::default() {
        anyhow::bail!(
            "--xsk-wait applies to xsk mode; in busy-poll mode the kernel spins \
             (--busy-poll-usecs), in epoll mode the thread sleeps"
        );
    }
    cfg.xsk_wait_strategy = args.xsk_wait;
    Ok(cfg)
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let server = Server::new(config(&args)?)?;
    crate::stop::install()?;
    let json = args.json;
    if !json {
        let cfg = server.config();
        eprintln!(
            "netmit serve: {} mode on {}{} ({} thread{}, {} replies); Ctrl-C to stop",
            cfg.mode,
            server.local_addr(),
            server
                .iface()
                .map(|i| format!(" ({i})"))
                .unwrap_or_default(),
            server.threads(),
            if server.threads() == 1 { "" } else { "s" },
            cfg.reply,
        );
    }
    let report = server.run(netmit_user::sys::signal::stop_flag(), |s: &ServeSample| {
        if !json {
            println!(
                "{:>7.2} s  {:>10.0} req/s  {:>10} requests  {:>10} replies",
                s.at_secs, s.requests_per_sec, s.requests, s.replies
            );
        }
    })?;
    warn(&report);
    if json {
        output::print_json(&serde_json::to_value(&report)?)
    } else {
        print_summary(&report);
        Ok(())
    }
}

/// Busy-poll mode that cannot have busy-polled: say why.
fn warn(r: &ServeReport) {
    if r.mode != Mode::BusyPoll || r.counters.requests == 0 {
        return;
    }
    let napis: Vec<u32> = r.per_thread.iter().filter_map(|t| t.napi_id).collect();
    if !napis.is_empty() && napis.iter().all(|&id| id == 0) {
        eprintln!(
            "netmit: warning: the requests came through no NAPI instance \
             (SO_INCOMING_NAPI_ID 0), so epoll had nothing to busy-poll: on a veth attach \
             native XDP (`netmit attach IFACE --mode native`) or turn GRO on"
        );
    } else if r.busy_poll_rx_packets == Some(0) {
        eprintln!(
            "netmit: warning: BusyPollRxPackets did not move: every request was taken by \
             the softirq before epoll_wait busy-polled (try a larger --busy-poll-usecs, or \
             set defer-hard-irqs and gro-flush-timeout on the NAPI)"
        );
    }
}

fn print_summary(r: &ServeReport) {
    let c = &r.counters;
    println!(
        "{} requests, {} replies ({} unanswered, {} send failures), {} payload bytes in \
         {:.2} s: {:.0} requests/s",
        c.requests, c.replies, c.unanswered, c.send_failed, r.bytes, r.seconds, r.requests_per_sec
    );
    if let Some(bp) = r.busy_poll {
        println!(
            "busy polling: {} us, budget {}, prefer_busy_poll{}",
            bp.usecs,
            bp.budget,
            if bp.socket_options {
                ", socket options set"
            } else {
                " (socket options not set)"
            }
        );
    }
    if let Some(n) = r.busy_poll_rx_packets {
        println!("BusyPollRxPackets: +{n}");
    }
    for t in &r.per_thread {
        let mut line = format!(
            "thread {}{}: {} requests, {} replies",
            t.thread,
            t.cpu.map(|c| format!(" (CPU {c})")).unwrap_or_default(),
            t.counters.requests,
            t.counters.replies
        );
        if let Some(x) = &t.xsk {
            line += &format!(
                ", queue {} ({} mode, wait {}{}), {} lost, {} wakeups, {} other frames",
                x.queue,
                x.bind_mode,
                x.wait,
                x.spin_usecs.map(|u| format!(":{u}")).unwrap_or_default(),
                x.rx_lost,
                x.wakeups,
                t.counters.other_frames
            );
        } else {
            line += &format!(
                ", {} epoll_wait ({} without events)",
                t.epoll_waits, t.empty_waits
            );
        }
        if let Some(id) = t.napi_id {
            line += &format!(", NAPI {id}");
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

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
        assert_eq!(s.xsk_wait, WaitStrategy::default());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    #[test]
    fn xsk_wait_strategies() {
        let parse = |w: &str| {
            let cli = Cli::try_parse_from([
                "netmit",
                "serve",
                "veth0",
                "--port",
                "9000",
                "--mode",
                "xsk",
                "--xsk-wait",
                w,
            ])?;
            let Command::Serve(s) = cli.command else {
                panic!("not serve")
            };
            Ok::<_, clap::Error>(s)
        };
        for (w, want) in [
            ("sleep", WaitStrategy::Sleep),
            ("spin", WaitStrategy::Spin),
            (
                "spin-then-sleep:20",
                WaitStrategy::SpinThenSleep(Duration::from_micros(20)),
            ),
        ] {
            let s = parse(w).unwrap();
            assert_eq!(s.xsk_wait, want);
            assert_eq!(config(&s).unwrap().xsk_wait_strategy, want);
        }
        assert!(parse("spin-then-sleep:0").is_err());
        assert!(parse("nap").is_err());
        // Only xsk mode waits on a ring.
        let cli = Cli::try_parse_from([
            "netmit",
            "serve",
            "veth0",
            "--port",
            "9000",
            "--xsk-wait",
            "spin",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        assert!(config(&s).is_err());
    }
}
