//! The socket sender of the open loop: one connected kernel UDP socket per flow (bound
//! to the flow's source port and to the interface), `sendmmsg` of the few requests due,
//! each stamped with CLOCK_MONOTONIC in the layout the generator's program writes
//! ([`STAMP_MAGIC`], then the time, big-endian), so that `netmit_load` measures the
//! replies unchanged. The kernel computes the UDP checksum.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd, AsRawFd, OwnedFd},
};

use netmit_common::{STAMP_MAGIC, STAMP_TS_OFF};
use netmit_user::sys::socket;

use super::{
    LoadError,
    pace::{Clock, Transmit},
};

/// The socket sender's sockets and request buffers.
pub(crate) struct SocketTx {
    socks: Vec<OwnedFd>,
    bufs: Vec<Vec<u8>>,
}

impl SocketTx {
    /// `flows` sockets from `src:sport_base`, connected to `server`, bound to `iface`;
    /// room for `max_burst` requests of `payload_len` bytes per call.
    pub(crate) fn new(
        iface: &str,
        src: IpAddr,
        sport_base: u16,
        flows: u32,
        server: SocketAddr,
        payload_len: usize,
        max_burst: usize,
    ) -> Result<Self, LoadError> {
        let err = |what: String| move |source: io::Error| LoadError::Socket { what, source };
        let mut socks = Vec::with_capacity(flows as usize);
        for f in 0..flows {
            let port = sport_base + f as u16;
            let local = SocketAddr::new(src, port);
            let s = socket::bind_udp(local, false).map_err(|e| LoadError::Socket {
                what: format!("binding a UDP socket to {local}"),
                source: io::Error::other(e),
            })?;
            socket::set_bytes(
                s.as_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                iface.as_bytes(),
            )
            .map_err(err(format!("binding the socket of port {port} to {iface}")))?;
            let (sa, len) = socket::to_sockaddr(server);
            // SAFETY: `sa` holds a valid sockaddr of `len` bytes.
            if unsafe { libc::connect(s.as_raw_fd(), (&raw const sa).cast(), len) } != 0 {
                return Err(err(format!("connecting port {port} to {server}"))(
                    io::Error::last_os_error(),
                ));
            }
            socks.push(s);
        }
        let mut buf = vec![0u8; payload_len];
        buf[..4].copy_from_slice(&STAMP_MAGIC.to_be_bytes());
        for (i, b) in buf.iter_mut().enumerate().skip(STAMP_TS_OFF + 8) {
            *b = i as u8;
        }
        Ok(Self {
            socks,
            bufs: vec![buf; max_burst.max(1)],
        })
    }
}

impl Transmit for SocketTx {
    fn send(&mut self, flow: u32, n: usize, stamp_ns: u64) -> io::Result<usize> {
        let n = n.min(self.bufs.len());
        let mut iov: [libc::iovec; 64] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 64];
        // SAFETY: an all-zero mmsghdr is valid (no name, no control data).
        let mut msgs: [libc::mmsghdr; 64] = unsafe { std::mem::zeroed() };
        let n = n.min(64);
        for i in 0..n {
            let b = &mut self.bufs[i];
            b[STAMP_TS_OFF..STAMP_TS_OFF + 8].copy_from_slice(&stamp_ns.to_be_bytes());
            iov[i] = libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            };
            msgs[i].msg_hdr.msg_iov = &raw mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let fd = self.socks[flow as usize % self.socks.len()].as_raw_fd();
        // SAFETY: `n` headers, each pointing to one iovec over a live buffer.
        let rc = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, 0) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // No room (the socket's buffer or the device's queue): not sent.
            Some(libc::EAGAIN | libc::ENOBUFS) => Ok(0),
            // An ICMP error for an earlier datagram (the server's port was closed):
            // reported once on a connected socket; this call sent nothing.
            Some(libc::ECONNREFUSED) => Ok(0),
            _ => Err(e),
        }
    }
}

/// CLOCK_MONOTONIC with absolute sleeps.
pub(crate) struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&mut self) -> u64 {
        super::monotonic_ns()
    }

    fn relax(&mut self) {
        // Lets a runnable thread of this core (the client's NAPI thread) go first.
        std::thread::yield_now();
    }

    fn sleep_until(&mut self, t: u64) {
        let ts = libc::timespec {
            tv_sec: (t / 1_000_000_000) as libc::time_t,
            tv_nsec: (t % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: a valid timespec; no remainder is asked for with TIMER_ABSTIME. An
        // interruption returns early, which the pacer's loop handles.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
    }
}
