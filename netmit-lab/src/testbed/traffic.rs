//! Traffic between the two sides: ICMP(v6) echo over a raw socket (no `ping` binary
//! needed) and UDP sockets bound inside a namespace.

use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsFd,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use super::{Result, Side, Testbed, TestbedError};
use netmit_user::{error::chain, sys::socket};

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
        socket::set_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20)
            .expect("SO_RCVBUFFORCE");
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
    let sock = socket::icmp_raw(v6)?;

    let ident =
        ((u64::from(std::process::id()) << 8) ^ PING_IDENT.fetch_add(1, Ordering::Relaxed)) as u16;
    let dest = SocketAddr::new(to, 0);
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
        if socket::send_to(sock.as_fd(), &pkt, dest).is_err() {
            // Unreachable and the like: this echo is lost.
            continue;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match socket::wait_readable(sock.as_fd(), left) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            let Ok((n, from)) = socket::recv_from(sock.as_fd(), &mut buf) else {
                continue;
            };
            if from.map(|a| a.ip()) != Some(to) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum() {
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
    }
}
