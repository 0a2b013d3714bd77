//! The kernel modes' UDP sockets and their batched receive-and-reply step: one
//! `recvmmsg` takes up to a batch of datagrams, each becomes its reply in the buffer it
//! arrived in, and one `sendmmsg` sends the replies back to their senders
//! ([`netmit_user::sys::mmsg`]). Two system calls per batch instead of two per datagram,
//! so that at load the server's per-request cost is the kernel's UDP path and the
//! notification, which is what the modes compare.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd, OwnedFd},
};

use netmit_user::sys::{
    mmsg::MsgBatch,
    socket::{self, BindError},
};

use super::{ReplyFormat, ServeError, report::Counters};

/// The largest UDP payload (65535 minus the 8-byte UDP header; IPv4 allows 65507 of it).
/// Every receive buffer has this size, so no request is ever truncated.
pub(crate) const MAX_DATAGRAM: usize = 65527;

/// A non-blocking UDP socket bound to `addr`, with `SO_REUSEPORT` when `reuse_port`.
fn bind_one(addr: SocketAddr, reuse_port: bool) -> Result<OwnedFd, ServeError> {
    socket::bind_udp(addr, reuse_port).map_err(|e| match e {
        BindError::Socket(e) => ServeError::io("socket(SOCK_DGRAM)", e),
        BindError::ReusePort(e) => ServeError::io("setsockopt(SO_REUSEPORT)", e),
        BindError::Bind(e) => ServeError::bind(addr.ip(), addr.port(), e),
    })
}

/// Sets the receive buffer to `bytes`: `SO_RCVBUFFORCE` (beyond `net.core.rmem_max`,
/// needs `CAP_NET_ADMIN`), falling back to `SO_RCVBUF` without the capability.
pub(crate) fn set_rcvbuf(sock: &OwnedFd, bytes: usize) -> Result<(), ServeError> {
    let v = i32::try_from(bytes).unwrap_or(i32::MAX);
    let fd = sock.as_fd();
    match socket::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            socket::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, v)
                .map_err(|e| ServeError::io("setsockopt(SO_RCVBUF)", e))
        }
        Err(e) => Err(ServeError::io("setsockopt(SO_RCVBUFFORCE)", e)),
    }
}
/// `count` UDP sockets bound to `addr` port `port`: one plain socket, or a
/// `SO_REUSEPORT` group in which the kernel spreads the clients (by a hash of their
/// address and port) over the sockets, one per server thread.
///
/// A reuseport group would share the port with any other group of the same user, so
/// the port is first bound once without `SO_REUSEPORT`: if that fails with
/// `EADDRINUSE`, the port is taken.
pub(crate) fn bind_sockets(
    addr: IpAddr,
    port: u16,
    count: usize,
) -> Result<Vec<OwnedFd>, ServeError> {
    let sa = SocketAddr::new(addr, port);
    if count <= 1 {
        return Ok(vec![bind_one(sa, false)?]);
    }
    drop(bind_one(sa, false)?);
    (0..count).map(|_| bind_one(sa, true)).collect()
}

/// What one [`Batch::serve`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Served {
    /// Datagrams received.
    pub received: usize,
    /// The last error of a reply that could not be sent, if any.
    pub send_error: Option<i32>,
}

/// A batch of up to `size` datagrams of up to [`MAX_DATAGRAM`] bytes each.
pub(crate) struct Batch(MsgBatch);

impl Batch {
    /// Buffers for `size` datagrams (allocated lazily by the kernel: pages are touched
    /// only as far as datagrams fill them).
    pub(crate) fn new(size: usize) -> Self {
        Batch(MsgBatch::new(size, MAX_DATAGRAM))
    }

    /// Receives up to a batch of datagrams from `fd` without blocking, turns each into its
    /// reply with `format` and sends the replies back to their senders, counting into `c`.
    /// Returns at once (0 received) when nothing is waiting.
    ///
    /// A reply that cannot be sent (the socket's send buffer is full, or the route to the
    /// sender went away) is counted in [`Counters::send_failed`]; it does not fail the call.
    ///
    /// # Errors
    ///
    /// The `recvmmsg` error, if it is not `EAGAIN` or `EINTR`.
    pub(crate) fn serve(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        format: ReplyFormat,
        c: &mut Counters,
    ) -> io::Result<Served> {
        let received = self.0.recv(fd)?;
        for i in 0..received {
            let Some((payload, truncated)) = self.0.datagram(i) else {
                break;
            };
            let len = payload.len();
            c.requests += 1;
            c.request_bytes += len as u64;
            if truncated {
                c.truncated += 1;
                continue;
            }
            if !format.apply(payload) {
                c.unanswered += 1;
                continue;
            }
            self.0.queue_reply(i, len);
        }
        let sent = self.0.send_replies(fd);
        c.replies += sent.replies;
        c.reply_bytes += sent.bytes;
        c.send_failed += sent.failed;
        Ok(Served {
            received,
            send_error: sent.last_error,
        })
    }
}

/// The local address of a bound socket.
pub(crate) fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    socket::local_addr(fd.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        net::{Ipv4Addr, UdpSocket},
        time::Duration,
    };

    /// The batch step against real sockets on loopback (no privileges needed).
    #[test]
    fn batch_echoes_to_each_sender() {
        let server = bind_sockets(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 1)
            .unwrap()
            .pop()
            .unwrap();
        let to = local_addr(&server).unwrap();
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                s
            })
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&vec![i as u8 + 1; 10 + i], to).unwrap();
        }
        let mut batch = Batch::new(2);
        let mut counters = Counters::default();
        let mut got = 0;
        for _ in 0..100 {
            got += batch
                .serve(server.as_fd(), ReplyFormat::Echo, &mut counters)
                .unwrap()
                .received;
            if got == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, 3, "two calls: a full batch of 2, then 1");
        assert_eq!((counters.requests, counters.replies), (3, 3));
        assert_eq!(counters.request_bytes, 10 + 11 + 12);
        assert_eq!(counters.reply_bytes, counters.request_bytes);
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 64];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(from, to);
            assert_eq!(&buf[..n], &vec![i as u8 + 1; 10 + i][..]);
        }
        // Nothing waiting: returns at once.
        let idle = batch
            .serve(server.as_fd(), ReplyFormat::Echo, &mut counters)
            .unwrap();
        assert_eq!(idle, Served::default());
    }

    #[test]
    fn port_in_use_is_found_before_a_reuseport_group_forms() {
        let first = bind_sockets(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 1)
            .unwrap()
            .pop()
            .unwrap();
        let port = local_addr(&first).unwrap().port();
        for count in [1, 3] {
            let e = bind_sockets(IpAddr::V4(Ipv4Addr::LOCALHOST), port, count).unwrap_err();
            assert!(matches!(e, ServeError::PortInUse { .. }), "{count}: {e:?}");
        }
        drop(first);
        let group = bind_sockets(IpAddr::V4(Ipv4Addr::LOCALHOST), port, 3).unwrap();
        assert_eq!(group.len(), 3);
    }
}
