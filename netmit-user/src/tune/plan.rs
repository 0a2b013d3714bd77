//! Turning a request ("these values on this interface") into concrete settings, checked
//! before anything changes, and the named profiles.
//!
//! Validation happens here, in full, before the first write: an unknown interface, a NAPI
//! id that does not exist or belongs elsewhere, an out-of-range value or a coalescing
//! parameter the driver lacks all fail with nothing changed.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    journal::{Journal, JournalError},
    setting::Setting,
};
use crate::{
    host::Host,
    sys::{
        Netdev,
        coalesce::{CoalesceError, CoalesceParam},
        napi::{DeviceParam, NapiError, NapiParam},
        sysctl::{Sysctl, SysctlError},
    },
};

/// What to change on one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TuneRequest {
    /// Limit NAPI changes to this NAPI id (default: every NAPI of the interface).
    pub napi: Option<u32>,
    /// Per-NAPI values.
    pub napi_values: Vec<(NapiParam, u64)>,
    /// Coalescing values.
    pub coalesce: Vec<(CoalesceParam, u32)>,
    /// Coalescing values to apply only where the driver supports them (profiles).
    pub coalesce_if_supported: Vec<(CoalesceParam, u32)>,
}

/// Errors found while planning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// NAPI access.
    #[error(transparent)]
    Napi(#[from] NapiError),
    /// Coalescing access.
    #[error(transparent)]
    Coalesce(#[from] CoalesceError),
    /// The NAPI id is not one of the interface's.
    #[error(
        "NAPI {napi_id} does not belong to {iface} (its NAPIs: {known:?}; see `netmit tune show {iface}`)"
    )]
    ForeignNapi {
        /// Interface.
        iface: String,
        /// Requested id.
        napi_id: u32,
        /// The interface's NAPI ids.
        known: Vec<u32>,
    },
    /// A value out of range.
    #[error("{value} is out of range for {param}: give 0 to {max}")]
    OutOfRange {
        /// Parameter.
        param: &'static str,
        /// Value.
        value: u64,
        /// Maximum.
        max: u64,
    },
    /// A sysctl that cannot be read here (another network namespace: they are
    /// system-wide), so it cannot be changed either.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    /// No per-NAPI netlink and no sysfs equivalent for a parameter.
    #[error(
        "{param} can only be set per NAPI (netdev netlink napi-set, Linux 6.13+), which this \
         kernel lacks; there is no device-wide sysfs file for it"
    )]
    NoFallback {
        /// Parameter.
        param: &'static str,
    },
}

/// The settings to write, in order, checked in full before the first write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Each setting and the value it gets.
    pub steps: Vec<(Setting, u64)>,
}

/// One setting changed by [`Plan::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The setting.
    pub setting: Setting,
    /// The value asked for.
    pub value: u64,
    /// Its value before this change.
    pub previous: u64,
    /// The original the journal holds (before netmit's first change).
    pub original: u64,
    /// The value read back afterwards (a driver may clamp, e.g. tap's rx-frames to 64).
    pub now: u64,
}

/// A [`Plan::apply`] that stopped part way.
#[derive(Debug, thiserror::Error)]
#[error("changing {setting} ({})", applied(.done.len(), *.total))]
pub struct ApplyError {
    /// The setting that failed.
    pub setting: String,
    /// The settings changed before it.
    pub done: Vec<Change>,
    /// Their number.
    pub total: usize,
    /// What went wrong.
    #[source]
    pub source: Box<JournalError>,
}

/// What an [`ApplyError`] leaves behind, and what to do about it.
fn applied(done: usize, total: usize) -> String {
    if done == 0 {
        format!("nothing was changed: it was the first of {total} settings")
    } else {
        format!("{done} of {total} settings were changed; `netmit tune restore` puts them back")
    }
}

