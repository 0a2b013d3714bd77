//! The state file: what the library knows (its settings, the epoll sets, the NAPI ids
//! their sockets were last served by, the sets that span several NAPIs), exported where
//! netmit can read it without a round trip to the application.
//!
//! A reporter thread (started with the first epoll set, every signal blocked) looks at the
//! tables once a second and, when what it sees changed, replaces `<dir>/<pid>` atomically
//! (written to `.<pid>.tmp` with mode 0600 and `O_EXCL|O_NOFOLLOW`, then renamed). It never
//! creates the directory: `netmit run` does, in netmit's run directory; the library writes
//! only into a directory owned by root or by the process's user and writable by no one
//! else. The file is JSON:
//!
//! ```json
//! {"version":1,"pid":4711,"start_time":123456,"comm":"memcached","mechanism":"epoll-params",
//!  "busy_poll_usecs":64,"busy_poll_budget":64,"prefer_busy_poll":1,
//!  "epoll_sets":4,"sockets":3,"mixed_sets":0,"napi_ids":[8193],
//!  "sets":[{"epfd":5,"sockets":1,"napi_ids":[8193]}]}
//! ```
//!
//! `start_time` is field 22 of `/proc/<pid>/stat`, so that a reader can tell the process
//! from a later one that got the same pid. The file is removed at a normal exit; one left
//! by a killed process is recognised as stale by that check.

use std::{
    collections::BTreeSet,
    ffi::c_int,
    fs,
    os::unix::ffi::OsStrExt,
    path::Path,
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
    time::Duration,
};

use crate::{
    sys,
    table::{MAX_MEMBERS, TABLES},
};

/// How often the reporter looks.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Pid of the process whose reporter runs (reset in a child after fork).
static REPORTER_PID: AtomicI32 = AtomicI32::new(0);
/// Pid that wrote the state file (for the exit handler).
static WROTE_PID: AtomicI32 = AtomicI32::new(0);
static SAID_UNWRITABLE: AtomicBool = AtomicBool::new(false);

/// One epoll set as reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetReport {
    /// Its fd.
    pub epfd: i32,
    /// Live sockets in it.
    pub sockets: u32,
    /// Distinct non-zero NAPI ids of those sockets.
    pub napi_ids: BTreeSet<u32>,
}

/// The whole report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The mechanism in use (`epoll-params`, `socket-options`, `off`, `undecided`).
    pub mechanism: &'static str,
    /// Settings.
    pub usecs: u32,
    /// Settings.
    pub budget: u16,
    /// Settings.
    pub prefer: u8,
    /// Every configured set.
    pub sets: Vec<SetReport>,
}

impl Report {
    /// The file's JSON text.
    pub fn to_json(&self, pid: i32, start_time: u64, comm: &str) -> String {
        let ids = |s: &BTreeSet<u32>| s.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let all: BTreeSet<u32> = self
            .sets
            .iter()
            .flat_map(|s| s.napi_ids.iter().copied())
            .collect();
        let mixed = self.sets.iter().filter(|s| s.napi_ids.len() > 1).count();
        let sockets: u32 = self.sets.iter().map(|s| s.sockets).sum();
        let sets: Vec<String> = self
            .sets
            .iter()
            .map(|s| {
                format!(
                    "{{\"epfd\":{},\"sockets\":{},\"napi_ids\":[{}]}}",
                    s.epfd,
                    s.sockets,
                    ids(&s.napi_ids)
                )
            })
            .collect();
        format!(
            "{{\"version\":1,\"pid\":{pid},\"start_time\":{start_time},\"comm\":\"{}\",\
             \"mechanism\":\"{}\",\"busy_poll_usecs\":{},\"busy_poll_budget\":{},\
             \"prefer_busy_poll\":{},\"epoll_sets\":{},\"sockets\":{sockets},\
             \"mixed_sets\":{mixed},\"napi_ids\":[{}],\"sets\":[{}]}}\n",
            json_escape(comm),
            self.mechanism,
            self.usecs,
            self.budget,
            self.prefer,
            self.sets.len(),
            ids(&all),
            sets.join(",")
        )
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Field 22 (starttime) of /proc/self/stat.
pub fn start_time(stat: &str) -> Option<u64> {
    // The comm field may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `fd` is (still) an epoll instance.
fn is_epoll(fd: i32) -> bool {
    fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|l| l.as_os_str().as_bytes() == b"anon_inode:[eventpoll]")
}

/// Looks at the tables: drops what is gone, reads each socket's NAPI id.
pub fn snapshot(settings: (&'static str, u32, u16, u8)) -> Report {
    let mut sets: Vec<SetReport> = Vec::new();
    for slot in &TABLES.sets {
        let epfd = slot.load(Ordering::Acquire);
        if epfd < 0 {
            continue;
        }
        if !is_epoll(epfd) {
            TABLES.remove_set(epfd);
            continue;
        }
        sets.push(SetReport {
            epfd,
            ..SetReport::default()
        });
    }
    for fd in 0..MAX_MEMBERS {
        let Some((epfd, ino)) = TABLES.member(fd) else {
            continue;
        };
        let fd = fd as c_int;
        if sys::socket_inode(fd) != Some(ino) {
            // Closed (the kernel removed it from the set), or the number was reused.
            TABLES.remove_member(epfd, fd);
            continue;
        }
        let Some(set) = sets.iter_mut().find(|s| s.epfd == epfd) else {
            continue;
        };
        set.sockets += 1;
        if let Some(id) = sys::getsockopt_u32(fd, sys::SO_INCOMING_NAPI_ID).filter(|&id| id != 0) {
            set.napi_ids.insert(id);
        }
    }
    sets.sort_by_key(|s| s.epfd);
    Report {
        mechanism: settings.0,
        usecs: settings.1,
        budget: settings.2,
        prefer: settings.3,
        sets,
    }
}

/// Starts the reporter for this process unless it runs already (also in a child after
/// fork, where the parent's thread does not exist).
pub fn ensure_started(dir: &'static Path, settings: fn() -> (&'static str, u32, u16, u8)) {
    let pid = sys::getpid();
    let seen = REPORTER_PID.load(Ordering::Acquire);
    if seen == pid
        || REPORTER_PID
            .compare_exchange(seen, pid, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return;
    }
    let spawned = sys::with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("netmit-preload".into())
            .stack_size(256 * 1024)
            .spawn(move || run(dir, pid, settings))
    });
    if spawned.is_err() {
        REPORTER_PID.store(0, Ordering::Release);
    }
}

