//! `netmit bench modes`: the kernel versus user-level networking comparison of Cai and
//! Karsten (SIGMETRICS 2024), on a throwaway veth testbed or on two interfaces the user
//! names ([`bed`]: what the benchmark may change on each).
//!
//! One UDP request/response server ([`crate::serve`]) runs under each [`Setup`]
//! (baseline interrupts, deferral, busy polling, IRQ suspension, AF_XDP, and the
//! adaptive daemon), and one load client ([`crate::load`]) drives it at 10%, 50% and 90%
//! of the baseline's saturation throughput (open loop, timestamped requests) and at
//! saturation (closed loop). Each point records throughput, p50/p99/p99.9 latency, the
//! utilisation of the server's core, NAPI polls and NET_RX softirq runs per request.
//!
//! # The testbed, and why it looks like this
//!
//! Two network namespaces joined by a veth pair ([`crate::testbed`]): the client on
//! side A, the server on side B. A veth has no interrupt; its receive NAPI is scheduled
//! by the sender, and in softirq mode runs on the *sender's* core, so the server's core
//! would never pay the notification cost a NIC interrupt puts on it. The benchmark
//! therefore switches both ends to threaded NAPI and pins the `napi/…` kernel threads:
//! side B's to the server's core, side A's to the client's. Every "interrupt" then wakes
//! a thread on the server's core (rescheduling IPI, context switch), which is what IRQ
//! mitigation saves on real hardware. GRO is turned on at both ends: a veth has a NAPI
//! only with GRO or native XDP.
//!
//! The client has to outrun the server on one core. A socket client cannot (about
//! 370k pps on these machines), so [`crate::load`] sends with BPF_PROG_TEST_RUN live
//! frames and turns replies into the next requests in XDP. Its core (A's NAPI thread,
//! the sender) is separate from the server's core, whose utilisation is measured.
//!
//! # Measurement
//!
//! The baseline runs first: its closed-loop throughput sets the open-loop rates of every
//! setup. For each point the client warms up, then the window is measured: the client
//! reports throughput and its latency histogram; `/proc/stat`, `/proc/softirqs` and the
//! `napi:napi_poll` tracepoint give the server-side counters for the same window.
//!
//! The veth testbed lives in its own namespaces: every NAPI setting the benchmark makes
//! dies with them, so it does not go through the restore journal. The adaptive setup's
//! daemon gets a private run directory for its journal and state file.

pub mod bed;
pub(crate) mod daemon;
mod error;
pub mod probe;
pub mod report;
pub mod setup;
pub mod svg;

use std::{
    fs, io,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    load::{LoadClient, LoadConfig, LoadError, LoadReport, Pattern, Sender},
    serve::{ServeConfig, ServeError, Server},
    testbed::{Side, TestbedError},
};
use netmit_user::{
    ebpf::{
        PinRoot,
        attach::{self, AttachError, AttachOptions, ModeRequest},
    },
    signals::SignalsError,
    steer::Rule,
    sys::{napi::NapiError, process},
    tune::JournalError,
};

use bed::Bed;
pub use bed::Endpoint;
use daemon::Daemon;
pub use error::ModesError;
pub use probe::{Probe, WindowCounters};
pub use report::{Goal, LoadPoint, ModesReport, PointResult, SetupKind};
pub use setup::{NapiSettings, Setup};

/// UDP port of the server.
pub const SERVER_PORT: u16 = 9000;
/// First UDP source port of the client's flows.
pub const CLIENT_PORT_BASE: u16 = 20000;

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct ModesConfig {
    /// A short run (smoke test): shorter windows.
    pub quick: bool,
    /// Setups to compare (the baseline always runs first: it sets the load points).
    pub setups: Vec<Setup>,
    /// Open-loop load points, as fractions of the baseline's saturation throughput.
    pub fractions: Vec<f64>,
    /// Warm-up before each window.
    pub warmup: Duration,
    /// Extra warm-up of the adaptive setup, for the daemon to settle.
    pub daemon_settle: Duration,
    /// Length of each measured window.
    pub window: Duration,
    /// Outstanding requests in the closed-loop (saturation) points.
    pub closed_window: u32,
    /// Open-loop flows (distinct client ports).
    pub flows: u32,
    /// UDP payload of a request, bytes.
    pub payload_len: usize,
    /// The server's core.
    pub server_cpu: usize,
    /// The client's core.
    pub client_cpu: usize,
    /// Run on these interfaces (client, server) instead of a veth testbed.
    pub interfaces: Option<(Endpoint, Endpoint)>,
    /// What sends the open loop's requests.
    pub sender: Sender,
}

