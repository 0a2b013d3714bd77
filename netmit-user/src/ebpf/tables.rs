//! Typed access to the steering program's maps: installing a rule set, listing rules and
//! reading counters. Works on the maps of a freshly loaded object or on the pins of an
//! attached interface, which is how `steer`, `status` and the daemon change a live
//! program.
//!
//! # Updating without tearing
//!
//! Lookup tables exist in two generations, one [`GenTables`] value each.
//! [`SteerTables::install`] writes the inactive generation's value completely (one
//! syscall), then publishes it by writing the config with the new `active` index. A packet
//! therefore always sees one complete generation.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

use aya::{
    Ebpf,
    maps::{Array, Map, MapData, MapError, PerCpuArray, PerCpuValues, XskMap},
    util::nr_cpus,
};
use netmit_common::{
    Config, Counter, GENERATIONS, GenTables, MAX_RULES, QueueStats, RuleSpec, VERDICT_SLOTS, names,
};

use super::pins::PinLayout;
use crate::steer::{
    InstalledRule, Rule,
    compile::{CompileError, compile},
};

/// Errors of table access.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// A map is missing from the object or its pin.
    #[error("map {name} not found (at {path})")]
    MissingMap {
        /// Map name.
        name: &'static str,
        /// Where it was looked for.
        path: String,
    },
    /// A map operation failed.
    #[error("map {name}")]
    Map {
        /// Map name.
        name: &'static str,
        /// The error.
        #[source]
        source: MapError,
    },
    /// Too many rules.
    #[error("an interface holds at most {MAX_RULES} rules; delete some first")]
    Full,
    /// Rule id not in use.
    #[error("no rule with id {0} (see `netmit steer list`)")]
    NoSuchRule(u16),
    /// Pinning a map failed.
    #[error("pinning map {name}")]
    Pin {
        /// Map name.
        name: &'static str,
        /// The error.
        #[source]
        source: aya::pin::PinError,
    },
    /// The rules do not fit the tables.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// Cannot count CPUs.
    #[error("cannot count possible CPUs: {0}")]
    Cpus(std::io::Error),
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> TableError {
    move |source| TableError::Map { name, source }
}

/// Handles to every map of an attached (or loaded) steering program.
pub struct SteerTables {
    config: Array<MapData, Config>,
    rules: Array<MapData, RuleSpec>,
    tables: Array<MapData, GenTables>,
    qstats: PerCpuArray<MapData, QueueStats>,
    /// The per-queue counters' map again, for batch reads (aya 0.14 has none and does not
    /// lend out a typed map's descriptor); `None` if it could not be duplicated.
    qstats_fd: Option<OwnedFd>,
    rhits: PerCpuArray<MapData, Counter>,
    xsks: XskMap<MapData>,
}

// A per-queue record is VERDICT_SLOTS (packets, bytes) pairs of u64, with no padding:
// the layout the batch read decodes.
const _: () = assert!(size_of::<QueueStats>() == VERDICT_SLOTS * 16);

/// Counters of one RX queue, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// RX queue index.
    pub queue: u32,
    /// Summed counters.
    pub stats: QueueStats,
}

impl SteerTables {
    /// Takes the maps out of a loaded object; with `pin_to`, pins each one there (the
    /// directory must exist).
    pub fn from_ebpf(ebpf: &mut Ebpf, pin_to: Option<&PinLayout>) -> Result<Self, TableError> {
        Self::build(|name| {
            let map = ebpf.take_map(name).ok_or(TableError::MissingMap {
                name,
                path: "object".into(),
            })?;
            if let Some(layout) = pin_to {
                map.pin(layout.map(name))
                    .map_err(|source| TableError::Pin { name, source })?;
            }
            Ok(map)
        })
    }

    /// Opens the maps pinned for an interface.
    pub fn from_pins(layout: &PinLayout) -> Result<Self, TableError> {
        Self::build(|name| {
            let path = layout.map(name);
            let data = MapData::from_pin(&path).map_err(|_| TableError::MissingMap {
                name,
                path: path.display().to_string(),
            })?;
            Ok(wrap(name, data))
        })
    }

