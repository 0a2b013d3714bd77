//! One managed interface: resolving it, keeping XDP attached, reading its counters,
//! asking the controller and putting the mode's settings on every NAPI it has.
//!
//! The configuration names an interface; the daemon manages the device that carries that
//! name in its network namespace, held as a [`Netdev`]. Every tick it rechecks that
//! device, because devices disappear and come back (a driver reload, a veth re-created by
//! a container runtime) and are renamed: a device that is gone is forgotten and the name
//! resolved again (a new ifindex means a new instance, whose XDP attachment is redone, if
//! configured, and whose NAPIs are new); a device renamed away gets its settings back and
//! the XDP the daemon attached removed, since it is no longer the configured interface. The
//! NAPIs are re-listed every tick too: a NAPI id changes when the kernel re-creates the
//! NAPI, and every NAPI must carry the settings of the current mode. The rule is
//! convergence rather than events: [`Iface::converge`] applies the current mode to each
//! NAPI that does not carry it yet, whatever made it new.
//!
//! Every change goes through the restore [`Journal`], opened (and so locked) only for the
//! duration of a change, so that `netmit tune` and the daemon can be used side by side.

mod apply;
#[cfg(test)]
mod tests;
mod view;

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use log::{debug, info, warn};
use netmit_common::NapiPollCounters;

use super::{
    config::InterfaceConfig,
    sample::{IfaceReading, SystemReading, build_sample, comparable},
};
use crate::{
    control::{Capabilities, Controller, Decision, Mode, Sample},
    ebpf::{AttachError, AttachOptions, Forwarder, LogLevel, tables::QueueCounters},
    host::{Host, XdpStatus},
    metrics::{ErrorKind, Metrics, snapshot::TransitionView},
    sys::{
        Netdev, Presence,
        napi::{NapiInfo, NapiParam},
    },
    tune::Setting,
};

/// What a tick of every interface shares.
pub(crate) struct TickContext<'a> {
    /// The machine.
    pub host: &'a dyn Host,
    /// The journal's directory.
    pub run_dir: &'a Path,
    /// When the tick's readings were taken.
    pub now: Instant,
    /// Machine- and namespace-wide counters.
    pub system: &'a SystemReading,
    /// The napi_poll counters of every NAPI (None: no tracepoint source).
    pub napi_counters: Option<&'a BTreeMap<u32, NapiPollCounters>>,
    /// Per-NAPI settings over netdev netlink work here.
    pub netlink: bool,
    /// Metrics.
    pub metrics: &'a Metrics,
    /// `--dry-run`: sample and decide, change nothing (no attach, no setting, no restore).
    pub dry_run: bool,
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One managed interface.
pub(crate) struct Iface {
    pub cfg: InterfaceConfig,
    controller: Controller,
    capabilities: Capabilities,
    /// The device carrying the configured name, while there is one.
    dev: Option<Netdev>,
    /// The daemon attached XDP here (and detaches it on exit).
    pub attached_by_daemon: bool,
    attached: bool,
    /// The mode whose settings each NAPI carries, by NAPI id.
    applied: BTreeMap<u32, Mode>,
    /// Every NAPI seen on this interface, with its RX queues (to recognise a re-created
    /// NAPI as the successor of a vanished one).
    seen: BTreeMap<u32, Vec<u32>>,
    /// The mode whose device-wide settings are in place (sysfs fallback).
    device_applied: Option<Mode>,
    /// The mode whose NIC coalescing is in place.
    coalesce_applied: Option<Mode>,
    prev: Option<(Instant, IfaceReading, SystemReading)>,
    last_sample: Option<Sample>,
    last_transition: Option<TransitionView>,
    mode_since: Option<f64>,
    transitions: u64,
    napis: Vec<NapiInfo>,
    queues: Vec<QueueCounters>,
    irqs: Option<u64>,
    last_error: Option<String>,
    /// Last logged attach problem (logged when it changes, counted every time).
    attach_problem: Option<String>,
    /// The program netmit's pins say drives the device, while they do.
    prog_id: Option<u32>,
    /// Its log, forwarded into the daemon's (when the configuration asks for it).
    log: Option<Forwarder>,
    missing_logged: bool,
    /// What netmit last wrote to each NAPI knob: a different value on the next sample is
    /// someone else's change.
    written: BTreeMap<(u32, NapiParam), u64>,
    /// Override series to remove on the next tick (after a reload).
    metrics_forget: Vec<(u32, NapiParam)>,
    /// Knobs someone else changed (napi id, knob) -> (netmit's value, theirs): no longer
    /// managed until a reload.
    overrides: BTreeMap<(u32, NapiParam), (u64, u64)>,
}