impl ModesConfig {
    /// The full comparison: 2 s warm-up and 5 s windows (about 4 minutes on 2 cores).
    pub fn full() -> Self {
        let cpus = online_cpus();
        Self {
            quick: false,
            setups: Setup::ALL.to_vec(),
            fractions: vec![0.1, 0.5, 0.9],
            warmup: Duration::from_secs(2),
            daemon_settle: Duration::from_secs(2),
            window: Duration::from_secs(5),
            closed_window: 64,
            flows: 64,
            payload_len: 32,
            server_cpu: cpus.saturating_sub(1),
            client_cpu: 0,
            interfaces: None,
            sender: Sender::default(),
        }
    }

    /// The smoke test: the same points with 0.5 s warm-ups and 1 s windows (well under
    /// 2 minutes).
    pub fn quick() -> Self {
        Self {
            quick: true,
            warmup: Duration::from_millis(500),
            daemon_settle: Duration::from_millis(1500),
            window: Duration::from_secs(1),
            ..Self::full()
        }
    }

    /// Checks what needs no system call.
    ///
    /// # Errors
    ///
    /// [`ModesError::Config`] naming the first problem.
    pub fn validate(&self) -> Result<(), ModesError> {
        let bad = |what: String| Err(ModesError::Config { what });
        let cpus = online_cpus();
        if self.server_cpu >= cpus || self.client_cpu >= cpus {
            return bad(format!(
                "server CPU {} / client CPU {}: this machine has CPUs 0-{}",
                self.server_cpu,
                self.client_cpu,
                cpus.saturating_sub(1)
            ));
        }
        if self.server_cpu == self.client_cpu && cpus > 1 {
            return bad(format!(
                "server and client share CPU {}: give them different cores",
                self.server_cpu
            ));
        }
        if self.setups.is_empty() {
            return bad("no setup to run".into());
        }
        if let Some(f) = self.fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
            return bad(format!("load fraction {f}: use a value in (0, 1]"));
        }
        if self.window.is_zero() {
            return bad("a zero-length window measures nothing".into());
        }
        if self.closed_window == 0 {
            return bad("closed-loop window 0: give at least 1 outstanding request".into());
        }
        Ok(())
    }

    /// The setups in run order: the baseline first, each once.
    fn run_order(&self) -> Vec<Setup> {
        let mut out = vec![Setup::Baseline];
        for s in &self.setups {
            if !out.contains(s) {
                out.push(*s);
            }
        }
        out
    }

    /// The load points of one setup, in run order (saturation first).
    fn loads(&self) -> Vec<LoadPoint> {
        let mut out = vec![LoadPoint::Saturation];
        out.extend(
            self.fractions
                .iter()
                .map(|&f| LoadPoint::Fraction { of_baseline: f }),
        );
        out
    }

    /// Number of measurements a run makes.
    pub fn steps(&self) -> usize {
        self.run_order().len() * self.loads().len()
    }
}

/// Progress of a run, for a progress bar.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Measurements finished.
    pub done: usize,
    /// Measurements in the run.
    pub total: usize,
    /// What runs now (`suspend @ 50%`).
    pub what: String,
    /// The point just measured, if any.
    pub last: Option<PointResult>,
}

