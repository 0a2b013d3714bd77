//! The open loop's own pacing (the socket sender): an absolute schedule of arrivals,
//! evenly spaced or Poisson, sent a few at a time, with the send-time error and the
//! burst sizes measured.
//!
//! Request `i` of a phase is due at `t0 + offset(i)`: `i / rate` seconds for even
//! arrivals, or the sum of `i` exponential gaps of mean `1 / rate` drawn from a seeded
//! generator (SplitMix64) for Poisson arrivals. The loop sends, in one call, every
//! request that is due (at most [`Pacer::max_burst`]); when the next one is not due yet
//! it sleeps until shortly before (`clock_nanosleep` on the absolute time, timer slack
//! 1 ns) and spins the rest, yielding the CPU on each turn (`sched_yield`): the client's
//! own receive path (its NAPI thread, which runs `netmit_load` on the replies) may share
//! the core, and a pure spin would keep it from the replies. The schedule is absolute, so a late wake-up is made up by
//! the next call rather than lost; a request more than [`MAX_LAG`] overdue is given up
//! (counted in [`Outcome::behind_schedule`]) so that a stall does not become a long
//! line-rate burst afterwards.
//!
//! Each call's send time (the stamp written into its requests) minus each request's due
//! time is the send-time error, kept in a histogram of the latency buckets. The clock
//! and the send are behind [`Clock`] and [`Transmit`], so the unit tests run the loop
//! with a fake clock: exact counts, the burst bound, catch-up and give-up.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::{Buckets, LatencySummary};

/// How far behind its schedule the sender may fall before it gives requests up.
pub const MAX_LAG_NS: u64 = 20_000_000;
/// The same, as the report names it.
pub const MAX_LAG: std::time::Duration = std::time::Duration::from_nanos(MAX_LAG_NS);
/// The pacer spins (instead of sleeping) when the next request is due within this.
pub const SPIN_NS: u64 = 20_000;

/// When the requests of an open loop arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Arrivals {
    /// Evenly spaced: request `i` at `i / rate`.
    #[default]
    Even,
    /// A Poisson process of the rate: exponential gaps from a generator seeded with
    /// `seed`, the same sequence for the same seed.
    Poisson {
        /// Seed of the gaps.
        seed: u64,
    },
}

/// Due times of a phase, nanoseconds after its start.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    gap_ns: f64,
    kind: Arrivals,
    rng: u64,
    /// Offset of the next request (f64: a sum of gaps keeps its fractions).
    next: f64,
    index: u64,
}

impl Schedule {
    pub(crate) fn new(rate_pps: f64, arrivals: Arrivals) -> Self {
        let mut s = Self {
            gap_ns: 1e9 / rate_pps,
            kind: arrivals,
            rng: match arrivals {
                Arrivals::Poisson { seed } => seed,
                Arrivals::Even => 0,
            },
            next: 0.0,
            index: 0,
        };
        // A Poisson process has its first arrival one gap after the start, as every
        // later one; even arrivals start at once.
        if let Arrivals::Poisson { .. } = arrivals {
            s.next = s.draw();
        }
        s
    }

    /// SplitMix64: small, seedable, good enough for arrival gaps.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// One exponential gap of mean `gap_ns`.
    fn draw(&mut self) -> f64 {
        // Uniform in (0, 1]: 53 random bits, never 0, so the logarithm is finite.
        let u = ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        -u.ln() * self.gap_ns
    }

    /// The due time of the next request (not consumed).
    pub(crate) fn peek(&self) -> u64 {
        self.next as u64
    }

    /// Consumes the next request.
    pub(crate) fn advance(&mut self) {
        self.index += 1;
        self.next = match self.kind {
            Arrivals::Even => self.index as f64 * self.gap_ns,
            Arrivals::Poisson { .. } => self.next + self.draw(),
        };
    }
}

/// Sends requests: `sendmmsg` on the flow's socket in production.
pub(crate) trait Transmit {
    /// Sends `n` requests of flow `flow`, each stamped with `stamp_ns` (CLOCK_MONOTONIC),
    /// and returns how many the kernel took (fewer when it had no room).
    fn send(&mut self, flow: u32, n: usize, stamp_ns: u64) -> std::io::Result<usize>;
}

