//! Processes and threads: signals to children, their state, and per-thread settings that
//! std does not offer. Callers name children they started (std's `Child::id`), so a signal
//! cannot reach an unrelated process unless the caller reaped the child already; the
//! functions here say which checks are theirs.

use std::{io, mem};

/// Sends `sig` to process `pid`. A process that is already gone is not an error.
///
/// # Errors
/// `InvalidInput` for a pid that is not a positive `pid_t`; otherwise kill(2)'s error.
pub fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    send(positive(pid)?, sig)
}

/// Sends `sig` to the process group led by `pid`, or to `pid` alone when it leads none.
///
/// # Errors
/// As [`signal`].
pub fn signal_group(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = positive(pid)?;
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(-pid, sig) } == 0 {
        return Ok(());
    }
    send(pid, sig)
}

/// The process group of `pid`, or `None` if there is no such process.
pub fn group_of(pid: u32) -> Option<u32> {
    let pid = positive(pid).ok()?;
    // SAFETY: getpgid reads process state and has no memory-safety preconditions.
    let pgid = unsafe { libc::getpgid(pid) };
    u32::try_from(pgid).ok()
}

/// Whether `pid` is an unreaped child of this process (alive or a zombie): as long as it
/// is, its pid (and process group id) cannot be reused, so signalling it is safe. The
/// child stays reapable.
pub fn is_unreaped_child(pid: u32) -> bool {
    let Ok(pid) = positive(pid) else {
        return false;
    };
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t. WNOWAIT leaves the child reapable.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    rc == 0
}

/// Reaps the exited child `pid` (whose `std::process::Child` was forgotten), waiting
/// for it to exit.
///
/// # Errors
/// waitpid(2)'s error, `ECHILD` if `pid` is not a child of this process.
pub fn reap(pid: u32) -> io::Result<()> {
    let pid = positive(pid)?;
    // SAFETY: a null status pointer is allowed.
    if unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's timer slack is set to `nanos` until the guard drops, when the
/// previous value comes back. Sleeps of a paced sender then end within microseconds of
/// their deadline instead of the default 50 µs.
pub struct TimerSlack(libc::c_ulong);

impl TimerSlack {
    /// Sets this thread's slack to `nanos` (at least 1).
    pub fn set(nanos: u64) -> TimerSlack {
        // SAFETY: PR_GET_TIMERSLACK takes no pointer and only reads the thread's setting.
        let old = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        let nanos = libc::c_ulong::try_from(nanos.max(1)).unwrap_or(libc::c_ulong::MAX);
        // SAFETY: PR_SET_TIMERSLACK changes only the calling thread's slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, nanos, 0, 0, 0) };
        TimerSlack(libc::c_ulong::try_from(old).unwrap_or(50_000).max(1))
    }
}

impl Drop for TimerSlack {
    fn drop(&mut self) {
        // SAFETY: as in `set`.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, self.0, 0, 0, 0) };
    }
}

/// The CLOCK_MONOTONIC time in nanoseconds: the clock of `bpf_ktime_get_ns()`, which
/// `std::time::Instant` does not expose as a number.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Sleeps until the CLOCK_MONOTONIC time `t` (nanoseconds, as [`monotonic_ns`]); a
/// signal may end the sleep early, which callers that loop on the clock tolerate.
pub fn sleep_until_monotonic_ns(t: u64) {
    let ts = libc::timespec {
        tv_sec: (t / 1_000_000_000) as libc::time_t,
        tv_nsec: (t % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; no remainder is asked for with TIMER_ABSTIME.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the CPU times in `/proc/<pid>/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

/// Blocks of at least this size get their own mapping from glibc's malloc
/// ([`fixed_mmap_threshold`]).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Makes glibc's malloc serve every block of [`MMAP_THRESHOLD`] or more from its own
/// mapping, returned to the kernel when freed, for the rest of the process.
///
/// glibc's default threshold is dynamic: freeing a large mapped block raises it up to
/// 32 MiB, after which blocks of that size come from the heap or a thread's arena, where
/// free space mostly stays resident. For a long-running process that builds a few
/// megabyte-sized values once (the steering tables, the parsed eBPF object) this kept
/// about 30 MiB resident in the daemon; a fixed threshold gives it back. Setting it also
/// fixes the trim threshold (twice the mmap threshold). A no-op with other C libraries.
pub fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; any value is accepted or refused.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

fn positive(pid: u32) -> io::Result<libc::pid_t> {
    libc::pid_t::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

fn send(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_signalled_and_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(is_unreaped_child(pid));
        assert!(group_of(pid).is_some());
        signal(pid, libc::SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(!is_unreaped_child(pid));
        assert!(signal(0, libc::SIGKILL).is_err());
        assert!(signal(u32::MAX, libc::SIGKILL).is_err());
    }

    #[test]
    fn timer_slack_comes_back() {
        let outer = TimerSlack::set(1);
        let inner = TimerSlack::set(1000);
        assert_eq!(inner.0, 1, "the slack set by `outer`");
        drop(inner);
        let again = TimerSlack::set(5);
        assert_eq!(again.0, 1, "`inner` put the slack back");
        drop(again);
        drop(outer);
        assert!(monotonic_ns() > 0);
        assert!(clock_ticks_per_second() >= 1);
    }
}
