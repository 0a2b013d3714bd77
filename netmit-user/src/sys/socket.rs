//! Socket calls std does not offer: integer and byte socket options, the kernel's
//! `sockaddr` forms, UDP sockets bound with `SO_REUSEPORT` before `bind`, and raw
//! sockets for ICMP echo (the testbed's ping). Batched datagram I/O is in
//! [`super::mmsg`].

use std::{
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    ptr,
    time::Duration,
};

/// Converts a socket address to the kernel's representation and its length.
pub fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
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

/// Converts the kernel's representation back; `None` for families other than IPv4/IPv6.
pub fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
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
///
/// # Errors
/// setsockopt(2)'s error.
pub fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    set_bytes(fd, level, opt, &value.to_ne_bytes())
}

/// Sets a socket option to `value`'s bytes (`SO_BINDTODEVICE` takes a name).
///
/// # Errors
/// setsockopt(2)'s error.
pub fn set_bytes(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a pointer to `len` readable bytes that outlive the call.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, value.as_ptr().cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an integer socket option.
///
/// # Errors
/// getsockopt(2)'s error.
pub fn get_int(fd: BorrowedFd<'_>, level: libc::c_int, opt: libc::c_int) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a writable c_int of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Which step of [`bind_udp`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// socket(2).
    #[error("socket(SOCK_DGRAM)")]
    Socket(#[source] io::Error),
    /// setsockopt(SO_REUSEPORT).
    #[error("setsockopt(SO_REUSEPORT)")]
    ReusePort(#[source] io::Error),
    /// bind(2); `EADDRINUSE` when the port is taken.
    #[error("bind")]
    Bind(#[source] io::Error),
}

/// A non-blocking UDP socket bound to `addr`, with `SO_REUSEPORT` set before `bind` when
/// `reuse_port` (std's `UdpSocket::bind` cannot do that: the option must precede it).
///
/// # Errors
/// [`BindError`] naming the step that failed.
pub fn bind_udp(addr: SocketAddr, reuse_port: bool) -> Result<OwnedFd, BindError> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let sock = socket(
        family,
        libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0,
    )
    .map_err(BindError::Socket)?;
    if reuse_port {
        set_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
            .map_err(BindError::ReusePort)?;
    }
    let (sa, len) = to_sockaddr(addr);
    // SAFETY: `sa` holds a valid sockaddr of `len` bytes.
    if unsafe { libc::bind(sock.as_raw_fd(), (&raw const sa).cast(), len) } != 0 {
        return Err(BindError::Bind(io::Error::last_os_error()));
    }
    Ok(sock)
}

/// The local address of a bound socket.
///
/// # Errors
/// getsockname(2)'s error, or `InvalidData` for a socket that is not IPv4/IPv6.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
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

/// A raw ICMP (IPv4) or ICMPv6 socket in the calling thread's namespace.
///
/// # Errors
/// socket(2)'s error (`EPERM` without CAP_NET_RAW).
pub fn icmp_raw(v6: bool) -> io::Result<OwnedFd> {
    let (domain, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto)
}

/// connect(2) of a socket to `to` (for UDP: sets the default destination and filters
/// what is received to that peer).
///
/// # Errors
/// connect(2)'s error.
pub fn connect(fd: BorrowedFd<'_>, to: SocketAddr) -> io::Result<()> {
    let (storage, len) = to_sockaddr(to);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    if unsafe { libc::connect(fd.as_raw_fd(), (&raw const storage).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// sendmmsg(2) of `bufs`, one datagram each, on a connected socket; returns how many
/// were sent (at most 64 per call; the rest are not attempted).
///
/// # Errors
/// sendmmsg(2)'s error.
pub fn send_connected_batch(fd: BorrowedFd<'_>, bufs: &mut [Vec<u8>]) -> io::Result<usize> {
    const MAX: usize = 64;
    let n = bufs.len().min(MAX);
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX];
    // SAFETY: an all-zero mmsghdr is valid (no name, no control data).
    let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
    for (i, b) in bufs.iter_mut().take(n).enumerate() {
        iov[i] = libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        };
        msgs[i].msg_hdr.msg_iov = &raw mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `n` headers, each pointing to one iovec over a live buffer of `bufs`.
    let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// sendto(2) of `buf` to `to`; returns the bytes sent.
///
/// # Errors
/// sendto(2)'s error.
pub fn send_to(fd: BorrowedFd<'_>, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
    let (storage, len) = to_sockaddr(to);
    // SAFETY: `buf` and `storage` are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            0,
            (&raw const storage).cast(),
            len,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// recvfrom(2) without blocking: the bytes received and the sender (`None` for a family
/// other than IPv4/IPv6).
///
/// # Errors
/// recvfrom(2)'s error (`WouldBlock` when nothing is waiting).
pub fn recv_from(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<SocketAddr>)> {
    // SAFETY: sockaddr_storage is plain data.
    let mut from: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut from_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `buf` and `from` are valid and writable for the lengths given.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&raw mut from).cast(),
            &mut from_len,
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    Ok((n, from_sockaddr(&from)))
}

/// Waits up to `timeout` for `fd` to become readable; `Ok(false)` on a timeout. An
/// interrupted wait is reported as `Interrupted`, for the caller to retry with what is
/// left of its deadline.
///
/// # Errors
/// poll(2)'s error.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ready > 0)
}

/// The address a sockaddr holds, without the port.
pub fn ip_of(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    from_sockaddr(storage).map(|a| a.ip())
}

fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(domain, ty, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for a in ["198.18.0.1:9000", "[2001:db8::1]:53", "0.0.0.0:1"] {
            let a: SocketAddr = a.parse().unwrap();
            let (s, len) = to_sockaddr(a);
            assert!(len as usize <= mem::size_of::<libc::sockaddr_storage>());
            assert_eq!(from_sockaddr(&s), Some(a));
            assert_eq!(ip_of(&s), Some(a.ip()));
        }
    }

    #[test]
    fn bound_udp_sockets_talk() {
        let a = bind_udp("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let b = bind_udp("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let (to, from) = (
            local_addr(a.as_fd()).unwrap(),
            local_addr(b.as_fd()).unwrap(),
        );
        assert_eq!(
            get_int(b.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT).unwrap(),
            1
        );
        assert_eq!(send_to(b.as_fd(), b"netmit", to).unwrap(), 6);
        assert!(wait_readable(a.as_fd(), Duration::from_secs(2)).unwrap());
        let mut buf = [0u8; 16];
        assert_eq!(recv_from(a.as_fd(), &mut buf).unwrap(), (6, Some(from)));
        assert_eq!(&buf[..6], b"netmit");
        assert!(!wait_readable(a.as_fd(), Duration::from_millis(1)).unwrap());
        let taken = bind_udp(to, false).unwrap_err();
        assert!(
            matches!(taken, BindError::Bind(ref e) if e.raw_os_error() == Some(libc::EADDRINUSE))
        );
    }
}
