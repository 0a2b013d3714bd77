//! What a run served: per thread and in total, with per-interval samples. Serialisable:
//! `netmit serve --json` prints a [`ServeReport`] as is.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use serde::Serialize;

use super::{Mode, ReplyFormat};

/// A thread's request counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Requests received: datagrams to the server's port.
    pub requests: u64,
    /// Replies sent (in xsk mode: transmits the kernel completed).
    pub replies: u64,
    /// Requests the reply format answers with nothing (sockperf warm-ups, messages that
    /// ask for no reply).
    pub unanswered: u64,
    /// Requests longer than the receive buffer, not answered (kernel modes; cannot happen
    /// with the default buffers).
    pub truncated: u64,
    /// Replies that could not be sent: the socket's send buffer was full, there was no
    /// route back, or (xsk) the transmit was not completed by the end of the run.
    pub send_failed: u64,
    /// UDP payload bytes of the requests.
    pub request_bytes: u64,
    /// UDP payload bytes of the replies.
    pub reply_bytes: u64,
    /// Frames the steering program sent to the AF_XDP socket that are not UDP to the
    /// server's port (xsk mode), dropped without a reply.
    pub other_frames: u64,
}

impl Counters {
    /// Adds another thread's counters.
    pub fn add(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.replies += o.replies;
        self.unanswered += o.unanswered;
        self.truncated += o.truncated;
        self.send_failed += o.send_failed;
        self.request_bytes += o.request_bytes;
        self.reply_bytes += o.reply_bytes;
        self.other_frames += o.other_frames;
    }
}

/// Counters a server thread publishes while it runs, for the samples (one relaxed add
/// per batch).
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub requests: AtomicU64,
    pub replies: AtomicU64,
}

impl Live {
    pub(crate) fn publish(&self, before: &Counters, after: &Counters) {
        self.requests
            .fetch_add(after.requests - before.requests, Ordering::Relaxed);
        self.replies
            .fetch_add(after.replies - before.replies, Ordering::Relaxed);
    }
}

/// AF_XDP details of an xsk-mode thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct XskThreadReport {
    /// RX queue of the socket.
    pub queue: u32,
    /// Bind mode obtained (`copy` or `zero-copy`).
    pub bind_mode: &'static str,
    /// Frames the kernel dropped for want of fill-ring entries or RX-ring room
    /// (`rx_dropped + rx_ring_full` of `XDP_STATISTICS`).
    pub rx_lost: u64,
    /// System calls made to wake the kernel (need_wakeup) or kick transmits.
    pub wakeups: u64,
    /// How the thread waited for its RX ring: `sleep`, `spin` or `spin-then-sleep` (see
    /// [`netmit_user::xsk::WaitStrategy`]).
    pub wait: &'static str,
    /// The spin of `spin-then-sleep` in microseconds (absent for the others).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spin_usecs: Option<u64>,
}

/// One server thread's share of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThreadReport {
    /// Thread index, from 0.
    pub thread: usize,
    /// CPU it was pinned to, if any.
    pub cpu: Option<usize>,
    /// Its counters.
    #[serde(flatten)]
    pub counters: Counters,
    /// `epoll_wait` calls (kernel modes).
    pub epoll_waits: u64,
    /// Of those, calls that returned no event (the timeout that lets the thread check
    /// for the end of the run). In busy-poll mode, every call that returns events keeps
    /// IRQ suspension going; one that returns none ends it.
    pub empty_waits: u64,
    /// The NAPI instance that delivered the socket's datagrams (`SO_INCOMING_NAPI_ID`,
    /// kernel modes): 0 when they came through none, and then epoll busy polling has
    /// nothing to poll (a veth has a NAPI only with native XDP attached or GRO on, and
    /// hands a TSO-enabled peer's socket traffic to the backlog: see docs/modes.md).
    pub napi_id: Option<u32>,
    /// AF_XDP details (xsk mode).
    pub xsk: Option<XskThreadReport>,
}

/// The epoll busy-poll settings of a busy-poll run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BusyPollReport {
    /// `busy_poll_usecs` set with `EPIOCSPARAMS`.
    pub usecs: u32,
    /// `busy_poll_budget` set with `EPIOCSPARAMS`.
    pub budget: u16,
    /// `prefer_busy_poll` set with `EPIOCSPARAMS` (always: IRQ suspension needs it).
    pub prefer_busy_poll: bool,
    /// Whether `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` and `SO_BUSY_POLL_BUDGET` were set
    /// on the sockets too (they need `CAP_NET_ADMIN`; without it they are left out).
    pub socket_options: bool,
}

/// One sampling interval of a run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ServeSample {
    /// End of the interval, seconds since the start.
    pub at_secs: f64,
    /// Length of the interval in seconds.
    pub secs: f64,
    /// Requests received in the interval.
    pub requests: u64,
    /// Replies sent in the interval.
    pub replies: u64,
    /// Requests per second in the interval.
    pub requests_per_sec: f64,
}

/// The result of [`super::Server::run`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServeReport {
    /// How requests were received.
    pub mode: Mode,
    /// How requests became replies.
    pub reply: ReplyFormat,
    /// The interface served on, if known.
    pub iface: Option<String>,
    /// The address served on.
    pub address: IpAddr,
    /// The UDP port served on.
    pub port: u16,
    /// Server threads (in xsk mode: one per RX queue).
    pub threads: usize,
    /// Length of the run.
    pub seconds: f64,
    /// Whether the stop flag (SIGINT/SIGTERM) ended the run before its duration.
    pub stopped: bool,
    /// Totals over the threads.
    #[serde(flatten)]
    pub counters: Counters,
    /// Request payload bytes (the same as `request_bytes`).
    pub bytes: u64,
    /// Requests per second over the run.
    pub requests_per_sec: f64,
    /// Replies per second over the run.
    pub replies_per_sec: f64,
    /// Epoll busy-poll settings (busy-poll mode).
    pub busy_poll: Option<BusyPollReport>,
    /// How much `TcpExt: BusyPollRxPackets` of the network namespace rose during the run
    /// (kernel modes): packets that busy polling, not the softirq, took off the NAPI. It
    /// counts every busy poller of the namespace, but during a benchmark that is this
    /// server. `None` if /proc/net/netstat could not be read.
    pub busy_poll_rx_packets: Option<u64>,
    /// Per thread.
    pub per_thread: Vec<ThreadReport>,
    /// Per-interval samples.
    pub samples: Vec<ServeSample>,
}
