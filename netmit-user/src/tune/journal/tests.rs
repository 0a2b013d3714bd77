//! The journal's unit tests: first originals kept, restore through a fake host, someone
//! else's changes left alone, renames, corrupt and untrusted files, old versions.

use super::*;
use crate::{
    host::fake::FakeHost,
    sys::{napi::NapiParam, sysctl::Sysctl},
};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netmit-journal-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn napi_setting(dev: &Netdev, napi_id: u32) -> Setting {
    Setting::Napi {
        dev: dev.clone(),
        napi_id,
        param: NapiParam::DeferHardIrqs,
    }
}

#[test]
fn first_original_is_kept_and_persisted() {
    let dir = tmpdir("keep");
    let s = Setting::Sysctl {
        sysctl: Sysctl::BusyPoll,
    };
    {
        let mut j = Journal::open_at(&dir).unwrap();
        assert_eq!(j.record(&s, 0).unwrap(), 0);
        assert_eq!(
            j.record(&s, 50).unwrap(),
            0,
            "second change keeps the first original"
        );
    }
    let j = Journal::open_at(&dir).unwrap();
    assert_eq!(j.entries().len(), 1);
    assert_eq!(j.original(&s), Some(0));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(dir.join(FILE)).unwrap().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    drop(j);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn apply_and_restore_through_the_host() {
    let dir = tmpdir("apply");
    let host = FakeHost::new();
    let dev = host.add("eth1", 2);
    let ids = host.napi_ids(&dev);
    let mut j = Journal::open_at(&dir).unwrap();
    for &id in &ids {
        let a = j.apply(&host, &napi_setting(&dev, id), 100).unwrap();
        assert_eq!((a.previous, a.original), (0, 0));
    }
    let again = j.apply(&host, &napi_setting(&dev, ids[0]), 2).unwrap();
    assert_eq!((again.previous, again.original), (100, 0));
    assert_eq!(
        j.entry(&napi_setting(&dev, ids[0])).unwrap().written,
        Some(2)
    );
    let report = j.restore(&host, None).unwrap();
    assert_eq!(report.restored.len(), 2);
    assert!(j.entries().is_empty() && !dir.join(FILE).exists());
    for id in ids {
        assert_eq!(host.napi_value(id, NapiParam::DeferHardIrqs), Some(0));
    }
    drop(j);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_setting_someone_else_changed_is_theirs() {
    let dir = tmpdir("theirs");
    let host = FakeHost::new();
    let dev = host.add("eth1", 2);
    let ids = host.napi_ids(&dev);
    let mut j = Journal::open_at(&dir).unwrap();
    for &id in &ids {
        j.apply(&host, &napi_setting(&dev, id), 100).unwrap();
    }
    host.external_set(ids[1], NapiParam::DeferHardIrqs, 7);
    let report = j.restore(&host, None).unwrap();
    assert_eq!(report.restored, vec![(napi_setting(&dev, ids[0]), 0)]);
    assert_eq!(
        report.overridden,
        vec![(napi_setting(&dev, ids[1]), 7, Some(100))]
    );
    assert_eq!(host.napi_value(ids[1], NapiParam::DeferHardIrqs), Some(7));
    assert!(j.entries().is_empty());
    drop(j);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_rename_keeps_the_entry() {
    let dir = tmpdir("rename");
    let host = FakeHost::new();
    let dev = host.add("eth1", 1);
    let id = host.napi_ids(&dev)[0];
    let mut j = Journal::open_at(&dir).unwrap();
    j.apply(&host, &napi_setting(&dev, id), 5).unwrap();
    host.rename(&dev, "wan0");
    let renamed = host.resolve(&"wan0".parse().unwrap()).unwrap();
    assert_eq!(j.original(&napi_setting(&renamed, id)), Some(0));
    assert_eq!(j.restore(&host, Some(&renamed)).unwrap().restored.len(), 1);
    drop(j);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_journal_is_refused_not_replaced() {
    let dir = tmpdir("corrupt");
    trusted_dir(&dir, true).unwrap();
    fs::write(dir.join(FILE), b"{ not json").unwrap();
    assert!(matches!(
        Journal::open_at(&dir),
        Err(JournalError::Corrupt { .. })
    ));
    assert_eq!(fs::read(dir.join(FILE)).unwrap(), b"{ not json");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_untrusted_directory_is_refused() {
    let base = tmpdir("untrusted");
    trusted_dir(&base, true).unwrap();
    let dir = base.join("run");
    fs::create_dir(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    assert!(matches!(
        Journal::open_at(&dir),
        Err(JournalError::Trust(TrustError::Writable { .. }))
    ));
    std::os::unix::fs::symlink(&dir, base.join("link")).unwrap();
    assert!(matches!(
        Journal::open_at(&base.join("link")),
        Err(JournalError::Trust(TrustError::Symlink { .. }))
    ));
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn entries_of_vanished_napis_are_retired() {
    let dir = tmpdir("gone");
    let host = FakeHost::new();
    let dev = host.add("eth1", 1);
    let old = host.napi_ids(&dev)[0];
    let mut j = Journal::open_at(&dir).unwrap();
    j.apply(&host, &napi_setting(&dev, old), 9).unwrap();
    host.recreate_napis(&dev);
    let report = j.restore(&host, None).unwrap();
    assert_eq!(report.gone, vec![(napi_setting(&dev, old), 0)]);
    assert!(report.failed.is_empty() && j.entries().is_empty());
    drop(j);
    fs::remove_dir_all(&dir).unwrap();
}

/// Regression: a restore run in another network namespace retired the entries of a
/// NAPI it could not see (NAPI ids are global, napi-get is per namespace), so the
/// setting was never put back.
#[test]
fn entries_of_another_namespace_are_kept() {
    let dir = tmpdir("elsewhere");
    let host = FakeHost::new();
    let elsewhere = Netdev {
        netns: NetnsId {
            cookie: 1,
            inode: 2,
        },
        ifindex: 2,
        name: "eth1".parse().unwrap(),
    };
    let s = napi_setting(&elsewhere, 8193);
    let mut j = Journal::open_at(&dir).unwrap();
    j.record(&s, 0).unwrap();
    let report = j.restore(&host, None).unwrap();
    assert_eq!(report.elsewhere, vec![(s.clone(), 0, elsewhere.netns)]);
    assert!(report.gone.is_empty() && j.entries().len() == 1);
    assert!(host.writes().is_empty(), "nothing written here");
    drop(j);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn version_1_journals_are_read() {
    let dir = tmpdir("v1");
    trusted_dir(&dir, true).unwrap();
    let here = NetnsId::current().unwrap();
    fs::write(
        dir.join(FILE),
        format!(
            r#"{{"version":1,"entries":[
            {{"setting":{{"kind":"sysctl","sysctl":"busy_poll"}},"original":0,"recorded_at":1,"pid":2}},
            {{"setting":{{"kind":"napi","iface":"lo","napi_id":77,"param":"defer-hard-irqs"}},"original":3,"recorded_at":1,"pid":2,"netns":{}}},
            {{"setting":{{"kind":"napi","iface":"eth9","napi_id":78,"param":"defer-hard-irqs"}},"original":4,"recorded_at":1,"pid":2,"netns":1}}]}}"#,
            here.inode
        ),
    )
    .unwrap();
    let j = Journal::open_at(&dir).unwrap();
    assert_eq!(j.entries().len(), 2, "the sysctl and the device found here");
    let Setting::Napi { dev, .. } = &j.entries()[1].setting else {
        panic!("not a NAPI setting")
    };
    assert_eq!((dev.ifindex, dev.name.as_str()), (1, "lo"));
    j.persist().unwrap();
    drop(j);
    let j = Journal::open_at(&dir).unwrap();
    assert_eq!(
        j.legacy.len(),
        1,
        "another namespace's entry is kept verbatim"
    );
    drop(j);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_journal_leaves_no_file() {
    let dir = tmpdir("empty");
    let s = Setting::Sysctl {
        sysctl: Sysctl::BusyRead,
    };
    let mut j = Journal::open_at(&dir).unwrap();
    j.record(&s, 0).unwrap();
    assert!(dir.join(FILE).exists());
    j.entries.clear();
    j.persist().unwrap();
    assert!(!dir.join(FILE).exists());
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "no temporary files left"
    );
    drop(j);
    fs::remove_dir_all(&dir).unwrap();
}
