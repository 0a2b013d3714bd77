//! A kernel UDP receiver with `recvmmsg(2)`: the kernel-socket baseline of
//! `bench xsk`. Batches of 64 with `MSG_WAITFORONE`, so one syscall returns everything
//! queued (up to the batch) as soon as one datagram is there.

use std::{
    io,
    net::UdpSocket,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

/// Packets and bytes received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Datagrams.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Receives on `sock` for `duration` in batches of `batch` (at most 1024).
pub fn recvmmsg_for(sock: &UdpSocket, batch: usize, duration: Duration) -> io::Result<Received> {
    const BUF: usize = 2048;
    let batch = batch.clamp(1, 1024);
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut bufs = vec![[0u8; BUF]; batch];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: BUF,
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; every field is set below.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; batch];
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut out = Received::default();
    let start = Instant::now();
    while start.elapsed() < duration {
        // SAFETY: `msgs` holds `batch` headers whose iovecs point into `bufs`, which
        // outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                batch as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) {
                continue;
            }
            return Err(e);
        }
        out.packets += n as u64;
        out.bytes += msgs[..n as usize]
            .iter()
            .map(|m| u64::from(m.msg_len))
            .sum::<u64>();
    }
    out.elapsed = start.elapsed();
    Ok(out)
}
