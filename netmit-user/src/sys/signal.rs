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