/// Number of online CPUs.
pub fn online_cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the comparison and returns the report (goals checked).
///
/// Creates a veth testbed (removed when the run ends, also on error or when `stop` is
/// set), runs every setup at every load point and reports `progress` after each one.
///
/// # Errors
///
/// See [`ModesError`]; [`ModesError::Interrupted`] when `stop` was set.
pub fn run(
    cfg: &ModesConfig,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Progress),
) -> Result<ModesReport, ModesError> {
    cfg.validate()?;
    let started = Instant::now();
    let bed = match &cfg.interfaces {
        None => Bed::testbed(cfg.server_cpu, cfg.client_cpu)?,
        Some((client, server)) => Bed::named(client, server, cfg.server_cpu, cfg.client_cpu)?,
    };
    let server_ip = bed.server_ip()?;
    let (probe, napi_note) = Probe::new(vec![cfg.server_cpu]);
    let busy_note = busy_machine_note();
    let mut report = ModesReport {
        version: env!("CARGO_PKG_VERSION"),
        kernel: kernel_release(),
        testbed: bed.describe(),
        server_cpus: vec![cfg.server_cpu],
        client_cpu: cfg.client_cpu,
        quick: cfg.quick,
        warmup_secs: cfg.warmup.as_secs_f64(),
        window_secs: cfg.window.as_secs_f64(),
        window_requests: cfg.closed_window,
        payload_len: cfg.payload_len,
        setups: cfg
            .run_order()
            .into_iter()
            .map(|s| (s, s.describe()))
            .collect(),
        baseline_saturation_pps: 0.0,
        points: Vec::new(),
        goals: Vec::new(),
        notes: napi_note
            .into_iter()
            .chain(busy_note)
            .chain(bed.offload_note())
            .collect(),
        elapsed_secs: 0.0,
    };
    let total = cfg.steps();
    let mut done = 0;
    for setup in cfg.run_order() {
        if stop.load(Ordering::Relaxed) {
            return Err(ModesError::Interrupted);
        }
        let mut ctx = SetupRun {
            cfg,
            bed: &bed,
            server_ip,
            probe: &probe,
            setup,
            stop,
        };
        let ran = ctx.run(&mut report, &mut |what, last| {
            if last.is_some() {
                done += 1;
            }
            progress(&Progress {
                done,
                total,
                what,
                last,
            });
        });
        // A named interface gets its settings back after every setup, and whatever
        // happened: the next setup sets its own anyway.
        let restored = bed.restore();
        ran?;
        restored?;
    }
    report.check_goals();
    report.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Pins thread `pid` to `cpu`.
pub(crate) fn pin(pid: u32, cpu: usize) -> io::Result<()> {
    netmit_user::sys::cpu::pin(pid, &netmit_user::sys::cpu::CpuSet::of(&[cpu])?)
}

/// A note when something else keeps the machine busy: every figure of the run (the
/// server's core utilisation above all) includes whatever else ran on its cores. Busy
/// means more than a quarter of all CPU time used over half a second before the run.
pub(crate) fn busy_machine_note() -> Option<String> {
    let total = |t: &std::collections::BTreeMap<usize, probe::CpuTimes>| {
        t.values()
            .fold((0, 0), |(b, i), c| (b + c.busy, i + c.idle))
    };
    let read = || {
        fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| probe::parse_stat(&s).ok())
    };
    let a = total(&read()?);
    thread::sleep(Duration::from_millis(500));
    let b = total(&read()?);
    let (busy, idle) = (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1));
    let percent = 100.0 * busy as f64 / (busy + idle).max(1) as f64;
    (percent > 25.0).then(|| {
        format!(
            "the machine was busy when the run started ({percent:.0}% of all CPU time in use): \
             CPU, latency and loss figures include other work on the same cores; rerun on an \
             idle machine for figures to quote"
        )
    })
}

pub(crate) fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// One setup's part of the run.
struct SetupRun<'a> {
    cfg: &'a ModesConfig,
    bed: &'a Bed,
    server_ip: std::net::IpAddr,
    probe: &'a Probe,
    setup: Setup,
    stop: &'a AtomicBool,
}

