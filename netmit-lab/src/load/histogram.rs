//! The kernel's latency buckets in user space: sums over CPUs, deltas between snapshots,
//! and the summary (min, mean, percentiles, max).
//!
//! # Percentiles
//!
//! The buckets are loaded into an [`hdrhistogram::Histogram`] (3 significant digits,
//! finer than the kernel's 1/64), each bucket's count at the bucket's midpoint
//! ([`latency_bucket_mid`]), and the quantiles are taken from it: the value of rank
//! `max(1, ceil(q * n))`. HdrHistogram returns the highest value equivalent to that
//! midpoint at its own precision (at most 0.1 % above it), which always lies in the same
//! kernel bucket (whose midpoint is at least 0.4 % from its end), so the result is mapped
//! back to the midpoint: a reported percentile is always the midpoint of the kernel
//! bucket the ranked reply fell into, within 0.8 % of the real latency (exact below
//! 128 ns). The mean comes from the kernel's exact sum of latencies, not from buckets.

use hdrhistogram::Histogram;
use netmit_common::{LAT_BUCKETS, latency_bucket, latency_bucket_bounds, latency_bucket_mid};
use serde::Serialize;

/// Latency counts by kernel bucket ([`netmit_common::latency_bucket`]), over all CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets(pub Vec<u64>);

impl Default for Buckets {
    fn default() -> Self {
        Self(vec![0; LAT_BUCKETS])
    }
}

/// Latency figures of a set of replies, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Replies measured.
    pub samples: u64,
    /// Lowest latency (its bucket's midpoint).
    pub min_ns: u64,
    /// Mean latency (exact: the kernel sums the latencies).
    pub mean_ns: f64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Highest latency (its bucket's midpoint; the last bucket stands for everything
    /// from 136 s on).
    pub max_ns: u64,
}

/// One non-empty bucket, for reports that want the whole distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HistBucket {
    /// Lowest latency of the bucket, ns.
    pub lo_ns: u64,
    /// End of the bucket (exclusive), ns; `u64::MAX` for the last, open-ended one.
    pub end_ns: u64,
    /// Replies in it.
    pub count: u64,
}

impl Buckets {
    /// Counts one latency (for tests and for callers that merge their own samples).
    pub fn record(&mut self, ns: u64) {
        self.0[latency_bucket(ns)] += 1;
    }

    /// Adds another set of counts (another CPU's).
    pub fn add(&mut self, other: &[u64]) {
        for (a, b) in self.0.iter_mut().zip(other) {
            *a += b;
        }
    }

