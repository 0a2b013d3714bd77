//! The daemon's blocking core: every tick, reload and the shutdown restore run here, on a
//! blocking thread of the runtime, one at a time (the async side only schedules them).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use log::{debug, info, warn};
use netmit_common::NapiPollCounters;

use super::{
    config::DaemonConfig,
    iface::{Iface, TickContext, unix_now},
    sample::{SystemReading, parse_busy_poll_rx_packets},
};
use crate::{
    control::Capabilities,
    ebpf::AttachError,
    host::Host,
    metrics::{ErrorKind, Metrics, SharedSnapshot, Snapshot},
    preload::{self, PreloadSummary, PreloadWatch},
    signals::{NapiPollSource, read_softirqs},
    sys::{Presence, napi::NapiParam},
    tune::{Journal, Setting, journal::RestoreReport},
};

/// The namespace's /proc/net/netstat (the daemon's network namespace: /proc/self/net
/// follows the process's main thread, which is in it).
const NETSTAT: &str = "/proc/self/net/netstat";

/// What the shutdown did.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Settings put back (and read back equal to their originals).
    pub restored: usize,
    /// Problems: settings not restored or reading back something else, failed detaches.
    pub problems: Vec<String>,
}

/// The blocking core.
pub(crate) struct Engine {
    host: Arc<dyn Host>,
    run_dir: PathBuf,
    config: DaemonConfig,
    ifaces: Vec<Iface>,
    source: Option<NapiPollSource>,
    metrics: Metrics,
    snapshot: SharedSnapshot,
    capabilities: Capabilities,
    netlink: bool,
    ticks: u64,
    preload: PreloadWatch,
    dry_run: bool,
}

/// Probes what this kernel can do for the modes: per-NAPI netlink (6.13) with its knobs,
/// or the device-wide sysfs files (deferral only).
fn probe(host: &dyn Host) -> (bool, Capabilities) {
    if host.napi_netlink() {
        let support = host.napi_support().unwrap_or_default();
        let has = |p| support.set_max.contains_key(&p);
        (
            true,
            Capabilities {
                deferral: has(NapiParam::DeferHardIrqs) && has(NapiParam::GroFlushTimeout),
                irq_suspension: has(NapiParam::IrqSuspendTimeout),
            },
        )
    } else {
        (
            false,
            Capabilities {
                deferral: true,
                irq_suspension: false,
            },
        )
    }
}

