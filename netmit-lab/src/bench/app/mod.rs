//! `netmit bench app`: an unmodified server (Debian's memcached 1.6) under netmit, on the
//! same veth testbed as `netmit bench modes` ([`crate::bench::modes::bed`]: two network
//! namespaces, GRO on, threaded NAPI pinned to the server's and the client's core), the
//! same probe and the same report, table and plots.
//!
//! What differs from `bench modes` is the server and the client. The server is memcached
//! as shipped, started for each [`AppSetup`]: as is (baseline), with the global busy-poll
//! sysctls (the peer to beat), or under `netmit run --profile defer|busy-poll|suspend`,
//! which preloads `libnetmit_preload.so` and applies the profile's NAPI settings through
//! its own restore journal; and with `netmit daemon` choosing the settings (adaptive).
//! The client is the memcached UDP client ([`crate::memcache`]): ETC-like key and value
//! sizes, 30 gets per set, every key stored first; closed loop at saturation, open loop at
//! 10/50/90% of the baseline's saturation. It sends from a kernel socket, so TSO is
//! turned off at the client's veth end: only then do its datagrams reach the server's
//! NAPI ([`crate::testbed::Offloads`]).
//!
//! Besides the modes figures, each window reads `BusyPollRxPackets` of the server's
//! namespace: the share of requests memcached's own thread polled off the device. After
//! each `netmit run` setup the server interface's NAPI settings must read as before, and
//! after the sysctl setup both sysctls (the report lists each check).

mod goals;
mod server;
pub mod setup;

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    bench::modes::{
        LoadPoint, ModesError, ModesReport, PointResult, Probe, bed::Bed, busy_machine_note,
        daemon::Daemon, kernel_release, online_cpus,
    },
    memcache::{McClient, McReport, Workload},
    testbed::Side,
};
use netmit_user::sys::napi;

pub use server::MEMCACHED_PORT;
use server::{AppServer, GlobalBusyPoll, private_dir};
pub use setup::AppSetup;

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct AppConfig {
    /// A short run (smoke test).
    pub quick: bool,
    /// Setups to compare (the baseline always runs, first).
    pub setups: Vec<AppSetup>,
    /// Open-loop load points, as fractions of the baseline's saturation throughput.
    pub fractions: Vec<f64>,
    /// Warm-up before each window.
    pub warmup: Duration,
    /// Extra warm-up of the adaptive setup, for the daemon to settle.
    pub daemon_settle: Duration,
    /// Length of each measured window.
    pub window: Duration,
    /// Requests in flight at saturation (closed loop).
    pub closed_window: u32,
    /// Keys of the workload (all stored before the first window).
    pub keys: usize,
    /// memcached's worker threads (`-t`).
    pub threads: u32,
    /// `net.core.busy_poll` and `net.core.busy_read` of the sysctl setup, µs.
    pub sysctl_usecs: u64,
    /// The memcached binary.
    pub memcached: PathBuf,
    /// The server's core.
    pub server_cpu: usize,
    /// The client's core.
    pub client_cpu: usize,
}

impl AppConfig {
    /// The full comparison: 2 s warm-ups, 5 s windows (about 4 minutes).
    pub fn full() -> Self {
        Self {
            quick: false,
            setups: AppSetup::ALL.to_vec(),
            fractions: vec![0.1, 0.5, 0.9],
            warmup: Duration::from_secs(2),
            daemon_settle: Duration::from_secs(2),
            window: Duration::from_secs(5),
            closed_window: 32,
            keys: 10_000,
            threads: 1,
            sysctl_usecs: 50,
            memcached: PathBuf::from("memcached"),
            server_cpu: online_cpus().saturating_sub(1),
            client_cpu: 0,
        }
    }

