//! The restore journal: the original value of every setting netmit changed, so that the
//! originals always come back (`netmit tune restore`, the daemon's shutdown and start-up).
//!
//! # Crash safety
//!
//! - The original is written *before* the setting changes: a crash between the two
//!   leaves an entry whose original equals the current value, which restores harmlessly.
//! - A second change of the same setting keeps the first original.
//! - The file is replaced atomically: written to a temporary file, `fsync`ed, renamed over
//!   the journal, and the directory `fsync`ed. A reader sees the old or the new journal,
//!   never a torn one, even after a power cut.
//! - Processes (CLI and daemon) serialise on an exclusive `flock` of the journal
//!   directory, so two of them never lose each other's entries. The kernel drops the lock
//!   when a process dies, also under `kill -9`.
//! - A journal that cannot be parsed is an error, never silently replaced: it may hold the
//!   only record of an original value.
//!
//! # Someone else's setting is theirs
//!
//! Each entry also remembers the value netmit last wrote (and, while a write is under way,
//! the value it is about to write). A restore puts the original back only where the
//! setting still holds netmit's value; where an administrator or another tool has changed
//! it since, the entry is retired and their value left alone
//! ([`RestoreReport::overridden`]).
//!
//! # Namespaces
//!
//! Entries name their device by network namespace and ifindex ([`Netdev`]); a restore
//! acts only on the entries of the namespace it runs in (plus the system-wide sysctls) and
//! leaves the others for a restore run there ([`RestoreReport::elsewhere`]).
//!
//! The journal lives in `/run/netmit` (tmpfs: it does not survive a reboot, and neither do
//! the settings it records). `NETMIT_RUN_DIR` overrides the location. The directory must be
//! trusted (a real directory, ours, writable by no one else; see [`crate::sys::fs`]) and
//! the file is written with mode 0600 whatever the umask.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::setting::{Setting, SettingError};
use crate::{
    host::Host,
    sys::{
        Netdev, NetnsId,
        fs::{DirLock, TrustError, create_private_file, trusted_dir},
        napi::NapiError,
    },
};

/// Default journal directory.
pub const DEFAULT_RUN_DIR: &str = "/run/netmit";
const FILE: &str = "journal.json";
const VERSION: u32 = 2;
/// The format of netmit 0.1 (entries keyed by interface name), still read.
const VERSION_NAMES: u32 = 1;

/// Test builds of the binary only (`test-hooks` feature): when set to a path,
/// [`Journal::apply`] creates that file right after it recorded a new original and then
/// waits forever before changing the setting, so a test can kill the process at the worst
/// moment.
#[cfg(feature = "test-hooks")]
pub const CRASH_HOOK_ENV: &str = "NETMIT_TEST_PAUSE_AFTER_JOURNAL";

/// The journal directory: `$NETMIT_RUN_DIR` or [`DEFAULT_RUN_DIR`].
pub fn run_dir() -> PathBuf {
    std::env::var_os("NETMIT_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_RUN_DIR.into())
}

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// File system access failed.
    #[error("{what} {path}")]
    Io {
        /// The step.
        what: &'static str,
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The journal cannot be parsed.
    #[error(
        "the restore journal {path} is corrupt ({reason}); netmit will not overwrite it \
         because it may hold the only record of original settings: inspect it, restore \
         by hand, then remove it"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// Parser message.
        reason: String,
    },
    /// The journal directory is not trusted.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// Reading or writing a setting failed.
    #[error("{setting}")]
    Setting {
        /// The setting.
        setting: String,
        /// The error.
        #[source]
        source: SettingError,
    },
}

/// One recorded original.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The setting.
    pub setting: Setting,
    /// Its value before netmit first changed it.
    pub original: u64,
    /// The value netmit last wrote (`None`: not known, e.g. the write was interrupted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<u64>,
    /// The value netmit is about to write (set before the write, cleared after it), so
    /// that a crash in between still recognises the setting as netmit's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// When it was recorded (seconds since the epoch).
    pub recorded_at: u64,
    /// The process that recorded it.
    pub pid: u32,
}

impl Entry {
    /// Whether `current` is a value netmit put there (or nothing says otherwise).
    pub fn is_netmits(&self, current: u64) -> bool {
        match (self.written, self.pending) {
            (None, None) => true,
            (w, p) => w == Some(current) || p == Some(current),
        }
    }

    /// The namespace the entry's device lives in; `None` for a system-wide sysctl.
    pub fn netns(&self) -> Option<NetnsId> {
        self.setting.dev().map(|d| d.netns)
    }
}

