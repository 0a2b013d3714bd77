//! The NIC interrupt-coalescing parameters of the ethtool netlink family: names (as
//! `ethtool -C` and as the netlink attributes spell them), which are booleans, what each
//! does.

use std::fmt;

use super::CoalesceError;

/// One coalescing parameter: one `ETHTOOL_A_COALESCE_*` attribute of the kernel's ethtool
/// netlink family (nested DIM profiles excluded).
///
/// [`CoalesceParam::name`] is the keyword of `ethtool -C` (`rx-frames`); serde uses the
/// netlink attribute name (`rx-max-frames`, see [`CoalesceParam::attr_name`]);
/// [`CoalesceParam::from_name`] accepts both.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum CoalesceParam {
    /// `rx-usecs`: delay of an RX interrupt after a packet arrives.
    RxUsecs,
    /// `rx-frames`: packets received before an RX interrupt.
    RxMaxFrames,
    /// `rx-usecs-irq`: `rx-usecs` while an interrupt is being serviced.
    RxUsecsIrq,
    /// `rx-frames-irq`: `rx-frames` while an interrupt is being serviced.
    RxMaxFramesIrq,
    /// `tx-usecs`: delay of a TX interrupt after a packet is sent.
    TxUsecs,
    /// `tx-frames`: packets sent before a TX interrupt.
    TxMaxFrames,
    /// `tx-usecs-irq`: `tx-usecs` while an interrupt is being serviced.
    TxUsecsIrq,
    /// `tx-frames-irq`: `tx-frames` while an interrupt is being serviced.
    TxMaxFramesIrq,
    /// `stats-block-usecs`: delay of statistics block updates.
    StatsBlockUsecs,
    /// `adaptive-rx`: adaptive RX coalescing (boolean).
    UseAdaptiveRx,
    /// `adaptive-tx`: adaptive TX coalescing (boolean).
    UseAdaptiveTx,
    /// `pkt-rate-low`: packet rate below which the `*-low` values apply.
    PktRateLow,
    /// `rx-usecs-low`.
    RxUsecsLow,
    /// `rx-frames-low`.
    RxMaxFramesLow,
    /// `tx-usecs-low`.
    TxUsecsLow,
    /// `tx-frames-low`.
    TxMaxFramesLow,
    /// `pkt-rate-high`: packet rate above which the `*-high` values apply.
    PktRateHigh,
    /// `rx-usecs-high`.
    RxUsecsHigh,
    /// `rx-frames-high`.
    RxMaxFramesHigh,
    /// `tx-usecs-high`.
    TxUsecsHigh,
    /// `tx-frames-high`.
    TxMaxFramesHigh,
    /// `sample-interval`: packet-rate sampling interval for adaptive coalescing.
    RateSampleInterval,
    /// `cqe-mode-tx`: TX timer restarts on completion-queue entries (boolean).
    UseCqeModeTx,
    /// `cqe-mode-rx`: RX timer restarts on completion-queue entries (boolean).
    UseCqeModeRx,
    /// `tx-aggr-max-bytes`: bytes aggregated into one TX transfer.
    TxAggrMaxBytes,
    /// `tx-aggr-max-frames`: frames aggregated into one TX transfer.
    TxAggrMaxFrames,
    /// `tx-aggr-time-usecs`: how long a TX aggregate may wait for more frames.
    TxAggrTimeUsecs,
    /// `rx-cqe-frames`: frames coalesced into one RX completion-queue entry.
    RxCqeFrames,
    /// `rx-cqe-nsecs`: how long an RX completion-queue entry may wait for more frames.
    RxCqeNsecs,
}

/// Static facts about one parameter.
struct Meta {
    name: &'static str,
    attr: &'static str,
    attr_id: u16,
    is_bool: bool,
    since: &'static str,
    description: &'static str,
}

