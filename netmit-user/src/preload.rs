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
    collections::BTreeMap,
    fs,
    io::{self, Read},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
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

impl ProcessState {
    /// Whether the library made this process busy-poll: a mechanism set up and a
    /// non-zero busy-poll time.
    pub fn busy_polls(&self) -> bool {
        matches!(self.mechanism.as_str(), "epoll-params" | "socket-options")
            && self.busy_poll_usecs > 0
    }

    /// Whether the process is still there (its pid names a process with the start time
    /// of the file).
    pub fn alive(&self) -> bool {
        fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| stat_start_time(&s))
            == Some(self.start_time)
    }

    /// The inode of its network namespace (`None` when it cannot be read).
    pub fn netns_inode(&self) -> Option<u64> {
        fs::metadata(format!("/proc/{}/ns/net", self.pid))
            .ok()
            .map(|m| m.ino())
    }
}

/// What the preloaded processes of one network namespace report, added up: what the
/// daemon exports as `netmit_preload_*` metrics and `netmit status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PreloadSummary {
    /// Live preloaded processes.
    pub processes: u32,
    /// Those the library made busy-poll ([`ProcessState::busy_polls`]).
    pub busy_polling: u32,
    /// Epoll sets configured, all processes.
    pub epoll_sets: u32,
    /// Sockets in them.
    pub sockets: u32,
    /// Sets whose sockets several NAPI instances served (busy polling reaches only one).
    pub mixed_sets: u32,
    /// Per NAPI id, the epoll sets it served a socket of.
    pub napi_sets: BTreeMap<u32, u32>,
    /// The processes, by pid.
    pub list: Vec<ProcessState>,
}

impl PreloadSummary {
    /// Adds up `states`.
    pub fn of(states: Vec<ProcessState>) -> PreloadSummary {
        let mut s = PreloadSummary::default();
        for p in &states {
            s.processes += 1;
            s.busy_polling += u32::from(p.busy_polls());
            s.epoll_sets += p.epoll_sets;
            s.sockets += p.sockets;
            s.mixed_sets += p.mixed_sets;
            for set in &p.sets {
                let mut ids = set.napi_ids.clone();
                ids.sort_unstable();
                ids.dedup();
                for id in ids {
                    *s.napi_sets.entry(id).or_default() += 1;
                }
            }
        }
        s.list = states;
        s
    }

    /// `comm pid` of the busy-polling processes, for a controller's reason.
    pub fn busy_pollers(&self) -> Vec<String> {
        self.list
            .iter()
            .filter(|p| p.busy_polls())
            .map(|p| format!("{} {}", p.comm, p.pid))
            .collect()
    }
}

/// A directory's modification time closer than this to the moment it was read may hide
/// a later change within the same timestamp granule: such a listing is read again.
const MTIME_SETTLE: Duration = Duration::from_secs(1);

/// Follows a state directory cheaply, for a daemon tick: the files are parsed again only
/// when the directory changed (every file is replaced by a rename, which changes the
/// directory's mtime); otherwise only the liveness of the known processes is checked
/// (one small /proc read each). Only processes of the network namespace `netns_inode`
/// count, when given.
#[derive(Debug)]
pub struct PreloadWatch {
    dir: PathBuf,
    netns_inode: Option<u64>,
    seen: Option<SystemTime>,
    cached: Vec<ProcessState>,
}

impl PreloadWatch {
    /// A watch over `dir` (usually [`state_dir`] of the run directory).
    pub fn new(dir: PathBuf, netns_inode: Option<u64>) -> PreloadWatch {
        PreloadWatch {
            dir,
            netns_inode,
            seen: None,
            cached: Vec::new(),
        }
    }

