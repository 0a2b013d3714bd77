//! A kernel UDP receiver with `recvmmsg(2)`: the kernel-socket baseline of
//! `bench xsk`. Batches of 64 with `MSG_WAITFORONE`, so one syscall returns everything
//! queued (up to the batch) as soon as one datagram is there.

use std::{
    io,
    net::UdpSocket,
    os::fd::AsFd,
    time::{Duration, Instant},
};

use netmit_user::sys::mmsg::MsgBatch;

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
    let mut msgs = MsgBatch::new(batch, BUF);
    let mut out = Received::default();
    let start = Instant::now();
    while start.elapsed() < duration {
        let n = msgs.recv_wait_one(sock.as_fd())?;
        out.packets += n as u64;
        for i in 0..n {
            out.bytes += msgs.datagram(i).map_or(0, |(d, _)| d.len() as u64);
        }
    }
    out.elapsed = start.elapsed();
    Ok(out)
}
