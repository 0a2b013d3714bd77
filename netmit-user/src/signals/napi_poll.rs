//! Per-NAPI poll counters from the `napi:napi_poll` tracepoint.
//!
//! [`NapiPollSource::open`] computes the struct offsets from the kernel's BTF, loads the
//! `netmit_napi_poll` raw tracepoint program with them, and attaches it; from then on the
//! kernel counts every poll of every NAPI of the machine (all network namespaces) in a
//! per-CPU map. [`NapiPollSource::snapshot`] adds up the CPUs, and [`napi_poll_rates`]
//! turns two snapshots into per-interval rates. Dropping the source detaches the program
//! and frees its maps: nothing is pinned, so nothing outlives the process.
//!
//! The counters cover every kind of poll the tracepoint reports: softirq and threaded
//! NAPI polls, busy polls (`napi_busy_loop`) and netpoll. Each poll is counted exactly
//! once (or, if its NAPI id cannot be read or its entry cannot be created, once in
//! [`NapiPollSource::uncounted`]), which is what lets the total be checked against
//! `perf stat -e napi:napi_poll`.

use std::{collections::BTreeMap, time::Duration};

use aya::{
    Ebpf,
    maps::{PerCpuArray, PerCpuHashMap},
    programs::RawTracePoint,
};
use netmit_common::{NAPI_WORK_BUCKETS, NapiOffsets, NapiPollCounters, names};

use super::{SignalsError, btf};
use crate::ebpf::EBPF_OBJECT;

/// Maps of the shared eBPF object that the napi_poll program does not use. Loading the
/// object creates every map in it; these are created with one entry instead of their
/// steering-sized defaults (about 4.6 MiB of kernel memory; one entry of the steering
/// tables, 2.3 MiB, remains).
const UNUSED_MAPS: [&str; 7] = {
    let s = names::STEERING_MAPS;
    [s[0], s[1], s[2], s[3], s[4], s[5], names::MAP_GEN_STATE]
};

/// The napi_poll program, loaded and attached; counts until dropped.
pub struct NapiPollSource {
    ebpf: Ebpf,
    offsets: NapiOffsets,
}

impl std::fmt::Debug for NapiPollSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NapiPollSource")
            .field("offsets", &self.offsets)
            .finish_non_exhaustive()
    }
}

/// Run statistics the kernel keeps for the program (`bpf_prog_info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// Program id (as `bpftool prog` shows it).
    pub prog_id: u32,
    /// Runs counted while BPF run-time statistics were enabled
    /// (`aya::sys::enable_stats` or `sysctl kernel.bpf_stats_enabled=1`).
    pub run_count: u64,
    /// Total run time over those runs.
    pub run_time: Duration,
}

impl NapiPollSource {
    /// Loads `netmit_napi_poll` with offsets from the running kernel's BTF and attaches it
    /// to the `napi_poll` raw tracepoint.
    ///
    /// # Minimum kernel version
    ///
    /// Raw tracepoints need Linux 4.17; netmit is tested on 6.18.
    ///
    /// # Errors
    ///
    /// [`SignalsError::NotPermitted`] without CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN);
    /// the BTF errors of [`btf::napi_offsets`]; [`SignalsError::Load`],
    /// [`SignalsError::Program`] and [`SignalsError::Attach`] when the kernel refuses.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::{thread, time::{Duration, Instant}};
    /// use netmit_user::signals::{NapiPollSource, napi_poll_rates};
    ///
    /// let source = NapiPollSource::open()?;
    /// let (t0, s0) = (Instant::now(), source.snapshot()?);
    /// thread::sleep(Duration::from_secs(1));
    /// let (t1, s1) = (Instant::now(), source.snapshot()?);
    /// for (id, r) in napi_poll_rates(&s0, &s1, t1 - t0) {
    ///     println!("napi {id} (ifindex {}): {:.0} polls/s, {:.1} packets/poll",
    ///              r.ifindex, r.polls_per_sec, r.packets_per_poll);
    /// }
    /// # Ok::<(), netmit_user::signals::SignalsError>(())
    /// ```
    pub fn open() -> Result<Self, SignalsError> {
        if !has_tracing_privileges() {
            return Err(SignalsError::NotPermitted);
        }
        let offsets = btf::napi_offsets()?;
        Self::open_with_offsets(offsets)
    }