impl Engine {
    /// Sets everything up; `adopted` are interfaces a crashed daemon had attached (they are
    /// detached on exit as if this daemon had attached them).
    pub fn new(
        host: Arc<dyn Host>,
        run_dir: PathBuf,
        config: DaemonConfig,
        metrics: Metrics,
        snapshot: SharedSnapshot,
        adopted: &BTreeSet<String>,
        dry_run: bool,
    ) -> Engine {
        let (netlink, capabilities) = probe(host.as_ref());
        if !netlink {
            warn!(
                "per-NAPI netlink (napi-set, Linux 6.13) is not available: using the device-wide \
                 sysfs files (every NAPI of a device shares one mode; no suspend mode)"
            );
        }
        let source = match NapiPollSource::open() {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(
                    "no NAPI poll counters ({}); deciding on XDP counters, IRQs and softirqs",
                    crate::error::chain(&e)
                );
                metrics.count_error(ErrorKind::Sample);
                None
            }
        };
        // Applications started by `netmit run` in this namespace (their state files).
        let netns = host.netns().ok().map(|n| n.inode);
        let preload = PreloadWatch::new(preload::state_dir(&run_dir), netns);
        let ifaces = config
            .interfaces
            .iter()
            .map(|c| {
                metrics.set_mode(c.name.as_str(), crate::control::Mode::Interrupt);
                Iface::new(c.clone(), capabilities, adopted.contains(c.name.as_str()))
            })
            .collect();
        Engine {
            host,
            run_dir,
            config,
            ifaces,
            source,
            metrics,
            snapshot,
            capabilities,
            netlink,
            ticks: 0,
            preload,
            dry_run,
        }
    }

    /// The sampling interval.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// Interfaces the daemon attached (for the state file).
    pub fn attached_by_daemon(&self) -> Vec<String> {
        self.ifaces
            .iter()
            .filter(|i| i.attached_by_daemon)
            .map(|i| i.name().to_string())
            .collect()
    }

    /// One sampling tick over every interface, then publishes the snapshot.
    pub fn tick(&mut self) {
        let started = Instant::now();
        let softirqs = match read_softirqs() {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("{}", crate::error::chain(&e));
                self.metrics.count_error(ErrorKind::Sample);
                None
            }
        };
        let preloaded = match self.preload.refresh() {
            Ok(s) => s,
            Err(e) => {
                warn!("{}", crate::error::chain(&e));
                self.metrics.count_error(ErrorKind::Sample);
                PreloadSummary::default()
            }
        };
        let system = SystemReading {
            net_rx_softirqs: softirqs.as_ref().map(|s| s.net_rx_total()),
            busy_poll_rx_packets: crate::sys::fs::read_proc(std::path::Path::new(NETSTAT))
                .ok()
                .and_then(|t| parse_busy_poll_rx_packets(&t)),
            preloaded_busy_pollers: preloaded.busy_pollers(),
        };
        let counters: Option<BTreeMap<u32, NapiPollCounters>> = match &self.source {
            Some(source) => match source.snapshot() {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!("reading NAPI poll counters: {}", crate::error::chain(&e));
                    self.metrics.count_error(ErrorKind::Sample);
                    None
                }
            },
            None => None,
        };
        let ctx = TickContext {
            host: self.host.as_ref(),
            run_dir: &self.run_dir,
            now: Instant::now(),
            system: &system,
            napi_counters: counters.as_ref(),
            netlink: self.netlink,
            metrics: &self.metrics,
            dry_run: self.dry_run,
        };
        for iface in &mut self.ifaces {
            iface.tick(&ctx);
        }
        self.ticks += 1;
        let snapshot = Snapshot {
            ticks: self.ticks,
            taken_at_unix: unix_now(),
            taken_at: Some(Instant::now()),
            interval_secs: self.config.interval.as_secs_f64(),
            interfaces: self
                .ifaces
                .iter()
                .map(|i| {
                    let mut s = i.snapshot(counters.as_ref());
                    s.sysfs_fallback = !self.netlink;
                    s
                })
                .collect(),
            softirqs,
            napi_poll_source: self.source.is_some(),
            dry_run: self.dry_run,
            preload: preloaded,
        };
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
        self.metrics.observe_tick(started.elapsed());
    }

    /// Takes a validated new configuration: interfaces that left are restored (and
    /// detached if the daemon attached them), new ones start in Interrupt, kept ones keep
    /// their mode.
    pub fn reload(&mut self, config: DaemonConfig) {
        let mut old: BTreeMap<String, Iface> = self
            .ifaces
            .drain(..)
            .map(|i| (i.name().to_string(), i))
            .collect();
        let mut ifaces = Vec::new();
        for cfg in &config.interfaces {
            match old.remove(cfg.name.as_str()) {
                Some(mut iface) => {
                    iface.reconfigure(cfg.clone());
                    ifaces.push(iface);
                }
                None => {
                    info!("{}: now managed", cfg.name);
                    self.metrics
                        .set_mode(cfg.name.as_str(), crate::control::Mode::Interrupt);
                    ifaces.push(Iface::new(cfg.clone(), self.capabilities, false));
                }
            }
        }
        for (name, iface) in old {
            info!("{name}: no longer managed; restoring its settings");
            let mut report = ShutdownReport::default();
            self.release(&iface, &mut report);
            for p in &report.problems {
                warn!("{p}");
            }
            self.metrics.forget_device(&name);
        }
        if config.interval != self.config.interval {
            info!(
                "interval {:?} -> {:?}",
                self.config.interval, config.interval
            );
        }
        self.ifaces = ifaces;
        self.config = config;
    }

    /// Restores an interface's settings and detaches what the daemon attached.
    fn release(&self, iface: &Iface, report: &mut ShutdownReport) {
        if self.dry_run {
            info!("{}: dry run: nothing to restore", iface.name());
            return;
        }
        let name = iface.name();
        // The device of the last tick; without one (it never appeared, or is gone) the
        // configured name's device now, if any, else only the restore of what the journal
        // holds for devices of this namespace that still exist.
        let dev = iface
            .dev()
            .cloned()
            .or_else(|| self.host.resolve(&iface.cfg.name).ok());
        let Some(dev) = dev else {
            return;
        };
        match Journal::open_at(&self.run_dir) {
            Ok(mut journal) => match journal.restore(self.host.as_ref(), Some(&dev)) {
                Ok(r) => self.check_restore(r, report),
                Err(e) => {
                    self.metrics.count_error(ErrorKind::Restore);
                    report
                        .problems
                        .push(format!("{name}: restoring: {}", crate::error::chain(&e)));
                }
            },
            Err(e) => {
                self.metrics.count_error(ErrorKind::Restore);
                report.problems.push(format!(
                    "{name}: opening the restore journal: {}",
                    crate::error::chain(&e)
                ));
            }
        }
        if iface.attached_by_daemon && !iface.cfg.keep_attached_on_exit {
            match self.host.detach(&dev) {
                Ok(Some(prog)) => info!("{name}: detached netmit's XDP program {prog}"),
                Ok(None) => info!("{name}: detached netmit's XDP program"),
                Err(AttachError::NotAttached { .. } | AttachError::Netdev(_)) => {}
                Err(e) => {
                    self.metrics.count_error(ErrorKind::Attach);
                    report
                        .problems
                        .push(format!("{name}: detaching: {}", crate::error::chain(&e)));
                }
            }
        }
    }

    /// Checks that what a restore wrote reads back as the original.
    fn check_restore(&self, r: RestoreReport, report: &mut ShutdownReport) {
        for (setting, value) in &r.restored {
            match setting.read(self.host.as_ref()) {
                Ok(now) if now == *value => {
                    debug!("restored {setting} = {value}");
                    report.restored += 1;
                }
                Ok(now) => {
                    self.metrics.count_error(ErrorKind::Restore);
                    report.problems.push(format!(
                        "{setting}: restored {value} but the kernel reports {now}"
                    ));
                }
                // Gone with its NAPI or interface: nothing left to restore.
                Err(e) => debug!("restored {setting} = {value}; reading it back: {e}"),
            }
        }
        for (setting, value, why) in &r.failed {
            self.metrics.count_error(ErrorKind::Restore);
            if object_gone(self.host.as_ref(), setting) {
                // Nothing left to restore; the journal keeps the entry (it cannot forget).
                warn!("not restoring {setting} = {value}: it no longer exists ({why})");
                continue;
            }
            report
                .problems
                .push(format!("could not restore {setting} = {value}: {why}"));
        }
    }

    /// Stops: every setting of the managed interfaces back to its original (checked by
    /// reading it back), XDP detached where the daemon attached it.
    pub fn shutdown(self) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        for iface in &self.ifaces {
            self.release(iface, &mut report);
        }
        report
    }
}

