//! What an AF_XDP socket is made of: UMEM geometry, ring sizes, bind mode, wakeup and
//! busy-poll settings, validated in full before any system call.

use std::{fmt, str::FromStr};

use super::XskError;

/// How to bind the socket to the queue (the `sxdp_flags` of `bind(2)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BindMode {
    /// Copy mode (`XDP_COPY`): the kernel copies every frame between its buffers and the
    /// UMEM. Works with every driver that runs XDP, including generic (skb) XDP.
    Copy,
    /// Zero-copy mode (`XDP_ZEROCOPY`): the driver DMAs straight into the UMEM. Needs
    /// driver support; veth, for one, answers `EOPNOTSUPP`.
    ZeroCopy,
    /// Zero-copy if the driver supports it, copy otherwise (neither flag: the kernel
    /// tries zero-copy and falls back by itself). [`super::XskSocket::bound_mode`] says
    /// which one was obtained.
    #[default]
    Auto,
}

impl BindMode {
    /// The name used on the command line and in JSON (`copy`, `zero-copy`, `auto`).
    pub fn as_str(self) -> &'static str {
        match self {
            BindMode::Copy => "copy",
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Auto => "auto",
        }
    }
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BindMode {
    type Err = XskError;

    /// Parses `copy`, `zero-copy` (or `zerocopy`, `zc`) and `auto`.
    ///
    /// # Errors
    ///
    /// [`XskError::InvalidConfig`] for anything else.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "copy" => Ok(BindMode::Copy),
            "zero-copy" | "zerocopy" | "zc" => Ok(BindMode::ZeroCopy),
            "auto" => Ok(BindMode::Auto),
            other => Err(XskError::InvalidConfig {
                what: format!("bind mode `{other}`: expected copy, zero-copy or auto"),
            }),
        }
    }
}

/// Socket busy-polling settings (`SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET`,
/// `SO_PREFER_BUSY_POLL`).
///
/// With busy polling configured, [`super::XskSocket::poll`] spins on
/// `recvfrom(MSG_DONTWAIT)`, which runs the queue's NAPI instance in the calling thread
/// instead of sleeping until an interrupt. It takes effect only when the socket has a NAPI
/// id ([`super::XskSocket::napi_id`]); on veth it is 0, so the options are accepted and do
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BusyPoll {
    /// `SO_BUSY_POLL`: how long one busy-poll call may spin, in microseconds.
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: packets per NAPI poll (the kernel's default is 8; 64 is a
    /// common choice). At most 65535.
    pub budget: u32,
    /// `SO_PREFER_BUSY_POLL`: ask the kernel to leave the queue to busy polling and keep
    /// its interrupts deferred (works with `napi_defer_hard_irqs` / `gro_flush_timeout`).
    pub prefer: bool,
}

impl Default for BusyPoll {
    fn default() -> Self {
        Self {
            usecs: 20,
            budget: 64,
            prefer: true,
        }
    }
}

/// Configuration of an [`super::XskSocket`].
///
/// Defaults: 4096 frames of 4096 bytes (16 MiB of UMEM), every ring 2048 entries, `Auto`
/// bind mode, need_wakeup on, no busy polling. Half of the frames (up to the fill ring's
/// size) are kept in the fill ring for receiving, the rest are for transmitting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XskConfig {
    /// Size of one UMEM frame in bytes: 4096 or 2048. The first 256 bytes of a frame are
    /// the kernel's `XDP_PACKET_HEADROOM`, so the largest frame is 3840 or 1792 bytes.
    pub frame_size: u32,
    /// Number of UMEM frames (at least 2).
    pub frame_count: u32,
    /// RX ring entries (a power of two).
    pub rx_ring: u32,
    /// TX ring entries (a power of two).
    pub tx_ring: u32,
    /// Fill ring entries (a power of two).
    pub fill_ring: u32,
    /// Completion ring entries (a power of two).
    pub completion_ring: u32,
    /// Copy, zero-copy, or whichever the driver offers.
    pub mode: BindMode,
    /// Bind with `XDP_USE_NEED_WAKEUP`: the kernel says through a ring flag when it needs a
    /// system call to make progress, so a busy socket makes (almost) none.
    pub need_wakeup: bool,
    /// Socket busy polling, if wanted.
    pub busy_poll: Option<BusyPoll>,
}

/// Bytes at the start of every frame that the kernel reserves (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: u32 = 256;

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_size: 4096,
            frame_count: 4096,
            rx_ring: 2048,
            tx_ring: 2048,
            fill_ring: 2048,
            completion_ring: 2048,
            mode: BindMode::Auto,
            need_wakeup: true,
            busy_poll: None,
        }
    }
}

