//! busy-poll mode: epoll with busy polling preferred, so that the server's own
//! `epoll_wait` runs the NAPI poll and IRQ suspension can engage.
//!
//! # What each setting does
//!
//! - **`EPIOCSPARAMS` on the epoll instance** (Linux 6.9; `struct epoll_params`):
//!   - `busy_poll_usecs`: when `epoll_wait` finds no event, it polls the NAPI instance
//!     of its sockets (the last one that delivered a datagram) in the calling thread for
//!     up to this long before it sleeps. A request that arrives meanwhile is taken off
//!     the device by the server's own thread, with no interrupt and no wake-up;
//!   - `busy_poll_budget`: packets per poll round (at most 64, `NAPI_POLL_WEIGHT`,
//!     without `CAP_NET_ADMIN`);
//!   - `prefer_busy_poll`: the application pledges to poll. The kernel then leaves the
//!     NAPI to the busy poller (`NAPI_STATE_PREFER_BUSY_POLL`: the softirq does not take
//!     it back while the application keeps polling) and keeps the device interrupts
//!     masked, with `gro_flush_timeout` as the watchdog. Since Linux 6.13 it is also the
//!     switch of **IRQ suspension**: every `epoll_wait` that returns events re-arms the
//!     NAPI's `irq-suspend-timeout`, so interrupts stay off as long as the application
//!     finds work; an `epoll_wait` that busy-polled and found nothing resumes them before
//!     it sleeps.
//! - **`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET` on the socket**: the
//!   same three for socket reads. They do not change `epoll_wait` (it uses the epoll
//!   instance's parameters), but they make every non-blocking `recvmmsg` that finds the
//!   socket's queue empty run one NAPI poll round first: the end of each batch picks up
//!   what has reached the device since, without going back to `epoll_wait`. They need
//!   `CAP_NET_ADMIN`; without it the server runs with the epoll parameters alone.
//!
//! # What IRQ suspension needs from the application
//!
//! From the kernel's networking/napi.rst ("IRQ suspension") and `fs/eventpoll.c`:
//! `prefer_busy_poll` on the epoll instance, `irq-suspend-timeout` set on the NAPI (netdev
//! netlink, e.g. `netmit tune set IFACE --irq-suspend-timeout 20ms`) together with small
//! `napi_defer_hard_irqs` and `gro_flush_timeout` (used after a busy poll found
//! nothing), and an application that keeps calling `epoll_wait`. Two details matter:
//!
//! - `epoll_wait` must be allowed to wait: with a timeout of 0 it returns before the busy
//!   loop (`ep_poll` checks `timed_out` first), so it neither polls the NAPI nor keeps
//!   IRQs suspended. The server waits with a timeout (100 ms, to notice the end of the
//!   run), and the busy loop inside `epoll_wait` is what polls.
//! - All sockets of one epoll instance should be served by the same NAPI instance (epoll
//!   busy-polls one NAPI id). Each server thread has its own epoll instance with one
//!   socket, so this holds per thread; with `SO_REUSEPORT` across several RX queues the
//!   kernel's hash does not follow the queues, so several threads may poll one NAPI.
//!
//! `TcpExt: BusyPollRxPackets` in /proc/net/netstat counts the packets busy polling
//! received; the report carries its rise over the run as the evidence that the server's
//! thread, not the softirq, took them off the device.
//!
//! # Minimum kernel version
//!
//! `EPIOCSPARAMS` 6.9 ([`ServeError::EpollParamsUnsupported`] before); IRQ suspension
//! 6.13; the socket options 5.11.

use std::{fs, io, os::fd::BorrowedFd};

use netmit_user::sys::{
    epoll::{Epoll, EpollParams},
    socket,
};
use serde::Serialize;

use super::ServeError;

const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// The busy-poll parameters of busy-poll mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct BusyPollParams {
    /// How long one `epoll_wait` (and one socket read) may busy-poll, in microseconds
    /// (at most `i32::MAX`).
    pub usecs: u32,
    /// Packets per busy-poll round (above 64 needs `CAP_NET_ADMIN`).
    pub budget: u16,
    /// Also set the socket options (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`,
    /// `SO_BUSY_POLL_BUDGET`) when permitted.
    pub socket_options: bool,
}

impl Default for BusyPollParams {
    /// 64 µs and 64 packets: the defaults of `netmit serve`.
    fn default() -> Self {
        Self {
            usecs: 64,
            budget: 64,
            socket_options: true,
        }
    }
}

/// Sets the busy-poll parameters of an epoll instance, with `prefer_busy_poll` on, and
/// reads them back.
///
/// # Errors
///
/// [`ServeError::EpollParamsUnsupported`] on kernels without `EPIOCSPARAMS`,
/// [`ServeError::BudgetNotPermitted`] for a budget above 64 without `CAP_NET_ADMIN`.
pub(crate) fn set_epoll_params(epoll: &Epoll, p: &BusyPollParams) -> Result<(), ServeError> {
    let want = EpollParams {
        busy_poll_usecs: p.usecs,
        busy_poll_budget: p.budget,
        prefer_busy_poll: 1,
        pad: 0,
    };
    epoll
        .set_params(&want)
        .map_err(|e| ServeError::epoll_params(p.budget, kernel_release(), e))?;
    let got = epoll
        .params()
        .map_err(|e| ServeError::io("ioctl(EPIOCGPARAMS) on the epoll instance", e))?;
    if got != want {
        return Err(ServeError::io(
            format!("EPIOCSPARAMS did not take: asked {want:?}, the kernel has {got:?}"),
            io::Error::from(io::ErrorKind::InvalidData),
        ));
    }
    Ok(())
}

/// Sets `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` and `SO_BUSY_POLL_BUDGET` on a socket;
/// returns the option that failed.
pub(crate) fn set_socket_options(
    fd: BorrowedFd<'_>,
    p: &BusyPollParams,
) -> Result<(), (&'static str, io::Error)> {
    let set = |name, opt, value: i64| {
        let value = value.clamp(0, i64::from(i32::MAX)) as i32;
        socket::set_int(fd, libc::SOL_SOCKET, opt, value).map_err(|e| (name, e))
    };
    set("SO_PREFER_BUSY_POLL", SO_PREFER_BUSY_POLL, 1)?;
    set("SO_BUSY_POLL", SO_BUSY_POLL, i64::from(p.usecs))?;
    set(
        "SO_BUSY_POLL_BUDGET",
        SO_BUSY_POLL_BUDGET,
        i64::from(p.budget),
    )
}

/// `TcpExt: BusyPollRxPackets` of the calling thread's network namespace, read through
/// `/proc/thread-self/net/netstat` (`/proc/net` follows the main thread's namespace).
pub(crate) fn busy_poll_rx_packets() -> Option<u64> {
    let text = fs::read_to_string("/proc/thread-self/net/netstat").ok()?;
    netmit_user::daemon::sample::parse_busy_poll_rx_packets(&text)
}

/// The running kernel's release, as `uname -r` prints it.
pub(crate) fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown release".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_params_round_trip_on_this_kernel() {
        let epoll = Epoll::new().unwrap();
        match set_epoll_params(&epoll, &BusyPollParams::default()) {
            Ok(()) => {}
            // A kernel older than 6.9 says so, with its release.
            Err(ServeError::EpollParamsUnsupported { kernel, .. }) => {
                assert_eq!(kernel, kernel_release())
            }
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn netstat_counter_is_readable() {
        assert!(
            busy_poll_rx_packets().is_some(),
            "TcpExt: BusyPollRxPackets"
        );
    }
}