    fn build(
        mut open: impl FnMut(&'static str) -> Result<Map, TableError>,
    ) -> Result<Self, TableError> {
        macro_rules! typed {
            ($name:expr) => {{
                let name: &'static str = $name;
                open(name)?.try_into().map_err(map_err(name))?
            }};
        }
        let qstats = open(names::MAP_QUEUE_STATS)?;
        let qstats_fd = match &qstats {
            Map::PerCpuArray(data) => data.fd().as_fd().try_clone_to_owned().ok(),
            _ => None,
        };
        Ok(Self {
            config: typed!(names::MAP_CONFIG),
            rules: typed!(names::MAP_RULES),
            tables: typed!(names::MAP_TABLES),
            qstats: qstats.try_into().map_err(map_err(names::MAP_QUEUE_STATS))?,
            qstats_fd,
            rhits: typed!(names::MAP_RULE_HITS),
            xsks: typed!(names::MAP_XSKS),
        })
    }

    /// The config value.
    pub fn config(&self) -> Result<Config, TableError> {
        self.config.get(&0, 0).map_err(map_err(names::MAP_CONFIG))
    }

    /// Records interface index and attach mode for `status`.
    pub fn set_attachment(
        &mut self,
        ifindex: u32,
        mode: netmit_common::AttachMode,
    ) -> Result<(), TableError> {
        let mut cfg = self.config()?;
        cfg.ifindex = ifindex;
        cfg.attach_mode = mode as u32;
        self.config
            .set(0, cfg, 0)
            .map_err(map_err(names::MAP_CONFIG))
    }

    /// The installed rules, by id.
    pub fn rules(&self) -> Result<Vec<InstalledRule>, TableError> {
        let mut out = Vec::new();
        for id in 0..MAX_RULES as u32 {
            let spec = self.rules.get(&id, 0).map_err(map_err(names::MAP_RULES))?;
            if let Some(rule) = Rule::from_spec(&spec) {
                out.push(InstalledRule {
                    id: id as u16,
                    seq: spec.seq,
                    rule,
                });
            }
        }
        Ok(out)
    }

    /// Adds rules after the existing ones; returns their ids.
    pub fn add_rules(&mut self, new: &[Rule]) -> Result<Vec<u16>, TableError> {
        let mut rules = self.rules()?;
        if rules.len() + new.len() > MAX_RULES {
            return Err(TableError::Full);
        }
        let mut cfg = self.config()?;
        let mut ids = Vec::with_capacity(new.len());
        for rule in new {
            let id = (0..MAX_RULES as u16)
                .find(|id| !rules.iter().any(|r| r.id == *id))
                .ok_or(TableError::Full)?;
            rules.push(InstalledRule {
                id,
                seq: cfg.next_seq,
                rule: rule.clone(),
            });
            cfg.next_seq += 1;
            ids.push(id);
        }
        self.install(&rules)?;
        // A reused id starts with fresh hit counters.
        let cpus = nr_cpus().map_err(|(_, e)| TableError::Cpus(e))?;
        for r in rules.iter().filter(|r| ids.contains(&r.id)) {
            let zero =
                PerCpuValues::try_from(vec![Counter::default(); cpus]).map_err(TableError::Cpus)?;
            self.rhits
                .set(r.id as u32, zero, 0)
                .map_err(map_err(names::MAP_RULE_HITS))?;
            self.rules
                .set(r.id as u32, r.rule.to_spec(r.seq), 0)
                .map_err(map_err(names::MAP_RULES))?;
        }
        let mut latest = self.config()?;
        latest.next_seq = cfg.next_seq;
        self.config
            .set(0, latest, 0)
            .map_err(map_err(names::MAP_CONFIG))?;
        Ok(ids)
    }

    /// Deletes a rule by id.
    pub fn delete_rule(&mut self, id: u16) -> Result<Rule, TableError> {
        let mut rules = self.rules()?;
        let pos = rules
            .iter()
            .position(|r| r.id == id)
            .ok_or(TableError::NoSuchRule(id))?;
        let removed = rules.remove(pos);
        self.install(&rules)?;
        self.rules
            .set(id as u32, RuleSpec::default(), 0)
            .map_err(map_err(names::MAP_RULES))?;
        Ok(removed.rule)
    }

    /// Writes the lookup tables for `rules` into the inactive generation and makes it
    /// active. The rules map itself is not touched (callers keep it in step).
    pub fn install(&mut self, rules: &[InstalledRule]) -> Result<(), TableError> {
        if rules.len() > MAX_RULES {
            return Err(TableError::Full);
        }
        let compiled = compile(rules)?;
        let mut cfg = self.config()?;
        let next = (cfg.active as usize + 1) % GENERATIONS;
        // By reference: the value is 2.3 MiB, and a copy on the stack overflows a
        // spawned thread's 2 MiB (clippy's needless_borrows_for_generic_args would move it).
        #[allow(clippy::needless_borrows_for_generic_args)]
        self.tables
            .set(next as u32, &*compiled.tables, 0)
            .map_err(map_err(names::MAP_TABLES))?;
        // Publish: from the next packet on, the data path reads the new value.
        cfg.active = next as u32;
        self.config
            .set(0, cfg, 0)
            .map_err(map_err(names::MAP_CONFIG))
    }

    /// Per-queue counters summed over CPUs, for queues that saw traffic, of the first
    /// `rx_queues` queues (all slots if `None`; XDP sees only a device's own RX queues):
    /// one batch read where the kernel has it (the daemon does this every tick, and 256
    /// single lookups cost it most of its CPU), element by element otherwise.
    pub fn queue_counters(&self, rx_queues: Option<u32>) -> Result<Vec<QueueCounters>, TableError> {
        let slots = rx_queues.map_or(self.qstats.len(), |n| n.clamp(1, self.qstats.len()));
        if let Some(sums) = self.queue_sums_batch(slots) {
            return Ok(seen(sums));
        }
        let mut sums = Vec::new();
        for values in self.qstats.iter().take(slots as usize) {
            let values = values.map_err(map_err(names::MAP_QUEUE_STATS))?;
            let mut sum = QueueStats::default();
            for cpu in values.iter() {
                add(&mut sum, cpu);
            }
            sums.push(sum);
        }
        Ok(seen(sums))
    }

    /// Every queue's counters summed over CPUs in one `BPF_MAP_LOOKUP_BATCH`; `None`
    /// where that is not available (callers read element by element).
    fn queue_sums_batch(&self, slots: u32) -> Option<Vec<QueueStats>> {
        let fd = self.qstats_fd.as_ref()?;
        let cpus = nr_cpus().ok()?;
        let stride = size_of::<QueueStats>().next_multiple_of(8);
        let bytes = crate::sys::bpf::array_lookup_batch(fd.as_fd(), slots, stride * cpus)
            .map_err(|e| log::debug!("batch read of the queue counters: {e}"))
            .ok()?;
        let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
        let sums = bytes
            .chunks_exact(stride * cpus)
            .map(|element| {
                let mut sum = QueueStats::default();
                for cpu in element.chunks_exact(stride) {
                    for (c, pair) in sum.verdicts.iter_mut().zip(cpu.chunks_exact(16)) {
                        c.packets += word(&pair[..8]);
                        c.bytes += word(&pair[8..]);
                    }
                }
                sum
            })
            .collect();
        Some(sums)
    }

    /// Hit counters by rule id, summed over CPUs, for the given ids.
    pub fn rule_hits(
        &self,
        ids: impl IntoIterator<Item = u16>,
    ) -> Result<BTreeMap<u16, Counter>, TableError> {
        let mut out = BTreeMap::new();
        for id in ids {
            let values = self
                .rhits
                .get(&(id as u32), 0)
                .map_err(map_err(names::MAP_RULE_HITS))?;
            let mut sum = Counter::default();
            for c in values.iter() {
                sum.packets += c.packets;
                sum.bytes += c.bytes;
            }
            out.insert(id, sum);
        }
        Ok(out)
    }

    /// The AF_XDP socket map (for `netmit rx`).
    pub fn xsks_mut(&mut self) -> &mut XskMap<MapData> {
        &mut self.xsks
    }
}

/// Adds one CPU's counters to `sum`.
fn add(sum: &mut QueueStats, cpu: &QueueStats) {
    for (s, c) in sum.verdicts.iter_mut().zip(cpu.verdicts.iter()) {
        s.packets += c.packets;
        s.bytes += c.bytes;
    }
}

/// The queues (by index) that saw traffic.
fn seen(sums: Vec<QueueStats>) -> Vec<QueueCounters> {
    sums.into_iter()
        .enumerate()
        .filter(|(_, s)| s.verdicts.iter().any(|c| c.packets != 0))
        .map(|(queue, stats)| QueueCounters {
            queue: queue as u32,
            stats,
        })
        .collect()
}

/// Wraps a pinned map's data in the `Map` variant its kernel type calls for.
fn wrap(name: &str, data: MapData) -> Map {
    match name {
        names::MAP_QUEUE_STATS | names::MAP_RULE_HITS => Map::PerCpuArray(data),
        names::MAP_XSKS => Map::XskMap(data),
        _ => Map::Array(data),
    }
}

/// Whether a path looks like one of netmit's pin directories.
pub fn is_pin_dir(path: &Path) -> bool {
    path.join("link").exists() && path.join(names::MAP_CONFIG).exists()
}
