//! Directories netmit keeps state in, trusted before use, and removal of only what is
//! provably netmit's.
//!
//! netmit runs as root on shared hosts, and both of its state directories can sit below a
//! directory other users may write: `mount -t bpf bpf /sys/fs/bpf` without options gives a
//! world-writable bpffs (mode 1777), and a run directory may be configured anywhere. A
//! directory planted there before netmit first runs (a symlink to another directory, or a
//! directory a user owns) would let that user steer root's writes and removals. So:
//!
//! - [`trusted_dir`] creates a directory with mode 0700, or accepts an existing one only if
//!   it is a real directory (not a symlink), owned by the effective user, and writable by
//!   no one else; its parent must not let others replace it (not writable by others, or
//!   sticky);
//! - [`remove_owned_dir`] removes a directory only if it holds nothing but the entries the
//!   caller expects, none of them a symlink or a directory, and never follows a link;
//! - [`DirLock`] is an exclusive `flock` of a directory (std's `File::lock`), the one
//!   writer-at-a-time rule for read-modify-write of the state below it.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// Why a directory is not trusted, or could not be handled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A symlink where a directory was expected.
    #[error(
        "{path} is a symbolic link; netmit never follows links it did not create: remove it \
         (`rm {path}`) and run netmit again"
    )]
    Symlink {
        /// The path.
        path: String,
    },
    /// Something other than a directory.
    #[error("{path} is not a directory: remove it and run netmit again")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// Owned by another user.
    #[error(
        "{path} belongs to uid {uid}, not to uid {euid} running netmit: netmit will not use \
         a directory another user controls; remove it (after checking what it holds) and run \
         netmit again"
    )]
    Owner {
        /// The path.
        path: String,
        /// Its owner.
        uid: u32,
        /// The effective user.
        euid: u32,
    },
    /// Group- or world-writable.
    #[error(
        "{path} has mode {mode:04o}: others may write to it, so netmit will not keep state \
         there; `chmod 0700 {path}` (netmit creates it so) and run netmit again"
    )]
    Writable {
        /// The path.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The parent lets others replace the directory.
    #[error(
        "{parent} has mode {mode:04o} without the sticky bit: any user may replace {path} \
         there; mount or create it with mode 0700 or 1777 (e.g. `mount -t bpf bpf \
         /sys/fs/bpf -o mode=0700`)"
    )]
    ParentReplaceable {
        /// The directory.
        path: String,
        /// Its parent.
        parent: String,
        /// The parent's permission bits.
        mode: u32,
    },
    /// A directory to remove holds something netmit did not put there.
    #[error(
        "{path} holds {entry}, which netmit does not create there; it leaves the directory \
         alone: check what it is and remove it by hand"
    )]
    Foreign {
        /// The directory.
        path: String,
        /// The unexpected entry.
        entry: String,
    },
    /// A file system call failed.
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
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> TrustError + 'a {
    move |source| TrustError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

use super::caps::euid;

/// Reads a procfs file whole in a few system calls. `fs::read_to_string` starts from an
/// empty buffer and probes with 32-byte reads, doubling: for /proc/interrupts that is
/// about ten reads, and procfs re-renders the text up to the offset on each one. The
/// daemon reads three such files every tick.
pub fn read_proc(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(64 * 1024);
    File::open(path)?.read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Makes sure `path` is a directory netmit may keep state in, creating it (mode 0700,
/// whatever the umask) when `create` is set and it is missing. See the module docs for
/// what is accepted.
///
/// # Errors
///
/// [`TrustError`] naming the problem and the fix; nothing is changed on error.
pub fn trusted_dir(path: &Path, create: bool) -> Result<(), TrustError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        check_parent(path, parent)?;
    }
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            match DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => {
                    // mkdir applies the umask; 0700 is below any umask, but say it.
                    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                        .map_err(io_err("setting the mode of", path))?;
                }
                // Someone made it meanwhile: judge what is there now.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("creating", path)(e)),
            }
            fs::symlink_metadata(path).map_err(io_err("reading", path))?
        }
        Err(e) => return Err(io_err("reading", path)(e)),
    };
    judge(path, &meta)
}