/// Whether `e` is about `setting` (the same device by namespace and ifindex).
fn same(e: &Entry, setting: &Setting) -> bool {
    &e.setting == setting
}

#[derive(Serialize, Deserialize)]
struct JournalFile {
    version: u32,
    entries: Vec<Entry>,
    /// Entries of the 0.1 format that could not be read as devices here (another
    /// namespace's, or of a device that is gone), kept as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    legacy: Vec<serde_json::Value>,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Settings put back, with the value written.
    pub restored: Vec<(Setting, u64)>,
    /// Settings that could not be put back (their entries stay in the journal).
    pub failed: Vec<(Setting, u64, String)>,
    /// Per-NAPI settings whose NAPI instance no longer exists: nothing is left to put
    /// back, so their entries are retired. (A NAPI re-created for the same queue gets a
    /// new id; the kernel carries the queue's settings over, and the new id's original is
    /// recorded when netmit changes it.)
    pub gone: Vec<(Setting, u64)>,
    /// Settings of another network namespace: left in the journal for a restore run in
    /// that namespace.
    pub elsewhere: Vec<(Setting, u64, NetnsId)>,
    /// Settings someone else changed after netmit did (the value now, netmit's value):
    /// theirs; the original is not written back and the entry is retired.
    pub overridden: Vec<(Setting, u64, Option<u64>)>,
    /// Entries of netmit 0.1's journal format for other namespaces or devices that are gone
    /// (interface name, setting name), kept.
    pub legacy: Vec<(String, String)>,
}

/// The result of [`Journal::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The value before this change.
    pub previous: u64,
    /// The original recorded in the journal (before netmit's first change).
    pub original: u64,
}

/// The open, locked journal.
pub struct Journal {
    dir: PathBuf,
    entries: Vec<Entry>,
    legacy: Vec<serde_json::Value>,
    /// Holds the exclusive lock for the journal's lifetime.
    _lock: DirLock,
}

/// An entry of netmit 0.1's journal: devices by name, the namespace by inode.
#[derive(Deserialize)]
struct EntryV1 {
    setting: serde_json::Value,
    original: u64,
    recorded_at: u64,
    pid: u32,
    #[serde(default)]
    netns: Option<u64>,
}