    /// The counts since `earlier` (a snapshot of the same counters).
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .zip(&earlier.0)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        )
    }

    /// Replies counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The non-empty buckets with their bounds.
    pub fn non_empty(&self) -> Vec<HistBucket> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, &count)| {
                let (lo_ns, end_ns) = latency_bucket_bounds(b);
                HistBucket {
                    lo_ns,
                    end_ns,
                    count,
                }
            })
            .collect()
    }

    /// The counts as an HdrHistogram, each bucket's at its midpoint.
    pub fn to_hdr(&self) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new(3).expect("3 significant digits are valid");
        for (b, &count) in self.0.iter().enumerate() {
            if count > 0 {
                // Auto-resizing: recording cannot fail for any u64 value.
                let _ = h.record_n(latency_bucket_mid(b), count);
            }
        }
        h
    }

    /// The summary; `latency_sum_ns` is the kernel's exact sum for the mean (`None`:
    /// the mean of the midpoints).
    pub fn summary(&self, latency_sum_ns: Option<u64>) -> LatencySummary {
        let samples = self.total();
        if samples == 0 {
            return LatencySummary::default();
        }
        let h = self.to_hdr();
        let q = |q: f64| latency_bucket_mid(latency_bucket(h.value_at_quantile(q)));
        let first = self.0.iter().position(|c| *c > 0).unwrap_or(0);
        let last = self.0.iter().rposition(|c| *c > 0).unwrap_or(0);
        let mean_ns = match latency_sum_ns {
            Some(sum) => sum as f64 / samples as f64,
            None => h.mean(),
        };
        LatencySummary {
            samples,
            min_ns: latency_bucket_mid(first),
            mean_ns,
            p50_ns: q(0.5),
            p90_ns: q(0.9),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: latency_bucket_mid(last),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward reference: every reply's bucket midpoint in a sorted list, and
    /// the quantile as the element of rank `max(1, ceil(q * n))`.
    fn reference_quantile(latencies: &[u64], q: f64) -> u64 {
        let mut mids: Vec<u64> = latencies
            .iter()
            .map(|&ns| latency_bucket_mid(latency_bucket(ns)))
            .collect();
        mids.sort_unstable();
        let rank = ((q * mids.len() as f64).ceil() as usize).max(1);
        mids[rank - 1]
    }

    fn buckets(latencies: &[u64]) -> Buckets {
        let mut b = Buckets::default();
        for &ns in latencies {
            b.record(ns);
        }
        b
    }

    /// A deterministic pseudo-random sequence (xorshift), spread over many decades.
    fn spread(n: usize, seed: u64) -> Vec<u64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // 0 ns .. ~2^40 ns, log-uniform-ish.
                let shift = (x % 41) as u32;
                (x >> 24) & ((1u64 << shift) - 1)
            })
            .collect()
    }

    #[test]
    fn quantiles_match_the_reference() {
        for (n, seed) in [(1, 7), (2, 3), (10, 11), (999, 5), (20_000, 42)] {
            let lat = spread(n, seed);
            let s = buckets(&lat).summary(None);
            assert_eq!(s.samples, n as u64);
            for (q, got) in [
                (0.5, s.p50_ns),
                (0.9, s.p90_ns),
                (0.99, s.p99_ns),
                (0.999, s.p999_ns),
            ] {
                assert_eq!(got, reference_quantile(&lat, q), "n {n} q {q}");
            }
            assert_eq!(s.min_ns, reference_quantile(&lat, 0.0));
            assert_eq!(s.max_ns, reference_quantile(&lat, 1.0));
        }
    }

    #[test]
    fn quantiles_are_close_to_the_real_values() {
        // 1000 evenly spread latencies from 10 µs to 20 µs: p50 ~15 µs, within 0.8 %.
        let lat: Vec<u64> = (0..1000).map(|i| 10_000 + i * 10).collect();
        let s = buckets(&lat).summary(Some(lat.iter().sum()));
        let near = |got: u64, want: f64| (got as f64 - want).abs() / want < 0.008;
        assert!(near(s.p50_ns, 14_990.0), "{s:?}");
        assert!(near(s.p90_ns, 18_990.0), "{s:?}");
        assert!(near(s.p99_ns, 19_890.0), "{s:?}");
        assert!(
            near(s.min_ns, 10_000.0) && near(s.max_ns, 19_990.0),
            "{s:?}"
        );
        assert_eq!(s.mean_ns, 14_995.0);
        // Exact below 128 ns.
        let s = buckets(&[5, 6, 7, 100]).summary(None);
        assert_eq!((s.min_ns, s.p50_ns, s.max_ns), (5, 6, 100));
    }

    #[test]
    fn empty_and_deltas() {
        assert_eq!(
            Buckets::default().summary(Some(0)),
            LatencySummary::default()
        );
        let a = buckets(&[1000, 2000]);
        let mut b = a.clone();
        b.record(3000);
        b.record(1000);
        let d = b.since(&a);
        assert_eq!(d.total(), 2);
        let ne = d.non_empty();
        assert_eq!(ne.len(), 2);
        assert!(ne[0].lo_ns <= 1000 && 1000 < ne[0].end_ns);
        assert_eq!(ne.iter().map(|b| b.count).sum::<u64>(), 2);
        let mut c = Buckets::default();
        c.add(&b.0);
        c.add(&a.0);
        assert_eq!(c.total(), 6);
    }

    #[test]
    fn the_top_bucket_is_reported_at_its_regular_midpoint() {
        let s = buckets(&[u64::MAX]).summary(None);
        assert_eq!(s.max_ns, latency_bucket_mid(LAT_BUCKETS - 1));
        assert!(s.max_ns > 136_000_000_000);
    }
}