impl SetupRun<'_> {
    fn run(
        &mut self,
        report: &mut ModesReport,
        progress: &mut dyn FnMut(String, Option<PointResult>),
    ) -> Result<(), ModesError> {
        let setup = self.setup;
        let bed = self.bed;
        progress(format!("{setup}: setting up"), None);
        let napi_ids = bed.apply_server(setup.napi())?;
        let _xsk = if setup == Setup::Xsk {
            Some(XskAttachment::new(bed)?)
        } else {
            None
        };
        bed.pin_napi_threads()?;
        let daemon = if setup.runs_daemon() {
            Some(Daemon::start(bed)?)
        } else {
            None
        };

        let server_stop = AtomicBool::new(false);
        let mut server_cfg = ServeConfig::new(bed.iface(Side::B), SERVER_PORT);
        server_cfg.mode = setup.serve_mode();
        server_cfg.busy_poll = setup.busy_poll();
        server_cfg.cpus = vec![self.cfg.server_cpu];
        server_cfg.sample_interval = Duration::ZERO;
        let (ready_tx, ready_rx) = mpsc::channel();
        let result = thread::scope(|scope| -> Result<(), ModesError> {
            let server = scope.spawn(|| {
                bed.in_ns(Side::B, || {
                    let server = match Server::new(server_cfg) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(false);
                            return Err(e);
                        }
                    };
                    let _ = ready_tx.send(true);
                    server.run(&server_stop, |_| {})
                })
            });
            let ready = ready_rx.recv().unwrap_or(false);
            let measured = if ready {
                self.measure_all(report, &napi_ids, daemon.as_ref(), progress)
            } else {
                Ok(())
            };
            server_stop.store(true, Ordering::Relaxed);
            let served = server
                .join()
                .map_err(|_| ModesError::Panicked { what: "server" })??;
            served.map_err(|source| ModesError::Serve {
                setup,
                source: Box::new(source),
            })?;
            measured
        });
        if let Some(d) = daemon {
            d.stop()?;
        }
        result
    }

    fn measure_all(
        &mut self,
        report: &mut ModesReport,
        napi_ids: &[u32],
        daemon: Option<&Daemon>,
        progress: &mut dyn FnMut(String, Option<PointResult>),
    ) -> Result<(), ModesError> {
        let setup = self.setup;
        for (i, load) in self.cfg.loads().into_iter().enumerate() {
            if self.stop.load(Ordering::Relaxed) {
                return Err(ModesError::Interrupted);
            }
            progress(format!("{setup} @ {}", load.label()), None);
            let settle = if setup.runs_daemon() {
                self.cfg.daemon_settle
            } else {
                Duration::ZERO
            };
            let pattern = match load {
                LoadPoint::Saturation => Pattern::Closed {
                    window: self.cfg.closed_window,
                },
                LoadPoint::Fraction { of_baseline } => Pattern::Open {
                    rate_pps: (report.baseline_saturation_pps * of_baseline).max(1.0),
                },
            };
            let mut point = self.measure(load, pattern, napi_ids, settle)?;
            if let Some(d) = daemon
                && let Some((mode, transitions)) = d.status(self.bed)
            {
                point.daemon_mode = Some(mode);
                point.daemon_transitions = Some(transitions);
            }
            if setup == Setup::Baseline && i == 0 {
                report.baseline_saturation_pps = point.achieved_pps;
            }
            report.points.push(point.clone());
            progress(format!("{setup} @ {}", load.label()), Some(point));
        }
        Ok(())
    }

    /// One load point: the client warms up, then both it and the probe measure a window.
    fn measure(
        &self,
        load: LoadPoint,
        pattern: Pattern,
        napi_ids: &[u32],
        settle: Duration,
    ) -> Result<PointResult, ModesError> {
        let bed = self.bed;
        let cfg = self.cfg;
        let server: SocketAddr = (self.server_ip, SERVER_PORT).into();
        let mut lc = LoadConfig::new(bed.iface(Side::A), server, pattern);
        lc.payload_len = cfg.payload_len;
        lc.flows = match pattern {
            Pattern::Closed { window } => window,
            Pattern::Open { .. } => cfg.flows,
        };
        lc.sport_base = CLIENT_PORT_BASE;
        lc.warmup = cfg.warmup + settle;
        lc.duration = cfg.window;
        lc.cpu = Some(cfg.client_cpu);
        lc.sender = cfg.sender;
        let warmup = lc.warmup;
        let setup = self.setup;
        let load_err = |source| ModesError::Load {
            setup,
            load: load.label(),
            source: Box::new(source),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let (client, window) = thread::scope(|scope| {
            let client = scope.spawn(|| {
                bed.in_ns(Side::A, || -> Result<LoadReport, LoadError> {
                    let mut c = match LoadClient::new(lc) {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(false);
                            return Err(e);
                        }
                    };
                    let _ = ready_tx.send(true);
                    c.run(self.stop, |_| {})
                })
            });
            let window = if ready_rx.recv().unwrap_or(false) {
                thread::sleep(warmup);
                let a = self.probe.snapshot(napi_ids);
                thread::sleep(cfg.window);
                let b = self.probe.snapshot(napi_ids);
                Some(a.and_then(|a| b.map(|b| self.probe.window(&a, &b))))
            } else {
                None
            };
            (client.join(), window)
        });
        let client = client
            .map_err(|_| ModesError::Panicked {
                what: "load client",
            })??
            .map_err(load_err)?;
        let w = window.transpose()?.unwrap_or_default();
        if self.probe.counts_napi() && client.received > 0 && w.napi_polls == 0 {
            return Err(ModesError::ServerPath {
                what: format!(
                    "{} replies came back in the {setup} window at load {}, but the \
                     server's NAPI instance never polled: the requests took another path \
                     (see docs/modes.md on veth offloads: on a veth, the open loop's UDP \
                     datagrams need TSO off at the client's end, or use --sender \
                     generator), so the setups would compare nothing",
                    client.received,
                    load.label()
                ),
            });
        }
        let per = |n: u64| n as f64 / client.received.max(1) as f64;
        let us = |ns: u64| ns as f64 / 1000.0;
        Ok(PointResult {
            setup,
            load,
            offered_pps: client.offered_pps,
            achieved_pps: client.achieved_pps,
            sent: client.sent,
            received: client.received,
            lost: client.lost,
            p50_us: us(client.latency.p50_ns),
            p99_us: us(client.latency.p99_ns),
            p999_us: us(client.latency.p999_ns),
            mean_us: client.latency.mean_ns / 1000.0,
            server_cpu_percent: w.server_cpu_percent,
            napi_polls_per_packet: per(w.napi_polls),
            net_rx_per_packet: per(w.net_rx_softirqs),
            busy_poll_rx_per_packet: None,
            sender: client.send.as_ref().map(|s| s.sender.name().to_string()),
            burst_max: client.send.as_ref().map(|s| s.burst_max),
            burst_mean: client.send.as_ref().map(|s| s.burst_mean),
            send_error_p99_us: client
                .send
                .as_ref()
                .and_then(|s| s.send_error.as_ref())
                .map(|e| us(e.p99_ns)),
            daemon_mode: None,
            daemon_transitions: None,
        })
    }
}