impl Iface {
    pub fn new(cfg: InterfaceConfig, capabilities: Capabilities, adopted: bool) -> Iface {
        let controller = Controller::new(cfg.policy.clone(), capabilities);
        Iface {
            cfg,
            controller,
            capabilities,
            dev: None,
            attached_by_daemon: adopted,
            attached: false,
            applied: BTreeMap::new(),
            seen: BTreeMap::new(),
            device_applied: None,
            coalesce_applied: None,
            prev: None,
            last_sample: None,
            last_transition: None,
            mode_since: None,
            transitions: 0,
            napis: Vec::new(),
            queues: Vec::new(),
            irqs: None,
            last_error: None,
            attach_problem: None,
            prog_id: None,
            log: None,
            missing_logged: false,
            written: BTreeMap::new(),
            metrics_forget: Vec::new(),
            overrides: BTreeMap::new(),
        }
    }

    pub fn name(&self) -> &str {
        self.cfg.name.as_str()
    }

    /// The device currently managed, if it exists.
    pub fn dev(&self) -> Option<&Netdev> {
        self.dev.as_ref()
    }

    /// Takes a new configuration of the same interface (reload). The mode is kept
    /// (clamped to a lower ceiling); the controller's streaks and dwell start again.
    pub fn reconfigure(&mut self, cfg: InterfaceConfig) {
        if cfg.policy != self.cfg.policy {
            let mode = self.controller.mode();
            self.controller = Controller::new(cfg.policy.clone(), self.capabilities);
            self.controller.set_mode(mode);
            if self.controller.mode() != mode {
                info!(
                    "{}: the new max_mode lowers the mode from {mode} to {}",
                    cfg.name,
                    self.controller.mode()
                );
            }
        }
        // A reload is how an operator hands overridden knobs back to netmit.
        for ((id, param), (ours, theirs)) in std::mem::take(&mut self.overrides) {
            info!(
                "{}: napi {id} {param}: managed again after the reload (it is {theirs}, netmit \
                 had set {ours}; its current value becomes the original)",
                cfg.name
            );
            self.metrics_forget.push((id, param));
            self.applied.remove(&id);
            self.written.retain(|(of, _), _| *of != id);
        }
        if cfg.rules != self.cfg.rules && self.attached {
            info!(
                "{}: steering rules changed; they are installed when the daemon attaches, \
                 so change live rules with `netmit steer` (or detach to have them re-installed)",
                cfg.name
            );
        }
        self.cfg = cfg;
    }

    pub(super) fn fail(&mut self, ctx: &TickContext, kind: ErrorKind, message: String) {
        warn!("{}: {message}", self.cfg.name);
        ctx.metrics.count_error(kind);
        self.last_error = Some(message);
    }

