//! Judging a switch by its effect: a switch into a more mitigating mode (Defer, Suspend)
//! is a trial. The interval after it is compared with the one before it; a switch that
//! made things worse is taken back, and the mode is held off with exponential back-off.
//!
//! # Why
//!
//! The enter rules look at the load, not at what the mode does to it. With a
//! closed-loop client (memcached driven by a client that waits for each answer, issue
//! 15) entering Defer made every request wait for the 200 µs watchdog; the client's rate
//! fell from 28.8k to 12.7k requests/s (0.44x), which was still above the Defer exit
//! threshold, so the daemon stayed in the mode that slowed the server down. An open-loop
//! load (a generator sending at a fixed rate) does not change with the mode, so a fall
//! right after a switch is the mode's doing.
//!
//! # The rules (defaults in [`EffectConfig`])
//!
//! After `judge_after_ms` (2 s) in the new mode, the mean rates since the switch are
//! compared with the mean rates of the last `judge_after_ms` before it:
//!
//! - **load fell**: received packets/s or transmitted packets/s (the replies) after the
//!   switch are below `min_load_percent` (80%) of before. Back to the previous mode.
//! - **no batching** (Defer only): NAPI polls per packet did not fall below
//!   `max_polls_per_packet_percent` (90%) of before: the watchdog is not batching, so
//!   deferral only adds latency. Back to the previous mode.
//! - **back-off**: a mode taken back is not entered again for `holdoff_ms` (30 s), doubled
//!   after every further take-back in a row, up to `max_holdoff_ms` (10 min). A trial that
//!   passes resets the back-off of its mode.
//!
//! - **noise floor**: a rate below `min_judged_packets_per_sec` (1,000/s) before the
//!   switch is not judged (a server that sends nothing but ARP and neighbour discovery
//!   has no replies to compare).
//!
//! A rate missing before or after (no XDP counters, no link counters, no tracepoint)
//! makes its test unjudged: it neither passes nor fails the switch.
//!
//! Where the numbers come from: docs/modes.md ("Judging a switch by its effect").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{config::MAX_MS, mode::Mode, sample::Sample};

/// When a switch is judged by its effect, and what counts as a bad one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EffectConfig {
    /// Judge switches into Defer and Suspend at all. Default true.
    pub enabled: bool,
    /// Time in the new mode before judging, and the length of the window before the
    /// switch it is compared with. Default 2,000 ms (below the 5 s dwell, so the judgement
    /// comes before any other switch can).
    pub judge_after_ms: u64,
    /// A switch fails when received or transmitted packets/s after it are below this
    /// percentage of before. Default 80.
    pub min_load_percent: u64,
    /// A rate below this many packets/s before the switch is not judged: a few ARP or
    /// neighbour-discovery frames are no load. Default 1,000 (the Defer enter rate is 20
    /// times higher, so received packets are always judged).
    pub min_judged_packets_per_sec: u64,
    /// A switch into Defer fails when polls per packet after it are at or above this
    /// percentage of before (0 disables the test). Default 90.
    pub max_polls_per_packet_percent: u64,
    /// Hold-off after the first take-back of a mode. Default 30,000 ms.
    pub holdoff_ms: u64,
    /// Longest hold-off (the doubling stops there). Default 600,000 ms.
    pub max_holdoff_ms: u64,
}

impl Default for EffectConfig {
    fn default() -> Self {
        EffectConfig {
            enabled: true,
            judge_after_ms: 2_000,
            min_load_percent: 80,
            min_judged_packets_per_sec: 1_000,
            max_polls_per_packet_percent: 90,
            holdoff_ms: 30_000,
            max_holdoff_ms: 600_000,
        }
    }
}

impl EffectConfig {
    /// The first out-of-range key: (key, value, allowed).
    pub(crate) fn invalid(&self) -> Option<(&'static str, u64, &'static str)> {
        let ms = "0..=86400000 (milliseconds, at most one day)";
        if self.judge_after_ms == 0 || self.judge_after_ms > MAX_MS {
            return Some(("effect.judge_after_ms", self.judge_after_ms, "1..=86400000"));
        }
        if !(1..=100).contains(&self.min_load_percent) {
            return Some(("effect.min_load_percent", self.min_load_percent, "1..=100"));
        }
        if self.max_polls_per_packet_percent > 100 {
            return Some((
                "effect.max_polls_per_packet_percent",
                self.max_polls_per_packet_percent,
                "0..=100 (0: no test)",
            ));
        }
        if self.max_holdoff_ms > MAX_MS {
            return Some(("effect.max_holdoff_ms", self.max_holdoff_ms, ms));
        }
        if self.holdoff_ms > self.max_holdoff_ms {
            return Some((
                "effect.holdoff_ms",
                self.holdoff_ms,
                "at most effect.max_holdoff_ms",
            ));
        }
        None
    }
}

/// Mean rates over a stretch of samples (each weighted by its interval); a rate counts
/// only over the samples that had it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    time: Duration,
    packets: (f64, f64),
    tx: (f64, f64),
    polls: (f64, f64),
}

fn add(acc: &mut (f64, f64), rate: Option<f64>, secs: f64) {
    if let Some(r) = rate.filter(|r| r.is_finite() && *r >= 0.0) {
        acc.0 += r * secs;
        acc.1 += secs;
    }
}

fn mean(acc: (f64, f64)) -> Option<f64> {
    (acc.1 > 0.0).then(|| acc.0 / acc.1)
}

impl Window {
    /// Adds one sample.
    pub fn push(&mut self, s: &Sample) {
        let secs = s.interval.as_secs_f64();
        self.time = self.time.saturating_add(s.interval);
        add(&mut self.packets, s.packets(), secs);
        add(&mut self.tx, s.tx_packets(), secs);
        // Polls count only where packets do, so that polls per packet is of one stretch.
        if s.packets().is_some() {
            add(&mut self.polls, s.polls_per_sec, secs);
        }
    }