    /// [`NapiPollSource::open`] with given offsets (for kernels whose BTF lives
    /// elsewhere: compute them with [`btf::napi_offsets_from`]).
    pub fn open_with_offsets(offsets: NapiOffsets) -> Result<Self, SignalsError> {
        let mut loader = crate::ebpf::loader();
        loader.override_global(names::GLOBAL_NAPI_OFFSETS, &offsets, true);
        for map in UNUSED_MAPS {
            loader.map_max_entries(map, 1);
        }
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(SignalsError::Load)?;
        let prog: &mut RawTracePoint = ebpf
            .program_mut(names::PROG_NAPI_POLL)
            .ok_or(SignalsError::Missing("program netmit_napi_poll"))?
            .try_into()
            .map_err(|source| SignalsError::Program {
                what: "program type",
                source,
            })?;
        prog.load().map_err(|source| SignalsError::Program {
            what: "loading (verifier)",
            source,
        })?;
        // The link belongs to the program, which belongs to `ebpf`: dropping the source
        // drops the link, which detaches the program.
        prog.attach(names::TRACEPOINT_NAPI_POLL)
            .map_err(|source| SignalsError::Attach {
                tracepoint: names::TRACEPOINT_NAPI_POLL,
                source,
            })?;
        Ok(Self { ebpf, offsets })
    }

    /// The offsets the program was loaded with.
    pub fn offsets(&self) -> NapiOffsets {
        self.offsets
    }

    /// The counters of every NAPI polled since the source was opened (and whose entry has
    /// not aged out of the LRU map), by NAPI id, summed over CPUs. NAPIs without a
    /// device (the per-CPU backlog, used by devices without a NAPI of their own) share
    /// id 0 and ifindex 0.
    ///
    /// Reading is not atomic across NAPIs or CPUs; every counter only grows, so a
    /// snapshot lies between the states at its start and its end.
    pub fn snapshot(&self) -> Result<BTreeMap<u32, NapiPollCounters>, SignalsError> {
        let map = self
            .ebpf
            .map(names::MAP_NAPI_POLLS)
            .ok_or(SignalsError::Missing("map NETMIT_NAPIPOLL"))?;
        let map_err = |source| SignalsError::Map {
            map: names::MAP_NAPI_POLLS,
            source,
        };
        let map: PerCpuHashMap<_, u32, NapiPollCounters> =
            PerCpuHashMap::try_from(map).map_err(map_err)?;
        let mut out = BTreeMap::new();
        for entry in map.iter() {
            let (id, per_cpu) = entry.map_err(map_err)?;
            // A key deleted during the walk restarts it; later values win.
            out.insert(id, sum_cpus(per_cpu.iter()));
        }
        Ok(out)
    }

    /// Polls the program could not attribute to a NAPI (its id was unreadable, or its
    /// map entry could not be created), summed over CPUs. Zero in normal operation.
    pub fn uncounted(&self) -> Result<u64, SignalsError> {
        let map = self
            .ebpf
            .map(names::MAP_NAPI_LOST)
            .ok_or(SignalsError::Missing("map NETMIT_NAPILOST"))?;
        let map_err = |source| SignalsError::Map {
            map: names::MAP_NAPI_LOST,
            source,
        };
        let map: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err)?;
        Ok(map.get(&0, 0).map_err(map_err)?.iter().sum())
    }

    /// The kernel's run statistics of the program. Run count and time only advance while
    /// BPF statistics are enabled; divide them for the cost of one poll's accounting.
    pub fn program_stats(&self) -> Result<ProgramStats, SignalsError> {
        let prog: &RawTracePoint = self
            .ebpf
            .program(names::PROG_NAPI_POLL)
            .ok_or(SignalsError::Missing("program netmit_napi_poll"))?
            .try_into()
            .map_err(|source| SignalsError::Program {
                what: "program type",
                source,
            })?;
        let info = prog.info().map_err(|source| SignalsError::Program {
            what: "reading bpf_prog_info",
            source,
        })?;
        Ok(ProgramStats {
            prog_id: info.id(),
            run_count: info.run_count(),
            run_time: info.run_time(),
        })
    }
}

/// Adds up the per-CPU values of one NAPI. The ifindex is recorded only on the CPU that
/// created the entry: the first non-zero one is taken.
pub fn sum_cpus<'a>(values: impl IntoIterator<Item = &'a NapiPollCounters>) -> NapiPollCounters {
    let mut t = NapiPollCounters::default();
    for v in values {
        t.polls += v.polls;
        t.packets += v.packets;
        t.budget_exhausted += v.budget_exhausted;
        t.empty += v.empty;
        for (a, b) in t.work_hist.iter_mut().zip(v.work_hist) {
            *a += b;
        }
        if t.ifindex == 0 {
            t.ifindex = v.ifindex;
        }
    }
    t
}