/// Builds a [`Meta`], composing the description from its parts so that the range, the
/// attribute and the kernel version are stated the same way for every parameter.
macro_rules! meta {
    (bool; $name:literal, $attr:literal, $id:literal, $since:literal, $what:literal) => {
        Meta {
            name: $name,
            attr: $attr,
            attr_id: $id,
            is_bool: true,
            since: $since,
            description: concat!(
                $what,
                " Boolean: 0 (off) or 1 (on). Netlink attribute `",
                $attr,
                "` (",
                $id,
                "), since Linux ",
                $since,
                ".",
            ),
        }
    };
    (u32 $unit:literal; $name:literal, $attr:literal, $id:literal, $since:literal, $what:literal) => {
        Meta {
            name: $name,
            attr: $attr,
            attr_id: $id,
            is_bool: false,
            since: $since,
            description: concat!(
                $what,
                " Unit: ",
                $unit,
                "; range: u32, 0..=4294967295 (drivers may clamp or reject). Netlink attribute `",
                $attr,
                "` (",
                $id,
                "), since Linux ",
                $since,
                ".",
            ),
        }
    };
}

impl CoalesceParam {
    /// Every parameter, in attribute order.
    pub const ALL: [CoalesceParam; 29] = [
        Self::RxUsecs,
        Self::RxMaxFrames,
        Self::RxUsecsIrq,
        Self::RxMaxFramesIrq,
        Self::TxUsecs,
        Self::TxMaxFrames,
        Self::TxUsecsIrq,
        Self::TxMaxFramesIrq,
        Self::StatsBlockUsecs,
        Self::UseAdaptiveRx,
        Self::UseAdaptiveTx,
        Self::PktRateLow,
        Self::RxUsecsLow,
        Self::RxMaxFramesLow,
        Self::TxUsecsLow,
        Self::TxMaxFramesLow,
        Self::PktRateHigh,
        Self::RxUsecsHigh,
        Self::RxMaxFramesHigh,
        Self::TxUsecsHigh,
        Self::TxMaxFramesHigh,
        Self::RateSampleInterval,
        Self::UseCqeModeTx,
        Self::UseCqeModeRx,
        Self::TxAggrMaxBytes,
        Self::TxAggrMaxFrames,
        Self::TxAggrTimeUsecs,
        Self::RxCqeFrames,
        Self::RxCqeNsecs,
    ];

