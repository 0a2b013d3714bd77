//! Batched datagram I/O: one `recvmmsg` takes up to a batch of datagrams, each may become
//! its reply in the buffer it arrived in, and one `sendmmsg` sends the replies back to
//! their senders. Two system calls per batch instead of two per datagram.
//!
//! The message headers point into the batch's own buffers; the pointers are rebuilt
//! before every call, so the struct holds no live self-references between calls and can
//! move (and change threads) freely.

use std::{
    io, mem,
    net::SocketAddr,
    os::fd::{AsRawFd, BorrowedFd},
    ptr,
};

use super::socket::from_sockaddr;

/// Buffers and message headers for batches of up to `size` datagrams of `buf_len` bytes.
pub struct MsgBatch {
    size: usize,
    buf_len: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    recv_iov: Vec<libc::iovec>,
    recv_hdr: Vec<libc::mmsghdr>,
    send_iov: Vec<libc::iovec>,
    send_hdr: Vec<libc::mmsghdr>,
    /// Which received datagram each queued reply answers, and its length.
    queued: Vec<(usize, usize)>,
    received: usize,
}

// SAFETY: the raw pointers in the iovecs and headers only ever point into the struct's
// own heap buffers and are rebuilt before each use; nothing is shared.
unsafe impl Send for MsgBatch {}

/// What [`MsgBatch::send_replies`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Replies sent.
    pub replies: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Replies that could not be sent.
    pub failed: u64,
    /// The errno of the last reply that could not be sent.
    pub last_error: Option<i32>,
}

impl MsgBatch {
    /// Buffers for `size` datagrams of up to `buf_len` bytes each (the pages are touched
    /// only as far as datagrams fill them).
    pub fn new(size: usize, buf_len: usize) -> MsgBatch {
        let size = size.max(1);
        // SAFETY: all-zero iovec, mmsghdr and sockaddr_storage values are valid.
        let (iov, hdr, addr) = unsafe {
            (
                mem::zeroed::<libc::iovec>(),
                mem::zeroed::<libc::mmsghdr>(),
                mem::zeroed::<libc::sockaddr_storage>(),
            )
        };
        MsgBatch {
            size,
            buf_len,
            bufs: vec![0; size * buf_len],
            addrs: vec![addr; size],
            recv_iov: vec![iov; size],
            recv_hdr: vec![hdr; size],
            send_iov: vec![iov; size],
            send_hdr: vec![hdr; size],
            queued: Vec::with_capacity(size),
            received: 0,
        }
    }

