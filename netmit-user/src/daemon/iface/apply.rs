//! Putting a mode's settings on the device: per NAPI through netlink, device-wide through
//! sysfs where netlink is missing, NIC coalescing where the driver has it; every change
//! through the restore journal.

use std::collections::BTreeMap;

use log::{debug, info, warn};

use super::{Iface, TickContext, unix_now};

/// The `napi_id` label of a decision taken for every NAPI of an interface at once.
pub(crate) const ALL_NAPIS: &str = "all";
use crate::{
    control::{Mode, ModeSettings, ModeTarget, Rule},
    metrics::{ErrorKind, snapshot::TransitionView},
    sys::coalesce::CoalesceParam,
    tune::{
        Journal, Setting,
        plan::{Plan, TuneRequest},
    },
};

impl Iface {
    pub(super) fn switch(
        &mut self,
        ctx: &TickContext,
        from: Mode,
        to: Mode,
        rule: Rule,
        reason: String,
    ) {
        let name = self.cfg.name.clone();
        let set = self.describe_target(to);
        if ctx.dry_run {
            info!(
                "{name}: dry run: would switch {from} -> {to} [{rule}]: {reason}; would set {set}"
            );
            ctx.metrics.record_transition(name.as_str(), from, to);
            ctx.metrics
                .record_switch(name.as_str(), ALL_NAPIS, from, to, rule);
            self.transitions += 1;
            self.mode_since = Some(unix_now());
            self.last_transition = Some(TransitionView {
                from,
                to,
                rule: rule.name(),
                reason,
                set: format!("nothing (dry run; would set {set})"),
                at_unix: unix_now(),
                applied: false,
            });
            return;
        }
        let ok = self.apply_everywhere(ctx, to);
        if ok {
            info!("{name}: {from} -> {to} [{rule}]: {reason}; set {set}");
            ctx.metrics.record_transition(name.as_str(), from, to);
            ctx.metrics
                .record_switch(name.as_str(), ALL_NAPIS, from, to, rule);
            self.transitions += 1;
            self.mode_since = Some(unix_now());
        } else {
            warn!("{name}: could not switch {from} -> {to} ({reason}); staying in {from}");
            self.controller.set_mode(from);
        }
        self.last_transition = Some(TransitionView {
            from,
            to,
            rule: rule.name(),
            reason,
            set,
            at_unix: unix_now(),
            applied: ok,
        });
    }

    /// What entering `mode` puts on the device, in words (for the log and the status).
    fn describe_target(&self, mode: Mode) -> String {
        let napis: Vec<String> = self.napis.iter().map(|n| n.id.to_string()).collect();
        let on = if napis.is_empty() {
            "the device".to_string()
        } else {
            format!("napi {}", napis.join(", "))
        };
        match self.controller.policy().target(mode) {
            ModeTarget::Settings(s) => {
                let values: Vec<String> = s
                    .napi_values()
                    .iter()
                    .map(|(p, v)| format!("{}={v}", p.name()))
                    .collect();
                format!("{} on {on}", values.join(" "))
            }
            ModeTarget::Originals => format!("the recorded originals back on {on}"),
        }
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
    pub(super) fn carry_over_originals(&mut self, ctx: &TickContext) {
        if ctx.dry_run {
            return;
        }
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
    pub(super) fn converge(&mut self, ctx: &TickContext) -> bool {
        if ctx.dry_run {
            return false;
        }
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
    pub(super) fn open_journal(&mut self, ctx: &TickContext) -> Option<Journal> {
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
                    if self.overrides.contains_key(&(napi_id, param)) {
                        continue;
                    }
                    let setting = Setting::Napi {
                        dev: dev.clone(),
                        napi_id,
                        param,
                    };
                    let result = journal.apply(ctx.host, &setting, value);
                    if result.is_ok() {
                        self.written.insert((napi_id, param), value);
                    }
                    if let Err(e) = result {
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
                    let result = journal.apply(ctx.host, &setting, original);
                    if let (Ok(_), Setting::Napi { param, .. }) = (&result, &setting) {
                        self.written.insert((napi_id, *param), original);
                    }
                    if let Err(e) = result {
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
}