    /// One tick: resolve, attach, read, decide, converge.
    pub fn tick(&mut self, ctx: &TickContext) {
        self.last_error = None;
        let Some(dev) = self.follow(ctx) else {
            return;
        };
        self.ensure_attached(ctx, &dev);
        self.forward_log(ctx);

        self.napis = if ctx.netlink {
            match ctx.host.napi_list(&dev) {
                Ok(list) => list,
                Err(e) => {
                    self.fail(
                        ctx,
                        ErrorKind::Sample,
                        format!("listing NAPIs: {}", crate::error::chain(&e)),
                    );
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        self.applied
            .retain(|id, _| self.napis.iter().any(|n| n.id == *id));
        self.detect_overrides(ctx, &dev);
        if self.napis.iter().any(|n| !self.seen.contains_key(&n.id)) {
            self.carry_over_originals(ctx);
        }

        let reading = self.read(ctx, &dev);
        let mut changed = false;
        if let Some((t0, r0, s0)) = &self.prev
            && comparable(r0, &reading)
        {
            let elapsed = ctx.now.saturating_duration_since(*t0);
            let sample = build_sample((r0, s0), (&reading, ctx.system), elapsed);
            let decision = self.controller.decide(&sample);
            self.last_sample = Some(sample);
            if let Some(judged) = self.controller.take_judgement() {
                info!("{}: {judged}", self.cfg.name);
            }
            if let Decision::Switch {
                from,
                to,
                rule,
                reason,
            } = decision
            {
                self.switch(ctx, from, to, rule, reason);
                changed = true;
            }
        }
        self.prev = Some((ctx.now, reading, ctx.system.clone()));

        changed |= self.converge(ctx);
        if changed && ctx.netlink {
            // Publish the values as the kernel now has them.
            if let Ok(list) = ctx.host.napi_list(&dev) {
                self.napis = list;
            }
        }
    }

    /// Compares every knob netmit wrote with what the kernel reports now; a knob changed
    /// by someone else is theirs: logged once, exported, its journal entry dropped (so no
    /// restore writes the original over it) and left alone until a reload.
    fn detect_overrides(&mut self, ctx: &TickContext, dev: &Netdev) {
        let name = self.cfg.name.clone();
        for (id, param) in std::mem::take(&mut self.metrics_forget) {
            ctx.metrics
                .set_override(name.as_str(), id, param.name(), false);
        }
        self.written
            .retain(|(id, _), _| self.napis.iter().any(|n| n.id == *id));
        let mut changed = Vec::new();
        for n in &self.napis {
            for (&(id, param), &ours) in self.written.iter().filter(|((id, _), _)| *id == n.id) {
                if let Some(theirs) = n.value(param).filter(|v| *v != ours) {
                    changed.push((id, param, ours, theirs));
                }
            }
        }
        if changed.is_empty() {
            return;
        }
        let mut journal = self.open_journal(ctx);
        for (id, param, ours, theirs) in changed {
            warn!(
                "{name}: napi {id} {param} is {theirs}, but netmit set {ours}: someone else \
                 changed it; netmit no longer manages it here and will not restore it (SIGHUP \
                 to hand it back)"
            );
            self.written.remove(&(id, param));
            self.overrides.insert((id, param), (ours, theirs));
            ctx.metrics
                .set_override(name.as_str(), id, param.name(), true);
            let setting = Setting::Napi {
                dev: dev.clone(),
                napi_id: id,
                param,
            };
            if let Some(j) = journal.as_mut()
                && let Err(e) = j.forget(&setting)
            {
                self.fail(
                    ctx,
                    ErrorKind::Restore,
                    format!("forgetting {setting}: {}", crate::error::chain(&e)),
                );
            }
        }
    }

    /// Finds the device that carries the configured name now: the one of the last tick if
    /// it is still there under that name, else whatever the name resolves to.
    fn follow(&mut self, ctx: &TickContext) -> Option<Netdev> {
        let name = self.cfg.name.clone();
        if let Some(dev) = self.dev.clone() {
            match ctx.host.recheck(&dev) {
                Ok(Presence::Same) => return Some(dev),
                Ok(Presence::Renamed(to)) => {
                    info!(
                        "{name}: the device (ifindex {}) was renamed to {to}; it is no longer \
                         managed: putting its settings back",
                        dev.ifindex
                    );
                    self.release_device(ctx, &dev);
                    self.forget_instance();
                    self.dev = None;
                }
                Ok(Presence::Gone) | Err(_) => {
                    self.forget_instance();
                    self.dev = None;
                }
            }
        }
        match ctx.host.resolve(&name) {
            Ok(dev) => {
                if self.missing_logged {
                    info!(
                        "{name}: interface (re)appeared with ifindex {}",
                        dev.ifindex
                    );
                }
                self.missing_logged = false;
                self.dev = Some(dev.clone());
                Some(dev)
            }
            Err(e) => {
                if !self.missing_logged {
                    warn!("{name}: {e}; waiting for it");
                    self.missing_logged = true;
                }
                None
            }
        }
    }

    /// Hands a device the daemon no longer manages back: its journaled settings restored,
    /// the XDP the daemon attached detached.
    fn release_device(&mut self, ctx: &TickContext, dev: &Netdev) {
        if ctx.dry_run {
            return;
        }
        if let Some(mut journal) = self.open_journal(ctx) {
            match journal.restore(ctx.host, Some(dev)) {
                Ok(r) => {
                    for (s, v) in &r.restored {
                        info!("{}: restored {s} = {v}", self.cfg.name);
                    }
                    for (s, v, why) in &r.failed {
                        self.fail(
                            ctx,
                            ErrorKind::Restore,
                            format!("could not restore {s} = {v}: {why}"),
                        );
                    }
                }
                Err(e) => self.fail(
                    ctx,
                    ErrorKind::Restore,
                    format!("restoring: {}", crate::error::chain(&e)),
                ),
            }
        }
        if self.attached_by_daemon && !self.cfg.keep_attached_on_exit {
            match ctx.host.detach(dev) {
                Ok(_) | Err(AttachError::NotAttached { .. }) => {}
                Err(e) => self.fail(
                    ctx,
                    ErrorKind::Attach,
                    format!("detaching from {dev}: {}", crate::error::chain(&e)),
                ),
            }
            self.attached_by_daemon = false;
        }
    }

    /// The instance is gone or new: nothing of the old one applies.
    fn forget_instance(&mut self) {
        self.applied.clear();
        self.device_applied = None;
        self.coalesce_applied = None;
        self.prev = None;
        self.napis.clear();
        self.queues.clear();
        self.irqs = None;
        self.attached = false;
        self.prog_id = None;
        self.log = None;
    }

    /// Keeps netmit's XDP program attached as configured. The pins are the source of
    /// truth: live pins mean attached (by the CLI or by an earlier daemon), whoever did it.
    /// Pins whose link no longer drives the interface (it was re-created) are stale: they
    /// are removed and the program attached again.
    fn ensure_attached(&mut self, ctx: &TickContext, dev: &Netdev) {
        let status = match ctx.host.xdp_status(dev) {
            Ok(s) => s,
            Err(e) => {
                self.attached = false;
                self.attach_failed(
                    ctx,
                    format!("reading the XDP state: {}", crate::error::chain(&e)),
                );
                return;
            }
        };
        self.prog_id = match status {
            XdpStatus::Ours { prog_id, .. } => Some(prog_id),
            _ => None,
        };
        if ctx.dry_run {
            if self.cfg.attach.request().is_some() && self.prog_id.is_none() {
                self.attach_failed(
                    ctx,
                    "dry run: would attach netmit's XDP program (not attached: deciding on \
                     NAPI poll counters)"
                        .into(),
                );
            }
            self.attached = self.prog_id.is_some();
            return;
        }
        let Some(mode) = self.cfg.attach.request() else {
            self.attached = self.prog_id.is_some();
            return;
        };
        let name = self.cfg.name.clone();
        match status {
            XdpStatus::Ours { prog_id, .. } => {
                self.attached = true;
                self.prog_id = Some(prog_id);
                self.attach_problem = None;
                return;
            }
            XdpStatus::Mismatch { pinned, running } => {
                self.attached = false;
                self.attach_failed(
                    ctx,
                    format!(
                        "netmit's pins say program {pinned} but the interface runs program \
                         {running}; leaving it alone"
                    ),
                );
                return;
            }
            XdpStatus::Foreign { prog_id } => {
                self.attached = false;
                self.attach_failed(
                    ctx,
                    format!(
                        "the interface runs an XDP program netmit did not attach (id {prog_id}); \
                         leaving it alone"
                    ),
                );
                return;
            }
            XdpStatus::Stale => {
                info!(
                    "{name}: netmit's pins are stale (the interface was re-created); attaching again"
                );
                if let Err(e) = ctx.host.detach(dev) {
                    debug!("{name}: removing stale pins: {e}");
                }
            }
            XdpStatus::None => {}
        }
        let opts = AttachOptions {
            mode,
            rules: self.cfg.rules.clone(),
            force: false,
            log: self.cfg.log,
        };
        match ctx.host.attach(dev, &opts) {
            Ok(a) => {
                info!(
                    "{name}: attached netmit's XDP program {} in {} mode with {} rule(s)",
                    a.prog_id,
                    a.mode.name(),
                    a.rule_ids.len()
                );
                self.attached = true;
                self.attached_by_daemon = true;
                self.attach_problem = None;
                self.prog_id = Some(a.prog_id);
            }
            Err(e) => {
                self.attached = false;
                self.attach_failed(ctx, format!("attaching XDP: {}", crate::error::chain(&e)));
            }
        }
    }

    /// Forwards the program's log records into the daemon's log, when configured.
    fn forward_log(&mut self, ctx: &TickContext) {
        if self.cfg.log == LogLevel::Off || self.prog_id.is_none() {
            self.log = None;
            return;
        }
        let id = self.prog_id.expect("checked");
        if self.log.as_ref().is_none_or(|f| f.prog_id() != id) {
            self.log = match ctx.host.open_log(id) {
                Ok(f) => Some(f),
                Err(e) => {
                    debug!("{}: {}", self.cfg.name, crate::error::chain(&e));
                    None
                }
            };
        }
        if let Some(f) = &mut self.log {
            f.flush();
        }
    }

    fn attach_failed(&mut self, ctx: &TickContext, message: String) {
        ctx.metrics.count_error(ErrorKind::Attach);
        if self.attach_problem.as_deref() != Some(&message) {
            warn!("{}: {message}", self.cfg.name);
            self.attach_problem = Some(message.clone());
        }
        self.last_error = Some(message);
    }

    fn read(&mut self, ctx: &TickContext, dev: &Netdev) -> IfaceReading {
        let mut xdp_packets = None;
        self.queues.clear();
        if self.attached {
            match ctx.host.queue_counters(dev) {
                Ok(queues) => {
                    xdp_packets = Some(
                        queues
                            .iter()
                            .flat_map(|q| q.stats.verdicts.iter())
                            .map(|c| c.packets)
                            .sum(),
                    );
                    self.queues = queues;
                }
                Err(e) => self.fail(
                    ctx,
                    ErrorKind::Sample,
                    format!("reading XDP counters: {}", crate::error::chain(&e)),
                ),
            }
        }
        let ifindex = dev.ifindex;
        let napi = ctx.napi_counters.map(|all| {
            if ctx.netlink {
                self.napis
                    .iter()
                    .filter_map(|n| all.get(&n.id).map(|c| (n.id, *c)))
                    .collect()
            } else {
                // Without napi-get, attribute by ifindex (unique only within a namespace).
                all.iter()
                    .filter(|(id, c)| **id != 0 && c.ifindex == ifindex)
                    .map(|(id, c)| (*id, *c))
                    .collect()
            }
        });
        self.irqs = match ctx.host.interrupts(dev) {
            Ok(lines) if lines.is_empty() => None,
            Ok(lines) => Some(lines.iter().map(|l| l.total()).sum()),
            Err(e) => {
                self.fail(
                    ctx,
                    ErrorKind::Sample,
                    format!("reading /proc/interrupts: {e}"),
                );
                None
            }
        };
        let tx_packets = match ctx.host.link_counters(dev) {
            Ok(c) => Some(c.tx_packets),
            Err(e) => {
                debug!("{}: no link counters: {e}", self.cfg.name);
                None
            }
        };
        IfaceReading {
            ifindex,
            xdp_packets,
            napi,
            irqs: self.irqs,
            tx_packets,
        }
    }
}