/// CLOCK_MONOTONIC, in nanoseconds.
pub(crate) trait Clock {
    /// Now.
    fn now(&mut self) -> u64;
    /// Sleeps until `t` (returns at once if that is past).
    fn sleep_until(&mut self, t: u64);
    /// One turn of the spin before a request that is due within [`SPIN_NS`].
    fn relax(&mut self) {
        std::hint::spin_loop();
    }
}

/// Burst sizes and send-time error of the sends so far.
#[derive(Clone, Debug, Default)]
pub(crate) struct SendTally {
    /// `calls[k - 1]`: send calls that carried `k` requests.
    pub(crate) calls: Vec<u64>,
    /// Send time minus due time of every request sent.
    pub(crate) error: Buckets,
    pub(crate) error_sum_ns: u64,
    /// Requests the kernel did not take (no buffer room), not sent.
    pub(crate) refused: u64,
}

impl SendTally {
    fn record(&mut self, k: usize, stamp: u64, due: &[u64]) {
        if self.calls.len() < k {
            self.calls.resize(k, 0);
        }
        self.calls[k - 1] += 1;
        for &d in due {
            let e = stamp.saturating_sub(d);
            self.error.record(e);
            self.error_sum_ns += e;
        }
    }

    /// The report's view of it.
    pub(crate) fn stats(&self) -> (u64, u32, f64, LatencySummary) {
        let calls: u64 = self.calls.iter().sum();
        let requests: u64 = self
            .calls
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u64 + 1) * c)
            .sum();
        let max = self.calls.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        let mean = if calls > 0 {
            requests as f64 / calls as f64
        } else {
            0.0
        };
        (
            calls,
            max as u32,
            mean,
            self.error.summary(Some(self.error_sum_ns)),
        )
    }
}

/// How one phase ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Requests sent.
    pub(crate) sent: u64,
    /// Requests given up because they were more than [`MAX_LAG`] overdue.
    pub(crate) behind_schedule: u64,
    /// Whether the stop flag ended the phase.
    pub(crate) stopped: bool,
}

/// The send loop of one phase.
pub(crate) struct Pacer {
    /// Requests to send in the phase.
    pub(crate) count: u64,
    /// The most requests per send call.
    pub(crate) max_burst: usize,
    /// Flows the calls go round.
    pub(crate) flows: u32,
}