    fn meta(self) -> Meta {
        use CoalesceParam as P;
        #[rustfmt::skip]
        let meta = match self {
            P::RxUsecs => meta!(u32 "microseconds";
                "rx-usecs", "rx-usecs", 2, "5.7",
                "How long to delay an RX interrupt after a packet arrives (0: no time trigger)."),
            P::RxMaxFrames => meta!(u32 "packets";
                "rx-frames", "rx-max-frames", 3, "5.7",
                "How many packets to receive before an RX interrupt (0: no packet-count \
                 trigger); on tun/tap the RX batch size, clamped to 64."),
            P::RxUsecsIrq => meta!(u32 "microseconds";
                "rx-usecs-irq", "rx-usecs-irq", 4, "5.7",
                "Like rx-usecs, but used while an interrupt is being serviced by the host."),
            P::RxMaxFramesIrq => meta!(u32 "packets";
                "rx-frames-irq", "rx-max-frames-irq", 5, "5.7",
                "Like rx-frames, but used while an interrupt is being serviced by the host."),
            P::TxUsecs => meta!(u32 "microseconds";
                "tx-usecs", "tx-usecs", 6, "5.7",
                "How long to delay a TX (completion) interrupt after a packet is sent."),
            P::TxMaxFrames => meta!(u32 "packets";
                "tx-frames", "tx-max-frames", 7, "5.7",
                "How many packets to send before a TX (completion) interrupt."),
            P::TxUsecsIrq => meta!(u32 "microseconds";
                "tx-usecs-irq", "tx-usecs-irq", 8, "5.7",
                "Like tx-usecs, but used while an interrupt is being serviced by the host."),
            P::TxMaxFramesIrq => meta!(u32 "packets";
                "tx-frames-irq", "tx-max-frames-irq", 9, "5.7",
                "Like tx-frames, but used while an interrupt is being serviced by the host."),
            P::StatsBlockUsecs => meta!(u32 "microseconds";
                "stats-block-usecs", "stats-block-usecs", 10, "5.7",
                "How long to delay updates of the in-memory statistics block."),
            P::UseAdaptiveRx => meta!(bool;
                "adaptive-rx", "use-adaptive-rx", 11, "5.7",
                "Let the driver adapt RX coalescing to the traffic (e.g. net DIM); the static \
                 RX values then serve as bounds or are ignored."),
            P::UseAdaptiveTx => meta!(bool;
                "adaptive-tx", "use-adaptive-tx", 12, "5.7",
                "Let the driver adapt TX coalescing to the traffic."),
            P::PktRateLow => meta!(u32 "packets per second";
                "pkt-rate-low", "pkt-rate-low", 13, "5.7",
                "Adaptive coalescing: below this packet rate the *-low values are used."),
            P::RxUsecsLow => meta!(u32 "microseconds";
                "rx-usecs-low", "rx-usecs-low", 14, "5.7",
                "rx-usecs used below pkt-rate-low (adaptive coalescing)."),
            P::RxMaxFramesLow => meta!(u32 "packets";
                "rx-frames-low", "rx-max-frames-low", 15, "5.7",
                "rx-frames used below pkt-rate-low (adaptive coalescing)."),
            P::TxUsecsLow => meta!(u32 "microseconds";
                "tx-usecs-low", "tx-usecs-low", 16, "5.7",
                "tx-usecs used below pkt-rate-low (adaptive coalescing)."),
            P::TxMaxFramesLow => meta!(u32 "packets";
                "tx-frames-low", "tx-max-frames-low", 17, "5.7",
                "tx-frames used below pkt-rate-low (adaptive coalescing)."),
            P::PktRateHigh => meta!(u32 "packets per second";
                "pkt-rate-high", "pkt-rate-high", 18, "5.7",
                "Adaptive coalescing: above this packet rate the *-high values are used."),
            P::RxUsecsHigh => meta!(u32 "microseconds";
                "rx-usecs-high", "rx-usecs-high", 19, "5.7",
                "rx-usecs used above pkt-rate-high (adaptive coalescing)."),
            P::RxMaxFramesHigh => meta!(u32 "packets";
                "rx-frames-high", "rx-max-frames-high", 20, "5.7",
                "rx-frames used above pkt-rate-high (adaptive coalescing)."),
            P::TxUsecsHigh => meta!(u32 "microseconds";
                "tx-usecs-high", "tx-usecs-high", 21, "5.7",
                "tx-usecs used above pkt-rate-high (adaptive coalescing)."),
            P::TxMaxFramesHigh => meta!(u32 "packets";
                "tx-frames-high", "tx-max-frames-high", 22, "5.7",
                "tx-frames used above pkt-rate-high (adaptive coalescing)."),
            P::RateSampleInterval => meta!(u32 "seconds";
                "sample-interval", "rate-sample-interval", 23, "5.7",
                "How often to sample the packet rate for adaptive coalescing."),
            P::UseCqeModeTx => meta!(bool;
                "cqe-mode-tx", "use-cqe-mode-tx", 24, "5.15",
                "TX timer restarts on each completion-queue entry (CQE mode) instead of \
                 running from the first event (EQE mode)."),
            P::UseCqeModeRx => meta!(bool;
                "cqe-mode-rx", "use-cqe-mode-rx", 25, "5.15",
                "RX timer restarts on each completion-queue entry (CQE mode) instead of \
                 running from the first event (EQE mode)."),
            P::TxAggrMaxBytes => meta!(u32 "bytes";
                "tx-aggr-max-bytes", "tx-aggr-max-bytes", 26, "6.2",
                "Most bytes the device aggregates into one TX transfer (e.g. USB NICs \
                 packing frames into one URB)."),
            P::TxAggrMaxFrames => meta!(u32 "frames";
                "tx-aggr-max-frames", "tx-aggr-max-frames", 27, "6.2",
                "Most frames the device aggregates into one TX transfer."),
            P::TxAggrTimeUsecs => meta!(u32 "microseconds";
                "tx-aggr-time-usecs", "tx-aggr-time-usecs", 28, "6.2",
                "How long a TX aggregate may wait for more frames before it is sent."),
            P::RxCqeFrames => meta!(u32 "frames";
                "rx-cqe-frames", "rx-cqe-frames", 31,
                "newer than 6.18 (net-next, 2026)",
                "Most received frames coalesced into one completion-queue entry."),
            P::RxCqeNsecs => meta!(u32 "nanoseconds";
                "rx-cqe-nsecs", "rx-cqe-nsecs", 32,
                "newer than 6.18 (net-next, 2026)",
                "How long after the first packet a coalesced RX completion-queue entry may \
                 wait before it is written."),
        };
        meta
    }

