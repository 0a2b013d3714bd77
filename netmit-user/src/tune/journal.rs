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
//! The journal lives in `/run/netmit` (tmpfs: it does not survive a reboot, and neither do
//! the settings it records). `NETMIT_RUN_DIR` overrides the location.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::{fd::AsRawFd, unix::fs::DirBuilderExt},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::setting::{Setting, SettingError};
use crate::sys::napi::NapiError;

/// Default journal directory.
pub const DEFAULT_RUN_DIR: &str = "/run/netmit";
const FILE: &str = "journal.json";
const VERSION: u32 = 1;

/// Test hook: when set to a path, [`Journal::apply`] creates that file right after it
/// recorded a new original and then waits forever before changing the setting, so a test
/// can kill the process at the worst moment.
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
    /// When it was recorded (seconds since the epoch).
    pub recorded_at: u64,
    /// The process that recorded it.
    pub pid: u32,
    /// Inode of the network namespace the setting lives in (`/proc/thread-self/ns/net`
    /// when it was recorded); `None` for system-wide sysctls and for entries written by
    /// netmit versions that did not record it. Interface names and NAPI ids only mean
    /// something in their namespace, so a restore run elsewhere leaves the entry alone
    /// ([`RestoreReport::elsewhere`]) instead of writing another namespace's interface of
    /// the same name or retiring a NAPI it merely cannot see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<u64>,
}

impl Entry {
    /// Whether this entry is about `setting` as seen from network namespace `netns`.
    fn is(&self, setting: &Setting, netns: Option<u64>) -> bool {
        &self.setting == setting && (self.netns.is_none() || self.netns == netns)
    }
}

/// The network namespace `setting` lives in, seen from the calling thread: `None` for a
/// system-wide sysctl (or when the namespace cannot be read).
fn netns_of(setting: &Setting) -> Option<u64> {
    match setting {
        Setting::Sysctl { .. } => None,
        _ => current_netns(),
    }
}

/// Inode of the calling thread's network namespace.
pub fn current_netns() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

#[derive(Serialize, Deserialize)]
struct JournalFile {
    version: u32,
    entries: Vec<Entry>,
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
    /// Settings of another network namespace (with its inode): left in the journal for a
    /// restore run in that namespace.
    pub elsewhere: Vec<(Setting, u64, u64)>,
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
    /// Holds the exclusive lock for the journal's lifetime.
    _lock: File,
}

impl Journal {
    /// Opens the journal in [`run_dir`], waiting for other netmit processes to finish.
    pub fn open() -> Result<Self, JournalError> {
        Self::open_at(&run_dir())
    }

