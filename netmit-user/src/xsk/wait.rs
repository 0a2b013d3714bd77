//! How a receiver waits for its RX ring: [`WaitStrategy`], used by
//! [`XskSocket::wait`](super::XskSocket::wait).
//!
//! # Why
//!
//! An AF_XDP socket that sleeps in `poll(2)` pays a wake-up per request when the load is
//! light: the kernel's XDP redirect puts the frame on the RX ring, wakes the sleeping
//! thread (a cross-CPU reschedule), and the thread returns through the scheduler. On a
//! veth testbed that was 41 µs of sockperf ping-pong against 16 µs for a kernel socket
//! that busy-polls. The RX ring is shared memory, so a thread can instead watch the
//! ring's producer word: a frame is seen as soon as the kernel publishes it, with no
//! system call. Spinning forever burns a core whatever the load, so
//! [`WaitStrategy::SpinThenSleep`] spins for a bounded time after the last frame and then
//! sleeps: the AF_XDP counterpart of the kernel's `busy_poll_usecs`. Under ping-pong the
//! next request comes back within one round trip, so a spin a little longer than the
//! round trip catches every request; at low load the thread sleeps most of the time.
//!
//! The split of one wait into a spin and a sleep is [`WaitStrategy::plan`], pure and unit
//! tested; the spinning and the `poll(2)` are in the socket's data path.

use std::{fmt, str::FromStr, time::Duration};

/// The spin of [`WaitStrategy::SpinThenSleep`] when none is given: 20 µs.
///
/// Chosen by measurement (`cargo xtask bench xsk-latency --spin USECS`, figures in
/// docs/benchmarks.md). On the veth testbed a sockperf ping-pong round trip is about
/// 22 µs, and the server's gap between sending a reply and the next request arriving is
/// a little less than that: spins of 20, 30, 50 and 200 µs all caught the next request
/// (full-rate median 11.0-12.0 µs, as with [`WaitStrategy::Spin`]), while at ~10% of the
/// busy-poll server's rate (one request every ~1.2 ms, which no such spin bridges) every
/// spin is paid for nothing: the server used 2% of a core with 20 µs, 4% with 30 or
/// 50 µs, 8% with 200 µs (busy-poll mode: 6%). 20 µs is the shortest spin measured that
/// kept the full-rate median, so it is the default. It is at the edge of the round trip:
/// in a quieter run its full-rate p99 was 42 µs against spin's 24 µs (some requests came
/// after the spin), where 50 µs matched spin; on a path with longer round trips (a real
/// NIC, a switch), or to hold the tail, give a longer spin with `spin-then-sleep:USECS`.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// The longest spin [`WaitStrategy::from_str`] accepts: one second.
pub const MAX_SPIN: Duration = Duration::from_secs(1);

/// How [`XskSocket::wait`](super::XskSocket::wait) waits for frames on the RX ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Sleep in `poll(2)` on the socket: no CPU while idle, a wake-up per request at
    /// light load.
    Sleep,
    /// Check the RX ring in a loop (with the wakeups need_wakeup asks for) until frames
    /// arrive or the timeout passes: the lowest latency, a whole core at any load.
    Spin,
    /// Spin for up to this long, then sleep in `poll(2)` for the rest of the timeout.
    SpinThenSleep(Duration),
}

impl Default for WaitStrategy {
    /// [`WaitStrategy::SpinThenSleep`] with [`DEFAULT_SPIN`]: the latency of spinning
    /// under ping-pong, and much less CPU than spinning at light load (see
    /// [`DEFAULT_SPIN`] for the measurement).
    fn default() -> Self {
        Self::SpinThenSleep(DEFAULT_SPIN)
    }
}

/// One wait, split: spin for `spin`, then sleep for `sleep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPlan {
    /// How long to check the RX ring in a loop first.
    pub spin: Duration,
    /// How long to sleep in `poll(2)` after the spin found nothing.
    pub sleep: Duration,
}

impl WaitStrategy {
    /// How a wait of at most `timeout` is spent: the spin never exceeds `timeout`, and
    /// the two parts add up to `timeout`.
    pub fn plan(self, timeout: Duration) -> WaitPlan {
        let spin = match self {
            Self::Sleep => Duration::ZERO,
            Self::Spin => timeout,
            Self::SpinThenSleep(s) => s.min(timeout),
        };
        WaitPlan {
            spin,
            sleep: timeout - spin,
        }
    }