/// netmit's steering program on the server's end, steering the requests to AF_XDP;
/// detached on drop.
struct XskAttachment<'a> {
    bed: &'a Bed,
}

impl<'a> XskAttachment<'a> {
    fn new(bed: &'a Bed) -> Result<Self, ModesError> {
        let rule: Rule = format!("proto=udp,dport={SERVER_PORT},action=xsk")
            .parse()
            .expect("a valid rule");
        let opts = AttachOptions {
            mode: ModeRequest::Native,
            rules: vec![rule],
            ..AttachOptions::default()
        };
        let dev = bed.dev(Side::B).clone();
        bed.in_ns(Side::B, || attach::attach(&PinRoot::default(), &dev, &opts))?
            .map_err(|e| ModesError::Attach(Box::new(e)))?;
        Ok(Self { bed })
    }
}

impl Drop for XskAttachment<'_> {
    fn drop(&mut self) {
        let iface = self.bed.iface(Side::B).to_string();
        let dev = self.bed.dev(Side::B).clone();
        match self
            .bed
            .in_ns(Side::B, || attach::detach(&PinRoot::default(), &dev))
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!(
                "netmit bench modes: detaching from {iface}: {}",
                netmit_user::error::chain(&e)
            ),
            Err(e) => eprintln!(
                "netmit bench modes: detaching from {iface}: {}",
                netmit_user::error::chain(&e)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{daemon::daemon_config, *};

    #[test]
    fn the_baseline_runs_first_and_once() {
        let mut cfg = ModesConfig::quick();
        cfg.setups = vec![Setup::Suspend, Setup::Baseline, Setup::Suspend];
        assert_eq!(cfg.run_order(), vec![Setup::Baseline, Setup::Suspend]);
        assert_eq!(cfg.steps(), 2 * 4);
        assert_eq!(cfg.loads()[0], LoadPoint::Saturation);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let mut cfg = ModesConfig::quick();
        cfg.fractions = vec![1.5];
        assert!(cfg.validate().is_err());
        let mut cfg = ModesConfig::quick();
        cfg.server_cpu = 4096;
        assert!(cfg.validate().is_err());
        let mut cfg = ModesConfig::quick();
        cfg.closed_window = 0;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn the_daemon_configuration_is_valid() {
        let text = daemon_config("nmb1x0b", "127.0.0.1:19464".parse().unwrap());
        let cfg = netmit_user::daemon::config::DaemonConfig::parse(&text, "bench")
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.interfaces.len(), 1);
    }
}
