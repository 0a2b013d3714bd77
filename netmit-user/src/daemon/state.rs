//! The daemon's state file, `daemon-<netns>.json` in the run directory (`/run/netmit`, or
//! `$NETMIT_RUN_DIR`), next to the restore journal. There is one per network namespace
//! (keyed as bpffs pins are, see [`NetnsId::key`]): /run is shared by every namespace, and
//! a daemon in each of two namespaces manages its own devices.
//!
//! It says that a daemon runs, where its HTTP server listens and which interfaces it
//! attached XDP to:
//!
//! - `netmit status` finds the daemon through it (pid alive, then `GET /status` on the
//!   address with a short timeout) rather than by probing a fixed port, which would be
//!   wrong for any daemon started with another `metrics_address`.
//! - A second daemon refuses to start while the pid in it is a live netmit process.
//! - After a crash (kill -9) the file stays; the next daemon adopts its list of attached
//!   interfaces, so that XDP it finds attached is detached on exit as if it had attached it
//!   itself.
//!
//! It is written atomically (temporary file and rename) and removed on a clean exit, so
//! the run directory is empty after a clean exit (the journal file is removed when empty).

use std::{
    fs,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::sys::{NetnsId, fs::create_private_file};

/// File name in the run directory: `daemon-<netns key>.json`.
pub fn file_name(netns: &NetnsId) -> String {
    format!("daemon-{}.json", netns.key())
}

/// The content of the state file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonState {
    /// The daemon's pid.
    pub pid: u32,
    /// Where its HTTP server listens (`/metrics`, `/healthz`, `/status`).
    pub metrics_address: String,
    /// Its configuration file.
    pub config: String,
    /// When it started (seconds since the epoch).
    pub started_at_unix: f64,
    /// Interfaces it attached XDP to (detached on its exit).
    pub attached_by_daemon: Vec<String>,
}

/// The state file of the daemon of one network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file of namespace `netns` in `run_dir`.
    pub fn new(run_dir: &Path, netns: &NetnsId) -> StateFile {
        StateFile {
            path: run_dir.join(file_name(netns)),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The content, if there is a readable file (alive or not).
    pub fn read(&self) -> Option<DaemonState> {
        serde_json::from_slice(&fs::read(&self.path).ok()?).ok()
    }

    /// The state of a running daemon (the file exists and its pid is a live netmit process
    /// other than this one).
    pub fn running(&self) -> Option<DaemonState> {
        self.read()
            .filter(|s| is_netmit(s.pid) && s.pid != std::process::id())
    }

    /// Writes the file atomically (mode 0600) into the trusted run directory.
    ///
    /// # Errors
    ///
    /// The file system's error.
    pub fn write(&self, state: &DaemonState) -> io::Result<()> {
        let tmp = self
            .path
            .with_extension(format!("json.tmp.{}", std::process::id()));
        let mut f = create_private_file(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(state).expect("state serialises"))?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)
    }

    /// Takes the namespace's daemon lock (`<state file>.lock`, 0600, never through a
    /// symlink) without waiting: `Ok(None)` when another process holds it. The daemon
    /// keeps it for its lifetime, so that two starting at once cannot both pass the
    /// pid check; the kernel drops it when the holder dies, `kill -9` included, and a
    /// clean exit removes the file (see [`DaemonLock`]).
    ///
    /// # Errors
    ///
    /// The file system's error.
    pub fn lock(&self) -> io::Result<Option<DaemonLock>> {
        use std::os::unix::fs::MetadataExt;
        let path = self.path.with_extension("lock");
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        // A holder that exited cleanly unlinked the file after we opened it: our lock is
        // on a file nobody else will open. Only a lock on what the path names counts.
        let (held, named) = (file.metadata()?, fs::symlink_metadata(&path));
        match named {
            Ok(n) if n.dev() == held.dev() && n.ino() == held.ino() => {
                Ok(Some(DaemonLock { file, path }))
            }
            _ => Ok(None),
        }
    }

    /// Removes the file (if it is this process's).
    ///
    /// # Errors
    ///
    /// The file system's error, other than a missing file.
    pub fn remove(&self) -> io::Result<()> {
        match self.read() {
            Some(s) if s.pid != std::process::id() => Ok(()),
            _ => match fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}

/// The namespace's daemon lock, held until dropped; dropping it removes the lock file
/// first (while still holding it), so a clean exit leaves the run directory empty, and
/// [`StateFile::lock`] refuses a lock on a file unlinked this way.
#[derive(Debug)]
pub struct DaemonLock {
    file: fs::File,
    path: PathBuf,
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Whether `pid` is a running netmit process.
pub fn is_netmit(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "netmit")
}

/// Errors asking a daemon for its status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address in the state file is not an address.
    #[error("the daemon's address `{0}` is not a socket address")]
    Address(String),
    /// Connecting, sending or receiving failed.
    #[error("asking the daemon at {address} for its status")]
    Io {
        /// The address.
        address: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The answer was not a 200 with JSON.
    #[error("the daemon at {address} answered {answer}")]
    Answer {
        /// The address.
        address: String,
        /// What came back (status line, or the JSON error).
        answer: String,
    },
}

/// `GET /status` from the daemon described by `state`, with `timeout` for connecting and
/// for the answer. A minimal HTTP/1.0 client: the answer is one small JSON document.
pub fn query_status(
    state: &DaemonState,
    timeout: Duration,
) -> Result<serde_json::Value, ClientError> {
    let address = state.metrics_address.clone();
    let addr: SocketAddr = address
        .parse()
        .map_err(|_| ClientError::Address(address.clone()))?;
    let io = |source| ClientError::Io {
        address: address.clone(),
        source,
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream
        .write_all(b"GET /status HTTP/1.0\r\nHost: netmit\r\nAccept: application/json\r\n\r\n")
        .map_err(io)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(ClientError::Answer {
            address,
            answer: status.to_string(),
        });
    }
    serde_json::from_str(body).map_err(|e| ClientError::Answer {
        address,
        answer: format!("no JSON ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_of_the_daemon_lock_at_a_time() {
        let dir = std::env::temp_dir().join(format!("netmit-state-lock-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let netns = NetnsId {
            cookie: 7,
            inode: 1,
        };
        let file = StateFile::new(&dir, &netns);
        let first = file.lock().unwrap();
        assert!(first.is_some());
        // flock locks belong to the open file: a second open, even in this process, waits.
        assert!(file.lock().unwrap().is_none(), "a second holder");
        let lock = file.path().with_extension("lock");
        drop(first);
        assert!(!lock.exists(), "a clean release removes the lock file");
        assert!(file.lock().unwrap().is_some(), "released with its holder");
        // A symlink planted where the lock goes is not followed.
        std::os::unix::fs::symlink(dir.join("elsewhere"), &lock).unwrap();
        assert!(file.lock().is_err());
        assert!(!dir.join("elsewhere").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