fn corrupt(path: &Path, reason: impl ToString) -> JournalError {
    JournalError::Corrupt {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Parses a journal file of either version. Version 1 entries of devices in the calling
/// thread's namespace are converted (their name resolved to the device now carrying it);
/// the others are kept verbatim in `legacy`.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<Entry>, Vec<serde_json::Value>), JournalError> {
    #[derive(Deserialize)]
    struct Head {
        version: u32,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|e| corrupt(path, e))?;
    match head.version {
        VERSION => {
            let file: JournalFile = serde_json::from_slice(bytes).map_err(|e| corrupt(path, e))?;
            Ok((file.entries, file.legacy))
        }
        VERSION_NAMES => {
            #[derive(Deserialize)]
            struct FileV1 {
                entries: Vec<serde_json::Value>,
            }
            let file: FileV1 = serde_json::from_slice(bytes).map_err(|e| corrupt(path, e))?;
            let here = NetnsId::current().ok();
            let mut entries = Vec::new();
            let mut legacy = Vec::new();
            for raw in file.entries {
                match convert_v1(&raw, here) {
                    Some(e) => entries.push(e),
                    None => legacy.push(raw),
                }
            }
            Ok((entries, legacy))
        }
        v => Err(corrupt(
            path,
            format!("version {v} (this netmit reads 1 and 2)"),
        )),
    }
}

/// A version-1 entry as a version-2 one, when its device can be named here.
fn convert_v1(raw: &serde_json::Value, here: Option<NetnsId>) -> Option<Entry> {
    let old: EntryV1 = serde_json::from_value(raw.clone()).ok()?;
    let mut setting = old.setting.clone();
    if let Some(iface) = setting
        .get("iface")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
    {
        let here = here?;
        if old.netns.is_some_and(|ino| ino != here.inode) {
            return None;
        }
        let dev = Netdev::resolve(&iface.parse().ok()?).ok()?;
        let obj = setting.as_object_mut()?;
        obj.remove("iface");
        obj.insert("dev".into(), serde_json::to_value(dev).ok()?);
    }
    Some(Entry {
        setting: serde_json::from_value(setting).ok()?,
        original: old.original,
        written: None,
        pending: None,
        recorded_at: old.recorded_at,
        pid: old.pid,
    })
}

impl Journal {
    /// Opens the journal in [`run_dir`], waiting for other netmit processes to finish.
    ///
    /// # Errors
    ///
    /// [`JournalError`]: an untrusted directory, a corrupt journal (never overwritten).
    pub fn open() -> Result<Self, JournalError> {
        Self::open_at(&run_dir())
    }

    /// Opens the journal in `dir`, creating the directory (mode 0700) if needed.
    ///
    /// # Errors
    ///
    /// As [`Journal::open`].
    pub fn open_at(dir: &Path) -> Result<Self, JournalError> {
        trusted_dir(dir, true)?;
        let lock = DirLock::acquire(dir)?;
        let path = dir.join(FILE);
        let (entries, legacy) = match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), Vec::new()),
            Err(source) => {
                return Err(JournalError::Io {
                    what: "reading",
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            entries,
            legacy,
            _lock: lock,
        })
    }

    /// The recorded originals.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry of `setting`, if netmit changed it.
    pub fn entry(&self, setting: &Setting) -> Option<&Entry> {
        self.entries.iter().find(|e| same(e, setting))
    }

    /// The recorded original of `setting`, if netmit changed it.
    pub fn original(&self, setting: &Setting) -> Option<u64> {
        self.entry(setting).map(|e| e.original)
    }

    /// Reads the entries without creating, locking or changing anything (for display; a
    /// concurrent writer's atomic rename means the file read is whole).
    ///
    /// # Errors
    ///
    /// [`JournalError::Corrupt`] or [`JournalError::Io`].
    pub fn peek_at(dir: &Path) -> Result<Vec<Entry>, JournalError> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes).map(|(e, _)| e),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(JournalError::Io {
                what: "reading",
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Records `original` for `setting` unless an original is already recorded; persists.
    /// Returns the recorded original (the first one).
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] when the journal cannot be written.
    pub fn record(&mut self, setting: &Setting, original: u64) -> Result<u64, JournalError> {
        if let Some(first) = self.original(setting) {
            return Ok(first);
        }
        self.entries.push(Entry {
            setting: setting.clone(),
            original,
            written: None,
            pending: None,
            recorded_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            pid: std::process::id(),
        });
        self.persist()?;
        Ok(original)
    }

    fn entry_mut(&mut self, setting: &Setting) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| same(e, setting))
    }

    /// Changes `setting` to `value`, recording its original first and the value netmit
    /// wrote after.
    ///
    /// # Errors
    ///
    /// [`JournalError::Setting`] when the setting cannot be read or written (the journal
    /// keeps the original), [`JournalError::Io`] when the journal cannot be written (then
    /// nothing was changed).
    pub fn apply(
        &mut self,
        host: &dyn Host,
        setting: &Setting,
        value: u64,
    ) -> Result<Applied, JournalError> {
        let wrap = |source| JournalError::Setting {
            setting: setting.to_string(),
            source,
        };
        let previous = setting.read(host).map_err(wrap)?;
        let newly_recorded = self.original(setting).is_none();
        let original = self.record(setting, previous)?;
        #[cfg(feature = "test-hooks")]
        if newly_recorded && let Some(marker) = std::env::var_os(CRASH_HOOK_ENV) {
            let _ = fs::write(marker, b"journal written, setting not yet changed\n");
            loop {
                std::thread::park();
            }
        }
        let entry = self.entry_mut(setting).expect("recorded above");
        if entry.written != Some(value) {
            entry.pending = Some(value);
            self.persist()?;
        }
        setting.write(host, value).map_err(wrap)?;
        let entry = self.entry_mut(setting).expect("recorded above");
        let changed = entry.written != Some(value) || entry.pending.is_some();
        entry.written = Some(value);
        entry.pending = None;
        if changed || newly_recorded {
            self.persist()?;
        }
        Ok(Applied { previous, original })
    }

    /// Forgets the entry of `setting` without touching the setting (it is someone else's
    /// now); true if there was one.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] when the journal cannot be written.
    pub fn forget(&mut self, setting: &Setting) -> Result<bool, JournalError> {
        let before = self.entries.len();
        self.entries.retain(|e| !same(e, setting));
        if self.entries.len() == before {
            return Ok(false);
        }
        self.persist()?;
        Ok(true)
    }

    /// Puts back every recorded original (of device `only`, if given) where the setting
    /// still holds netmit's value, and removes the entries that were restored, those of
    /// NAPI instances that no longer exist ([`RestoreReport::gone`]) and those of settings
    /// someone else changed ([`RestoreReport::overridden`]). Other failures are reported
    /// and their entries kept.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] when the journal cannot be written.
    pub fn restore(
        &mut self,
        host: &dyn Host,
        only: Option<&Netdev>,
    ) -> Result<RestoreReport, JournalError> {
        self.restore_where(host, &|s| only.is_none_or(|want| s.dev() == Some(want)))
    }

    /// As [`Journal::restore`], for the given settings only (`netmit run` puts back what
    /// it changed and leaves earlier changes of the same device alone).
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] when the journal cannot be written.
    pub fn restore_settings(
        &mut self,
        host: &dyn Host,
        settings: &[Setting],
    ) -> Result<RestoreReport, JournalError> {
        self.restore_where(host, &|s| settings.contains(s))
    }

    fn restore_where(
        &mut self,
        host: &dyn Host,
        wanted: &dyn Fn(&Setting) -> bool,
    ) -> Result<RestoreReport, JournalError> {
        let mut report = RestoreReport::default();
        let here = host.netns().ok();
        for raw in &self.legacy {
            report.legacy.push((
                raw.pointer("/setting/iface")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_string(),
                raw.pointer("/setting/param")
                    .or_else(|| raw.pointer("/setting/sysctl"))
                    .map(|v| v.to_string().trim_matches('"').to_string())
                    .unwrap_or_default(),
            ));
        }
        // Newest first, so that a setting changed through two mechanisms (device-wide,
        // then per NAPI) ends at the oldest original.
        let mut i = self.entries.len();
        while i > 0 {
            i -= 1;
            let e = self.entries[i].clone();
            if !wanted(&e.setting) {
                continue;
            }
            if let Some(ns) = e.netns()
                && here.is_none_or(|h| !h.same(&ns))
            {
                report.elsewhere.push((e.setting, e.original, ns));
                continue;
            }
            let current = match e.setting.read(host) {
                Ok(v) => v,
                Err(SettingError::Napi(
                    NapiError::NoSuchNapi { .. } | NapiError::NoSuchIfindex { .. },
                )) => {
                    self.entries.remove(i);
                    report.gone.push((e.setting, e.original));
                    self.persist()?;
                    continue;
                }
                Err(err) => {
                    report
                        .failed
                        .push((e.setting, e.original, crate::error::chain(&err)));
                    continue;
                }
            };
            if !e.is_netmits(current) {
                log::info!(
                    "{}: left at {current}: it was changed after netmit set {} (the change is theirs)",
                    e.setting,
                    e.written.or(e.pending).unwrap_or_default()
                );
                self.entries.remove(i);
                report.overridden.push((e.setting, current, e.written));
                self.persist()?;
                continue;
            }
            match e.setting.write(host, e.original) {
                Ok(()) => {
                    self.entries.remove(i);
                    report.restored.push((e.setting, e.original));
                    self.persist()?;
                }
                Err(SettingError::Napi(NapiError::NoSuchNapi { .. })) => {
                    self.entries.remove(i);
                    report.gone.push((e.setting, e.original));
                    self.persist()?;
                }
                Err(err) => report
                    .failed
                    .push((e.setting, e.original, crate::error::chain(&err))),
            }
        }
        Ok(report)
    }

    /// Writes the journal atomically (or removes it when empty).
    fn persist(&self) -> Result<(), JournalError> {
        let path = self.dir.join(FILE);
        let io = |what: &'static str, p: &Path| {
            let p = p.display().to_string();
            move |source| JournalError::Io {
                what,
                path: p,
                source,
            }
        };
        if self.entries.is_empty() && self.legacy.is_empty() {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing", &path)(e)),
            }
        } else {
            let tmp = self.dir.join(format!("{FILE}.tmp.{}", std::process::id()));
            let body = serde_json::to_vec_pretty(&JournalFile {
                version: VERSION,
                entries: self.entries.clone(),
                legacy: self.legacy.clone(),
            })
            .expect("journal entries serialise");
            let mut f = create_private_file(&tmp).map_err(io("creating", &tmp))?;
            f.write_all(&body).map_err(io("writing", &tmp))?;
            f.sync_all().map_err(io("syncing", &tmp))?;
            fs::rename(&tmp, &path).map_err(io("renaming into", &path))?;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", &self.dir))
    }
}

#[cfg(test)]
mod tests;