    /// Time covered.
    pub fn time(&self) -> Duration {
        self.time
    }

    /// Mean received packets/s.
    pub fn packets(&self) -> Option<f64> {
        mean(self.packets)
    }

    /// Mean transmitted packets/s.
    pub fn tx(&self) -> Option<f64> {
        mean(self.tx)
    }

    /// NAPI polls per received packet.
    pub fn polls_per_packet(&self) -> Option<f64> {
        let p = self.packets().filter(|p| *p > 0.0)?;
        Some(mean(self.polls)? / p)
    }
}

/// The last samples of the current mode, as many as cover `span` (the baseline a trial
/// is judged against).
#[derive(Clone, Debug, Default)]
pub struct Recent {
    samples: std::collections::VecDeque<Sample>,
}

impl Recent {
    /// Adds `s`, dropping the oldest samples no longer needed to cover `span`.
    pub fn push(&mut self, s: &Sample, span: Duration) {
        self.samples.push_back(s.clone());
        loop {
            let without_oldest: Duration = self.samples.iter().skip(1).map(|s| s.interval).sum();
            if self.samples.len() > 1 && without_oldest >= span {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// The window over the kept samples.
    pub fn window(&self) -> Window {
        let mut w = Window::default();
        for s in &self.samples {
            w.push(s);
        }
        w
    }

    /// Forgets everything (a switch).
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

/// A switch under trial.
#[derive(Clone, Debug)]
pub struct Trial {
    /// The mode left (and returned to if the trial fails).
    pub from: Mode,
    /// The mode entered.
    pub to: Mode,
    /// Before the switch.
    pub before: Window,
    /// Since the switch.
    pub after: Window,
}

/// A failed trial: which test and the words for it.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The switch stands (with what was measured, for the log).
    Pass(String),
    /// The load fell.
    LoadFell(String),
    /// Deferral did not batch.
    NoBatching(String),
}

fn ratio(after: Option<f64>, before: Option<f64>, floor: f64) -> Option<f64> {
    let b = before.filter(|b| *b > 0.0 && *b >= floor)?;
    Some(after? / b)
}

impl Trial {
    /// Judges the trial with `c`'s thresholds.
    pub fn judge(&self, c: &EffectConfig) -> Verdict {
        let (b, a) = (&self.before, &self.after);
        let min = c.min_load_percent as f64 / 100.0;
        let floor = c.min_judged_packets_per_sec as f64;
        let rx = ratio(a.packets(), b.packets(), floor);
        let tx = ratio(a.tx(), b.tx(), floor);
        let ppp = ratio(a.polls_per_packet(), b.polls_per_packet(), 0.0);
        let fmt = |what: &str, r: Option<f64>, before: Option<f64>, after: Option<f64>| match r {
            Some(r) => format!(
                "{what} {:.0}/s -> {:.0}/s ({:.0}%)",
                before.unwrap_or(0.0),
                after.unwrap_or(0.0),
                r * 100.0
            ),
            None => format!(
                "{what} {:.0}/s -> {:.0}/s (not judged)",
                before.unwrap_or(0.0),
                after.unwrap_or(0.0)
            ),
        };
        let numbers = format!(
            "{}, {}, polls per packet {} in {:.1} s after vs {:.1} s before",
            fmt("received packets", rx, b.packets(), a.packets()),
            fmt("transmitted packets", tx, b.tx(), a.tx()),
            match (b.polls_per_packet(), a.polls_per_packet()) {
                (Some(x), Some(y)) => format!("{x:.3} -> {y:.3}"),
                _ => "not measured".into(),
            },
            a.time().as_secs_f64(),
            b.time().as_secs_f64(),
        );
        if rx.is_some_and(|r| r < min) || tx.is_some_and(|r| r < min) {
            return Verdict::LoadFell(format!(
                "after entering {} the load fell below {}% of before: {numbers}",
                self.to, c.min_load_percent
            ));
        }
        let max_ppp = c.max_polls_per_packet_percent as f64 / 100.0;
        if self.to == Mode::Defer
            && c.max_polls_per_packet_percent > 0
            && let Some(r) = ppp.filter(|r| *r >= max_ppp)
        {
            return Verdict::NoBatching(format!(
                "deferral did not batch: polls per packet at {:.0}% of before (fails at >= \
                 {}%): {numbers}",
                r * 100.0,
                c.max_polls_per_packet_percent
            ));
        }
        Verdict::Pass(numbers)
    }
}

/// Back-off per mode: how often in a row it was taken back, and until when it is held
/// off (on the controller's clock, the sum of the sample intervals).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    strikes: u32,
    until: Duration,
}

impl Backoff {
    /// A take-back at `now`: the next hold-off, doubled for every earlier strike. Returns
    /// its length.
    pub fn strike(&mut self, now: Duration, c: &EffectConfig) -> Duration {
        let factor = 1u64.checked_shl(self.strikes.min(32)).unwrap_or(u64::MAX);
        let ms = c.holdoff_ms.saturating_mul(factor).min(c.max_holdoff_ms);
        self.strikes = self.strikes.saturating_add(1);
        let hold = Duration::from_millis(ms);
        self.until = now.saturating_add(hold);
        hold
    }

    /// A trial passed: the back-off starts from scratch.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// Time left of the hold-off at `now` (`None`: not held off).
    pub fn remaining(&self, now: Duration) -> Option<Duration> {
        (self.until > now).then(|| self.until - now)
    }
}

#[cfg(test)]
#[path = "effect_tests.rs"]
mod tests;