    /// Receives up to a batch of datagrams from `fd` without blocking; returns how many
    /// (0 at once when nothing is waiting). Replies queued before are dropped.
    ///
    /// # Errors
    /// The `recvmmsg` error, if it is not `EAGAIN` or `EINTR`.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.recv_with(fd, libc::MSG_DONTWAIT)
    }

    /// Like [`MsgBatch::recv`], but blocks until one datagram is there and then returns
    /// everything queued up to the batch (`MSG_WAITFORONE`); 0 when the socket's receive
    /// timeout (`SO_RCVTIMEO`) passed first or a signal interrupted the wait.
    ///
    /// # Errors
    /// As [`MsgBatch::recv`].
    pub fn recv_wait_one(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.recv_with(fd, libc::MSG_WAITFORONE)
    }

    fn recv_with(&mut self, fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<usize> {
        self.queued.clear();
        self.received = 0;
        for i in 0..self.size {
            self.recv_iov[i] = libc::iovec {
                iov_base: self.bufs[i * self.buf_len..].as_mut_ptr().cast(),
                iov_len: self.buf_len,
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
                    fd.as_raw_fd(),
                    self.recv_hdr.as_mut_ptr(),
                    self.size as libc::c_uint,
                    flags,
                    ptr::null_mut(),
                )
            };
            if let Ok(n) = usize::try_from(n) {
                self.received = n;
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) if flags & libc::MSG_DONTWAIT != 0 => continue,
                Some(libc::EINTR | libc::EAGAIN) => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// Received datagram `i` (of the last [`MsgBatch::recv`]): its bytes, writable in
    /// place, and whether the kernel truncated it to the buffer. `None` past the batch.
    pub fn datagram(&mut self, i: usize) -> Option<(&mut [u8], bool)> {
        if i >= self.received {
            return None;
        }
        let len = (self.recv_hdr[i].msg_len as usize).min(self.buf_len);
        let truncated = self.recv_hdr[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let start = i * self.buf_len;
        Some((&mut self.bufs[start..start + len], truncated))
    }

    /// The sender of received datagram `i`.
    pub fn sender(&self, i: usize) -> Option<SocketAddr> {
        (i < self.received)
            .then(|| from_sockaddr(&self.addrs[i]))
            .flatten()
    }

    /// Queues the first `len` bytes of datagram `i`'s buffer as a reply to its sender.
    /// Out-of-range `i` or `len` are ignored.
    pub fn queue_reply(&mut self, i: usize, len: usize) {
        if i < self.received && len <= self.buf_len && self.queued.len() < self.size {
            self.queued.push((i, len));
        }
    }

    /// Sends the queued replies without blocking, and clears the queue. A full send
    /// buffer (`EAGAIN`, `ENOBUFS`) fails the rest of the batch; a reply whose
    /// destination is the problem (no route) is skipped and the others go.
    pub fn send_replies(&mut self, fd: BorrowedFd<'_>) -> Sent {
        let queued = self.queued.len();
        for (q, &(i, len)) in self.queued.iter().enumerate() {
            self.send_iov[q] = libc::iovec {
                iov_base: self.bufs[i * self.buf_len..].as_mut_ptr().cast(),
                iov_len: len,
            };
            let h = &mut self.send_hdr[q].msg_hdr;
            h.msg_name = (&raw mut self.addrs[i]).cast();
            h.msg_namelen = self.recv_hdr[i].msg_hdr.msg_namelen;
            h.msg_iov = &raw mut self.send_iov[q];
            h.msg_iovlen = 1;
            h.msg_control = ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        self.queued.clear();
        let mut sent = Sent::default();
        let mut off = 0;
        while off < queued {
            // SAFETY: headers `off..queued` were prepared above and point into this
            // struct's buffers and addresses, alive for the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.send_hdr[off..].as_mut_ptr(),
                    (queued - off) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if let Ok(n) = usize::try_from(n)
                && n > 0
            {
                for h in &self.send_hdr[off..off + n] {
                    sent.replies += 1;
                    sent.bytes += u64::from(h.msg_len);
                }
                off += n;
                continue;
            }
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            match errno {
                libc::EINTR => continue,
                // The send buffer is full (or the device queue): the rest would fail
                // the same way now, and a server must not wait for it.
                libc::EAGAIN | libc::ENOBUFS => {
                    sent.failed += (queued - off) as u64;
                    sent.last_error = Some(errno);
                    return sent;
                }
                _ => {
                    sent.failed += 1;
                    off += 1;
                    sent.last_error = Some(errno);
                }
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::fd::AsFd, time::Duration};

    use super::*;
    use crate::sys::socket::{bind_udp, local_addr};

    #[test]
    fn replies_go_back_to_each_sender() {
        let server = bind_udp("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let to = local_addr(server.as_fd()).unwrap();
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
        let mut batch = MsgBatch::new(4, 16);
        let mut got = 0;
        while got < 3 {
            crate::sys::socket::wait_readable(server.as_fd(), Duration::from_secs(2)).unwrap();
            let n = batch.recv(server.as_fd()).unwrap();
            for i in 0..n {
                let (bytes, truncated) = batch.datagram(i).unwrap();
                assert!(!truncated);
                bytes[0] += 100;
                let len = bytes.len();
                assert!(batch.sender(i).is_some());
                batch.queue_reply(i, len);
            }
            assert!(batch.datagram(n).is_none());
            let sent = batch.send_replies(server.as_fd());
            assert_eq!((sent.replies, sent.failed), (n as u64, 0));
            got += n;
        }
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 64];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(from, to);
            let mut want = vec![i as u8 + 1; 10 + i];
            want[0] += 100;
            assert_eq!(&buf[..n], &want[..]);
        }
        // Nothing waiting: returns at once; a too-long datagram is flagged truncated.
        assert_eq!(batch.recv(server.as_fd()).unwrap(), 0);
        clients[0].send_to(&[7; 40], to).unwrap();
        crate::sys::socket::wait_readable(server.as_fd(), Duration::from_secs(2)).unwrap();
        assert_eq!(batch.recv(server.as_fd()).unwrap(), 1);
        let (bytes, truncated) = batch.datagram(0).unwrap();
        assert!(truncated);
        assert_eq!(bytes.len(), 16);
    }
}
