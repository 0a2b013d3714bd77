//! `netmit serve`: a UDP request/response server in epoll, busy-poll or xsk mode.

use netmit_user::serve::{Mode, ReplyFormat, ServeConfig, ServeReport, ServeSample, Server};

use crate::{
    args::{ReplyArg, ServeArgs, ServeMode},
    output,
};

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
    let report = server.run(&crate::stop::STOP, |s: &ServeSample| {
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
                ", queue {} ({} mode), {} lost, {} wakeups, {} other frames",
                x.queue, x.bind_mode, x.rx_lost, x.wakeups, t.counters.other_frames
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
