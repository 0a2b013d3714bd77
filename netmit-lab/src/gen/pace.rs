//! The send loop: limits, pacing against a monotonic clock, and per-interval samples.
//!
//! The loop only decides *how many* frames to send and *when*; the sending itself and
//! the clock are behind the [`Transmit`] and [`Clock`] traits, so the unit tests drive it
//! with a fake clock and a fake sender (exact counts, rate accuracy, catch-up bounds,
//! interrupted syscalls) without root or a network.
//!
//! # Pacing
//!
//! At a fixed rate `r`, frame slot `k` is due at `k / r` seconds after the start: the
//! schedule is absolute, so sleeping too long (timer slack, a preempted thread) is made
//! up by the next call, and the average rate does not drift. A call sends a *burst* of
//! frames when the burst's first slot is due (so frames leave at most one burst early);
//! the burst is sized so that there are at most ~10,000 calls a second.
//!
//! If the sender falls behind (the machine cannot keep up, or the thread was not
//! scheduled), it sends the backlog in bigger calls, but never more than `max_lag` worth
//! of frames: older slots are given up and counted in [`Outcome::skipped`], so that a
//! stall does not turn into an arbitrarily long line-rate burst afterwards.
//!
//! With a duration, the run covers the slots due before the deadline (`ceil(r * d)`
//! frames); with a count, exactly that many frames (the last call is shortened). At a
//! fixed rate the run ends when the last frame's slot ends, so a run that kept up
//! reports exactly the asked rate.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use super::{GenError, report::GenSample};

/// Sends frames: one `BPF_PROG_TEST_RUN` call in production.
pub(crate) trait Transmit {
    /// Sends `frames` frames and returns how many were sent: fewer only when the call
    /// was interrupted by a signal.
    fn send(&mut self, frames: u32) -> Result<u64, GenError>;
}

/// A monotonic clock measured from the start of the run.
pub(crate) trait Clock {
    /// Time since the start.
    fn now(&self) -> Duration;
    /// Sleeps until `t` after the start (returns at once if that is past).
    fn sleep_until(&mut self, t: Duration);
}

/// What the loop is asked to do.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Frames per second, or `None` for as fast as possible.
    pub rate: Option<u64>,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Stop at this time after the start.
    pub duration: Option<Duration>,
    /// Frames per call.
    pub burst: u32,
    /// Largest call when catching up.
    pub max_call: u32,
    /// How far behind schedule the loop catches up before it gives slots up.
    pub max_lag: Duration,
    /// Interval of the samples.
    pub sample_interval: Duration,
    /// Bytes per frame (for the samples' bit rates).
    pub frame_len: u64,
}

/// What the loop did.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Outcome {
    /// Frames sent.
    pub packets: u64,
    /// From the start to the end of the run.
    pub elapsed: Duration,
    /// Slots given up because the sender was more than `max_lag` behind.
    pub skipped: u64,
    /// Whether the stop flag ended the run.
    pub stopped: bool,
    /// One sample per interval (and a last, shorter one).
    pub samples: Vec<GenSample>,
}

const NANOS: u128 = 1_000_000_000;

