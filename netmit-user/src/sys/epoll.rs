//! An epoll instance and its busy-poll parameters (`EPIOCSPARAMS`/`EPIOCGPARAMS`, Linux
//! 6.9): the per-instance form of `SO_BUSY_POLL` and `SO_PREFER_BUSY_POLL` that IRQ
//! suspension (6.13) builds on.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

/// `EPIOCSPARAMS`: `_IOW(0x8A, 0x01, struct epoll_params)` (`linux/eventpoll.h`).
pub const EPIOCSPARAMS: libc::c_ulong = 0x4008_8a01;
/// `EPIOCGPARAMS`: `_IOR(0x8A, 0x02, struct epoll_params)`.
pub const EPIOCGPARAMS: libc::c_ulong = 0x8008_8a02;

/// `struct epoll_params` (`linux/eventpoll.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpollParams {
    /// How long one `epoll_wait` may busy-poll, in microseconds.
    pub busy_poll_usecs: u32,
    /// Packets per busy-poll round (above 64 needs CAP_NET_ADMIN).
    pub busy_poll_budget: u16,
    /// 1: keep the device's interrupts masked while the application polls.
    pub prefer_busy_poll: u8,
    /// Must be 0.
    pub pad: u8,
}

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    ///
    /// # Errors
    /// epoll_create1(2)'s error.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain epoll_create1; the descriptor is owned right away.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Watches `fd` for input (level-triggered); its events carry `fd` as their data.
    ///
    /// # Errors
    /// epoll_ctl(2)'s error.
    pub fn add(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: raw as u64,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, raw, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` (rounded up to whole milliseconds, at least 1: a timeout of 0
    /// skips busy polling) and returns the number of events; 0 also when a signal
    /// interrupted the wait.
    ///
    /// # Errors
    /// epoll_wait(2)'s error other than `EINTR`.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let ms = timeout
            .as_nanos()
            .div_ceil(1_000_000)
            .clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: `events` is writable for `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len().min(i32::MAX as usize) as libc::c_int,
                ms,
            )
        };
        if let Ok(n) = usize::try_from(n) {
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            Ok(0)
        } else {
            Err(e)
        }
    }

    /// Sets the busy-poll parameters (`EPIOCSPARAMS`).
    ///
    /// # Errors
    /// The ioctl's error: `ENOTTY` before Linux 6.9, `EPERM` for a budget above 64
    /// without CAP_NET_ADMIN, `EINVAL` for values out of range.
    pub fn set_params(&self, p: &EpollParams) -> io::Result<()> {
        // SAFETY: EPIOCSPARAMS reads one struct epoll_params from the pointer.
        if unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                EPIOCSPARAMS as _,
                std::ptr::from_ref(p),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads the busy-poll parameters back (`EPIOCGPARAMS`).
    ///
    /// # Errors
    /// The ioctl's error (`ENOTTY` before Linux 6.9).
    pub fn params(&self) -> io::Result<EpollParams> {
        let mut got = EpollParams::default();
        // SAFETY: EPIOCGPARAMS writes one struct epoll_params to the pointer.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), EPIOCGPARAMS as _, &raw mut got) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(got)
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    #[test]
    fn ioctl_numbers_match_the_uapi_header() {
        // _IOW(0x8A, 1, 8 bytes) and _IOR(0x8A, 2, 8 bytes).
        let ioc =
            |dir: libc::c_ulong, nr: libc::c_ulong| (dir << 30) | (8 << 16) | (0x8a << 8) | nr;
        assert_eq!(std::mem::size_of::<EpollParams>(), 8);
        assert_eq!(EPIOCSPARAMS, ioc(1, 1));
        assert_eq!(EPIOCGPARAMS, ioc(2, 2));
        assert_eq!(EPIOCSPARAMS, libc::EPIOCSPARAMS as libc::c_ulong);
    }

    #[test]
    fn waits_for_input() {
        let ep = Epoll::new().unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        ep.add(s.as_fd()).unwrap();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
        assert_eq!(ep.wait(&mut events, Duration::ZERO).unwrap(), 0);
        s.send_to(b"x", s.local_addr().unwrap()).unwrap();
        assert_eq!(ep.wait(&mut events, Duration::from_secs(2)).unwrap(), 1);
        let data = events[0].u64;
        assert_eq!(data, s.as_raw_fd() as u64);
    }
}
