//! What a load run measured. Serialisable: `netmit load --json` prints a [`LoadReport`]
//! as is.

use std::net::SocketAddr;

use serde::Serialize;

use super::{Arrivals, HistBucket, LatencySummary, Pattern, Sender};

/// How the open loop's requests went out: the sender, the burst sizes of its calls and
/// how far each request's send time was from its due time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SendReport {
    /// What sent the requests.
    pub sender: Sender,
    /// When they were due.
    pub arrivals: Arrivals,
    /// Send calls in the window.
    pub calls: u64,
    /// The most requests one call sent.
    pub burst_max: u32,
    /// Requests per call, on average.
    pub burst_mean: f64,
    /// `bursts[k - 1]`: calls that sent `k` requests (socket sender; the generator's
    /// calls all have its fixed burst, its last one of a phase perhaps fewer).
    pub bursts: Vec<u64>,
    /// Send time (the stamp) minus due time of each request of the window; `None` for
    /// the generator, which does not measure it (its bursts leave up to a burst's
    /// worth of time early or late).
    pub send_error: Option<LatencySummary>,
    /// Requests the kernel had no room for (socket buffer or device queue full, or an
    /// ICMP error pending on the socket): not sent, not counted in `sent`.
    pub refused: u64,
}

/// One sampling interval of a run (also the live line of `netmit load`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadSample {
    /// End of the interval, seconds since the run started (warmup included).
    pub at_secs: f64,
    /// Length of the interval in seconds.
    pub secs: f64,
    /// Whether the interval belongs to the warmup (not measured).
    pub warmup: bool,
    /// Requests sent in the interval (generator and, in a closed loop, the XDP program).
    pub sent: u64,
    /// Replies received (latency recorded) in the interval.
    pub received: u64,
    /// Requests per second in the interval.
    pub sent_pps: f64,
    /// Replies per second in the interval.
    pub received_pps: f64,
    /// Closed loop: slots re-seeded in the interval.
    pub reseeded: u64,
    /// Latency of the interval's replies.
    pub latency: LatencySummary,
}

/// The result of [`super::LoadClient::run`]. Counts are of the measured window (after
/// the warmup), replies to the window's requests that arrive in the short drain after
/// it included.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadReport {
    /// Interface the client ran on.
    pub iface: String,
    /// The server's address and port.
    pub server: SocketAddr,
    /// Open or closed loop.
    pub pattern: Pattern,
    /// Open loop: the offered rate (requests per second); `None` in a closed loop.
    pub offered_pps: Option<f64>,
    /// Flows (source ports); in a closed loop the window.
    pub flows: u32,
    /// UDP payload bytes of each request.
    pub payload_len: usize,
    /// Frame bytes of each request (Ethernet header on, no FCS).
    pub frame_len: usize,
    /// Length of the warmup that preceded the window, seconds.
    pub warmup_secs: f64,
    /// Requests sent in the window.
    pub sent: u64,
    /// Open loop: requests of the schedule the generator gave up because it fell more
    /// than 20 ms behind (the offered rate was not met; see `netmit_user::gen`).
    pub behind_schedule: u64,
    /// Replies received for them (latency recorded), drain included.
    pub received: u64,
    /// Requests that got no reply by the end of the drain. Open loop: `sent - received`;
    /// closed loop: `window + sent - received - stale` (the window's requests were
    /// outstanding when the window began), both floored at 0.
    pub lost: u64,
    /// Closed loop: slots whose request went unanswered for
    /// [`super::LoadConfig::reseed_timeout`] and were sent a new one (in the window).
    pub reseeded: u64,
    /// Replies not measured: closed loop, those that came after their slot had been
    /// re-seeded; open loop, those to warmup requests that came after the window began.
    pub stale: u64,
    /// Frames from the server's port that were not replies of ours (passed to the
    /// kernel), plus replies with a send time in the future.
    pub foreign: u64,
    /// The measured window, seconds (shorter than asked when stopped).
    pub seconds: f64,
    /// Replies per second in the window.
    pub achieved_pps: f64,
    /// Latency of the window's replies.
    pub latency: LatencySummary,
    /// The window's latency distribution: the non-empty kernel buckets.
    pub histogram: Vec<HistBucket>,
    /// Whether the stop flag ended the run early.
    pub stopped: bool,
    /// Open loop: the sender, its burst sizes and send-time error (of the window);
    /// `None` in a closed loop.
    pub send: Option<SendReport>,
    /// Per-interval samples, warmup included.
    pub samples: Vec<LoadSample>,
}