/// What one NAPI did during an interval: the counter deltas and rates derived from them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct NapiPollRates {
    /// NAPI id.
    pub napi_id: u32,
    /// Interface index of its device (0 for the backlog NAPI).
    pub ifindex: u32,
    /// Polls in the interval.
    pub polls: u64,
    /// Packets in the interval.
    pub packets: u64,
    /// Polls that used their whole budget.
    pub budget_exhausted: u64,
    /// Polls that found no work.
    pub empty: u64,
    /// Polls in the interval by work bucket ([`netmit_common::napi_work_bucket`]).
    pub work_hist: [u64; NAPI_WORK_BUCKETS],
    /// Polls per second.
    pub polls_per_sec: f64,
    /// Packets per second.
    pub packets_per_sec: f64,
    /// Average packets per poll (0 without polls).
    pub packets_per_poll: f64,
    /// Fraction of polls that exhausted their budget (0 without polls): near 1 means the
    /// NAPI cannot keep up, or is deliberately run with a small budget.
    pub budget_exhausted_ratio: f64,
    /// Fraction of polls that found nothing (0 without polls): high with deferred IRQs
    /// or busy polling, where polls run ahead of the traffic.
    pub empty_ratio: f64,
    /// Some counter went backwards: the entry was re-created (aged out of the map and
    /// polled again, or the source was re-opened). The deltas are then the counts since
    /// the re-creation, which undercounts the interval.
    pub reset: bool,
}

/// Per-interval rates of every NAPI in `after`, from two snapshots `elapsed` apart.
///
/// - A NAPI in `after` but not in `before` started within the interval: its counts are
///   all in the interval.
/// - A NAPI in `before` but not in `after` was destroyed (or aged out): it is left out,
///   having no counts to report.
/// - A NAPI whose counters went backwards is treated as new, with
///   [`NapiPollRates::reset`] set.
///
/// With a zero `elapsed`, the per-second rates are 0.
pub fn napi_poll_rates(
    before: &BTreeMap<u32, NapiPollCounters>,
    after: &BTreeMap<u32, NapiPollCounters>,
    elapsed: Duration,
) -> BTreeMap<u32, NapiPollRates> {
    let secs = elapsed.as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let ratio = |n: u64, d: u64| if d > 0 { n as f64 / d as f64 } else { 0.0 };
    after
        .iter()
        .map(|(&id, now)| {
            let zero = NapiPollCounters::default();
            let prev = before.get(&id).unwrap_or(&zero);
            let reset = went_backwards(prev, now);
            let base = if reset { &zero } else { prev };
            let mut work_hist = [0; NAPI_WORK_BUCKETS];
            for (i, h) in work_hist.iter_mut().enumerate() {
                *h = now.work_hist[i] - base.work_hist[i];
            }
            let polls = now.polls - base.polls;
            let packets = now.packets - base.packets;
            let budget_exhausted = now.budget_exhausted - base.budget_exhausted;
            let empty = now.empty - base.empty;
            let rates = NapiPollRates {
                napi_id: id,
                ifindex: if now.ifindex != 0 {
                    now.ifindex
                } else {
                    prev.ifindex
                },
                polls,
                packets,
                budget_exhausted,
                empty,
                work_hist,
                polls_per_sec: per_sec(polls),
                packets_per_sec: per_sec(packets),
                packets_per_poll: ratio(packets, polls),
                budget_exhausted_ratio: ratio(budget_exhausted, polls),
                empty_ratio: ratio(empty, polls),
                reset,
            };
            (id, rates)
        })
        .collect()
}

fn went_backwards(prev: &NapiPollCounters, now: &NapiPollCounters) -> bool {
    now.polls < prev.polls
        || now.packets < prev.packets
        || now.budget_exhausted < prev.budget_exhausted
        || now.empty < prev.empty
        || now
            .work_hist
            .iter()
            .zip(prev.work_hist)
            .any(|(&n, p)| n < p)
}

/// Whether the effective capabilities allow loading and attaching a raw tracepoint
/// program: CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON.
fn caps_allow_tracing(eff: u64) -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let has = |c: u32| eff & (1u64 << c) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

