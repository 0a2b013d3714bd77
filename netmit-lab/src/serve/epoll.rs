//! epoll mode: a kernel UDP socket and a blocking `epoll_wait`, the way most servers are
//! written. It is also the loop of busy-poll mode, which differs only in how the epoll
//! instance and the socket are configured (`busy_poll.rs`).
//!
//! # Where the time goes
//!
//! A datagram is received by the device's NAPI poll in softirq context, after an
//! interrupt (on a veth: scheduled by the sender's transmit, and run on the sender's CPU
//! unless threaded NAPI is pinned elsewhere). The softirq queues it on the socket and
//! wakes the thread sleeping in `epoll_wait`: an interrupt, a softirq and a wake-up
//! (inter-processor interrupt, context switch) per idle-to-busy transition. Under load
//! the thread finds more datagrams per wake-up and batches absorb the cost; at low load
//! (ping-pong) every request pays all of it. That is the baseline the other modes are
//! measured against.
//!
//! # The loop
//!
//! Each thread has its own socket (an `SO_REUSEPORT` group when there are several) and
//! its own epoll instance, so threads never share a queue or a lock. A thread waits with
//! a timeout (at most 100 ms, so that it notices the end of the run), then serves one
//! batch (`udp.rs`: one `recvmmsg`, one `sendmmsg`) and waits again. epoll is
//! level-triggered, so when more is queued the next `epoll_wait` returns at once; going
//! back to it after every batch bounds the work between two calls, which is what IRQ
//! suspension needs in busy-poll mode (each call that returns events re-arms the
//! suspension for one more cycle of at most a batch).

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
    time::Duration,
};

use netmit_user::sys::{epoll::Epoll, socket};

use super::{
    Control, ReplyFormat, ServeError,
    busy_poll::{self, BusyPollParams},
    report::{Counters, Live, ThreadReport},
    udp::{self, Batch},
};

/// The longest single `epoll_wait`: how late a thread notices the end of a run.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(100);

const SO_INCOMING_NAPI_ID: libc::c_int = 56;

/// One thread of epoll or busy-poll mode: its socket, epoll instance and buffers.
pub(crate) struct KernelWorker {
    sock: OwnedFd,
    epoll: Epoll,
    batch: Batch,
    format: ReplyFormat,
    /// What the report calls the socket (`198.18.0.1:9000`).
    name: String,
}

impl KernelWorker {
    /// Sets up a thread's epoll instance around its bound socket; with `busy_poll`, sets
    /// the epoll busy-poll parameters (an error if the kernel refuses) and, if asked, the
    /// socket's busy-poll options. Returns the worker and whether the socket options were
    /// set.
    pub(crate) fn new(
        sock: OwnedFd,
        batch: usize,
        format: ReplyFormat,
        busy_poll: Option<&BusyPollParams>,
    ) -> Result<(Self, bool), ServeError> {
        let name = udp::local_addr(&sock)
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "the server socket".into());
        let epoll = Epoll::new().map_err(|e| ServeError::io("epoll_create1", e))?;
        epoll
            .add(sock.as_fd())
            .map_err(|e| ServeError::io(format!("epoll_ctl(ADD) of {name}"), e))?;
        let mut socket_options = false;
        if let Some(p) = busy_poll {
            busy_poll::set_epoll_params(&epoll, p)?;
            if p.socket_options {
                match busy_poll::set_socket_options(sock.as_fd(), p) {
                    Ok(()) => socket_options = true,
                    Err((opt, e)) => log::warn!(
                        "{opt} on {name}: {e}; busy polling runs with the epoll parameters \
                         alone (the socket options need CAP_NET_ADMIN)"
                    ),
                }
            }
        }
        let worker = Self {
            sock,
            epoll,
            batch: Batch::new(batch),
            format,
            name,
        };
        Ok((worker, socket_options))
    }

    /// Serves until `ctl` says stop; publishes progress to `live`.
    pub(crate) fn run(
        mut self,
        thread: usize,
        ctl: &Control,
        live: &Live,
    ) -> Result<ThreadReport, ServeError> {
        let fd = self.sock.as_fd();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
        let mut c = Counters::default();
        let (mut waits, mut empty) = (0u64, 0u64);
        let mut warned_send = false;
        while let Some(timeout) = ctl.wait_budget(MAX_WAIT) {
            waits += 1;
            let n = self
                .epoll
                .wait(&mut events, timeout)
                .map_err(|e| ServeError::io(format!("epoll_wait for {}", self.name), e))?;
            if n == 0 {
                empty += 1;
                continue;
            }
            let before = c;
            let served = self
                .batch
                .serve(fd, self.format, &mut c)
                .map_err(|e| ServeError::io(format!("recvmmsg on {}", self.name), e))?;
            live.publish(&before, &c);
            if let Some(errno) = served.send_error
                && !warned_send
            {
                warned_send = true;
                log::warn!(
                    "sending replies from {}: {} (counted as send_failed; further \
                     failures are not logged)",
                    self.name,
                    io::Error::from_raw_os_error(errno)
                );
            }
        }
        Ok(ThreadReport {
            thread,
            cpu: None,
            counters: c,
            epoll_waits: waits,
            empty_waits: empty,
            napi_id: socket::get_int(fd, libc::SOL_SOCKET, SO_INCOMING_NAPI_ID)
                .ok()
                .map(|id| id as u32),
            xsk: None,
        })
    }
}