    /// The smoke test: 0.3 s warm-ups, 0.5 s windows, fewer keys.
    pub fn quick() -> Self {
        Self {
            quick: true,
            warmup: Duration::from_millis(300),
            daemon_settle: Duration::from_millis(1000),
            window: Duration::from_millis(500),
            keys: 2_000,
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
        if let Some(f) = self.fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
            return bad(format!("load fraction {f}: use a value in (0, 1]"));
        }
        if self.window.is_zero() || self.closed_window == 0 || self.keys == 0 {
            return bad("window, closed-loop window and keys must be above zero".into());
        }
        if self.threads == 0 || self.sysctl_usecs == 0 {
            return bad(
                "memcached threads and the sysctl setup's busy-poll time must be above zero".into(),
            );
        }
        Ok(())
    }

    fn run_order(&self) -> Vec<AppSetup> {
        let mut out = vec![AppSetup::Baseline];
        for s in &self.setups {
            if !out.contains(s) {
                out.push(*s);
            }
        }
        out
    }

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

/// A setting checked after a setup: it must read as it did before.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RestoreCheck {
    /// The setup after which it was read.
    pub setup: AppSetup,
    /// The setting (`net.core.busy_poll`, `<iface> napi <id> defer-hard-irqs`).
    pub setting: String,
    /// Its value before the setup.
    pub before: u64,
    /// Its value after.
    pub after: u64,
}

/// Everything one run measured: the modes report, plus the restore checks.
#[derive(Clone, Debug, Serialize)]
pub struct AppReport {
    /// The measurements, goals and notes (same shape as `bench modes`).
    #[serde(flatten)]
    pub report: ModesReport<AppSetup>,
    /// memcached's version (`memcached -V`).
    pub server: String,
    /// Every setting read back after a setup.
    pub restored: Vec<RestoreCheck>,
}

/// Progress of a run, for a progress bar.
#[derive(Clone, Debug)]
pub struct AppProgress {
    /// Measurements finished.
    pub done: usize,
    /// Measurements in the run.
    pub total: usize,
    /// What runs now.
    pub what: String,
    /// The point just measured, if any.
    pub last: Option<PointResult<AppSetup>>,
}