/// Start time of slot `k` at `rate` frames per second.
fn slot_time(k: u64, rate: u64) -> Duration {
    let ns = u128::from(k) * NANOS / u128::from(rate);
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// Number of slots that start at or before `t`.
fn slots_due(t: Duration, rate: u64) -> u64 {
    let n = t.as_nanos() * u128::from(rate) / NANOS + 1;
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Number of slots that start before `t`.
fn slots_before(t: Duration, rate: u64) -> u64 {
    let n = (t.as_nanos() * u128::from(rate)).div_ceil(NANOS);
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Frames per call at a fixed rate: about 100 µs of traffic, 1..=`max`.
pub(crate) fn default_burst(rate: u64, max: u32) -> u32 {
    u32::try_from(rate / 10_000).unwrap_or(max).clamp(1, max)
}

struct Sampler {
    interval: Duration,
    frame_len: u64,
    last_at: Duration,
    last_packets: u64,
    samples: Vec<GenSample>,
}

impl Sampler {
    fn take(&mut self, now: Duration, packets: u64) -> Option<GenSample> {
        let span = now.saturating_sub(self.last_at);
        if span.is_zero() {
            return None;
        }
        let n = packets - self.last_packets;
        let secs = span.as_secs_f64();
        let s = GenSample {
            at_secs: now.as_secs_f64(),
            secs,
            packets: n,
            pps: n as f64 / secs,
            mbit_per_sec: (n * self.frame_len * 8) as f64 / secs / 1e6,
        };
        self.last_at = now;
        self.last_packets = packets;
        self.samples.push(s.clone());
        Some(s)
    }

    fn due(&self, now: Duration) -> bool {
        !self.interval.is_zero() && now >= self.last_at + self.interval
    }
}

/// Runs the plan. `on_sample` is called with every sample as it is taken.
pub(crate) fn drive<T: Transmit, C: Clock>(
    plan: &Plan,
    tx: &mut T,
    clock: &mut C,
    stop: &AtomicBool,
    mut on_sample: impl FnMut(&GenSample),
) -> Result<Outcome, GenError> {
    let burst = plan.burst.max(1);
    let max_call = plan.max_call.max(burst);
    let mut out = Outcome::default();
    let mut sampler = Sampler {
        interval: plan.sample_interval,
        frame_len: plan.frame_len,
        last_at: Duration::ZERO,
        last_packets: 0,
        samples: Vec::new(),
    };
    let mut sent = 0u64;
    let mut skipped = 0u64;
    // Total slots of a run at a fixed rate for a duration.
    let slot_cap = match (plan.rate, plan.duration) {
        (Some(r), Some(d)) => Some(slots_before(d, r)),
        _ => None,
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            out.stopped = true;
            break;
        }
        let now = clock.now();
        if sampler.due(now)
            && let Some(s) = sampler.take(now, sent)
        {
            on_sample(&s);
        }
        let mut remaining = plan.count.map_or(u64::MAX, |c| c.saturating_sub(sent));
        if let Some(cap) = slot_cap {
            remaining = remaining.min(cap.saturating_sub(sent + skipped));
        }
        if remaining == 0 {
            break;
        }
        let n = match plan.rate {
            None => {
                if plan.duration.is_some_and(|d| now >= d) {
                    break;
                }
                u64::from(burst).min(remaining)
            }
            Some(r) => {
                let next = sent + skipped;
                let t_next = slot_time(next, r);
                if t_next > now {
                    let mut wake = t_next;
                    if !sampler.interval.is_zero() {
                        wake = wake.min(sampler.last_at + sampler.interval);
                    }
                    clock.sleep_until(wake.max(now));
                    continue;
                }
                let backlog = slots_due(now, r).saturating_sub(next);
                let max_backlog = slots_before(plan.max_lag, r).max(u64::from(max_call));
                if backlog > max_backlog {
                    // Give the oldest slots up; with a duration that may end the run.
                    skipped += backlog - max_backlog;
                    continue;
                }
                backlog
                    .clamp(u64::from(burst), u64::from(max_call))
                    .min(remaining)
            }
        };
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        sent += tx.send(n)?;
    }
    // At a fixed rate the run lasts until the last frame's slot is over.
    if let (Some(r), false) = (plan.rate, out.stopped) {
        clock.sleep_until(slot_time(sent + skipped, r));
    }
    let end = clock.now();
    if end > sampler.last_at + Duration::from_millis(1)
        && let Some(s) = sampler.take(end, sent)
    {
        on_sample(&s);
    }
    out.packets = sent;
    out.elapsed = end;
    out.skipped = skipped;
    out.samples = sampler.samples;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sender that advances the shared clock by `per_frame` and `per_call`.
    struct FakeTx<'c> {
        clock: &'c std::cell::Cell<Duration>,
        per_frame: Duration,
        per_call: Duration,
        calls: Vec<u32>,
        /// Call index at which to stall (the thread is descheduled), and for how long.
        stall: Option<(usize, Duration)>,
        /// Call index that is interrupted after sending this many frames.
        interrupt: Option<(usize, u64)>,
    }

    impl Transmit for FakeTx<'_> {
        fn send(&mut self, frames: u32) -> Result<u64, GenError> {
            let i = self.calls.len();
            self.calls.push(frames);
            let mut t = self.clock.get() + self.per_call + self.per_frame * frames;
            if let Some((at, d)) = self.stall
                && at == i
            {
                t += d;
            }
            self.clock.set(t);
            match self.interrupt {
                Some((at, n)) if at == i => Ok(n.min(u64::from(frames))),
                _ => Ok(u64::from(frames)),
            }
        }
    }

    /// Clock and sender sharing one time line.
    struct Shared<'c>(&'c std::cell::Cell<Duration>, Duration, u64);

    impl Clock for Shared<'_> {
        fn now(&self) -> Duration {
            self.0.get()
        }
        fn sleep_until(&mut self, t: Duration) {
            if t > self.0.get() {
                self.0.set(t + self.1);
                self.2 += 1;
            }
        }
    }

    fn plan(rate: Option<u64>, count: Option<u64>, duration: Option<Duration>) -> Plan {
        Plan {
            rate,
            count,
            duration,
            burst: rate.map_or(256, |r| default_burst(r, 64)),
            max_call: 1024,
            max_lag: Duration::from_millis(20),
            sample_interval: Duration::from_secs(1),
            frame_len: 64,
        }
    }

    fn tx(clock: &std::cell::Cell<Duration>) -> FakeTx<'_> {
        FakeTx {
            clock,
            per_frame: Duration::from_nanos(400),
            per_call: Duration::from_micros(2),
            calls: Vec::new(),
            stall: None,
            interrupt: None,
        }
    }

    fn run(p: &Plan, t: &mut FakeTx<'_>, oversleep: Duration) -> Outcome {
        let mut clock = Shared(t.clock, oversleep, 0);
        drive(p, t, &mut clock, &AtomicBool::new(false), |_| {}).unwrap()
    }

    #[test]
    fn count_is_exact_and_last_call_shortened() {
        let time = std::cell::Cell::new(Duration::ZERO);
        let mut t = tx(&time);
        let out = run(&plan(None, Some(20_000), None), &mut t, Duration::ZERO);
        assert_eq!(out.packets, 20_000);
        assert_eq!(t.calls.iter().map(|&c| u64::from(c)).sum::<u64>(), 20_000);
        assert_eq!(*t.calls.last().unwrap(), 20_000 % 256);
        assert!(!out.stopped);
    }

    #[test]
    fn fixed_rate_for_a_duration_is_exact_despite_oversleeping() {
        for (rate, oversleep_us) in [(50_000, 0), (50_000, 80), (500_000, 60), (1, 0), (3, 500)] {
            let time = std::cell::Cell::new(Duration::ZERO);
            let mut t = tx(&time);
            let p = plan(Some(rate), None, Some(Duration::from_secs(2)));
            let out = run(&p, &mut t, Duration::from_micros(oversleep_us));
            assert_eq!(out.packets, 2 * rate, "rate {rate}");
            assert_eq!(out.skipped, 0);
            let pps = out.packets as f64 / out.elapsed.as_secs_f64();
            assert!(
                (pps / rate as f64 - 1.0).abs() < 0.001,
                "rate {rate}: {pps} pps over {:?}",
                out.elapsed
            );
            // Per-second samples see the rate too (the first may start late by a burst).
            assert!(out.samples.len() >= 2, "{:?}", out.samples);
            for s in &out.samples[..2] {
                assert!((s.pps / rate as f64 - 1.0).abs() < 0.01, "{s:?}");
            }
        }
    }

    #[test]
    fn bursts_follow_the_rate() {
        assert_eq!(default_burst(50_000, 64), 5);
        assert_eq!(default_burst(500_000, 64), 50);
        assert_eq!(default_burst(5_000_000, 64), 64);
        assert_eq!(default_burst(10, 64), 1);
        let time = std::cell::Cell::new(Duration::ZERO);
        let mut t = tx(&time);
        let out = run(
            &plan(Some(50_000), Some(1000), None),
            &mut t,
            Duration::ZERO,
        );
        assert_eq!(out.packets, 1000);
        assert!(t.calls.iter().all(|&c| c == 5), "{:?}", &t.calls[..10]);
    }

    #[test]
    fn a_stall_is_caught_up_but_bounded() {
        // 100 ms stall at 100k pps: 10,000 slots behind; 20 ms (2,000) are caught up.
        let time = std::cell::Cell::new(Duration::ZERO);
        let mut t = tx(&time);
        t.stall = Some((100, Duration::from_millis(100)));
        let p = plan(Some(100_000), None, Some(Duration::from_secs(1)));
        let out = run(&p, &mut t, Duration::ZERO);
        assert!(
            (7_900..=8_100).contains(&out.skipped),
            "skipped {}",
            out.skipped
        );
        assert_eq!(out.packets + out.skipped, 100_000);
        assert!(t.calls.iter().all(|&c| c <= 1024));
    }

    #[test]
    fn a_stall_in_a_counted_run_delays_but_sends_everything() {
        let time = std::cell::Cell::new(Duration::ZERO);
        let mut t = tx(&time);
        t.stall = Some((10, Duration::from_millis(300)));
        let out = run(
            &plan(Some(10_000), Some(3_000), None),
            &mut t,
            Duration::ZERO,
        );
        assert_eq!(out.packets, 3_000);
        assert!(out.skipped > 0);
        // The schedule moved by the given-up slots, so the run ends that much later.
        let end = slot_time(out.packets + out.skipped, 10_000);
        assert!(out.elapsed >= end && out.elapsed < end + Duration::from_millis(1));
    }

    #[test]
    fn an_interrupted_call_is_counted_as_sent_and_completed() {
        let time = std::cell::Cell::new(Duration::ZERO);
        let mut t = tx(&time);
        t.interrupt = Some((3, 17));
        let out = run(&plan(None, Some(5_000), None), &mut t, Duration::ZERO);
        assert_eq!(out.packets, 5_000);
        assert_eq!(t.calls[4], 256, "the loop carries on after the short call");
    }

    #[test]
    fn max_rate_for_a_duration_and_stop_flag() {
        let time = std::cell::Cell::new(Duration::ZERO);
        let mut t = tx(&time);
        let p = plan(None, None, Some(Duration::from_millis(500)));
        let out = run(&p, &mut t, Duration::ZERO);
        // 256 frames cost 2 µs + 102.4 µs.
        let per_call = Duration::from_nanos(2_000 + 256 * 400);
        assert!(out.elapsed >= Duration::from_millis(500));
        assert!(out.elapsed < Duration::from_millis(500) + per_call);
        assert_eq!(out.packets % 256, 0);

        let stop = AtomicBool::new(true);
        let mut clock = Shared(&time, Duration::ZERO, 0);
        let out = drive(&p, &mut tx(&time), &mut clock, &stop, |_| {}).unwrap();
        assert!(out.stopped);
        assert_eq!(out.packets, 0);
    }
}
