//! What a run sent, as the generator counted it and as the interface's own counters saw
//! it. Serialisable: `netmit gen --json` prints a [`GenReport`] as is.

use serde::Serialize;

/// Bytes a frame occupies on an Ethernet wire besides its own bytes: preamble and start
/// delimiter (8), FCS (4) and the minimum inter-frame gap (12).
pub const WIRE_OVERHEAD: u64 = 24;

/// One sampling interval of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenSample {
    /// End of the interval, seconds since the start.
    pub at_secs: f64,
    /// Length of the interval in seconds.
    pub secs: f64,
    /// Frames sent in the interval.
    pub packets: u64,
    /// Frames per second in the interval.
    pub pps: f64,
    /// Frame bits (Ethernet header on, no FCS) per second, in Mbit/s.
    pub mbit_per_sec: f64,
}

/// Deltas of the sending interface's counters over a run (rtnetlink `IFLA_STATS64`).
///
/// The generator's own count is of frames handed to the XDP transmit path; a frame the
/// driver could not queue (on a veth: the peer has no NAPI, or its ring is full) is not
/// an error of the syscall but shows up here as `tx_dropped`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IfaceCounters {
    /// Packets the interface counted as sent.
    pub tx_packets: u64,
    /// Bytes the interface counted as sent.
    pub tx_bytes: u64,
    /// Packets the interface dropped on transmit.
    pub tx_dropped: u64,
    /// Transmit errors.
    pub tx_errors: u64,
}

/// The result of [`super::Generator::run`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenReport {
    /// Interface the frames were sent out of.
    pub iface: String,
    /// Its index.
    pub ifindex: u32,
    /// Frame length in bytes (Ethernet header on, no FCS).
    pub frame_size: usize,
    /// Number of flows.
    pub flows: u32,
    /// Asked rate in frames per second; `None` for as fast as possible.
    pub target_pps: Option<u64>,
    /// Frames sent.
    pub packets: u64,
    /// Frame bytes sent.
    pub bytes: u64,
    /// From the first frame to the end of the run.
    pub duration_secs: f64,
    /// Frames per second over the run.
    pub pps: f64,
    /// Frame bits per second over the run, in Mbit/s.
    pub mbit_per_sec: f64,
    /// Bits per second including preamble, FCS and inter-frame gap ([`WIRE_OVERHEAD`]),
    /// in Mbit/s: what the frames would occupy on an Ethernet link.
    pub wire_mbit_per_sec: f64,
    /// Slots of the schedule given up because the generator fell more than
    /// [`super::GenConfig::max_lag`] behind: with a duration these frames were not sent,
    /// with a count they were sent that much later.
    pub behind_schedule: u64,
    /// Whether the stop flag (Ctrl-C) ended the run before its count or duration.
    pub stopped: bool,
    /// Frames the XDP program counted (its own counter); equals `packets`.
    pub program_packets: u64,
    /// The interface's own counters over the run, if they could be read.
    pub interface: Option<IfaceCounters>,
    /// Per-interval samples.
    pub samples: Vec<GenSample>,
}

impl GenReport {
    pub(crate) fn rates(packets: u64, frame: usize, secs: f64) -> (f64, f64, f64) {
        if secs <= 0.0 {
            return (0.0, 0.0, 0.0);
        }
        let pps = packets as f64 / secs;
        let bits = (packets * frame as u64 * 8) as f64;
        let wire = (packets * (frame as u64 + WIRE_OVERHEAD) * 8) as f64;
        (pps, bits / secs / 1e6, wire / secs / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let (pps, mbps, wire) = GenReport::rates(1_000_000, 64, 2.0);
        assert_eq!(pps, 500_000.0);
        assert_eq!(mbps, 256.0);
        assert_eq!(wire, 352.0);
        assert_eq!(GenReport::rates(5, 64, 0.0), (0.0, 0.0, 0.0));
    }
}