    /// The strategy's name as [`FromStr`] accepts it: `sleep`, `spin`,
    /// `spin-then-sleep`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sleep => "sleep",
            Self::Spin => "spin",
            Self::SpinThenSleep(_) => "spin-then-sleep",
        }
    }

    /// The spin of [`WaitStrategy::SpinThenSleep`] in microseconds; `None` otherwise.
    pub fn spin_usecs(self) -> Option<u64> {
        match self {
            Self::SpinThenSleep(d) => Some(d.as_micros() as u64),
            _ => None,
        }
    }
}

impl fmt::Display for WaitStrategy {
    /// `sleep`, `spin` or `spin-then-sleep:USECS`, which [`FromStr`] parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SpinThenSleep(d) => write!(f, "spin-then-sleep:{}", d.as_micros()),
            s => f.write_str(s.name()),
        }
    }
}

/// A wait strategy that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitParseError {
    /// Not one of the names.
    #[error("unknown wait strategy `{0}`: use sleep, spin or spin-then-sleep[:USECS]")]
    Unknown(String),
    /// The spin is not a whole number of microseconds from 1 to 1,000,000.
    #[error("spin-then-sleep:{0}: the spin is a whole number of microseconds from 1 to 1000000")]
    BadSpin(String),
}

impl FromStr for WaitStrategy {
    type Err = WaitParseError;

    /// Parses `sleep`, `spin`, `spin-then-sleep` ([`DEFAULT_SPIN`]) or
    /// `spin-then-sleep:USECS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, usecs) = match s.split_once(':') {
            Some((n, u)) => (n, Some(u)),
            None => (s, None),
        };
        match (name, usecs) {
            ("sleep", None) => Ok(Self::Sleep),
            ("spin", None) => Ok(Self::Spin),
            ("spin-then-sleep", None) => Ok(Self::SpinThenSleep(DEFAULT_SPIN)),
            ("spin-then-sleep", Some(u)) => {
                let bad = || WaitParseError::BadSpin(u.to_string());
                let n: u64 = u.parse().map_err(|_| bad())?;
                let d = Duration::from_micros(n);
                if n == 0 || d > MAX_SPIN {
                    return Err(bad());
                }
                Ok(Self::SpinThenSleep(d))
            }
            _ => Err(WaitParseError::Unknown(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for (text, want) in [
            ("sleep", WaitStrategy::Sleep),
            ("spin", WaitStrategy::Spin),
            ("spin-then-sleep", WaitStrategy::SpinThenSleep(DEFAULT_SPIN)),
            (
                "spin-then-sleep:200",
                WaitStrategy::SpinThenSleep(Duration::from_micros(200)),
            ),
        ] {
            let got: WaitStrategy = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string().parse::<WaitStrategy>().unwrap(), got);
        }
        assert_eq!(WaitStrategy::default().to_string(), "spin-then-sleep:20");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "busy",
            "spin:5",
            "sleep:1",
            "Spin",
            "spin-then-sleep:",
            "spin-then-sleep:0",
            "spin-then-sleep:-3",
            "spin-then-sleep:1.5",
            "spin-then-sleep:1000001",
            "spin-then-sleep:99999999999999999999999",
        ] {
            assert!(bad.parse::<WaitStrategy>().is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            "spin-then-sleep:0".parse::<WaitStrategy>(),
            Err(WaitParseError::BadSpin(_))
        ));
    }

    #[test]
    fn plan_splits_the_timeout() {
        let t = Duration::from_millis(100);
        let us = Duration::from_micros;
        assert_eq!(
            WaitStrategy::Sleep.plan(t),
            WaitPlan {
                spin: Duration::ZERO,
                sleep: t
            }
        );
        assert_eq!(
            WaitStrategy::Spin.plan(t),
            WaitPlan {
                spin: t,
                sleep: Duration::ZERO
            }
        );
        assert_eq!(
            WaitStrategy::SpinThenSleep(us(50)).plan(t),
            WaitPlan {
                spin: us(50),
                sleep: t - us(50)
            }
        );
        // A spin longer than the timeout is cut to it.
        assert_eq!(
            WaitStrategy::SpinThenSleep(us(50)).plan(us(20)),
            WaitPlan {
                spin: us(20),
                sleep: Duration::ZERO
            }
        );
        assert_eq!(
            WaitStrategy::Spin.plan(Duration::ZERO),
            WaitPlan {
                spin: Duration::ZERO,
                sleep: Duration::ZERO
            }
        );
    }
}