impl Plan {
    /// Resolves a request for `dev` into settings.
    ///
    /// Per-NAPI values go to every NAPI of the device (or the one named) through napi-set;
    /// on kernels without napi-set they fall back to the device-wide sysfs files.
    ///
    /// # Errors
    ///
    /// [`PlanError`], with nothing changed.
    pub fn for_device(host: &dyn Host, dev: &Netdev, req: &TuneRequest) -> Result<Plan, PlanError> {
        plan(host, dev, req).map(|steps| Plan { steps })
    }

    /// Adds a system-wide sysctl.
    pub fn push_sysctl(&mut self, sysctl: Sysctl, value: u64) {
        self.steps.push((Setting::Sysctl { sysctl }, value));
    }

    /// Checks that `sysctl` can take `value` here (in range, and present in this network
    /// namespace: the busy-poll sysctls exist only in the initial one), then adds it.
    ///
    /// # Errors
    ///
    /// [`PlanError::OutOfRange`] or [`PlanError::Sysctl`], with the plan unchanged.
    pub fn add_sysctl(
        &mut self,
        host: &dyn Host,
        sysctl: Sysctl,
        value: u64,
    ) -> Result<(), PlanError> {
        if value > sysctl.max() {
            return Err(PlanError::OutOfRange {
                param: sysctl.name(),
                value,
                max: sysctl.max(),
            });
        }
        host.sysctl_read(sysctl)?;
        self.push_sysctl(sysctl, value);
        Ok(())
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies every step through the journal (each original is recorded before its
    /// setting changes), reading each value back.
    ///
    /// # Errors
    ///
    /// [`ApplyError`] with the changes made before the failing step; they stay journaled.
    pub fn apply(&self, host: &dyn Host, journal: &mut Journal) -> Result<Vec<Change>, ApplyError> {
        let mut done = Vec::new();
        for (setting, value) in &self.steps {
            match journal.apply(host, setting, *value) {
                Ok(applied) => done.push(Change {
                    setting: setting.clone(),
                    value: *value,
                    previous: applied.previous,
                    original: applied.original,
                    now: setting.read(host).unwrap_or(*value),
                }),
                Err(source) => {
                    return Err(ApplyError {
                        setting: setting.to_string(),
                        total: self.steps.len(),
                        done,
                        source: Box::new(source),
                    });
                }
            }
        }
        Ok(done)
    }
}

fn plan(
    host: &dyn Host,
    dev: &Netdev,
    req: &TuneRequest,
) -> Result<Vec<(Setting, u64)>, PlanError> {
    let iface = dev.name.as_str();
    let ifindex = dev.ifindex;
    let mut out = Vec::new();

    for &(param, value) in &req.napi_values {
        if value > param.max() {
            return Err(PlanError::OutOfRange {
                param: param.name(),
                value,
                max: param.max(),
            });
        }
    }
    if !req.napi_values.is_empty() {
        if host.napi_netlink() {
            let napis = host.napi_list(dev)?;
            let ids: Vec<u32> = napis.iter().map(|n| n.id).collect();
            let targets = match req.napi {
                Some(id) if ids.contains(&id) => vec![id],
                Some(id) => {
                    // Distinguish "no such NAPI" from "someone else's NAPI".
                    host.napi_get(id)?;
                    return Err(PlanError::ForeignNapi {
                        iface: iface.into(),
                        napi_id: id,
                        known: ids,
                    });
                }
                None if ids.is_empty() => {
                    return Err(PlanError::Napi(NapiError::NoNapi {
                        iface: iface.into(),
                    }));
                }
                None => ids,
            };
            for id in targets {
                for &(param, value) in &req.napi_values {
                    out.push((
                        Setting::Napi {
                            dev: dev.clone(),
                            napi_id: id,
                            param,
                        },
                        value,
                    ));
                }
            }
        } else {
            for &(param, value) in &req.napi_values {
                let device = match param {
                    NapiParam::DeferHardIrqs => DeviceParam::DeferHardIrqs,
                    NapiParam::GroFlushTimeout => DeviceParam::GroFlushTimeout,
                    NapiParam::Threaded => DeviceParam::Threaded,
                    // Turning off what the kernel does not have is a no-op.
                    NapiParam::IrqSuspendTimeout if value == 0 => continue,
                    other => {
                        return Err(PlanError::NoFallback {
                            param: other.name(),
                        });
                    }
                };
                // Fail now, not halfway, if the file is not there.
                host.device_read(dev, device)?;
                out.push((
                    Setting::Device {
                        dev: dev.clone(),
                        param: device,
                    },
                    value,
                ));
            }
        }
    }

    if !req.coalesce.is_empty() || !req.coalesce_if_supported.is_empty() {
        let supported = match host.coalesce_get(dev) {
            Ok(s) => s,
            // Profiles only use coalescing where it exists.
            Err(_) if req.coalesce.is_empty() => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        for &(param, value) in &req.coalesce {
            if !supported.contains_key(&param) {
                return Err(PlanError::Coalesce(CoalesceError::ParamUnsupported {
                    ifindex,
                    iface: format!("{iface} (ifindex {ifindex})"),
                    param,
                    supported: supported.keys().map(|p| p.name()).collect(),
                }));
            }
            if param.is_bool() && value > 1 {
                return Err(PlanError::OutOfRange {
                    param: param.name(),
                    value: value.into(),
                    max: 1,
                });
            }
            out.push((
                Setting::Coalesce {
                    dev: dev.clone(),
                    param,
                },
                value.into(),
            ));
        }
        for &(param, value) in &req.coalesce_if_supported {
            if supported.contains_key(&param) {
                out.push((
                    Setting::Coalesce {
                        dev: dev.clone(),
                        param,
                    },
                    value.into(),
                ));
            }
        }
    }
    Ok(out)
}

/// A named bundle of settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// An interrupt per completion: lowest latency, highest interrupt rate.
    Latency,
    /// Light software interrupt coalescing.
    Balanced,
    /// Heavy software interrupt coalescing plus NIC coalescing.
    Throughput,
    /// IRQ suspension for applications that busy-poll (epoll with prefer_busy_poll, or
    /// AF_XDP busy polling).
    Suspend,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [
        Profile::Latency,
        Profile::Balanced,
        Profile::Throughput,
        Profile::Suspend,
    ];

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Latency => "latency",
            Profile::Balanced => "balanced",
            Profile::Throughput => "throughput",
            Profile::Suspend => "suspend",
        }
    }