/// Whether the NAPI or interface a setting belongs to no longer exists.
fn object_gone(host: &dyn Host, setting: &Setting) -> bool {
    match setting {
        Setting::Napi { napi_id, .. } => matches!(
            host.napi_get(*napi_id),
            Err(crate::sys::napi::NapiError::NoSuchNapi { .. })
        ),
        Setting::Device { dev, .. } | Setting::Coalesce { dev, .. } => {
            matches!(host.recheck(dev), Ok(Presence::Gone))
        }
        Setting::Sysctl { .. } => false,
    }
}

/// The start-up restore: everything a crashed run (or an interrupted `netmit tune`) left
/// in the journal goes back before the daemon changes anything.
pub(crate) fn startup_restore(
    host: &dyn Host,
    run_dir: &std::path::Path,
    metrics: &Metrics,
) -> Result<usize, crate::tune::JournalError> {
    let mut journal = Journal::open_at(run_dir)?;
    if journal.entries().is_empty() {
        return Ok(0);
    }
    let report = journal.restore(host, None)?;
    for (setting, value) in &report.restored {
        info!("start-up restore: {setting} = {value} (left by an earlier run)");
    }
    for (setting, value, why) in &report.failed {
        metrics.count_error(ErrorKind::Restore);
        warn!(
            "start-up restore: could not restore {setting} = {value}: {why} (kept in the journal)"
        );
    }
    Ok(report.restored.len())
}