    /// Opens the journal in `dir`, creating the directory if needed.
    pub fn open_at(dir: &Path) -> Result<Self, JournalError> {
        let io = |what: &'static str, path: &Path| {
            let path = path.display().to_string();
            move |source| JournalError::Io { what, path, source }
        };
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("creating", dir))?;
        }
        let lock = File::open(dir).map_err(io("opening", dir))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io("locking", dir)(io::Error::last_os_error()));
        }
        let path = dir.join(FILE);
        let entries = match fs::read(&path) {
            Ok(bytes) => {
                let file: JournalFile =
                    serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                if file.version != VERSION {
                    return Err(JournalError::Corrupt {
                        path: path.display().to_string(),
                        reason: format!("version {} (this netmit writes {VERSION})", file.version),
                    });
                }
                file.entries
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            entries,
            _lock: lock,
        })
    }

    /// The recorded originals.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The recorded original of `setting`, if netmit changed it.
    pub fn original(&self, setting: &Setting) -> Option<u64> {
        let netns = netns_of(setting);
        self.entries
            .iter()
            .find(|e| e.is(setting, netns))
            .map(|e| e.original)
    }

    /// Reads the entries without creating, locking or changing anything (for display; a
    /// concurrent writer's atomic rename means the file read is whole).
    pub fn peek_at(dir: &Path) -> Result<Vec<Entry>, JournalError> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<JournalFile>(&bytes)
                .map(|f| f.entries)
                .map_err(|e| JournalError::Corrupt {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
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
    pub fn record(&mut self, setting: &Setting, original: u64) -> Result<u64, JournalError> {
        if let Some(first) = self.original(setting) {
            return Ok(first);
        }
        self.entries.push(Entry {
            setting: setting.clone(),
            original,
            recorded_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            pid: std::process::id(),
            netns: netns_of(setting),
        });
        self.persist()?;
        Ok(original)
    }

    /// Changes `setting` to `value`, recording its original first.
    pub fn apply(&mut self, setting: &Setting, value: u64) -> Result<Applied, JournalError> {
        let wrap = |source| JournalError::Setting {
            setting: setting.to_string(),
            source,
        };
        let previous = setting.read().map_err(wrap)?;
        let newly_recorded = self.original(setting).is_none();
        let original = self.record(setting, previous)?;
        if newly_recorded && let Some(marker) = std::env::var_os(CRASH_HOOK_ENV) {
            let _ = fs::write(marker, b"journal written, setting not yet changed\n");
            loop {
                std::thread::park();
            }
        }
        setting.write(value).map_err(wrap)?;
        Ok(Applied { previous, original })
    }

    /// Puts back every recorded original (of `iface` only, if given) and removes the
    /// entries that were restored, and those of NAPI instances that no longer exist
    /// ([`RestoreReport::gone`]). Other failures are reported and their entries kept.
    pub fn restore(&mut self, iface: Option<&str>) -> Result<RestoreReport, JournalError> {
        let mut report = RestoreReport::default();
        let here = current_netns();
        // Newest first, so that a setting changed through two mechanisms (device-wide,
        // then per NAPI) ends at the oldest original.
        let mut i = self.entries.len();
        while i > 0 {
            i -= 1;
            let e = &self.entries[i];
            if iface.is_some_and(|want| e.setting.iface() != Some(want)) {
                continue;
            }
            if let Some(ns) = e.netns
                && Some(ns) != here
            {
                report.elsewhere.push((e.setting.clone(), e.original, ns));
                continue;
            }
            match e.setting.write(e.original) {
                Ok(()) => {
                    let e = self.entries.remove(i);
                    report.restored.push((e.setting, e.original));
                    self.persist()?;
                }
                Err(SettingError::Napi(NapiError::NoSuchNapi { .. })) => {
                    let e = self.entries.remove(i);
                    report.gone.push((e.setting, e.original));
                    self.persist()?;
                }
                Err(err) => {
                    report
                        .failed
                        .push((e.setting.clone(), e.original, crate::error::chain(&err)))
                }
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
        if self.entries.is_empty() {
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
            })
            .expect("journal entries serialise");
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(io("creating", &tmp))?;
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
mod tests {
    use super::*;
    use crate::sys::sysctl::Sysctl;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("netmit-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
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
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_journal_is_refused_not_replaced() {
        let dir = tmpdir("corrupt");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(FILE), b"{ not json").unwrap();
        assert!(matches!(
            Journal::open_at(&dir),
            Err(JournalError::Corrupt { .. })
        ));
        assert_eq!(fs::read(dir.join(FILE)).unwrap(), b"{ not json");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entries_of_vanished_napis_are_retired() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP entries_of_vanished_napis_are_retired: napi-set needs root");
            return;
        }
        let dir = tmpdir("gone");
        let gone = Setting::Napi {
            iface: "nmgone0".into(),
            napi_id: u32::MAX - 7,
            param: crate::sys::napi::NapiParam::DeferHardIrqs,
        };
        let mut j = Journal::open_at(&dir).unwrap();
        j.record(&gone, 0).unwrap();
        let report = j.restore(None).unwrap();
        assert_eq!(report.gone, vec![(gone, 0)]);
        assert!(report.failed.is_empty() && j.entries().is_empty());
        drop(j);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Regression: a restore run in another network namespace retired the entries of a
    /// NAPI it could not see (NAPI ids are global, napi-get is per namespace), so the
    /// setting was never put back.
    #[test]
    fn entries_of_another_namespace_are_kept() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP entries_of_another_namespace_are_kept: unshare needs root");
            return;
        }
        let dir = tmpdir("elsewhere");
        let napi = Setting::Napi {
            iface: "nmelse0".into(),
            napi_id: u32::MAX - 9,
            param: crate::sys::napi::NapiParam::DeferHardIrqs,
        };
        let mut j = Journal::open_at(&dir).unwrap();
        j.record(&napi, 0).unwrap();
        let home = current_netns().unwrap();
        drop(j);
        // A thread in a fresh network namespace: the entry is not its business.
        let d = dir.clone();
        let n = napi.clone();
        std::thread::spawn(move || {
            // SAFETY: unshare on this thread only (CLONE_NEWNET affects the caller).
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let mut j = Journal::open_at(&d).unwrap();
            assert_eq!(j.original(&n), None, "another namespace's entry matched");
            let report = j.restore(None).unwrap();
            assert_eq!(report.elsewhere, vec![(n, 0, home)]);
            assert!(report.gone.is_empty() && j.entries().len() == 1);
        })
        .join()
        .unwrap();
        // Back home, the NAPI does not exist: now the entry is retired.
        let mut j = Journal::open_at(&dir).unwrap();
        assert_eq!(j.restore(None).unwrap().gone, vec![(napi, 0)]);
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
}
