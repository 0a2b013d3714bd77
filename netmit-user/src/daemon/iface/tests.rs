//! The interface life cycle on the in-memory host: no root, no kernel. A device that
//! disappears, comes back under another ifindex, is renamed away, gets re-created NAPIs,
//! and XDP attached as configured.

use std::{path::PathBuf, time::Instant};

use prometheus_client::registry::Registry;

use super::{Iface, TickContext};
use crate::{
    control::{Capabilities, Mode},
    daemon::{config::DaemonConfig, sample::SystemReading},
    host::{Host, XdpStatus, fake::FakeHost},
    metrics::Metrics,
    sys::napi::NapiParam,
    tune::{Journal, Setting},
};

/// Defer's values (the `throughput` profile).
const DEFER: (u64, u64) = (100, 200_000);

struct Rig {
    host: FakeHost,
    run_dir: PathBuf,
    metrics: Metrics,
    iface: Iface,
}

impl Rig {
    fn new(name: &str, config: &str) -> Rig {
        let run_dir = std::env::temp_dir().join(format!(
            "netmit-iface-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&run_dir);
        let cfg = DaemonConfig::parse(config, "test").expect("valid config");
        let caps = Capabilities {
            deferral: true,
            irq_suspension: true,
        };
        Rig {
            host: FakeHost::new(),
            run_dir,
            metrics: Metrics::register(&mut Registry::default()),
            iface: Iface::new(cfg.interfaces[0].clone(), caps, false),
        }
    }

    fn tick(&mut self) {
        let system = SystemReading::default();
        let ctx = TickContext {
            host: &self.host,
            run_dir: &self.run_dir,
            now: Instant::now(),
            system: &system,
            napi_counters: None,
            netlink: self.host.napi_netlink(),
            metrics: &self.metrics,
            dry_run: false,
        };
        self.iface.tick(&ctx);
    }

    /// (defer-hard-irqs, gro-flush-timeout) of a NAPI as the fake kernel holds them.
    fn napi(&self, id: u32) -> (u64, u64) {
        (
            self.host
                .napi_value(id, NapiParam::DeferHardIrqs)
                .expect("napi"),
            self.host
                .napi_value(id, NapiParam::GroFlushTimeout)
                .expect("napi"),
        )
    }

    fn journal_napis(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = Journal::peek_at(&self.run_dir)
            .unwrap()
            .iter()
            .filter_map(|e| match e.setting {
                Setting::Napi { napi_id, .. } => Some(napi_id),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

const TUNE_ONLY: &str = "[[interface]]\nname = \"eth1\"\nattach = \"none\"\n";

#[test]
fn a_device_that_disappears_and_returns_under_another_ifindex_gets_the_mode() {
    let mut rig = Rig::new("back", TUNE_ONLY);
    let first = rig.host.add("eth1", 2);
    rig.iface.controller.set_mode(Mode::Defer);
    rig.tick();
    let ids = rig.host.napi_ids(&first);
    for &id in &ids {
        assert_eq!(rig.napi(id), DEFER);
    }
    assert_eq!(rig.journal_napis(), ids);
    assert_eq!(rig.iface.snapshot(None).ifindex, Some(first.ifindex));

    rig.host.remove(&first);
    rig.tick();
    assert_eq!(rig.iface.dev(), None);
    assert_eq!(rig.iface.snapshot(None).ifindex, None, "waiting for it");
    let writes = rig.host.writes().len();
    rig.tick();
    assert_eq!(
        rig.host.writes().len(),
        writes,
        "nothing written while it is gone"
    );

    let second = rig.host.add("eth1", 1);
    assert_ne!(second.ifindex, first.ifindex);
    rig.tick();
    assert_eq!(rig.iface.dev().map(|d| d.ifindex), Some(second.ifindex));
    let new = rig.host.napi_ids(&second);
    assert_eq!(rig.napi(new[0]), DEFER, "the new instance carries the mode");
    // The journal holds the new device's originals (0) for the restore.
    let mut journal = Journal::open_at(&rig.run_dir).unwrap();
    let report = journal.restore(&rig.host, Some(&second)).unwrap();
    assert_eq!(report.restored.len(), 3, "{report:?}");
    assert_eq!(rig.napi(new[0]), (0, 0));
}

#[test]
fn a_device_renamed_away_gets_its_settings_back() {
    let mut rig = Rig::new("rename", TUNE_ONLY);
    let dev = rig.host.add("eth1", 2);
    rig.iface.controller.set_mode(Mode::Defer);
    rig.tick();
    let ids = rig.host.napi_ids(&dev);
    assert_eq!(rig.napi(ids[0]), DEFER);

    rig.host.rename(&dev, "wan0");
    rig.tick();
    for &id in &ids {
        assert_eq!(rig.napi(id), (0, 0), "the renamed device is handed back");
    }
    assert!(rig.journal_napis().is_empty(), "nothing left to restore");
    assert_eq!(rig.iface.dev(), None, "no device is called eth1 now");

    // Another device takes the name: it is the configured interface now.
    let newcomer = rig.host.add("eth1", 1);
    rig.tick();
    assert_eq!(rig.iface.dev().map(|d| d.ifindex), Some(newcomer.ifindex));
    assert_eq!(rig.napi(rig.host.napi_ids(&newcomer)[0]), DEFER);
    // The renamed device stays as it was handed back.
    assert_eq!(rig.napi(ids[0]), (0, 0));
}

#[test]
fn a_recreated_napi_inherits_the_originals_not_the_mode_values() {
    let mut rig = Rig::new("napi", TUNE_ONLY);
    let dev = rig.host.add("eth1", 1);
    rig.iface.controller.set_mode(Mode::Defer);
    rig.tick();
    let old = rig.host.napi_ids(&dev)[0];
    // The kernel re-creates the NAPI under a new id and carries its (defer) values over.
    let new = rig.host.recreate_napis(&dev)[0];
    assert_eq!(rig.napi(new), DEFER);
    rig.tick();
    assert_eq!(
        rig.journal_napis(),
        vec![new],
        "the vanished id's entries moved"
    );
    let j = Journal::open_at(&rig.run_dir).unwrap();
    let original = j.original(&Setting::Napi {
        dev: dev.clone(),
        napi_id: new,
        param: NapiParam::DeferHardIrqs,
    });
    assert_eq!(original, Some(0), "the true original, not defer's value");
    assert_ne!(old, new);
}

#[test]
fn xdp_is_attached_as_configured_and_again_after_the_device_returns() {
    let mut rig = Rig::new(
        "attach",
        "[[interface]]\nname = \"eth1\"\nattach = \"native\"\n",
    );
    let first = rig.host.add("eth1", 1);
    rig.tick();
    assert!(matches!(
        rig.host.xdp_status(&first).unwrap(),
        XdpStatus::Ours { .. }
    ));
    let view = rig.iface.snapshot(None);
    assert!(view.xdp.attached && view.xdp.attached_by_daemon);

    rig.host.remove(&first);
    rig.tick();
    let second = rig.host.add("eth1", 1);
    rig.tick();
    assert!(matches!(
        rig.host.xdp_status(&second).unwrap(),
        XdpStatus::Ours { .. }
    ));
    assert_eq!(
        rig.host
            .writes()
            .iter()
            .filter(|w| w.ends_with("attach"))
            .count(),
        2
    );
}

#[test]
fn a_foreign_program_is_left_alone_and_reported() {
    let mut rig = Rig::new(
        "foreign",
        "[[interface]]\nname = \"eth1\"\nattach = \"auto\"\n",
    );
    let dev = rig.host.add("eth1", 1);
    rig.host.set_foreign_xdp(&dev, 77);
    rig.tick();
    assert_eq!(
        rig.host.xdp_status(&dev).unwrap(),
        XdpStatus::Foreign { prog_id: 77 }
    );
    let view = rig.iface.snapshot(None);
    assert!(!view.xdp.attached);
    let error = view.last_error.expect("the problem is reported");
    assert!(error.contains("did not attach (id 77)"), "{error}");
}

#[test]
fn without_netlink_the_device_wide_defaults_carry_the_mode() {
    let mut rig = Rig::new("sysfs", TUNE_ONLY);
    rig.host = FakeHost::new().without_netlink();
    let dev = rig.host.add("eth1", 2);
    rig.iface.controller.set_mode(Mode::Defer);
    rig.tick();
    let writes = rig.host.writes();
    assert!(
        writes.contains(&"eth1 sysfs defer-hard-irqs=100".to_string()),
        "{writes:?}"
    );
    assert!(
        !writes.iter().any(|w| w.starts_with("napi ")),
        "no per-NAPI writes: {writes:?}"
    );
    let mut journal = Journal::open_at(&rig.run_dir).unwrap();
    let report = journal.restore(&rig.host, Some(&dev)).unwrap();
    assert!(!report.restored.is_empty() && report.failed.is_empty());
}

#[test]
fn a_knob_changed_by_someone_else_is_left_alone_until_a_reload() {
    let mut rig = Rig::new("override", TUNE_ONLY);
    let dev = rig.host.add("eth1", 1);
    rig.iface.controller.set_mode(Mode::Defer);
    rig.tick();
    let id = rig.host.napi_ids(&dev)[0];
    assert_eq!(rig.napi(id), DEFER);
    // An administrator sets gro-flush-timeout; the next tick sees a value netmit did not
    // write.
    rig.host
        .external_set(id, NapiParam::GroFlushTimeout, 50_000);
    rig.tick();
    let snap = rig.iface.snapshot(None);
    assert_eq!(snap.external_overrides.len(), 1, "{snap:?}");
    assert_eq!(snap.external_overrides[0].value, 50_000);
    assert_eq!(snap.external_overrides[0].netmit_value, DEFER.1);
    // Not written back, not in the journal any more (no restore puts 0 over it), while
    // defer-hard-irqs stays managed.
    rig.tick();
    assert_eq!(rig.napi(id), (DEFER.0, 50_000));
    let gro = Setting::Napi {
        dev: dev.clone(),
        napi_id: id,
        param: NapiParam::GroFlushTimeout,
    };
    let mut j = Journal::open_at(&rig.run_dir).unwrap();
    assert_eq!(j.original(&gro), None);
    // Restore (the daemon's exit): defer-hard-irqs back, gro-flush-timeout left alone.
    let report = j.restore(&rig.host, Some(&dev)).unwrap();
    assert!(
        report.restored.iter().all(|(s, _)| *s != gro) && !report.restored.is_empty(),
        "{report:?}"
    );
    drop(j);
    assert_eq!(rig.napi(id), (0, 50_000));

    // A reload hands it back: the mode is applied again, the admin's value is the new
    // original.
    rig.iface.controller.set_mode(Mode::Defer);
    let cfg = rig.iface.cfg.clone();
    rig.iface.reconfigure(cfg);
    rig.tick();
    assert!(rig.iface.snapshot(None).external_overrides.is_empty());
    assert_eq!(rig.napi(id), DEFER);
    let j = Journal::open_at(&rig.run_dir).unwrap();
    assert_eq!(j.original(&gro), Some(50_000));
}