    /// The request the profile stands for.
    pub fn request(self) -> TuneRequest {
        use CoalesceParam as C;
        use NapiParam as N;
        let (napi_values, coalesce_if_supported) = match self {
            Profile::Latency => (
                vec![
                    (N::DeferHardIrqs, 0),
                    (N::GroFlushTimeout, 0),
                    (N::IrqSuspendTimeout, 0),
                ],
                vec![(C::UseAdaptiveRx, 0), (C::RxUsecs, 0), (C::RxMaxFrames, 1)],
            ),
            Profile::Balanced => (
                vec![
                    (N::DeferHardIrqs, 10),
                    (N::GroFlushTimeout, 20_000),
                    (N::IrqSuspendTimeout, 0),
                ],
                vec![(C::UseAdaptiveRx, 1)],
            ),
            Profile::Throughput => (
                vec![
                    (N::DeferHardIrqs, 100),
                    (N::GroFlushTimeout, 200_000),
                    (N::IrqSuspendTimeout, 0),
                ],
                vec![
                    (C::UseAdaptiveRx, 0),
                    (C::RxUsecs, 100),
                    (C::RxMaxFrames, 64),
                ],
            ),
            Profile::Suspend => (
                vec![
                    (N::DeferHardIrqs, 100),
                    (N::GroFlushTimeout, 20_000),
                    (N::IrqSuspendTimeout, 20_000_000),
                ],
                vec![],
            ),
        };
        TuneRequest {
            napi: None,
            napi_values,
            coalesce: vec![],
            coalesce_if_supported,
        }
    }

