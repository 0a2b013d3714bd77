//! The generator's configuration: what to send, where, how fast and for how long, and
//! the checks that run before anything is loaded.

use super::*;

/// Parses an IPv4 or IPv6 address.
pub fn parse_ip(s: &str) -> Result<IpAddr, GenError> {
    s.trim()
        .parse()
        .map_err(|_| GenError::InvalidIp(s.to_string()))
}

/// How fast to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// As fast as the machine can.
    Max,
    /// A fixed number of frames per second.
    Pps(u64),
}

/// What to send, where, how fast and for how long.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Interface to send out of, in the calling thread's network namespace.
    pub iface: String,
    /// Ethernet destination (the receiver's MAC: nothing resolves it).
    pub dst_mac: MacAddr,
    /// Ethernet source; default: the interface's address.
    pub src_mac: Option<MacAddr>,
    /// IP destination; its family selects IPv4 or IPv6.
    pub dst_ip: IpAddr,
    /// IP source; default: the interface's first address of that family.
    pub src_ip: Option<IpAddr>,
    /// Destination ports; flow `i` goes to `lo + i % len`.
    pub dst_ports: PortRange,
    /// Source port of flow 0; flow `i` comes from `src_port + i`.
    pub src_port: u16,
    /// Number of flows (distinct source ports), at least 1.
    pub flows: u32,
    /// Frame size in bytes, Ethernet header included, FCS not ([`MIN_FRAME`]..=[`MAX_FRAME`]).
    pub size: usize,
    /// Rate.
    pub rate: Rate,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Stop after this long. With neither a count nor a duration the run lasts until the
    /// stop flag is set.
    pub duration: Option<Duration>,
    /// Frames per syscall; default: about 100 µs of traffic at a fixed rate (at most 64),
    /// [`MAX_RATE_CALL`] at full speed.
    pub burst: Option<u32>,
    /// Frames per live-frames batch (one transmit flush each), 1..=[`MAX_LIVE_BATCH`].
    pub live_batch: u32,
    /// Interval of the samples in the report and the progress callback; zero for none.
    pub sample_interval: Duration,
    /// How far behind schedule a fixed-rate run catches up before it gives frames up.
    pub max_lag: Duration,
    /// Write a send stamp into each frame's UDP payload: [`netmit_common::STAMP_MAGIC`]
    /// and the send time (`bpf_ktime_get_ns()`, CLOCK_MONOTONIC), checksum included. For
    /// the load client ([`crate::load`]); off by default.
    pub stamp: bool,
}

impl GenConfig {
    /// A configuration with defaults: one flow per destination port, source port 32768,
    /// 64-byte frames, full speed, until stopped, samples every second.
    pub fn new(iface: &str, dst_mac: MacAddr, dst_ip: IpAddr, dst_ports: PortRange) -> Self {
        Self {
            iface: iface.to_string(),
            dst_mac,
            src_mac: None,
            dst_ip,
            src_ip: None,
            dst_ports,
            src_port: 32768,
            flows: dst_ports.len(),
            size: MIN_FRAME,
            rate: Rate::Max,
            count: None,
            duration: None,
            burst: None,
            live_batch: 64,
            sample_interval: Duration::from_secs(1),
            max_lag: Duration::from_millis(20),
            stamp: false,
        }
    }

    /// Checks everything that does not need the interface or privileges.
    pub fn validate(&self) -> Result<(), GenError> {
        if !(MIN_FRAME..=MAX_FRAME).contains(&self.size) {
            return Err(GenError::SizeOutOfRange {
                size: self.size,
                min: MIN_FRAME,
                max: MAX_FRAME,
            });
        }
        if self.flows == 0 {
            return Err(GenError::Zero("the number of flows"));
        }
        if u32::from(self.src_port) + self.flows - 1 > 65535 || self.src_port == 0 {
            return Err(GenError::TooManyFlows {
                flows: self.flows,
                sport: self.src_port,
            });
        }
        if let Some(src) = self.src_ip
            && src.is_ipv4() != self.dst_ip.is_ipv4()
        {
            return Err(GenError::FamilyMismatch {
                src,
                dst: self.dst_ip,
            });
        }
        if self.rate == Rate::Pps(0) {
            return Err(GenError::Zero("the rate"));
        }
        if self.count == Some(0) {
            return Err(GenError::Zero("the count"));
        }
        if self.burst == Some(0) {
            return Err(GenError::Zero("the burst"));
        }
        if !(1..=MAX_LIVE_BATCH).contains(&self.live_batch) {
            return Err(GenError::InvalidBatch(self.live_batch));
        }
        Ok(())
    }

    pub(super) fn plan(&self) -> pace::Plan {
        let (rate, burst, max_call) = match self.rate {
            Rate::Max => (None, self.burst.unwrap_or(MAX_RATE_CALL), MAX_RATE_CALL),
            Rate::Pps(r) => (
                Some(r),
                self.burst.unwrap_or_else(|| pace::default_burst(r, 64)),
                1024,
            ),
        };
        pace::Plan {
            rate,
            count: self.count,
            duration: self.duration,
            burst,
            max_call: max_call.max(burst),
            max_lag: self.max_lag,
            sample_interval: self.sample_interval,
            frame_len: self.size as u64,
        }
    }
}
