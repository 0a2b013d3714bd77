//! Socket statistics: the kernel's `XDP_STATISTICS` and the socket's own counters.

use serde::Serialize;

/// Counters kept by [`super::XskSocket`] itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct XskCounters {
    /// Frames taken from the RX ring.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames put on the TX ring (by `send_batch` and `echo_batch`).
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames the kernel reported sent through the completion ring.
    pub tx_completed: u64,
    /// System calls made to wake the kernel or drive busy polling (`sendto`, `recvfrom`),
    /// a measure of how well batching and need_wakeup work.
    pub wakeups: u64,
}

/// Statistics of one socket: [`XskSocket::statistics`](super::XskSocket::statistics).
///
/// The first six fields are the kernel's `struct xdp_statistics`, counted since the
/// socket was bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct XskStats {
    /// Frames dropped for other reasons than a full RX ring, mostly an empty fill ring.
    pub rx_dropped: u64,
    /// Fill ring entries the kernel rejected (bad address).
    pub rx_invalid_descs: u64,
    /// TX ring entries the kernel rejected (bad address or length).
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full (user space did not keep up).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when woken.
    pub tx_ring_empty_descs: u64,
    /// The socket's own counters.
    #[serde(flatten)]
    pub counters: XskCounters,
}

impl XskStats {
    /// Frames redirected to this socket that the kernel could not deliver:
    /// `rx_dropped + rx_ring_full` (the kernel counts the two separately). With
    /// [`XskCounters::rx_packets`] this accounts for every frame the XDP program
    /// redirected here, once the RX ring is drained.
    pub fn rx_lost(&self) -> u64 {
        self.rx_dropped + self.rx_ring_full
    }

    pub(crate) fn from_kernel(k: &xdp::libc::xdp::XdpStatistics, counters: XskCounters) -> Self {
        Self {
            rx_dropped: k.rx_dropped,
            rx_invalid_descs: k.rx_invalid_descs,
            tx_invalid_descs: k.tx_invalid_descs,
            rx_ring_full: k.rx_ring_full,
            rx_fill_ring_empty_descs: k.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: k.tx_ring_empty_descs,
            counters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_and_json() {
        let s = XskStats {
            rx_dropped: 3,
            rx_ring_full: 4,
            counters: XskCounters {
                rx_packets: 993,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(s.rx_lost() + s.counters.rx_packets, 1000);
        let v = serde_json::to_value(s).unwrap();
        assert_eq!(v["rx_ring_full"], 4);
        assert_eq!(v["rx_packets"], 993, "own counters are flattened: {v}");
    }
}
