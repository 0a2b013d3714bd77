//! The kernel modes' UDP socket and their batched receive-and-reply step: one
//! `recvmmsg` takes up to a batch of datagrams, each becomes its reply in the buffer it
//! arrived in, and one `sendmmsg` sends the replies back to their senders. Two system
//! calls per batch instead of two per datagram, so that at load the server's per-request
//! cost is the kernel's UDP path and the notification, which is what the modes compare.

use std::{
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    ptr,
};

use super::{ReplyFormat, ServeError, report::Counters};

/// The largest UDP payload (65535 minus the 8-byte UDP header; IPv4 allows 65507 of it).
/// Every receive buffer has this size, so no request is ever truncated.
pub(crate) const MAX_DATAGRAM: usize = 65527;

/// Converts a socket address to the kernel's representation.
pub(crate) fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { ptr::write((&raw mut storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { ptr::write((&raw mut storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Converts the kernel's representation back; `None` for other families.
pub(crate) fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in, which fits in the storage.
            let sin = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6, which fits in the storage.
            let sin6 =
                unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sets an integer socket option.
pub(crate) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an integer socket option.
pub(crate) fn getsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a writable c_int of `len` bytes.
    let rc = unsafe { libc::getsockopt(fd, level, opt, (&raw mut value).cast(), &mut len) };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A non-blocking UDP socket bound to `addr`, with `SO_REUSEPORT` when `reuse_port`.
fn bind_one(addr: SocketAddr, reuse_port: bool) -> Result<OwnedFd, ServeError> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(ServeError::io(
            "socket(SOCK_DGRAM)",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    if reuse_port {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
            .map_err(|e| ServeError::io("setsockopt(SO_REUSEPORT)", e))?;
    }
    let (sa, len) = to_sockaddr(addr);
    // SAFETY: `sa` holds a valid sockaddr of `len` bytes.
    if unsafe { libc::bind(fd, (&raw const sa).cast(), len) } != 0 {
        return Err(ServeError::bind(
            addr.ip(),
            addr.port(),
            io::Error::last_os_error(),
        ));
    }
    Ok(sock)
}

/// Sets the receive buffer to `bytes`: `SO_RCVBUFFORCE` (beyond `net.core.rmem_max`,
/// needs `CAP_NET_ADMIN`), falling back to `SO_RCVBUF` without the capability.
pub(crate) fn set_rcvbuf(sock: &OwnedFd, bytes: usize) -> Result<(), ServeError> {
    let v = i32::try_from(bytes).unwrap_or(i32::MAX);
    let fd = sock.as_raw_fd();
    match setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, v)
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

/// Buffers and message headers for batches of up to `size` datagrams.
///
/// The headers point into the buffers; the pointers are rebuilt before every call
/// (64 stores), so the struct holds no self-references and can move freely.
pub(crate) struct Batch {
    size: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    recv_iov: Vec<libc::iovec>,
    recv_hdr: Vec<libc::mmsghdr>,
    send_iov: Vec<libc::iovec>,
    send_hdr: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in the iovecs and headers only ever point into the struct's
// own heap buffers and are rebuilt before each use; nothing is shared.
unsafe impl Send for Batch {}

impl Batch {
    /// Buffers for `size` datagrams of up to [`MAX_DATAGRAM`] bytes (allocated lazily by
    /// the kernel: pages are touched only as far as datagrams fill them).
    pub(crate) fn new(size: usize) -> Self {
        let size = size.max(1);
        // SAFETY: all-zero iovec, mmsghdr and sockaddr_storage values are valid.
        let (iov, hdr, addr) = unsafe {
            (
                mem::zeroed::<libc::iovec>(),
                mem::zeroed::<libc::mmsghdr>(),
                mem::zeroed::<libc::sockaddr_storage>(),
            )
        };
        Self {
            size,
            bufs: vec![0; size * MAX_DATAGRAM],
            addrs: vec![addr; size],
            recv_iov: vec![iov; size],
            recv_hdr: vec![hdr; size],
            send_iov: vec![iov; size],
            send_hdr: vec![hdr; size],
        }
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
        fd: RawFd,
        format: ReplyFormat,
        c: &mut Counters,
    ) -> io::Result<Served> {
        let received = self.recv(fd)?;
        let mut queued = 0;
        for i in 0..received {
            let len = self.recv_hdr[i].msg_len as usize;
            c.requests += 1;
            c.request_bytes += len as u64;
            if self.recv_hdr[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                c.truncated += 1;
                continue;
            }
            let payload = &mut self.bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len];
            if !format.apply(payload) {
                c.unanswered += 1;
                continue;
            }
            self.send_iov[queued] = libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: len,
            };
            let h = &mut self.send_hdr[queued].msg_hdr;
            h.msg_name = (&raw mut self.addrs[i]).cast();
            h.msg_namelen = self.recv_hdr[i].msg_hdr.msg_namelen;
            h.msg_iov = &raw mut self.send_iov[queued];
            h.msg_iovlen = 1;
            h.msg_control = ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            queued += 1;
        }
        let send_error = self.send(fd, queued, c);
        Ok(Served {
            received,
            send_error,
        })
    }

    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..self.size {
            self.recv_iov[i] = libc::iovec {
                iov_base: self.bufs[i * MAX_DATAGRAM..].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut self.recv_hdr[i].msg_hdr;
            h.msg_name = (&raw mut self.addrs[i]).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &raw mut self.recv_iov[i];
            h.msg_iovlen = 1;
            h.msg_control = ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.recv_hdr[i].msg_len = 0;
        }
        loop {
            // SAFETY: `recv_hdr` holds `size` headers whose names and iovecs point into
            // this struct's buffers of the stated sizes, alive for the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.recv_hdr.as_mut_ptr(),
                    self.size as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// Sends the first `queued` prepared replies; returns the last error of a reply that
    /// could not be sent.
    fn send(&mut self, fd: RawFd, queued: usize, c: &mut Counters) -> Option<i32> {
        let mut off = 0;
        let mut last_error = None;
        while off < queued {
            // SAFETY: headers `off..queued` were prepared by `serve` and point into this
            // struct's buffers and addresses, alive for the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.send_hdr[off..].as_mut_ptr(),
                    (queued - off) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                for h in &self.send_hdr[off..off + n as usize] {
                    c.replies += 1;
                    c.reply_bytes += u64::from(h.msg_len);
                }
                off += n as usize;
                continue;
            }
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            match errno {
                libc::EINTR => continue,
                // The send buffer is full (or the device queue): the rest would fail
                // the same way now, and a server must not wait for it.
                libc::EAGAIN | libc::ENOBUFS => {
                    c.send_failed += (queued - off) as u64;
                    return Some(errno);
                }
                // This reply's destination is the problem (no route, a firewall):
                // skip it, send the others.
                _ => {
                    c.send_failed += 1;
                    off += 1;
                    last_error = Some(errno);
                }
            }
        }
        last_error
    }
}

/// The local address of a bound socket.
pub(crate) fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes.
    let rc = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut storage).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    from_sockaddr(&storage)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{net::UdpSocket, time::Duration};

    #[test]
    fn sockaddr_round_trip() {
        for a in ["198.18.0.1:9000", "[2001:db8::1]:53", "0.0.0.0:1"] {
            let a: SocketAddr = a.parse().unwrap();
            let (s, len) = to_sockaddr(a);
            assert!(len as usize <= mem::size_of::<libc::sockaddr_storage>());
            assert_eq!(from_sockaddr(&s), Some(a));
        }
    }

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
                .serve(server.as_raw_fd(), ReplyFormat::Echo, &mut counters)
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
            .serve(server.as_raw_fd(), ReplyFormat::Echo, &mut counters)
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