/// Runs the comparison and returns the report (goals checked). Builds a veth testbed
/// (removed when the run ends), starts memcached under each setup and measures it.
///
/// # Errors
///
/// See [`ModesError`]; [`ModesError::Interrupted`] when `stop` was set. Every setting
/// made is put back on every path (the sysctls also by `netmit tune restore` after a
/// crash).
pub fn run(
    cfg: &AppConfig,
    stop: &AtomicBool,
    mut progress: impl FnMut(&AppProgress),
) -> Result<AppReport, ModesError> {
    cfg.validate()?;
    let started = Instant::now();
    let version = std::process::Command::new(&cfg.memcached)
        .arg("-V")
        .output()
        .map_err(|source| ModesError::AppServer {
            setup: "any",
            what: format!(
                "running `{} -V`: install memcached (`cargo xtask setup`, or `apt-get install \
                 memcached`)",
                cfg.memcached.display()
            ),
            source,
        })?;
    let server_version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let netmit = std::env::current_exe().map_err(|source| ModesError::AppServer {
        setup: "any",
        what: "finding the netmit binary".into(),
        source,
    })?;
    if netmit_user::preload::find_library(&netmit).is_none() {
        return Err(ModesError::Config {
            what: format!(
                "{} not found next to {}: build it (`cargo build --release -p \
                 netmit-preload`; `cargo xtask bench app` does)",
                netmit_user::preload::LIBRARY,
                netmit.display()
            ),
        });
    }
    let mut bed = Bed::testbed(cfg.server_cpu, cfg.client_cpu)?;
    bed.socket_client_path()?;
    let server_ip = bed.server_ip()?;
    let (probe, napi_note) = Probe::new(vec![cfg.server_cpu]);
    let scratch = std::env::temp_dir().join(format!("netmit-bench-app-{}", std::process::id()));
    private_dir(&scratch)?;
    let mut out = AppReport {
        report: ModesReport {
            version: env!("CARGO_PKG_VERSION"),
            kernel: kernel_release(),
            testbed: format!("{}, {server_version}", bed.describe()),
            server_cpus: vec![cfg.server_cpu],
            client_cpu: cfg.client_cpu,
            quick: cfg.quick,
            warmup_secs: cfg.warmup.as_secs_f64(),
            window_secs: cfg.window.as_secs_f64(),
            window_requests: cfg.closed_window,
            payload_len: 0,
            setups: cfg
                .run_order()
                .into_iter()
                .map(|s| (s, s.describe(cfg.sysctl_usecs)))
                .collect(),
            baseline_saturation_pps: 0.0,
            points: Vec::new(),
            goals: Vec::new(),
            notes: napi_note
                .into_iter()
                .chain(busy_machine_note())
                .chain(bed.offload_note())
                .chain([format!(
                    "workload: {} ETC-like keys, 30 gets per set, values up to {} bytes; \
                     request payload sizes vary (payload_len 0)",
                    cfg.keys,
                    crate::memcache::MAX_VALUE
                )])
                .collect(),
            elapsed_secs: 0.0,
        },
        server: server_version,
        restored: Vec::new(),
    };
    let total = cfg.steps();
    let mut done = 0;
    let result = (|| {
        for setup in cfg.run_order() {
            if stop.load(Ordering::Relaxed) {
                return Err(ModesError::Interrupted);
            }
            let ctx = SetupRun {
                cfg,
                bed: &bed,
                server_ip,
                probe: &probe,
                setup,
                stop,
                netmit: &netmit,
                scratch: &scratch,
            };
            ctx.run(&mut out, &mut |what, last| {
                if last.is_some() {
                    done += 1;
                }
                progress(&AppProgress {
                    done,
                    total,
                    what,
                    last,
                });
            })?;
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&scratch);
    result?;
    out.check_goals();
    out.report.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(out)
}

/// The NAPI settings of the server's end, by id, as text and value.
fn napi_settings(bed: &Bed) -> Result<Vec<(String, u64)>, ModesError> {
    let dev = bed.dev(Side::B).clone();
    let iface = bed.iface(Side::B).to_string();
    let list = bed
        .in_ns(Side::B, || napi::list(&dev))?
        .map_err(|source| ModesError::Napi {
            iface: iface.clone(),
            source,
        })?;
    let mut out = Vec::new();
    for n in list {
        let name = |p: &str| format!("{iface} napi {} {p}", n.id);
        out.push((
            name("defer-hard-irqs"),
            n.defer_hard_irqs.unwrap_or(0) as u64,
        ));
        out.push((
            name("gro-flush-timeout"),
            n.gro_flush_timeout_ns.unwrap_or(0),
        ));
        out.push((
            name("irq-suspend-timeout"),
            n.irq_suspend_timeout_ns.unwrap_or(0),
        ));
    }
    Ok(out)
}

/// `BusyPollRxPackets` of the server's namespace (`/proc/thread-self`: the thread that
/// entered it, not the process's main thread).
fn busy_poll_rx(bed: &Bed) -> Result<Option<u64>, ModesError> {
    let text = bed.in_ns(Side::B, || {
        fs::read_to_string("/proc/thread-self/net/netstat")
    })?;
    let text = text.map_err(|e| ModesError::Proc {
        file: "/proc/net/netstat",
        reason: e.to_string(),
    })?;
    Ok(netmit_user::daemon::sample::parse_busy_poll_rx_packets(
        &text,
    ))
}

/// One setup's part of the run.
struct SetupRun<'a> {
    cfg: &'a AppConfig,
    bed: &'a Bed,
    server_ip: IpAddr,
    probe: &'a Probe,
    setup: AppSetup,
    stop: &'a AtomicBool,
    netmit: &'a std::path::Path,
    scratch: &'a std::path::Path,
}

impl SetupRun<'_> {
    fn run(
        &self,
        out: &mut AppReport,
        progress: &mut dyn FnMut(String, Option<PointResult<AppSetup>>),
    ) -> Result<(), ModesError> {
        let (setup, bed) = (self.setup, self.bed);
        progress(format!("{setup}: setting up"), None);
        let napi_before = napi_settings(bed)?;
        let sysctls = if setup == AppSetup::Sysctl {
            Some(GlobalBusyPoll::apply(self.cfg.sysctl_usecs)?)
        } else {
            None
        };
        let daemon = if setup.runs_daemon() {
            let d = Daemon::start(bed)?;
            d.wait_ready(bed, Duration::from_secs(10))?;
            Some(d)
        } else {
            None
        };
        let run_dir = match &daemon {
            Some(d) => d.run_dir().to_path_buf(),
            None => {
                let dir = self.scratch.join(setup.name());
                private_dir(&dir)?;
                dir
            }
        };
        let measured = (|| {
            let mut server =
                AppServer::start(bed, setup, self.cfg, self.server_ip, self.netmit, &run_dir)?;
            let r = self.measure_all(out, &mut server, daemon.as_ref(), progress);
            let stopped = server.stop();
            r.and(stopped)
        })();
        let daemon_stopped = daemon.map_or(Ok(()), Daemon::stop);
        let sysctls_restored = sysctls.map(GlobalBusyPoll::restore).transpose();
        measured?;
        daemon_stopped?;
        for (name, before, after) in sysctls_restored?.unwrap_or_default() {
            out.restored.push(RestoreCheck {
                setup,
                setting: name.into(),
                before,
                after,
            });
        }
        let napi_after = napi_settings(bed)?;
        for ((setting, before), (_, after)) in napi_before.into_iter().zip(napi_after) {
            if before != after {
                return Err(ModesError::Restore {
                    what: format!(
                        "{setting} reads {after} after the {setup} setup, {before} before"
                    ),
                });
            }
            out.restored.push(RestoreCheck {
                setup,
                setting,
                before,
                after,
            });
        }
        Ok(())
    }

    fn measure_all(
        &self,
        out: &mut AppReport,
        server: &mut AppServer,
        daemon: Option<&Daemon>,
        progress: &mut dyn FnMut(String, Option<PointResult<AppSetup>>),
    ) -> Result<(), ModesError> {
        let setup = self.setup;
        let client_err = |load: &str| {
            let load = load.to_string();
            move |source| ModesError::AppClient {
                setup: setup.name(),
                load,
                source,
            }
        };
        let server_addr = SocketAddr::from((self.server_ip, MEMCACHED_PORT));
        let local = SocketAddr::from(([0, 0, 0, 0], 0));
        let workload = Workload::etc(self.cfg.keys, 1);
        let mut client = self
            .bed
            .in_ns(Side::A, || McClient::new(local, server_addr, workload))?
            .map_err(client_err("start"))?;
        // Waits for memcached to answer (5 s at most), and stores every key.
        progress(format!("{setup}: storing {} keys", self.cfg.keys), None);
        if let Err(e) = client.preload(32) {
            server.check_alive()?;
            return Err(client_err("preload")(e));
        }
        self.bed.pin_napi_threads()?;
        for load in self.cfg.loads() {
            if self.stop.load(Ordering::Relaxed) {
                return Err(ModesError::Interrupted);
            }
            progress(format!("{setup} @ {}", load.label()), None);
            let rate = match load {
                LoadPoint::Saturation => None,
                LoadPoint::Fraction { of_baseline } => {
                    Some((out.report.baseline_saturation_pps * of_baseline).max(1.0))
                }
            };
            let mut point = self.measure(&mut client, load, rate, daemon.is_some())?;
            server.check_alive()?;
            if let Some(d) = daemon
                && let Some((mode, transitions)) = d.status(self.bed)
            {
                point.daemon_mode = Some(mode);
                point.daemon_transitions = Some(transitions);
            }
            if setup == AppSetup::Baseline && load == LoadPoint::Saturation {
                out.report.baseline_saturation_pps = point.achieved_pps;
            }
            out.report.points.push(point.clone());
            progress(format!("{setup} @ {}", load.label()), Some(point));
        }
        Ok(())
    }

    /// One load point: the client (on its own pinned thread) warms up and measures its
    /// window, the probe and the busy-poll counter measure the same window.
    fn measure(
        &self,
        client: &mut McClient,
        load: LoadPoint,
        rate: Option<f64>,
        settle: bool,
    ) -> Result<PointResult<AppSetup>, ModesError> {
        let cfg = self.cfg;
        let setup = self.setup;
        let warmup = cfg.warmup
            + if settle {
                cfg.daemon_settle
            } else {
                Duration::ZERO
            };
        let napi_ids = self.bed.napis(Side::B)?;
        let (report, window) = thread::scope(|scope| {
            let c = scope.spawn(|| -> std::io::Result<McReport> {
                let _pin = netmit_user::sys::cpu::Pinned::to(cfg.client_cpu)?;
                match rate {
                    None => client.closed_loop(cfg.closed_window as usize, warmup, cfg.window),
                    Some(r) => client.open_loop(r, warmup, cfg.window),
                }
            });
            thread::sleep(warmup);
            let a = self
                .probe
                .snapshot(&napi_ids)
                .and_then(|s| Ok((s, busy_poll_rx(self.bed)?)));
            thread::sleep(cfg.window);
            let b = self
                .probe
                .snapshot(&napi_ids)
                .and_then(|s| Ok((s, busy_poll_rx(self.bed)?)));
            (c.join(), a.and_then(|a| b.map(|b| (a, b))))
        });
        let report = report
            .map_err(|_| ModesError::Panicked {
                what: "memcached load client",
            })?
            .map_err(|source| ModesError::AppClient {
                setup: setup.name(),
                load: load.label(),
                source,
            })?;
        let ((sa, ba), (sb, bb)) = window?;
        let w = self.probe.window(&sa, &sb);
        if self.probe.counts_napi() && report.replies > 0 && w.napi_polls == 0 {
            return Err(ModesError::ServerPath {
                what: format!(
                    "{} replies came back in the {setup} window at load {}, but the server's \
                     NAPI instance never polled: the requests took another path",
                    report.replies,
                    load.label()
                ),
            });
        }
        let per = |n: u64| n as f64 / report.replies.max(1) as f64;
        let us = |ns: u64| ns as f64 / 1000.0;
        Ok(PointResult {
            setup,
            load,
            offered_pps: rate.map(|_| report.sent as f64 / report.secs.max(1e-9)),
            achieved_pps: report.rate,
            sent: report.sent,
            received: report.replies,
            lost: report.lost,
            p50_us: us(report.latency.p50_ns),
            p99_us: us(report.latency.p99_ns),
            p999_us: us(report.latency.p999_ns),
            mean_us: report.latency.mean_ns / 1000.0,
            server_cpu_percent: w.server_cpu_percent,
            napi_polls_per_packet: per(w.napi_polls),
            net_rx_per_packet: per(w.net_rx_softirqs),
            busy_poll_rx_per_packet: ba.zip(bb).map(|(a, b)| per(b.saturating_sub(a))),
            sender: None,
            burst_max: None,
            burst_mean: None,
            send_error_p99_us: None,
            daemon_mode: None,
            daemon_transitions: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_runs_first_and_bad_configs_are_refused() {
        let mut cfg = AppConfig::quick();
        cfg.setups = vec![AppSetup::Suspend, AppSetup::Baseline];
        assert_eq!(cfg.run_order(), vec![AppSetup::Baseline, AppSetup::Suspend]);
        assert_eq!(cfg.steps(), 2 * 4);
        let mut cfg = AppConfig::quick();
        cfg.fractions = vec![0.0];
        assert!(cfg.validate().is_err());
        let mut cfg = AppConfig::quick();
        cfg.keys = 0;
        assert!(cfg.validate().is_err());
    }
}