impl XskConfig {
    /// Checks every field; [`super::XskSocket::open`] calls it before any system call.
    ///
    /// # Errors
    ///
    /// [`XskError::InvalidConfig`] naming the first offending field: a frame size other
    /// than 2048 or 4096, fewer than 2 frames, a ring size that is zero or not a power of
    /// two, or a busy-poll budget above 65535 or time above `i32::MAX` µs.
    pub fn validate(&self) -> Result<(), XskError> {
        let invalid = |what: String| Err(XskError::InvalidConfig { what });
        if !matches!(self.frame_size, 2048 | 4096) {
            return invalid(format!(
                "frame_size {} (must be 2048 or 4096)",
                self.frame_size
            ));
        }
        if self.frame_count < 2 {
            return invalid(format!(
                "frame_count {} (at least 2: one to receive, one to send)",
                self.frame_count
            ));
        }
        for (name, value) in [
            ("rx_ring", self.rx_ring),
            ("tx_ring", self.tx_ring),
            ("fill_ring", self.fill_ring),
            ("completion_ring", self.completion_ring),
        ] {
            if value == 0 || !value.is_power_of_two() {
                return invalid(format!("{name} {value} (must be a non-zero power of two)"));
            }
        }
        if let Some(bp) = self.busy_poll {
            if bp.budget > u32::from(u16::MAX) {
                return invalid(format!("busy-poll budget {} (at most 65535)", bp.budget));
            }
            if bp.usecs > i32::MAX as u32 {
                return invalid(format!(
                    "busy-poll usecs {} (at most {})",
                    bp.usecs,
                    i32::MAX
                ));
            }
        }
        Ok(())
    }

    /// The largest frame that fits one UMEM frame (frame size minus the kernel's headroom).
    pub fn max_frame_len(&self) -> usize {
        (self.frame_size - XDP_PACKET_HEADROOM) as usize
    }

    /// Frames kept in the fill ring for receiving: as many as the fill ring holds, but
    /// leaving up to half of the UMEM (at most a TX ring's worth) for transmitting.
    pub fn fill_target(&self) -> u32 {
        let tx_reserve = self.tx_ring.min(self.frame_count / 2);
        self.fill_ring.min(self.frame_count - tx_reserve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(cfg: XskConfig) -> String {
        match cfg.validate() {
            Err(XskError::InvalidConfig { what }) => what,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = XskConfig::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.max_frame_len(), 3840);
        assert_eq!(cfg.fill_target(), 2048);
        assert_eq!(cfg.mode, BindMode::Auto);
        assert!(cfg.need_wakeup);
    }

    #[test]
    fn frame_size() {
        let ok = XskConfig {
            frame_size: 2048,
            ..Default::default()
        };
        ok.validate().unwrap();
        assert_eq!(ok.max_frame_len(), 1792);
        for bad in [0, 1024, 3000, 8192] {
            let msg = what(XskConfig {
                frame_size: bad,
                ..Default::default()
            });
            assert!(msg.starts_with(&format!("frame_size {bad} ")), "{msg}");
        }
    }

    #[test]
    fn ring_sizes_must_be_powers_of_two() {
        for (i, name) in ["rx_ring", "tx_ring", "fill_ring", "completion_ring"]
            .iter()
            .enumerate()
        {
            for bad in [0, 3, 1000, 2049] {
                let mut cfg = XskConfig::default();
                *[
                    &mut cfg.rx_ring,
                    &mut cfg.tx_ring,
                    &mut cfg.fill_ring,
                    &mut cfg.completion_ring,
                ][i] = bad;
                let msg = what(cfg);
                assert!(msg.starts_with(&format!("{name} {bad} ")), "{msg}");
            }
        }
        let small = XskConfig {
            rx_ring: 1,
            tx_ring: 4,
            fill_ring: 8,
            completion_ring: 16,
            ..Default::default()
        };
        small.validate().unwrap();
    }

    #[test]
    fn frame_count_and_busy_poll() {
        assert!(
            what(XskConfig {
                frame_count: 1,
                ..Default::default()
            })
            .contains("frame_count 1")
        );
        let bp = |budget, usecs| XskConfig {
            busy_poll: Some(BusyPoll {
                usecs,
                budget,
                prefer: true,
            }),
            ..Default::default()
        };
        bp(65535, 50).validate().unwrap();
        assert!(what(bp(65536, 50)).contains("budget 65536"));
        assert!(what(bp(64, u32::MAX)).contains("usecs"));
    }

    #[test]
    fn fill_target_leaves_frames_for_tx() {
        let cfg = |frame_count, fill_ring, tx_ring| XskConfig {
            frame_count,
            fill_ring,
            tx_ring,
            ..Default::default()
        };
        assert_eq!(cfg(4096, 2048, 2048).fill_target(), 2048);
        assert_eq!(cfg(8192, 2048, 2048).fill_target(), 2048);
        assert_eq!(cfg(1024, 2048, 2048).fill_target(), 512);
        assert_eq!(cfg(4096, 4096, 64).fill_target(), 4032);
        assert_eq!(cfg(2, 2048, 2048).fill_target(), 1);
        assert_eq!(cfg(3, 2048, 2048).fill_target(), 2);
    }

    #[test]
    fn bind_mode_parses() {
        assert_eq!("copy".parse::<BindMode>().unwrap(), BindMode::Copy);
        assert_eq!("zero-copy".parse::<BindMode>().unwrap(), BindMode::ZeroCopy);
        assert_eq!("zc".parse::<BindMode>().unwrap(), BindMode::ZeroCopy);
        assert_eq!("auto".parse::<BindMode>().unwrap(), BindMode::Auto);
        assert!(matches!(
            "fast".parse::<BindMode>(),
            Err(XskError::InvalidConfig { .. })
        ));
        for m in [BindMode::Copy, BindMode::ZeroCopy, BindMode::Auto] {
            assert_eq!(m.to_string().parse::<BindMode>().unwrap(), m);
        }
    }
}