/// [`caps_allow_tracing`] of this process. When the status file cannot be read the load
/// is attempted and the kernel decides.
fn has_tracing_privileges() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_none_or(caps_allow_tracing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(
        polls: u64,
        packets: u64,
        exhausted: u64,
        empty: u64,
        ifindex: u32,
    ) -> NapiPollCounters {
        let mut work_hist = [0; NAPI_WORK_BUCKETS];
        work_hist[0] = empty;
        work_hist[7] = exhausted;
        work_hist[1] = polls - empty - exhausted;
        NapiPollCounters {
            polls,
            packets,
            budget_exhausted: exhausted,
            empty,
            work_hist,
            ifindex,
            _pad: 0,
        }
    }

    fn snap(entries: &[(u32, NapiPollCounters)]) -> BTreeMap<u32, NapiPollCounters> {
        entries.iter().copied().collect()
    }

    #[test]
    fn rates_over_an_interval() {
        let before = snap(&[(8193, counters(100, 500, 2, 10, 7))]);
        let after = snap(&[(8193, counters(1100, 20_500, 102, 60, 7))]);
        let r = &napi_poll_rates(&before, &after, Duration::from_millis(500))[&8193];
        assert_eq!(
            (r.polls, r.packets, r.budget_exhausted, r.empty),
            (1000, 20_000, 100, 50)
        );
        assert_eq!(r.work_hist, [50, 850, 0, 0, 0, 0, 0, 100]);
        assert_eq!(r.polls_per_sec, 2000.0);
        assert_eq!(r.packets_per_sec, 40_000.0);
        assert_eq!(r.packets_per_poll, 20.0);
        assert_eq!(r.budget_exhausted_ratio, 0.1);
        assert_eq!(r.empty_ratio, 0.05);
        assert_eq!(r.ifindex, 7);
        assert!(!r.reset);
    }

    #[test]
    fn new_disappearing_and_idle_napis() {
        let before = snap(&[
            (1, counters(10, 10, 0, 0, 2)),
            (2, counters(50, 50, 0, 0, 3)),
        ]);
        let after = snap(&[
            (2, counters(50, 50, 0, 0, 3)), // idle
            (9, counters(4, 64, 1, 0, 5)),  // appeared
        ]);
        let r = napi_poll_rates(&before, &after, Duration::from_secs(2));
        assert_eq!(
            r.keys().copied().collect::<Vec<_>>(),
            [2, 9],
            "NAPI 1 is gone"
        );
        let idle = &r[&2];
        assert_eq!((idle.polls, idle.polls_per_sec), (0, 0.0));
        // No polls: ratios are 0, not NaN.
        assert_eq!(
            (idle.packets_per_poll, idle.budget_exhausted_ratio),
            (0.0, 0.0)
        );
        let new = &r[&9];
        assert_eq!((new.polls, new.packets, new.polls_per_sec), (4, 64, 2.0));
        assert!(!new.reset);
    }

    #[test]
    fn counter_reset_counts_from_zero() {
        let before = snap(&[(3, counters(1000, 5000, 0, 100, 4))]);
        // Re-created entry: fewer polls than before. The ifindex may be missing when the
        // creating CPU's slot is not summed in; the previous one is kept.
        let after = snap(&[(3, counters(30, 90, 0, 3, 0))]);
        let r = &napi_poll_rates(&before, &after, Duration::from_secs(1))[&3];
        assert!(r.reset);
        assert_eq!((r.polls, r.packets, r.empty), (30, 90, 3));
        assert_eq!(r.ifindex, 4);
        // A histogram bucket alone going backwards is a reset too.
        let mut odd = before[&3];
        odd.polls += 1;
        odd.work_hist[0] -= 1;
        odd.work_hist[1] += 2;
        assert!(napi_poll_rates(&before, &snap(&[(3, odd)]), Duration::from_secs(1))[&3].reset);
    }

    #[test]
    fn zero_elapsed_gives_zero_rates() {
        let after = snap(&[(5, counters(10, 10, 0, 0, 1))]);
        let r = &napi_poll_rates(&BTreeMap::new(), &after, Duration::ZERO)[&5];
        assert_eq!(
            (r.polls_per_sec, r.packets_per_sec, r.packets_per_poll),
            (0.0, 0.0, 1.0)
        );
    }

    #[test]
    fn cpus_are_summed_and_ifindex_taken_from_the_creator() {
        let a = counters(10, 100, 1, 2, 0);
        let b = counters(5, 7, 0, 1, 42);
        let c = counters(1, 1, 0, 0, 0);
        let t = sum_cpus([&a, &b, &c]);
        assert_eq!(
            (t.polls, t.packets, t.budget_exhausted, t.empty),
            (16, 108, 1, 3)
        );
        assert_eq!(t.work_hist.iter().sum::<u64>(), 16);
        assert_eq!(t.ifindex, 42);
    }

    #[test]
    fn capabilities() {
        assert!(caps_allow_tracing(1 << 21));
        assert!(caps_allow_tracing((1 << 38) | (1 << 39)));
        assert!(
            !caps_allow_tracing(1 << 39),
            "CAP_BPF alone cannot attach tracing programs"
        );
        assert!(!caps_allow_tracing(1 << 12));
    }
}
