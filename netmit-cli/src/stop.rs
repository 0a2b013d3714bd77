//! Stopping long-running subcommands (`rx`, `gen`, `serve`) on SIGINT/SIGTERM: the
//! handler only sets a flag, and the work loops check it and still print their report.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

/// Set by SIGINT/SIGTERM.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Installs the handler for SIGINT and SIGTERM. No SA_RESTART: a thread blocked in
/// epoll_wait, poll or a send returns at once, and its loop sees the flag.
pub fn install() -> anyhow::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error()).context("installing a signal handler");
            }
        }
    }
    Ok(())
}