/// Checks an existing directory's metadata against the rules (no symlink, ours, private).
fn judge(path: &Path, meta: &fs::Metadata) -> Result<(), TrustError> {
    let shown = || path.display().to_string();
    if meta.file_type().is_symlink() {
        return Err(TrustError::Symlink { path: shown() });
    }
    if !meta.is_dir() {
        return Err(TrustError::NotADirectory { path: shown() });
    }
    let me = euid();
    if meta.uid() != me {
        return Err(TrustError::Owner {
            path: shown(),
            uid: meta.uid(),
            euid: me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(TrustError::Writable {
            path: shown(),
            mode,
        });
    }
    Ok(())
}

/// A parent that others may write must be sticky, or they could rename our directory away
/// and put theirs in its place.
fn check_parent(path: &Path, parent: &Path) -> Result<(), TrustError> {
    let meta = fs::metadata(parent).map_err(io_err("reading", parent))?;
    let mode = meta.mode() & 0o7777;
    let others_write = mode & 0o022 != 0 || meta.uid() != euid() && meta.uid() != 0;
    if others_write && mode & 0o1000 == 0 {
        return Err(TrustError::ParentReplaceable {
            path: path.display().to_string(),
            parent: parent.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Removes the directory `dir` and the entries in it, only if it is a trusted directory
/// (see [`trusted_dir`]) holding nothing but names in `expected`, none of them a symlink or
/// a directory. A missing `dir` is not an error (`Ok(false)`).
///
/// # Errors
///
/// [`TrustError::Foreign`] (nothing removed) when something else is there, or the
/// checks of [`trusted_dir`].
pub fn remove_owned_dir(dir: &Path, expected: &[&str]) -> Result<bool, TrustError> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("reading", dir)(e)),
    };
    judge(dir, &meta)?;
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("reading", dir))? {
        let entry = entry.map_err(io_err("reading", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy().into_owned();
        let kind = entry
            .file_type()
            .map_err(io_err("reading", &entry.path()))?;
        if !expected.contains(&name.as_str()) || kind.is_symlink() || kind.is_dir() {
            return Err(TrustError::Foreign {
                path: dir.display().to_string(),
                entry: describe_entry(&name, kind),
            });
        }
        found.push(entry.path());
    }
    for path in found {
        match fs::remove_file(&path) {
            Ok(()) => {}
            // Gone meanwhile (a daemon tidying the same pins): gone either way.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", &path)(e)),
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_err("removing", dir)(e)),
    }
}

fn describe_entry(name: &str, kind: fs::FileType) -> String {
    let what = if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "an entry"
    };
    format!("{what} named {:?}", name)
}

/// Creates (or truncates) `path` with mode 0600 whatever the umask, refusing to follow a
/// symlink at `path`.
///
/// # Errors
///
/// The `open(2)` error.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// An exclusive lock of a directory, held until dropped (the kernel also drops it when the
/// process dies, `kill -9` included).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Waits for and takes the exclusive lock of directory `dir` (opened without
    /// following a symlink).
    ///
    /// # Errors
    ///
    /// [`TrustError::Io`] when the directory cannot be opened or locked.
    pub fn acquire(dir: &Path) -> Result<DirLock, TrustError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir)
            .map_err(io_err("opening", dir))?;
        file.lock().map_err(io_err("locking", dir))?;
        Ok(DirLock {
            _file: file,
            path: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path still names the directory that is locked: false when another
    /// process removed (or replaced) it while this one waited for the lock.
    pub fn is_current(&self) -> bool {
        match (self._file.metadata(), fs::symlink_metadata(&self.path)) {
            (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
            _ => false,
        }
    }
}

/// Detaches the mount at `path` (`umount2(MNT_DETACH)`): it disappears from the tree now
/// and is freed when nothing uses it any more.
///
/// # Errors
///
/// umount2(2)'s error (`EINVAL` when `path` is not a mount point); `InvalidInput` for a
/// path with a NUL byte.
pub fn unmount_detached(path: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("netmit-fs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        DirBuilder::new().mode(0o700).create(&d).unwrap();
        d
    }

    #[test]
    fn creates_private_and_accepts_it_again() {
        let base = scratch("create");
        let d = base.join("state");
        trusted_dir(&d, true).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        trusted_dir(&d, false).unwrap();
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn refuses_symlinks_writable_and_replaceable() {
        let base = scratch("refuse");
        let target = base.join("elsewhere");
        fs::create_dir(&target).unwrap();
        let link = base.join("link");
        symlink(&target, &link).unwrap();
        assert!(matches!(
            trusted_dir(&link, true),
            Err(TrustError::Symlink { .. })
        ));
        let open = base.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = trusted_dir(&open, false).unwrap_err().to_string();
        assert!(e.contains("mode 0777") && e.contains("chmod 0700"), "{e}");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let inner = open.join("x");
        assert!(matches!(
            trusted_dir(&inner, true),
            Err(TrustError::ParentReplaceable { .. })
        ));
        assert!(!inner.exists(), "nothing created on error");
        // Sticky and world-writable (like /tmp, or a default bpffs) is fine.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        trusted_dir(&inner, true).unwrap();
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn removes_only_what_is_expected() {
        let base = scratch("remove");
        let d = base.join("att");
        trusted_dir(&d, true).unwrap();
        fs::write(d.join("link"), b"").unwrap();
        fs::write(d.join("MAP"), b"").unwrap();
        symlink("/etc", d.join("evil")).unwrap();
        let e = remove_owned_dir(&d, &["link", "MAP"]).unwrap_err();
        assert!(matches!(e, TrustError::Foreign { .. }), "{e}");
        assert!(d.join("link").exists(), "nothing removed");
        fs::remove_file(d.join("evil")).unwrap();
        assert!(remove_owned_dir(&d, &["link", "MAP"]).unwrap());
        assert!(!d.exists());
        assert!(!remove_owned_dir(&d, &["link"]).unwrap(), "missing is fine");
        // A symlink to a directory is never removed through.
        symlink(&base, base.join("l")).unwrap();
        assert!(remove_owned_dir(&base.join("l"), &[]).is_err());
        assert!(base.exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn private_files_ignore_the_umask_and_links() {
        let base = scratch("file");
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0) };
        let f = base.join("j");
        create_private_file(&f).unwrap();
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        let l = base.join("l");
        symlink(&f, &l).unwrap();
        assert!(create_private_file(&l).is_err());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn lock_is_exclusive() {
        let base = scratch("lock");
        let held = DirLock::acquire(&base).unwrap();
        let f = File::open(&base).unwrap();
        assert!(f.try_lock().is_err(), "second lock must wait");
        drop(held);
        assert!(f.try_lock().is_ok());
        fs::remove_dir_all(&base).unwrap();
    }
}