    /// The live processes now.
    ///
    /// # Errors
    ///
    /// [`PreloadError::List`] when the directory exists but cannot be read (the cache is
    /// dropped, so the next call reads everything again).
    pub fn refresh(&mut self) -> Result<PreloadSummary, PreloadError> {
        let list_err = |source| PreloadError::List {
            path: self.dir.display().to_string(),
            source,
        };
        let mtime = match fs::symlink_metadata(&self.dir) {
            Ok(m) => m.modified().map_err(list_err)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.seen = None;
                self.cached.clear();
                return Ok(PreloadSummary::default());
            }
            Err(e) => {
                self.seen = None;
                return Err(list_err(e));
            }
        };
        let now = SystemTime::now();
        let settled = now
            .duration_since(mtime)
            .is_ok_and(|age| age >= MTIME_SETTLE);
        if self.seen == Some(mtime) && settled {
            self.cached.retain(ProcessState::alive);
        } else {
            let netns = self.netns_inode;
            match live_processes(&self.dir) {
                Ok(all) => {
                    self.cached = all
                        .into_iter()
                        .filter(|p| netns.is_none() || p.netns_inode() == netns)
                        .collect();
                    self.seen = settled.then_some(mtime);
                }
                Err(e) => {
                    self.seen = None;
                    self.cached.clear();
                    return Err(e);
                }
            }
        }
        Ok(PreloadSummary::of(self.cached.clone()))
    }
}

/// What says that something in a network namespace busy-polls, before IRQ suspension is
/// set up for it: on a server that does not busy-poll, the suspend settings are only a
/// 20 µs deferral watchdog, which costs throughput and CPU (docs/unmodified-servers.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BusyPollEvidence {
    /// Preloaded processes of the namespace that busy-poll (`comm pid`).
    pub preloaded_busy_pollers: Vec<String>,
    /// How much `BusyPollRxPackets` of the namespace rose over the sample (`None`:
    /// unreadable).
    pub busy_polled_packets: Option<u64>,
    /// The sample's length.
    pub over: Duration,
}

impl BusyPollEvidence {
    /// Whether anything busy-polls.
    pub fn busy_polls(&self) -> bool {
        !self.preloaded_busy_pollers.is_empty() || self.busy_polled_packets.is_some_and(|n| n > 0)
    }

    /// One line saying that nothing busy-polls, what the suspend settings then cost (as
    /// measured), and what to do.
    pub fn nothing_busy_polls(&self, iface: &str) -> String {
        let counter = match self.busy_polled_packets {
            Some(n) => format!(
                "BusyPollRxPackets +{n} in {}",
                crate::duration::display(self.over)
            ),
            None => "BusyPollRxPackets unreadable".into(),
        };
        format!(
            "nothing in this network namespace busy-polls (no busy-polling process started by \
             `netmit run`, {counter}): the suspend settings on {iface} would only be a 20 µs \
             deferral watchdog, measured to cut memcached UDP from 66k to 39k requests/s with \
             2-3x the CPU per request at low load; start the server with `netmit run --profile \
             suspend --iface {iface} -- CMD`, or pass --force to apply them anyway"
        )
    }
}