    /// The `ethtool -C` keyword: `rx-usecs`, `rx-frames`, `adaptive-rx`, `cqe-mode-rx`, ...
    pub fn name(self) -> &'static str {
        self.meta().name
    }

    /// The attribute name in the kernel's ethtool netlink spec (also the serde form):
    /// `rx-max-frames`, `use-adaptive-rx`, `rate-sample-interval`, ...
    pub fn attr_name(self) -> &'static str {
        self.meta().attr
    }

    /// The attribute's number, `ETHTOOL_A_COALESCE_*` in `linux/ethtool_netlink.h`.
    pub fn attr_id(self) -> u16 {
        self.meta().attr_id
    }

    /// Parses an `ethtool -C` keyword or a netlink attribute name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name || p.attr_name() == name)
    }

    /// Whether the parameter is a boolean (a `u8` attribute that accepts only 0 and 1).
    pub fn is_bool(self) -> bool {
        self.meta().is_bool
    }

    /// The first Linux release whose ethtool netlink has this attribute.
    pub fn since(self) -> &'static str {
        self.meta().since
    }

    /// What the parameter does, its unit, its range, its attribute and since which kernel
    /// release it exists.
    pub fn description(self) -> &'static str {
        self.meta().description
    }

    /// Checks that `value` is representable: 0 or 1 for booleans, anything for `u32`s.
    pub fn check_value(self, value: u32) -> Result<(), CoalesceError> {
        if self.is_bool() && value > 1 {
            return Err(CoalesceError::OutOfRange { param: self, value });
        }
        Ok(())
    }
}

impl fmt::Display for CoalesceParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_round_trip() {
        let mut names = BTreeSet::new();
        let mut attrs = BTreeSet::new();
        for p in CoalesceParam::ALL {
            assert_eq!(CoalesceParam::from_name(p.name()), Some(p), "{p:?}");
            assert_eq!(CoalesceParam::from_name(p.attr_name()), Some(p), "{p:?}");
            assert!(names.insert(p.name()), "duplicate name {}", p.name());
            assert!(
                attrs.insert(p.attr_name()),
                "duplicate attribute {}",
                p.attr_name()
            );
            let json = serde_json::to_string(&p).expect("serialising a unit variant");
            assert_eq!(
                json,
                format!("\"{}\"", p.attr_name()),
                "serde form of {p:?}"
            );
            let back: CoalesceParam = serde_json::from_str(&json).expect("deserialising");
            assert_eq!(back, p);
            let d = p.description();
            assert!(d.contains(p.attr_name()) && d.contains(p.since()), "{d}");
        }
        assert_eq!(
            CoalesceParam::from_name("rx-frames"),
            Some(CoalesceParam::RxMaxFrames)
        );
        assert_eq!(
            CoalesceParam::from_name("adaptive-rx"),
            Some(CoalesceParam::UseAdaptiveRx)
        );
        assert_eq!(
            CoalesceParam::from_name("sample-interval"),
            Some(CoalesceParam::RateSampleInterval)
        );
        assert_eq!(CoalesceParam::from_name("rx-profile"), None);
        assert_eq!(CoalesceParam::from_name(""), None);
        // ALL is sorted, complete (attribute ids 2..=28 and 31..=32 without gaps) and in
        // the order the derived Ord uses.
        let ids: Vec<u16> = CoalesceParam::ALL.iter().map(|p| p.attr_id()).collect();
        let expected: Vec<u16> = (2..=28).chain(31..=32).collect();
        assert_eq!(ids, expected);
        assert!(CoalesceParam::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn bools() {
        let bools: Vec<_> = CoalesceParam::ALL
            .into_iter()
            .filter(|p| p.is_bool())
            .collect();
        use CoalesceParam as P;
        assert_eq!(
            bools,
            [
                P::UseAdaptiveRx,
                P::UseAdaptiveTx,
                P::UseCqeModeTx,
                P::UseCqeModeRx
            ]
        );
        for p in bools {
            assert!(p.check_value(0).is_ok() && p.check_value(1).is_ok());
            assert!(
                matches!(p.check_value(2), Err(CoalesceError::OutOfRange { param, value: 2 }) if param == p)
            );
        }
        assert!(P::RxMaxFrames.check_value(u32::MAX).is_ok());
    }
}
