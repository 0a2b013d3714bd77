//! Applications running with `libnetmit_preload.so` (crate `netmit-preload`, started by
//! `netmit run`): finding the library, checking its environment before a launch, and
//! reading the state files the preloaded processes export.
//!
//! Each preloaded process writes `<run dir>/preload/<pid>` (JSON, mode 0600, replaced
//! atomically at most once a second and only when something changed; format in the
//! library's `report` module). Reading them costs the application nothing: no socket, no
//! signal, no round trip per call. A file whose pid is gone, or whose pid now belongs to a
//! later process (its `start_time` differs from `/proc/<pid>/stat`), is stale and skipped.

use std::{
    fs,
    io::{self, Read},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// The library's configuration variables and their validation: the very code the library
/// runs at load, so that `netmit run` refuses a bad value before anything changes.
#[path = "../../netmit-preload/src/config.rs"]
pub mod config;

/// The library's file name.
pub const LIBRARY: &str = "libnetmit_preload.so";

/// The state directory inside a run directory.
pub fn state_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("preload")
}

/// The directory the Debian package (`cargo xtask dist`) installs the library into.
pub const PACKAGE_LIB_DIR: &str = "/usr/lib/netmit";

/// Where the library is looked for, given the path of the running `netmit` binary: next
/// to it (a cargo build: `target/<profile>/`), then `../lib/netmit/` (an installation:
/// `/usr/bin/netmit` and `/usr/lib/netmit/libnetmit_preload.so`), then /usr/lib/netmit.
pub fn library_candidates(exe: &Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    vec![
        dir.join(LIBRARY),
        dir.join("..").join("lib").join("netmit").join(LIBRARY),
        // Where the Debian package installs it, for a netmit started through a symlink
        // or from another prefix.
        Path::new(PACKAGE_LIB_DIR).join(LIBRARY),
    ]
}

/// The first candidate that is a regular file.
pub fn find_library(exe: &Path) -> Option<PathBuf> {
    library_candidates(exe)
        .into_iter()
        .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
}

/// One epoll set of a preloaded process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetState {
    /// Its fd in the process.
    pub epfd: i32,
    /// Sockets in it.
    pub sockets: u32,
    /// NAPI instances that last delivered to them (0 = none yet is left out).
    pub napi_ids: Vec<u32>,
}

/// What a preloaded process reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    /// Format version (1).
    pub version: u32,
    /// The process.
    pub pid: u32,
    /// Its start time (field 22 of /proc/PID/stat).
    pub start_time: u64,
    /// Its command name.
    pub comm: String,
    /// `epoll-params`, `socket-options`, `off` or `undecided`.
    pub mechanism: String,
    /// Busy-poll time per `epoll_wait`, µs.
    pub busy_poll_usecs: u32,
    /// Packets per poll round.
    pub busy_poll_budget: u16,
    /// `prefer_busy_poll`.
    pub prefer_busy_poll: u8,
    /// Epoll sets configured.
    pub epoll_sets: u32,
    /// Sockets in them.
    pub sockets: u32,
    /// Sets whose sockets were served by more than one NAPI instance: busy polling polls
    /// one NAPI per set, so such a set busy-polls only one of its queues.
    pub mixed_sets: u32,
    /// Every NAPI id seen.
    pub napi_ids: Vec<u32>,
    /// The sets.
    pub sets: Vec<SetState>,
}

/// Errors reading the state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreloadError {
    /// The directory cannot be listed.
    #[error("listing {path}")]
    List {
        /// The directory.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Field 22 (starttime) of a `/proc/PID/stat` line.
pub fn stat_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Reads one state file, without following a symlink; `None` if it is unreadable,
/// malformed or stale.
pub fn read_state(path: &Path) -> Option<ProcessState> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    f.by_ref().take(1 << 20).read_to_string(&mut text).ok()?;
    let state: ProcessState = serde_json::from_str(&text).ok()?;
    let name = path.file_name()?.to_str()?;
    if name != state.pid.to_string() {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{}/stat", state.pid)).ok()?;
    (stat_start_time(&stat) == Some(state.start_time)).then_some(state)
}

/// The live preloaded processes that report into `dir` (none if it does not exist),
/// by pid.
///
/// # Errors
///
/// [`PreloadError::List`] when the directory exists but cannot be listed.
pub fn live_processes(dir: &Path) -> Result<Vec<ProcessState>, PreloadError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PreloadError::List {
                path: dir.display().to_string(),
                source,
            });
        }
    };
    let mut out: Vec<ProcessState> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| read_state(&e.path()))
        .collect();
    out.sort_by_key(|s| s.pid);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_next_to_the_binary_then_lib_netmit() {
        let c = library_candidates(Path::new("/usr/bin/netmit"));
        assert_eq!(
            c,
            vec![
                PathBuf::from("/usr/bin/libnetmit_preload.so"),
                PathBuf::from("/usr/bin/../lib/netmit/libnetmit_preload.so"),
                PathBuf::from("/usr/lib/netmit/libnetmit_preload.so")
            ]
        );
    }

    #[test]
    fn own_state_file_is_read_and_stale_ones_are_not() {
        let dir = std::env::temp_dir().join(format!("netmit-preload-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        let start = stat_start_time(&fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        let body = |pid: u32, start: u64| {
            format!(
                "{{\"version\":1,\"pid\":{pid},\"start_time\":{start},\"comm\":\"x\",\
                 \"mechanism\":\"epoll-params\",\"busy_poll_usecs\":64,\"busy_poll_budget\":64,\
                 \"prefer_busy_poll\":1,\"epoll_sets\":1,\"sockets\":2,\"mixed_sets\":1,\
                 \"napi_ids\":[8193,8194],\"sets\":[{{\"epfd\":3,\"sockets\":2,\
                 \"napi_ids\":[8193,8194]}}]}}"
            )
        };
        fs::write(dir.join(me.to_string()), body(me, start)).unwrap();
        // Same pid, another start time: a later process.
        fs::write(dir.join("1"), body(1, 12345678901)).unwrap();
        // A name that does not match its content.
        fs::write(dir.join("2"), body(me, start)).unwrap();
        fs::write(dir.join("notes"), "x").unwrap();
        let live = live_processes(&dir).unwrap();
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!((live[0].pid, live[0].mixed_sets), (me, 1));
        fs::remove_dir_all(&dir).unwrap();
        assert!(live_processes(&dir).unwrap().is_empty());
    }
}
