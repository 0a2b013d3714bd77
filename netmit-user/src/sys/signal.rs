//! Signals for command-line tools: a stop flag set by SIGINT/SIGTERM, and SIGPIPE back to
//! its default so that a tool writing into a closed pipe ends quietly, as `cat` does.

use std::{
    io,
    sync::atomic::{AtomicBool, Ordering},
};

/// Set by SIGINT/SIGTERM once [`install_stop`] ran.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Whether SIGINT or SIGTERM arrived since [`install_stop`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// The stop flag itself, for loops that take an `&AtomicBool`.
pub fn stop_flag() -> &'static AtomicBool {
    &STOP
}

/// Asks for a stop as a signal would (for a tool's own deadline).
pub fn request_stop() {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set the stop flag instead of ending the process. No
/// SA_RESTART: a thread blocked in epoll_wait, poll or a send returns at once with EINTR,
/// and its loop sees the flag.
///
/// # Errors
///
/// The error of `sigaction`.
pub fn install_stop() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: an all-zero sigaction is valid; the handler only stores to an atomic,
        // which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Puts SIGPIPE back to its default action (the Rust runtime ignores it, which turns a
/// write into a closed pipe into an error, and `println!` then panics). With the default,
/// `netmit status --json | head -c 10` ends the way `cat` does: quietly, with the status
/// of SIGPIPE. Not for the daemon, whose log may go to a pipe that closes.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The child that [`forward_to`] passes signals on to (0: not started yet).
static FORWARD_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
/// Signals that arrived before the child existed (bit per signal number).
static FORWARD_PENDING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn on_forward(sig: libc::c_int) {
    let pid = FORWARD_PID.load(Ordering::Acquire);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; `pid` is the child this process started.
        unsafe { libc::kill(pid, sig) };
    } else if (0..64).contains(&sig) {
        FORWARD_PENDING.fetch_or(1 << sig, Ordering::AcqRel);
    }
}

/// Catches `signals` so that each is passed on to the child named later with
/// [`forward_to`] instead of ending this process (SA_RESTART: a `wait` goes on). Signals
/// that arrive before then are kept and passed on by [`forward_to`]. The child's `exec`
/// resets the handlers to their defaults, so it does not inherit them.
///
/// # Errors
///
/// The error of `sigaction`.
pub fn install_forward(signals: &[libc::c_int]) -> io::Result<()> {
    for &sig in signals {
        // SAFETY: an all-zero sigaction is valid; the handler only touches atomics and
        // calls kill, both async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_forward as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Names the child that caught signals go to, and passes on those that arrived before.
pub fn forward_to(pid: u32) {
    let pid = i32::try_from(pid).unwrap_or(0);
    FORWARD_PID.store(pid, Ordering::Release);
    let pending = FORWARD_PENDING.swap(0, Ordering::AcqRel);
    for sig in 1..64 {
        if pending & (1 << sig) != 0 && pid > 0 {
            // SAFETY: kill has no memory-safety preconditions; `pid` is our child.
            unsafe { libc::kill(pid, sig) };
        }
    }
}