/// Looks for busy polling in the caller's network namespace: preloaded busy-polling
/// processes in `run_dir` first (then no sampling), else `BusyPollRxPackets` of
/// /proc/self/net/netstat over `over`.
pub fn busy_poll_evidence(run_dir: &Path, over: Duration) -> BusyPollEvidence {
    let netns = fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino());
    let preloaded = PreloadWatch::new(state_dir(run_dir), netns)
        .refresh()
        .map(|s| s.busy_pollers())
        .unwrap_or_default();
    if !preloaded.is_empty() {
        return BusyPollEvidence {
            preloaded_busy_pollers: preloaded,
            ..BusyPollEvidence::default()
        };
    }
    let read = || {
        crate::sys::fs::read_proc(Path::new("/proc/self/net/netstat"))
            .ok()
            .and_then(|t| crate::daemon::sample::parse_busy_poll_rx_packets(&t))
    };
    let before = read();
    std::thread::sleep(over);
    let after = read();
    BusyPollEvidence {
        preloaded_busy_pollers: Vec::new(),
        busy_polled_packets: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
        over,
    }
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

    fn state(pid: u32, mechanism: &str, sets: &[&[u32]]) -> ProcessState {
        ProcessState {
            version: 1,
            pid,
            start_time: 1,
            comm: format!("p{pid}"),
            mechanism: mechanism.into(),
            busy_poll_usecs: 64,
            busy_poll_budget: 64,
            prefer_busy_poll: 1,
            epoll_sets: sets.len() as u32,
            sockets: sets.iter().map(|s| s.len() as u32).sum(),
            mixed_sets: sets.iter().filter(|s| s.len() > 1).count() as u32,
            napi_ids: Vec::new(),
            sets: sets
                .iter()
                .enumerate()
                .map(|(i, ids)| SetState {
                    epfd: i as i32 + 3,
                    sockets: ids.len() as u32,
                    napi_ids: ids.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn evidence_of_busy_polling_and_the_warning_without_it() {
        let none = BusyPollEvidence {
            busy_polled_packets: Some(0),
            over: Duration::from_millis(500),
            ..BusyPollEvidence::default()
        };
        assert!(!none.busy_polls());
        let line = none.nothing_busy_polls("eth1");
        assert!(!line.contains('\n'), "one line: {line}");
        for part in [
            "BusyPollRxPackets +0 in 500ms",
            "66k to 39k requests/s",
            "netmit run --profile suspend --iface eth1",
            "--force",
        ] {
            assert!(line.contains(part), "{part:?} missing from {line}");
        }
        let unreadable = BusyPollEvidence::default();
        assert!(!unreadable.busy_polls());
        assert!(unreadable.nothing_busy_polls("x").contains("unreadable"));
        let counted = BusyPollEvidence {
            busy_polled_packets: Some(3),
            ..none.clone()
        };
        assert!(counted.busy_polls());
        let preloaded = BusyPollEvidence {
            preloaded_busy_pollers: vec!["memcached 7".into()],
            ..none
        };
        assert!(preloaded.busy_polls());
    }

    #[test]
    fn summary_adds_up_processes_sets_and_napis() {
        let s = PreloadSummary::of(vec![
            state(10, "epoll-params", &[&[8193], &[8193, 8194]]),
            state(11, "off", &[&[8194]]),
        ]);
        assert_eq!(
            (
                s.processes,
                s.busy_polling,
                s.epoll_sets,
                s.sockets,
                s.mixed_sets
            ),
            (2, 1, 3, 4, 1)
        );
        assert_eq!(s.napi_sets, BTreeMap::from([(8193, 2), (8194, 2)]));
        assert_eq!(s.busy_pollers(), vec!["p10 10".to_string()]);
        assert_eq!(PreloadSummary::of(Vec::new()), PreloadSummary::default());
    }

    #[test]
    fn watch_follows_the_directory_and_drops_the_gone() {
        let dir = std::env::temp_dir().join(format!("netmit-watch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut w = PreloadWatch::new(dir.clone(), None);
        assert_eq!(w.refresh().unwrap(), PreloadSummary::default());
        fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        let start = stat_start_time(&fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        let mut mine = state(me, "epoll-params", &[&[8193]]);
        mine.start_time = start;
        let write = |p: &ProcessState| {
            let tmp = dir.join(".tmp");
            fs::write(&tmp, serde_json::to_string(p).unwrap()).unwrap();
            fs::rename(&tmp, dir.join(p.pid.to_string())).unwrap();
        };
        write(&mine);
        assert_eq!(w.refresh().unwrap().processes, 1);
        // Rewritten (a rename): seen at once, however recent.
        mine.mixed_sets = 1;
        write(&mine);
        assert_eq!(w.refresh().unwrap().mixed_sets, 1);
        // Only this namespace's processes count.
        let own = fs::metadata("/proc/self/ns/net").unwrap().ino();
        let mut other = PreloadWatch::new(dir.clone(), Some(own + 1));
        assert_eq!(other.refresh().unwrap().processes, 0);
        let mut same = PreloadWatch::new(dir.clone(), Some(own));
        assert_eq!(same.refresh().unwrap().processes, 1);
        fs::remove_file(dir.join(me.to_string())).unwrap();
        assert_eq!(w.refresh().unwrap().processes, 0);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(w.refresh().unwrap(), PreloadSummary::default());
    }
}