impl Pacer {
    /// Sends `self.count` requests on `schedule` from `t0`, calling `tick(sent)` when
    /// `tick_every_ns` has passed (0: never) so that the caller can take samples.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run<E>(
        &self,
        schedule: &mut Schedule,
        t0: u64,
        tx: &mut impl Transmit,
        clock: &mut impl Clock,
        tally: &mut SendTally,
        stop: &AtomicBool,
        tick_every_ns: u64,
        mut tick: impl FnMut(u64) -> Result<(), E>,
        io_err: impl Fn(std::io::Error) -> E,
    ) -> Result<Outcome, E> {
        let max_burst = self.max_burst.max(1);
        let mut out = Outcome::default();
        let mut done = 0u64; // sent or given up
        let mut flow = 0u32;
        let mut due = Vec::with_capacity(max_burst);
        let mut next_tick = t0.saturating_add(tick_every_ns);
        while done < self.count {
            if stop.load(Ordering::Relaxed) {
                out.stopped = true;
                break;
            }
            let now = clock.now();
            if tick_every_ns > 0 && now >= next_tick {
                tick(out.sent)?;
                next_tick = next_tick.saturating_add(tick_every_ns).max(now);
            }
            let first = t0 + schedule.peek();
            if first > now {
                let wait = first - now;
                if wait > SPIN_NS {
                    let mut until = first - SPIN_NS / 2;
                    if tick_every_ns > 0 {
                        until = until.min(next_tick);
                    }
                    clock.sleep_until(until);
                } else {
                    clock.relax();
                }
                continue;
            }
            // Give up what is too far overdue.
            while done < self.count && t0 + schedule.peek() + MAX_LAG_NS < now {
                schedule.advance();
                done += 1;
                out.behind_schedule += 1;
            }
            due.clear();
            while due.len() < max_burst && done + (due.len() as u64) < self.count {
                let d = t0 + schedule.peek();
                if d > now {
                    break;
                }
                due.push(d);
                schedule.advance();
            }
            if due.is_empty() {
                continue;
            }
            let stamp = clock.now();
            let mut sent = 0;
            while sent < due.len() {
                match tx.send(flow, due.len() - sent, stamp) {
                    Ok(0) => {
                        tally.refused += (due.len() - sent) as u64;
                        break;
                    }
                    Ok(n) => sent += n.min(due.len() - sent),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            if sent > 0 {
                tally.record(sent, stamp, &due[..sent]);
            }
            out.sent += sent as u64;
            done += due.len() as u64;
            flow = (flow + 1) % self.flows.max(1);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when slept on, or by `step` per reading.
    struct FakeClock {
        now: u64,
        step: u64,
        sleeps: u64,
    }

    impl Clock for FakeClock {
        fn now(&mut self) -> u64 {
            self.now += self.step;
            self.now
        }
        fn sleep_until(&mut self, t: u64) {
            self.sleeps += 1;
            self.now = self.now.max(t);
        }
    }

    /// Records the calls; each costs `cost` ns of the clock it shares.
    struct FakeTx<'a> {
        calls: Vec<(u32, usize, u64)>,
        clock: &'a std::cell::Cell<u64>,
        cost: u64,
        take: Option<usize>,
    }

    impl Transmit for FakeTx<'_> {
        fn send(&mut self, flow: u32, n: usize, stamp: u64) -> std::io::Result<usize> {
            self.clock.set(self.clock.get() + self.cost);
            self.calls.push((flow, n, stamp));
            Ok(self.take.map_or(n, |t| t.min(n)))
        }
    }

    /// A clock shared with the fake sender (so that sends take time).
    struct SharedClock<'a>(&'a std::cell::Cell<u64>, u64);

    impl Clock for SharedClock<'_> {
        fn now(&mut self) -> u64 {
            self.0.set(self.0.get() + self.1);
            self.0.get()
        }
        fn sleep_until(&mut self, t: u64) {
            self.0.set(self.0.get().max(t));
        }
    }

    fn run(
        count: u64,
        rate: f64,
        max_burst: usize,
        cost: u64,
        arrivals: Arrivals,
    ) -> (Outcome, SendTally, Vec<(u32, usize, u64)>) {
        let t = std::cell::Cell::new(1_000_000_000);
        let t0 = t.get();
        let mut clock = SharedClock(&t, 10);
        let mut tx = FakeTx {
            calls: Vec::new(),
            clock: &t,
            cost,
            take: None,
        };
        let mut tally = SendTally::default();
        let p = Pacer {
            count,
            max_burst,
            flows: 3,
        };
        let out = p
            .run(
                &mut Schedule::new(rate, arrivals),
                t0,
                &mut tx,
                &mut clock,
                &mut tally,
                &AtomicBool::new(false),
                0,
                |_| Ok::<(), std::io::Error>(()),
                |e| e,
            )
            .unwrap();
        (out, tally, tx.calls)
    }

    #[test]
    fn even_arrivals_go_one_per_call_when_the_sender_keeps_up() {
        let (out, tally, calls) = run(1000, 10_000.0, 4, 1_000, Arrivals::Even);
        assert_eq!((out.sent, out.behind_schedule), (1000, 0));
        assert_eq!(calls.len(), 1000);
        assert!(calls.iter().all(|c| c.1 == 1));
        assert_eq!(
            calls[..4].iter().map(|c| c.0).collect::<Vec<_>>(),
            [0, 1, 2, 0]
        );
        let (n, max, mean, err) = tally.stats();
        assert_eq!((n, max, mean), (1000, 1, 1.0));
        assert_eq!(err.samples, 1000);
        // Sent within a few clock readings of the due time: the fake clock is exact.
        assert!(err.max_ns < 1_000, "{err:?}");
    }

    #[test]
    fn a_slow_sender_batches_but_never_beyond_the_bound() {
        // 1M/s with 5 us per call: the backlog goes out in calls of at most 4.
        let (out, tally, calls) = run(10_000, 1e6, 4, 5_000, Arrivals::Even);
        assert_eq!(out.sent + out.behind_schedule, 10_000);
        assert!(calls.iter().all(|c| (1..=4).contains(&c.1)));
        let (_, max, mean, err) = tally.stats();
        assert_eq!(max, 4);
        assert!(mean > 3.0, "{mean}");
        assert_eq!(err.samples, out.sent);
    }

    #[test]
    fn requests_far_behind_are_given_up() {
        // 1M/s, 100 us per call of at most 1: falls 20 ms behind within ~0.2 s.
        let (out, tally, _) = run(400_000, 1e6, 1, 100_000, Arrivals::Even);
        assert!(out.behind_schedule > 0);
        assert_eq!(out.sent + out.behind_schedule, 400_000);
        let (_, _, _, err) = tally.stats();
        assert!(err.max_ns <= MAX_LAG_NS + 200_000, "{err:?}");
    }

    #[test]
    fn poisson_arrivals_have_the_rate_and_repeat_with_the_seed() {
        let seq = |seed| {
            let mut s = Schedule::new(1e5, Arrivals::Poisson { seed });
            (0..100_000)
                .map(|_| {
                    let d = s.peek();
                    s.advance();
                    d
                })
                .collect::<Vec<_>>()
        };
        let a = seq(7);
        assert_eq!(a, seq(7));
        assert_ne!(a, seq(8));
        // 100k arrivals at 100k/s end near 1 s (the sum's spread is 1/sqrt(n) = 0.3%).
        let end = *a.last().unwrap() as f64 / 1e9;
        assert!((0.98..1.02).contains(&end), "{end}");
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        // Exponential gaps: about 1/e of them longer than the mean.
        let long = a.windows(2).filter(|w| w[1] - w[0] > 10_000).count() as f64;
        assert!((0.35..0.39).contains(&(long / 1e5)), "{}", long / 1e5);
        // And the pacer sends each at its time, a few together when they bunch up.
        let (out, tally, _) = run(10_000, 1e5, 4, 1_000, Arrivals::Poisson { seed: 7 });
        assert_eq!(out.sent, 10_000);
        assert!(tally.stats().1 <= 4);
    }

    #[test]
    fn a_full_buffer_is_counted_not_retried() {
        let t = std::cell::Cell::new(0);
        let mut clock = SharedClock(&t, 10);
        let mut tx = FakeTx {
            calls: Vec::new(),
            clock: &t,
            cost: 0,
            take: Some(0),
        };
        let mut tally = SendTally::default();
        let p = Pacer {
            count: 10,
            max_burst: 4,
            flows: 1,
        };
        let out = p
            .run(
                &mut Schedule::new(1000.0, Arrivals::Even),
                0,
                &mut tx,
                &mut clock,
                &mut tally,
                &AtomicBool::new(false),
                0,
                |_| Ok::<(), std::io::Error>(()),
                |e| e,
            )
            .unwrap();
        assert_eq!((out.sent, tally.refused), (0, 10));
        assert_eq!(tally.stats().0, 0);
    }

    #[test]
    fn sleeps_when_far_and_ticks_on_time() {
        let mut clock = FakeClock {
            now: 0,
            step: 1,
            sleeps: 0,
        };
        struct Count(u64);
        impl Transmit for Count {
            fn send(&mut self, _: u32, n: usize, _: u64) -> std::io::Result<usize> {
                self.0 += n as u64;
                Ok(n)
            }
        }
        let mut tx = Count(0);
        let mut ticks = Vec::new();
        let out = Pacer {
            count: 100,
            max_burst: 4,
            flows: 1,
        }
        .run(
            &mut Schedule::new(1000.0, Arrivals::Even),
            0,
            &mut tx,
            &mut clock,
            &mut SendTally::default(),
            &AtomicBool::new(false),
            10_000_000,
            |sent| {
                ticks.push(sent);
                Ok::<(), std::io::Error>(())
            },
            |e| e,
        )
        .unwrap();
        assert_eq!((out.sent, tx.0), (100, 100));
        assert!(clock.sleeps >= 99, "slept {} times", clock.sleeps);
        // 100 ms at 1k/s, a tick every 10 ms.
        assert_eq!(ticks.len(), 9, "{ticks:?}");
        assert!(ticks.windows(2).all(|w| w[1] - w[0] == 10), "{ticks:?}");
    }
}