fn run(dir: &'static Path, pid: i32, settings: fn() -> (&'static str, u32, u16, u8)) {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let start = start_time(&stat).unwrap_or(0);
    let comm = fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let comm = comm.trim_end();
    let mut last = String::new();
    loop {
        let text = snapshot(settings()).to_json(pid, start, comm);
        if text != last {
            match write_state(dir, pid, &text) {
                Ok(()) => {
                    WROTE_PID.store(pid, Ordering::Release);
                    last = text;
                }
                // No directory: nobody asked for a report (netmit run creates it).
                Err(libc::ENOENT) => {}
                Err(e) => {
                    if !SAID_UNWRITABLE.swap(true, Ordering::AcqRel) {
                        sys::say(&format!(
                            "netmit-preload: cannot write the state file in {} ({}); `netmit \
                             status` will not list this process",
                            dir.display(),
                            std::io::Error::from_raw_os_error(e)
                        ));
                    }
                }
            }
        }
        std::thread::sleep(INTERVAL);
    }
}

/// Replaces `<dir>/<pid>` with `text`; the errno on failure (`EPERM` for an untrusted
/// directory).
fn write_state(dir: &Path, pid: i32, text: &str) -> Result<(), c_int> {
    sys::replace_in_trusted_dir(
        dir,
        &pid.to_string(),
        &format!(".{pid}.tmp"),
        text.as_bytes(),
    )
}

/// At exit: removes the state file this process wrote.
pub fn remove_own_file(dir: &Path) {
    let pid = sys::getpid();
    if WROTE_PID.load(Ordering::Acquire) != pid {
        return;
    }
    sys::unlink(&dir.join(pid.to_string()));
}

/// In a child after fork: its reporter has not started yet.
pub fn forget_reporter() {
    REPORTER_PID.store(0, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_mixed_sets() {
        let r = Report {
            mechanism: "epoll-params",
            usecs: 64,
            budget: 64,
            prefer: 1,
            sets: vec![
                SetReport {
                    epfd: 5,
                    sockets: 2,
                    napi_ids: [8193, 8194].into(),
                },
                SetReport {
                    epfd: 7,
                    sockets: 1,
                    napi_ids: [8193].into(),
                },
            ],
        };
        let text = r.to_json(42, 99, "mem\"cached");
        assert!(
            text.starts_with("{\"version\":1,\"pid\":42,\"start_time\":99,"),
            "{text}"
        );
        assert!(text.contains("\"comm\":\"mem\\\"cached\""), "{text}");
        assert!(
            text.contains(
                "\"epoll_sets\":2,\"sockets\":3,\"mixed_sets\":1,\"napi_ids\":[8193,8194]"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("{\"epfd\":7,\"sockets\":1,\"napi_ids\":[8193]}]}\n"),
            "{text}"
        );
    }

    #[test]
    fn start_time_survives_odd_comms() {
        let stat = "4711 (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(start_time(stat), Some(777));
        assert_eq!(start_time("garbage"), None);
    }
}
