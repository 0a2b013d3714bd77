//! The socket sender of the open loop: one connected kernel UDP socket per flow (bound
//! to the flow's source port and to the interface), `sendmmsg` of the few requests due,
//! each stamped with CLOCK_MONOTONIC in the layout the generator's program writes
//! ([`STAMP_MAGIC`], then the time, big-endian), so that `netmit_load` measures the
//! replies unchanged. The kernel computes the UDP checksum.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd, OwnedFd},
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
            socket::connect(s.as_fd(), server)
                .map_err(err(format!("connecting port {port} to {server}")))?;
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
        for b in &mut self.bufs[..n] {
            b[STAMP_TS_OFF..STAMP_TS_OFF + 8].copy_from_slice(&stamp_ns.to_be_bytes());
        }
        let sock = self.socks[flow as usize % self.socks.len()].as_fd();
        let e = match socket::send_connected_batch(sock, &mut self.bufs[..n]) {
            Ok(sent) => return Ok(sent),
            Err(e) => e,
        };
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
        // An interruption returns early, which the pacer's loop handles.
        netmit_user::sys::process::sleep_until_monotonic_ns(t);
    }
}