    /// Where the values come from, and when to use the profile.
    pub fn source(self) -> &'static str {
        match self {
            Profile::Latency => {
                "the kernel defaults (no deferral, no GRO hold-back); NIC coalescing at one \
                 frame where the driver allows. Lowest latency at low load, one interrupt per \
                 completion at high load."
            }
            Profile::Balanced => {
                "napi_defer_hard_irqs=10 and gro_flush_timeout=20us, the example in the commit \
                 that added hard-IRQ deferral (6f8b12d661d0, Linux 5.7); the driver's adaptive \
                 coalescing (DIM) where it has one."
            }
            Profile::Throughput => {
                "defer-hard-irqs=100 with gro-flush-timeout=200us, the deferral settings of the \
                 'defer' configurations in the IRQ-suspension series' evaluation (Linux 6.13); \
                 on a veth they took NAPI polls per packet from 1 to about 1/52 (measured \
                 on Linux 6.18: docs/kernel-compat.md). NIC coalescing at 100us / 64 frames where supported."
            }
            Profile::Suspend => {
                "irq-suspend-timeout=20ms with defer-hard-irqs=100 and a small \
                 gro-flush-timeout=20us as the safety net, as in the IRQ-suspension series and \
                 Documentation/networking/napi.rst (Linux 6.13). Only takes effect for an \
                 application that busy-polls with prefer_busy_poll (epoll EPIOCSPARAMS or AF_XDP)."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    fn req(values: &[(NapiParam, u64)]) -> TuneRequest {
        TuneRequest {
            napi_values: values.to_vec(),
            ..TuneRequest::default()
        }
    }

    fn run_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("netmit-plan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn napi_values_go_to_every_napi_or_the_one_named() {
        let host = FakeHost::new();
        let dev = host.add("eth1", 3);
        let ids = host.napi_ids(&dev);
        let plan = Plan::for_device(&host, &dev, &req(&[(NapiParam::DeferHardIrqs, 7)])).unwrap();
        let targets: Vec<u32> = plan
            .steps
            .iter()
            .map(|(s, v)| match s {
                Setting::Napi { napi_id, .. } if *v == 7 => *napi_id,
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(targets, ids);
        let one = TuneRequest {
            napi: Some(ids[1]),
            ..req(&[(NapiParam::GroFlushTimeout, 20_000)])
        };
        assert_eq!(Plan::for_device(&host, &dev, &one).unwrap().steps.len(), 1);
        assert!(host.writes().is_empty(), "planning writes nothing");
    }

    #[test]
    fn foreign_and_missing_napis_and_ranges_are_refused() {
        let host = FakeHost::new();
        let dev = host.add("eth1", 1);
        let other = host.add("eth2", 1);
        let theirs = host.napi_ids(&other)[0];
        let foreign = TuneRequest {
            napi: Some(theirs),
            ..req(&[(NapiParam::DeferHardIrqs, 1)])
        };
        let e = Plan::for_device(&host, &dev, &foreign).unwrap_err();
        assert!(
            matches!(e, PlanError::ForeignNapi { napi_id, .. } if napi_id == theirs),
            "{e}"
        );
        let bogus = TuneRequest {
            napi: Some(1),
            ..req(&[(NapiParam::DeferHardIrqs, 1)])
        };
        assert!(matches!(
            Plan::for_device(&host, &dev, &bogus),
            Err(PlanError::Napi(NapiError::NoSuchNapi { id: 1 }))
        ));
        assert!(matches!(
            Plan::for_device(&host, &dev, &req(&[(NapiParam::DeferHardIrqs, 1 << 31)])),
            Err(PlanError::OutOfRange { .. })
        ));
        let bare = host.add("eth3", 0);
        assert!(matches!(
            Plan::for_device(&host, &bare, &req(&[(NapiParam::DeferHardIrqs, 1)])),
            Err(PlanError::Napi(NapiError::NoNapi { .. }))
        ));
    }

    #[test]
    fn without_netlink_values_fall_back_to_sysfs_where_they_can() {
        let host = FakeHost::new().without_netlink();
        let dev = host.add("eth1", 2);
        let plan = Plan::for_device(
            &host,
            &dev,
            &req(&[
                (NapiParam::DeferHardIrqs, 10),
                (NapiParam::IrqSuspendTimeout, 0),
            ]),
        )
        .unwrap();
        assert_eq!(
            plan.steps,
            vec![(
                Setting::Device {
                    dev: dev.clone(),
                    param: DeviceParam::DeferHardIrqs
                },
                10
            )],
            "turning off what the kernel lacks is a no-op"
        );
        assert!(matches!(
            Plan::for_device(
                &host,
                &dev,
                &req(&[(NapiParam::IrqSuspendTimeout, 20_000_000)])
            ),
            Err(PlanError::NoFallback {
                param: "irq-suspend-timeout"
            })
        ));
    }

    #[test]
    fn coalescing_is_checked_against_the_driver() {
        let host = FakeHost::new();
        let dev = host.add("tap0", 1);
        host.with_coalesce(&dev, &[(CoalesceParam::RxMaxFrames, 0)]);
        let asked = TuneRequest {
            coalesce: vec![(CoalesceParam::RxUsecs, 10)],
            ..TuneRequest::default()
        };
        assert!(matches!(
            Plan::for_device(&host, &dev, &asked),
            Err(PlanError::Coalesce(CoalesceError::ParamUnsupported { .. }))
        ));
        let profile = Plan::for_device(&host, &dev, &Profile::Throughput.request()).unwrap();
        let coalesce: Vec<_> = profile
            .steps
            .iter()
            .filter(|(s, _)| matches!(s, Setting::Coalesce { .. }))
            .collect();
        assert_eq!(coalesce.len(), 1, "only what the driver has: {coalesce:?}");
        // A device without coalescing: profiles skip it, explicit requests fail.
        let veth = host.add("veth0", 1);
        assert!(Plan::for_device(&host, &veth, &Profile::Throughput.request()).is_ok());
        assert!(Plan::for_device(&host, &veth, &asked).is_err());
    }

    #[test]
    fn apply_goes_through_the_journal_and_reports_what_it_changed() {
        let host = FakeHost::new();
        let dev = host.add("eth1", 2);
        let dir = run_dir("apply");
        let mut journal = Journal::open_at(&dir).unwrap();
        let mut plan = Plan::for_device(&host, &dev, &Profile::Suspend.request()).unwrap();
        plan.push_sysctl(Sysctl::BusyPoll, 50);
        let changes = plan.apply(&host, &mut journal).unwrap();
        assert_eq!(changes.len(), 2 * 3 + 1);
        assert!(changes.iter().all(|c| c.original == 0 && c.now == c.value));
        assert_eq!(host.sysctl_value(Sysctl::BusyPoll), 50);
        assert_eq!(journal.entries().len(), 7);
        // A step that fails stops the plan; what went before stays journaled.
        let mut bad = Plan::default();
        bad.push_sysctl(Sysctl::BusyRead, 5);
        bad.steps.push((
            Setting::Napi {
                dev: dev.clone(),
                napi_id: 1,
                param: NapiParam::DeferHardIrqs,
            },
            1,
        ));
        let e = bad.apply(&host, &mut journal).unwrap_err();
        assert_eq!((e.done.len(), e.total), (1, 2));
        assert!(
            e.to_string().contains("1 of 2 settings were changed"),
            "{e}"
        );
        // A first step that fails changed nothing, and says so (no restore advice).
        let first = Plan {
            steps: bad.steps[1..].to_vec(),
        };
        let e = first.apply(&host, &mut journal).unwrap_err().to_string();
        assert!(
            e.contains("nothing was changed") && !e.contains("restore"),
            "{e}"
        );
        let report = journal.restore(&host, None).unwrap();
        assert_eq!(report.restored.len(), 8);
        assert_eq!(host.sysctl_value(Sysctl::BusyPoll), 0);
        drop(journal);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
