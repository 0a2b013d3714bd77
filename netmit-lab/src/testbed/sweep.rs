//! Removing what dead processes left: a test binary or benchmark killed with SIGKILL (or
//! stopped with its session) cannot run its testbeds' `Drop`, and its namespaces, veths and
//! pins would stay until someone removes them by hand.
//!
//! A testbed's name says whose it is: `nm<pid>x…` ([`process_prefix`]) or
//! `nm<tag><pid>x…` ([`tagged_prefix`]). A namespace whose process is gone belongs to
//! nobody, so [`sweep_orphans`] deletes it; one whose pid is alive is left alone, even if
//! the pid was reused by an unrelated process (removing too little is the safe mistake).
//! Once the namespace is gone its veth goes too, the XDP link pinned for it turns defunct,
//! and [`PinRoot::sweep_defunct`] removes those pins.
//!
//! [`process_prefix`]: super::process_prefix
//! [`tagged_prefix`]: super::tagged_prefix

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::Once,
    thread,
    time::{Duration, Instant},
};

use netmit_user::{ebpf::PinRoot, sys::Netns};

use super::naming::{NAME_STEM, NETNS_RUN_DIR};

/// How long a sweep waits for the kernel to tear down the namespaces it deleted (it does
/// so in the background) before it gives up on their pins.
const TEARDOWN_WAIT: Duration = Duration::from_secs(10);

/// The pid in a testbed name (`nm<pid>x…` or `nm<tag><pid>x…`), or `None` for a name
/// that does not follow the scheme.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_STEM)?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_lowercase() && c != 'x');
    let (digits, _) = rest.split_once('x')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Deletes every testbed namespace whose owning process is gone, then the pins their
/// attachments left (waiting a bounded time for the kernel to tear the namespaces down).
/// Returns one line per thing removed.
pub fn sweep_orphans() -> Vec<String> {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let root = PinRoot::default();
    let mut removed = Vec::new();
    let mut dying: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(NETNS_RUN_DIR).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if alive(pid) {
            continue;
        }
        if let Ok(ns) = Netns::named(&name) {
            dying.push(root.netns_dir(&ns.id()));
        }
        let deleted = Command::new("ip")
            .args(["netns", "delete", &name])
            .status()
            .is_ok_and(|s| s.success());
        if deleted {
            removed.push(format!("{NETNS_RUN_DIR}/{name}, left by process {pid}"));
        }
    }
    let deadline = Instant::now() + TEARDOWN_WAIT;
    loop {
        for pins in root.sweep_defunct() {
            removed.push(format!(
                "{}, left by a testbed that is gone",
                pins.display()
            ));
        }
        if dying.iter().all(|d| !d.exists()) || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    for dir in crate::bench::xdp_filter::sweep_scratch() {
        removed.push(format!(
            "{}, left by a benchmark that is gone",
            dir.display()
        ));
    }
    removed
}

/// [`sweep_orphans`], once per process, reporting on stderr: the first testbed a process
/// makes clears what killed runs left, so they cannot pile up across runs.
pub(super) fn sweep_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for line in sweep_orphans() {
            eprintln!("testbed: removed {line}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids() {
        assert_eq!(owner_pid("nm4711x0a"), Some(4711));
        assert_eq!(owner_pid("nmb4711x0a"), Some(4711));
        assert_eq!(owner_pid("nmbench4711x12b"), Some(4711));
        assert_eq!(owner_pid("nmbx0a"), None);
        assert_eq!(owner_pid("nmx0a"), None);
        assert_eq!(owner_pid("nm4711"), None);
        assert_eq!(owner_pid("nmbench-0a"), None);
        assert_eq!(owner_pid("eth0"), None);
        assert_eq!(owner_pid("nm99999999999999x0a"), None);
    }
}
