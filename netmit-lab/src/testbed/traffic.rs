//! Traffic between the two sides: ICMP(v6) echo over a raw socket (no `ping` binary
//! needed) and UDP sockets bound inside a namespace.

use std::{
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use super::{Result, Side, Testbed, TestbedError};
use netmit_user::error::chain;

impl Testbed {
    /// Sends up to `count` ICMP echo requests from `from`'s namespace to `to`, one at a time
    /// with a one-second timeout each, and returns true only if *every* one was answered.
    /// For "is it blocked?" checks use [`Testbed::ping_replies`] and compare with 0.
    pub fn ping(&self, from: Side, to: impl Into<IpAddr>, count: u32) -> bool {
        match self.ping_replies(from, to, count, Duration::from_secs(1)) {
            Ok(n) => n == count,
            Err(e) => {
                eprintln!("testbed: ping from {from}: {}", chain(&e));
                false
            }
        }
    }

    /// Sends `count` ICMP(v6) echo requests from `from`'s namespace to `to` over a raw
    /// socket, waiting up to `timeout` for each reply, and returns how many were answered.
    ///
    /// # Errors
    /// Only if the socket cannot be created ([`TestbedError::IcmpSocket`]) or the namespace
    /// not entered (see [`Testbed::try_in_ns`]).
    pub fn ping_replies(
        &self,
        from: Side,
        to: impl Into<IpAddr>,
        count: u32,
        timeout: Duration,
    ) -> Result<u32> {
        let to = to.into();
        self.try_in_ns(from, move || icmp_ping(to, count, timeout))?
            .map_err(|source| TestbedError::IcmpSocket {
                ns: self.ns(from).to_owned(),
                source,
            })
    }

    /// A UDP socket bound to `addr` in `side`'s namespace, with a 300 ms read timeout and
    /// a 16 MiB receive buffer (`SO_RCVBUFFORCE`, root only): tests that read only after
    /// sending need room for every datagram, so that none is lost to a full buffer. The
    /// socket stays in that namespace whichever thread uses it later.
    ///
    /// # Panics
    /// If the socket cannot be bound or configured (a broken testbed).
    pub fn udp_socket(&self, side: Side, addr: SocketAddr) -> UdpSocket {
        let s = self
            .in_ns(side, move || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("binding UDP {addr} in {}: {e}", self.ns(side)));
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("read timeout");
        let size: libc::c_int = 16 << 20;
        // SAFETY: setsockopt on an open socket with a pointer to a c_int.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", io::Error::last_os_error());
        s
    }
}

/// Internet checksum (RFC 1071) of `data`.
fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from(chunk[0]) << 8
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Echo identifiers, distinct per ping call within this process.
static PING_IDENT: AtomicU64 = AtomicU64::new(0);

/// Pings `to` over a raw ICMP/ICMPv6 socket in the calling thread's namespace.
fn icmp_ping(to: IpAddr, count: u32, timeout: Duration) -> io::Result<u32> {
    const ECHO_REQUEST_V4: u8 = 8;
    const ECHO_REPLY_V4: u8 = 0;
    const ECHO_REQUEST_V6: u8 = 128;
    const ECHO_REPLY_V6: u8 = 129;

    let v6 = to.is_ipv6();
    let (domain, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    // SAFETY: plain socket(2) call.
    let raw = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };

    let ident =
        ((u64::from(std::process::id()) << 8) ^ PING_IDENT.fetch_add(1, Ordering::Relaxed)) as u16;
    let (storage, addr_len) = crate::serve::udp::to_sockaddr(SocketAddr::new(to, 0));
    let mut replies = 0;
    let mut buf = [0u8; 2048];
    for seq in 0..count {
        let seq = seq as u16;
        let mut pkt = vec![if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 }, 0, 0, 0];
        pkt.extend_from_slice(&ident.to_be_bytes());
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(b"netmit-testbed!!");
        if !v6 {
            // For ICMPv6 raw sockets the kernel always fills in the checksum.
            let c = inet_checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
        }
        // SAFETY: `pkt` and `storage` are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&raw const storage).cast(),
                addr_len,
            )
        };
        if sent < 0 {
            // Unreachable and the like: this echo is lost.
            continue;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ready < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            if ready == 0 {
                break;
            }
            // SAFETY: sockaddr_storage is plain data.
            let mut from: libc::sockaddr_storage = unsafe { mem::zeroed() };
            let mut from_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are valid and writable for the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&raw mut from).cast(),
                    &mut from_len,
                )
            };
            let Ok(n) = usize::try_from(n) else { continue };
            if ip_of(&from) != Some(to) {
                continue;
            }
            // IPv4 raw sockets deliver the IP header too; IPv6 ones do not.
            let icmp = if v6 {
                &buf[..n]
            } else {
                let ihl = usize::from(buf.first().copied().unwrap_or(0) & 0x0f) * 4;
                buf.get(ihl..n).unwrap_or(&[])
            };
            let want = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
            if icmp.len() >= 8
                && icmp[0] == want
                && icmp[4..6] == ident.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                replies += 1;
                break;
            }
        }
    }
    Ok(replies)
}

fn ip_of(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_and_sockaddrs() {
        // RFC 1071 example.
        assert_eq!(
            inet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // A checksummed message sums to zero (odd length padded with a zero byte).
        let mut msg = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'x'];
        let c = inet_checksum(&msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(inet_checksum(&msg), 0);

        for addr in [
            SocketAddr::new(Ipv4Addr::new(198, 18, 0, 1).into(), 9),
            SocketAddr::new("2001:db8::2".parse::<Ipv6Addr>().unwrap().into(), 0),
        ] {
            let (storage, len) = crate::serve::udp::to_sockaddr(addr);
            assert!(len as usize <= mem::size_of::<libc::sockaddr_storage>());
            assert_eq!(ip_of(&storage), Some(addr.ip()));
        }
    }
}
