//! What a load run measured. Serialisable: `netmit load --json` prints a [`LoadReport`]
//! as is.

use std::net::SocketAddr;

use serde::Serialize;

use super::{HistBucket, LatencySummary, Pattern};

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
    /// Per-interval samples, warmup included.
    pub samples: Vec<LoadSample>,
}
