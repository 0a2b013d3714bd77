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

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use log::{debug, info, warn};
use netmit_common::{NapiPollCounters, Verdict};

use super::{
    config::{AttachSetting, InterfaceConfig},
    sample::{IfaceReading, SystemReading, build_sample, comparable},
};
use crate::{
    control::{Capabilities, Controller, Decision, Mode, ModeSettings, ModeTarget, Sample},
    ebpf::{AttachError, AttachOptions, tables::QueueCounters},
    host::{Host, XdpStatus},
    metrics::{
        ErrorKind, Metrics,
        snapshot::{
            IfaceSnapshot, NapiView, QueueView, SampleView, TransitionView, VerdictCount, XdpView,
        },
    },
    sys::{Netdev, Presence, coalesce::CoalesceParam, napi::NapiInfo},
    tune::{
        Journal, Setting,
        plan::{Plan, TuneRequest},
    },
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
    missing_logged: bool,
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
            missing_logged: false,
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
        if cfg.rules != self.cfg.rules && self.attached {
            info!(
                "{}: steering rules changed; they are installed when the daemon attaches, \
                 so change live rules with `netmit steer` (or detach to have them re-installed)",
                cfg.name
            );
        }
        self.cfg = cfg;
    }

    fn fail(&mut self, ctx: &TickContext, kind: ErrorKind, message: String) {
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
            if let Decision::Switch { from, to, reason } = decision {
                self.switch(ctx, from, to, reason);
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
        let Some(mode) = self.cfg.attach.request() else {
            self.attached = matches!(status, XdpStatus::Ours { .. });
            return;
        };
        let name = self.cfg.name.clone();
        match status {
            XdpStatus::Ours { .. } => {
                self.attached = true;
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
            }
            Err(e) => {
                self.attached = false;
                self.attach_failed(ctx, format!("attaching XDP: {}", crate::error::chain(&e)));
            }
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
        IfaceReading {
            ifindex,
            xdp_packets,
            napi,
            irqs: self.irqs,
        }
    }

    fn switch(&mut self, ctx: &TickContext, from: Mode, to: Mode, reason: String) {
        let name = self.cfg.name.clone();
        let ok = self.apply_everywhere(ctx, to);
        if ok {
            info!("{name}: {from} -> {to}: {reason}");
            ctx.metrics.record_transition(name.as_str(), from, to);
            self.transitions += 1;
            self.mode_since = Some(unix_now());
        } else {
            warn!("{name}: could not switch {from} -> {to} ({reason}); staying in {from}");
            self.controller.set_mode(from);
        }
        self.last_transition = Some(TransitionView {
            from,
            to,
            reason,
            at_unix: unix_now(),
            applied: ok,
        });
    }

    /// Applies `mode` to every NAPI (and the device, coalescing); true when all of it
    /// went in.
    fn apply_everywhere(&mut self, ctx: &TickContext, mode: Mode) -> bool {
        if ctx.netlink {
            let ids: Vec<u32> = self.napis.iter().map(|n| n.id).collect();
            let mut ok = true;
            for id in ids {
                ok &= self.apply_napi(ctx, id, mode);
            }
            ok & self.apply_coalesce(ctx, mode)
        } else {
            self.apply_device(ctx, mode) & self.apply_coalesce(ctx, mode)
        }
    }

    /// A NAPI appeared. If it replaces one that vanished (the kernel re-created it: the
    /// only NAPI before and after, or the same RX queues), the kernel carried the old
    /// instance's values over, so the values it has now are not originals: the journal's
    /// originals of the vanished id are recorded for the new id before anything is applied,
    /// and the restore puts the true originals back.
    ///
    /// The vanished id's entries are then forgotten: nothing is left to restore there.
    fn carry_over_originals(&mut self, ctx: &TickContext) {
        let name = self.cfg.name.clone();
        let Some(dev) = self.dev.clone() else {
            return;
        };
        let current: BTreeMap<u32, Vec<u32>> = self
            .napis
            .iter()
            .map(|n| (n.id, n.rx_queues.clone()))
            .collect();
        let new: Vec<u32> = current
            .keys()
            .copied()
            .filter(|id| !self.seen.contains_key(id))
            .collect();
        let Ok(entries) = Journal::peek_at(ctx.run_dir) else {
            return;
        };
        let mut vanished: BTreeMap<u32, Vec<(Setting, u64)>> = BTreeMap::new();
        for e in entries {
            if let Setting::Napi {
                dev: of, napi_id, ..
            } = &e.setting
                && *of == dev
                && !current.contains_key(napi_id)
            {
                vanished
                    .entry(*napi_id)
                    .or_default()
                    .push((e.setting.clone(), e.original));
            }
        }
        let mut pairs = Vec::new();
        if vanished.len() == 1 && current.len() == 1 && new.len() == 1 {
            pairs.push((*vanished.keys().next().expect("one"), new[0]));
        } else {
            for &id in &new {
                let queues = &current[&id];
                if queues.is_empty() {
                    continue;
                }
                if let Some(old) = vanished
                    .keys()
                    .find(|old| self.seen.get(old) == Some(queues))
                {
                    pairs.push((*old, id));
                }
            }
        }
        for (id, queues) in current {
            self.seen.insert(id, queues);
        }
        if pairs.is_empty() {
            return;
        }
        let Some(mut journal) = self.open_journal(ctx) else {
            return;
        };
        for (old, new) in pairs {
            info!(
                "{name}: napi {new} replaces the vanished napi {old}; carrying its originals over"
            );
            for (setting, original) in &vanished[&old] {
                let Setting::Napi { param, .. } = setting else {
                    continue;
                };
                let successor = Setting::Napi {
                    dev: dev.clone(),
                    napi_id: new,
                    param: *param,
                };
                let moved = journal
                    .record(&successor, *original)
                    .and_then(|_| journal.forget(setting));
                if let Err(e) = moved {
                    self.fail(
                        ctx,
                        ErrorKind::Apply,
                        format!(
                            "recording {successor} = {original}: {}",
                            crate::error::chain(&e)
                        ),
                    );
                }
            }
        }
    }

    /// Puts the current mode on every NAPI that does not carry it; true if anything was
    /// changed.
    fn converge(&mut self, ctx: &TickContext) -> bool {
        let mode = self.controller.mode();
        let mut changed = false;
        if ctx.netlink {
            let pending: Vec<u32> = self
                .napis
                .iter()
                .map(|n| n.id)
                .filter(|id| self.applied.get(id) != Some(&mode))
                .collect();
            for id in pending {
                debug!("{}: napi {id} gets the settings of {mode}", self.cfg.name);
                self.apply_napi(ctx, id, mode);
                changed = true;
            }
        } else if self.device_applied != Some(mode) {
            self.apply_device(ctx, mode);
            changed = true;
        }
        if self.coalesce_applied != Some(mode) {
            self.apply_coalesce(ctx, mode);
        }
        changed
    }

    fn open_journal(&mut self, ctx: &TickContext) -> Option<Journal> {
        match Journal::open_at(ctx.run_dir) {
            Ok(j) => Some(j),
            Err(e) => {
                self.fail(
                    ctx,
                    ErrorKind::Apply,
                    format!("opening the restore journal: {}", crate::error::chain(&e)),
                );
                None
            }
        }
    }

    fn apply_napi(&mut self, ctx: &TickContext, napi_id: u32, mode: Mode) -> bool {
        let Some(dev) = self.dev.clone() else {
            return false;
        };
        let policy = self.controller.policy().clone();
        let Some(mut journal) = self.open_journal(ctx) else {
            return false;
        };
        let mut ok = true;
        match policy.target(mode) {
            ModeTarget::Settings(s) => {
                let info = self.napis.iter().find(|n| n.id == napi_id).cloned();
                for (param, value) in s.napi_values() {
                    // A knob this kernel does not report stays off; only a mode that needs
                    // it fails (the capabilities keep the controller out of such modes).
                    if info.as_ref().is_some_and(|i| i.value(param).is_none()) && value == 0 {
                        continue;
                    }
                    let setting = Setting::Napi {
                        dev: dev.clone(),
                        napi_id,
                        param,
                    };
                    if let Err(e) = journal.apply(ctx.host, &setting, value) {
                        ok = false;
                        self.fail(
                            ctx,
                            ErrorKind::Apply,
                            format!("setting {setting} = {value}: {}", crate::error::chain(&e)),
                        );
                    }
                }
            }
            ModeTarget::Originals => {
                let entries: Vec<(Setting, u64)> = journal
                    .entries()
                    .iter()
                    .filter(|e| {
                        matches!(&e.setting, Setting::Napi { dev: of, napi_id: id, .. }
                            if *of == dev && *id == napi_id)
                    })
                    .map(|e| (e.setting.clone(), e.original))
                    .collect();
                for (setting, original) in entries {
                    if let Err(e) = journal.apply(ctx.host, &setting, original) {
                        ok = false;
                        self.fail(
                            ctx,
                            ErrorKind::Apply,
                            format!(
                                "putting back {setting} = {original}: {}",
                                crate::error::chain(&e)
                            ),
                        );
                    }
                }
            }
        }
        if ok {
            self.applied.insert(napi_id, mode);
        }
        ok
    }

    /// The sysfs fallback: device-wide values for every NAPI of the device, planned by
    /// `tune::plan` (which also refuses what has no fallback, e.g. irq-suspend-timeout).
    fn apply_device(&mut self, ctx: &TickContext, mode: Mode) -> bool {
        let Some(dev) = self.dev.clone() else {
            return false;
        };
        let policy = self.controller.policy().clone();
        let Some(mut journal) = self.open_journal(ctx) else {
            return false;
        };
        let mut ok = true;
        let settings: Vec<(Setting, u64)> = match policy.target(mode) {
            ModeTarget::Settings(s) => {
                let req = TuneRequest {
                    napi_values: s.napi_values().to_vec(),
                    ..Default::default()
                };
                match Plan::for_device(ctx.host, &dev, &req) {
                    Ok(p) => p.steps,
                    Err(e) => {
                        self.fail(
                            ctx,
                            ErrorKind::Apply,
                            format!("planning {mode}: {}", crate::error::chain(&e)),
                        );
                        return false;
                    }
                }
            }
            ModeTarget::Originals => journal
                .entries()
                .iter()
                .filter(|e| matches!(&e.setting, Setting::Device { dev: of, .. } if *of == dev))
                .map(|e| (e.setting.clone(), e.original))
                .collect(),
        };
        for (setting, value) in settings {
            if let Err(e) = journal.apply(ctx.host, &setting, value) {
                ok = false;
                self.fail(
                    ctx,
                    ErrorKind::Apply,
                    format!("setting {setting} = {value}: {}", crate::error::chain(&e)),
                );
            }
        }
        if ok {
            self.device_applied = Some(mode);
        }
        ok
    }

    /// NIC coalescing of `mode` where the driver has it; parameters the mode does not
    /// name go back to their originals. Devices without coalescing (veth) have nothing to do.
    fn apply_coalesce(&mut self, ctx: &TickContext, mode: Mode) -> bool {
        let Some(dev) = self.dev.clone() else {
            return false;
        };
        let name = self.cfg.name.clone();
        let policy = self.controller.policy().clone();
        let named: BTreeMap<CoalesceParam, u32> = match policy.target(mode) {
            ModeTarget::Settings(ModeSettings { coalesce, .. }) => coalesce.clone(),
            ModeTarget::Originals => BTreeMap::new(),
        };
        let supported = match ctx.host.coalesce_get(&dev) {
            Ok(s) => s,
            Err(e) => {
                debug!("{name}: no NIC coalescing ({e})");
                self.coalesce_applied = Some(mode);
                return true;
            }
        };
        let Some(mut journal) = self.open_journal(ctx) else {
            return false;
        };
        let mut todo: Vec<(Setting, u64)> = named
            .iter()
            .filter(|(p, _)| supported.contains_key(p))
            .map(|(&param, &v)| {
                (
                    Setting::Coalesce {
                        dev: dev.clone(),
                        param,
                    },
                    u64::from(v),
                )
            })
            .collect();
        for e in journal.entries() {
            if let Setting::Coalesce { dev: of, param } = &e.setting
                && *of == dev
                && !named.contains_key(param)
            {
                todo.push((e.setting.clone(), e.original));
            }
        }
        let mut ok = true;
        for (setting, value) in todo {
            if let Err(e) = journal.apply(ctx.host, &setting, value) {
                ok = false;
                self.fail(
                    ctx,
                    ErrorKind::Apply,
                    format!("setting {setting} = {value}: {}", crate::error::chain(&e)),
                );
            }
        }
        if ok {
            self.coalesce_applied = Some(mode);
        }
        ok
    }

    /// The interface's part of the published snapshot.
    pub fn snapshot(
        &self,
        ctx_counters: Option<&BTreeMap<u32, NapiPollCounters>>,
    ) -> IfaceSnapshot {
        let napis = self
            .napis
            .iter()
            .map(|n| {
                let c = ctx_counters.and_then(|all| all.get(&n.id));
                NapiView {
                    napi_id: n.id,
                    polls: c.map(|c| c.polls),
                    packets: c.map(|c| c.packets),
                    budget_exhausted: c.map(|c| c.budget_exhausted),
                    empty: c.map(|c| c.empty),
                    work_hist: c.map(|c| c.work_hist),
                    defer_hard_irqs: n.defer_hard_irqs.map(u64::from),
                    gro_flush_timeout_ns: n.gro_flush_timeout_ns,
                    irq_suspend_timeout_ns: n.irq_suspend_timeout_ns,
                    threaded: n.threaded.map(u64::from),
                }
            })
            .collect();
        let queues = self
            .queues
            .iter()
            .map(|q| QueueView {
                queue: q.queue,
                verdicts: Verdict::ALL
                    .iter()
                    .map(|v| {
                        let c = q.stats.verdicts[*v as usize];
                        VerdictCount {
                            verdict: v.name(),
                            packets: c.packets,
                            bytes: c.bytes,
                        }
                    })
                    .collect(),
            })
            .collect();
        IfaceSnapshot {
            device: self.cfg.name.to_string(),
            ifindex: self.dev.as_ref().map(|d| d.ifindex),
            mode: self.controller.mode(),
            mode_since_unix: self.mode_since,
            last_transition: self.last_transition.clone(),
            transitions: self.transitions,
            xdp: XdpView {
                configured: attach_name(self.cfg.attach).into(),
                attached: self.attached,
                attached_by_daemon: self.attached_by_daemon,
                queues,
            },
            sample: self.last_sample.as_ref().map(SampleView::from),
            napis,
            interrupts: self.irqs,
            sysfs_fallback: false,
            last_error: self.last_error.clone(),
        }
    }
}

fn attach_name(a: AttachSetting) -> &'static str {
    match a {
        AttachSetting::Native => "native",
        AttachSetting::Generic => "generic",
        AttachSetting::Auto => "auto",
        AttachSetting::None => "none",
    }
}
