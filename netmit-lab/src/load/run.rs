//! One run of the load client: the open loop (the generator paces, two runs: warmup and
//! window), the closed loop (seed, watch the slots, re-seed), the drain, and the
//! snapshots and samples both are measured with.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use netmit_common::{LOAD_CTL_DRAIN, LOAD_CTL_RUN, LoadCounters};

use super::{
    Buckets, LoadConfig, LoadError, LoadProgram, LoadReport, LoadSample, SendReport, Sender,
    monotonic_ns,
    pace::{Pacer, Schedule, SendTally},
    slots,
    socket::{MonotonicClock, SocketTx},
};
use crate::r#gen::{GenReport, GenSample, Generator};

/// The longest drain after the window.
const DRAIN_MAX: Duration = Duration::from_millis(500);
/// The drain ends early when no reply came for this long.
const DRAIN_QUIET: Duration = Duration::from_millis(20);

/// The program's counters and histogram at one moment.
#[derive(Clone, Debug)]
struct Snapshot {
    at: Instant,
    c: LoadCounters,
    hist: Buckets,
}

impl Snapshot {
    fn take(p: &LoadProgram) -> Result<Self, LoadError> {
        Ok(Self {
            at: Instant::now(),
            c: p.counters()?,
            hist: p.histogram()?,
        })
    }
}

/// `b - a`, counter by counter.
fn delta(a: &LoadCounters, b: &LoadCounters) -> LoadCounters {
    LoadCounters {
        replies: b.replies.saturating_sub(a.replies),
        bytes: b.bytes.saturating_sub(a.bytes),
        latency_sum_ns: b.latency_sum_ns.saturating_sub(a.latency_sum_ns),
        reflected: b.reflected.saturating_sub(a.reflected),
        stale: b.stale.saturating_sub(a.stale),
        bad_stamp: b.bad_stamp.saturating_sub(a.bad_stamp),
        passed: b.passed.saturating_sub(a.passed),
        unreflected: b.unreflected.saturating_sub(a.unreflected),
    }
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Turns consecutive snapshots into samples.
struct Sampler {
    start: Instant,
    last: Snapshot,
    last_sent: u64,
    last_reseeded: u64,
    samples: Vec<LoadSample>,
}

impl Sampler {
    fn new(first: Snapshot, start: Instant, sent: u64) -> Self {
        Self {
            start,
            last: first,
            last_sent: sent,
            last_reseeded: 0,
            samples: Vec::new(),
        }
    }

    /// The sample from the last snapshot to `now`; `sent` and `reseeded` are totals.
    fn sample(&mut self, now: Snapshot, sent: u64, reseeded: u64, warmup: bool) -> LoadSample {
        let secs = now.at.duration_since(self.last.at).as_secs_f64();
        let d = delta(&self.last.c, &now.c);
        let sent_now = sent.saturating_sub(self.last_sent);
        let s = LoadSample {
            at_secs: now.at.duration_since(self.start).as_secs_f64(),
            secs,
            warmup,
            sent: sent_now,
            received: d.replies,
            sent_pps: per_sec(sent_now, secs),
            received_pps: per_sec(d.replies, secs),
            reseeded: reseeded.saturating_sub(self.last_reseeded),
            latency: now
                .hist
                .since(&self.last.hist)
                .summary(Some(d.latency_sum_ns)),
        };
        self.last = now;
        self.last_sent = sent;
        self.last_reseeded = reseeded;
        self.samples.push(s.clone());
        s
    }

    /// Whether the last sample is more than a millisecond old.
    fn stale(&self) -> bool {
        self.last.at.elapsed() > Duration::from_millis(1)
    }
}

/// Waits until `done(counters since from)` or no reply came for [`DRAIN_QUIET`] or
/// [`DRAIN_MAX`] passed, and returns the final snapshot.
fn drain(
    program: &LoadProgram,
    from: &Snapshot,
    done: impl Fn(&LoadCounters) -> bool,
) -> Result<Snapshot, LoadError> {
    let deadline = Instant::now() + DRAIN_MAX;
    let mut last = program.counters()?;
    let mut quiet_since = Instant::now();
    while !done(&delta(&from.c, &last))
        && Instant::now() < deadline
        && quiet_since.elapsed() < DRAIN_QUIET
    {
        std::thread::sleep(Duration::from_millis(2));
        let now = program.counters()?;
        if now.replies + now.stale != last.replies + last.stale {
            quiet_since = Instant::now();
        }
        last = now;
    }
    Snapshot::take(program)
}

/// One generator run of `duration` with live samples.
#[allow(clippy::too_many_arguments)]
fn gen_phase(
    generator: &mut Generator,
    program: &LoadProgram,
    sampler: &mut Sampler,
    stop: &AtomicBool,
    duration: Duration,
    warmup: bool,
    sent_before: u64,
    on_sample: &mut impl FnMut(&LoadSample),
) -> Result<GenReport, LoadError> {
    generator.set_duration(Some(duration));
    let mut in_run = 0u64;
    let mut failed = None;
    let report = generator.run(stop, |g: &GenSample| {
        in_run += g.packets;
        match Snapshot::take(program) {
            Ok(now) => on_sample(&sampler.sample(now, sent_before + in_run, 0, warmup)),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    // The generator skips a last sample less than a millisecond long: take it here, so
    // that the samples add up to every request sent.
    if in_run < report.packets {
        let now = Snapshot::take(program)?;
        on_sample(&sampler.sample(now, sent_before + report.packets, 0, warmup));
    }
    Ok(report)
}

/// The open loop: the generator sends at the rate, the program counts and drops.
pub(super) fn open(
    cfg: &LoadConfig,
    program: &mut LoadProgram,
    generator: &mut Generator,
    stop: &AtomicBool,
    on_sample: &mut impl FnMut(&LoadSample),
) -> Result<LoadReport, LoadError> {
    program.set_control(LOAD_CTL_RUN)?;
    let start = Instant::now();
    let mut sampler = Sampler::new(Snapshot::take(program)?, start, 0);
    let mut sent_total = 0;
    let mut stopped = false;
    if !cfg.warmup.is_zero() {
        let r = gen_phase(
            generator,
            program,
            &mut sampler,
            stop,
            cfg.warmup,
            true,
            0,
            on_sample,
        )?;
        sent_total += r.packets;
        stopped = r.stopped;
    }
    // Replies to the warmup's requests that are still in flight are not the window's.
    program.set_slot(0, monotonic_ns())?;
    let s0 = Snapshot::take(program)?;
    let mut sent = 0;
    let mut behind_schedule = 0;
    if !stopped {
        let r = gen_phase(
            generator,
            program,
            &mut sampler,
            stop,
            cfg.duration,
            false,
            sent_total,
            on_sample,
        )?;
        sent = r.packets;
        behind_schedule = r.behind_schedule;
        stopped = r.stopped;
    }
    let s1 = Snapshot::take(program)?;
    let s2 = drain(program, &s0, |d| d.replies >= sent)?;
    let d01 = delta(&s0.c, &s1.c);
    let d02 = delta(&s0.c, &s2.c);
    let seconds = s1.at.duration_since(s0.at).as_secs_f64();
    let hist = s2.hist.since(&s0.hist);
    Ok(LoadReport {
        iface: cfg.iface.clone(),
        server: cfg.server,
        pattern: cfg.pattern,
        offered_pps: match cfg.pattern {
            super::Pattern::Open { rate_pps } => Some(rate_pps),
            super::Pattern::Closed { .. } => None,
        },
        flows: cfg.flows_used(),
        payload_len: cfg.payload_len,
        frame_len: cfg.frame_len(),
        warmup_secs: cfg.warmup.as_secs_f64(),
        sent,
        behind_schedule,
        received: d02.replies,
        lost: sent.saturating_sub(d02.replies),
        reseeded: 0,
        stale: d02.stale,
        foreign: d02.passed + d02.bad_stamp,
        seconds,
        achieved_pps: per_sec(d01.replies, seconds),
        latency: hist.summary(Some(d02.latency_sum_ns)),
        histogram: hist.non_empty(),
        stopped,
        send: Some(generator_send_report(cfg, sent)),
        samples: sampler.samples,
    })
}

/// The generator's bursts: fixed, the last call of the window perhaps shorter.
fn generator_send_report(cfg: &LoadConfig, sent: u64) -> SendReport {
    let burst = match cfg.pattern {
        super::Pattern::Open { rate_pps } => cfg
            .burst
            .unwrap_or_else(|| super::open_loop_burst(rate_pps)),
        super::Pattern::Closed { .. } => 1,
    }
    .max(1);
    let calls = sent.div_ceil(u64::from(burst));
    SendReport {
        sender: Sender::Generator,
        arrivals: cfg.arrivals,
        calls,
        burst_max: if sent == 0 { 0 } else { burst.min(sent as u32) },
        burst_mean: if calls > 0 {
            sent as f64 / calls as f64
        } else {
            0.0
        },
        bursts: Vec::new(),
        send_error: None,
        refused: 0,
    }
}

/// One paced phase of the socket sender with live samples.
#[allow(clippy::too_many_arguments)]
fn socket_phase(
    cfg: &LoadConfig,
    rate_pps: f64,
    tx: &mut SocketTx,
    program: &LoadProgram,
    sampler: &mut Sampler,
    stop: &AtomicBool,
    duration: Duration,
    warmup: bool,
    sent_before: u64,
    tally: &mut SendTally,
    on_sample: &mut impl FnMut(&LoadSample),
) -> Result<super::pace::Outcome, LoadError> {
    // The generator's count for a duration: the slots due before its end.
    let count = (rate_pps * duration.as_secs_f64()).ceil() as u64;
    let pacer = Pacer {
        count,
        max_burst: cfg.socket_burst() as usize,
        flows: cfg.flows,
    };
    let mut schedule = Schedule::new(rate_pps, cfg.arrivals);
    let tick_ns = u64::try_from(cfg.sample_interval.as_nanos()).unwrap_or(u64::MAX);
    let t0 = monotonic_ns();
    let out = pacer.run(
        &mut schedule,
        t0,
        tx,
        &mut MonotonicClock,
        tally,
        stop,
        tick_ns,
        |sent| {
            let now = Snapshot::take(program)?;
            on_sample(&sampler.sample(now, sent_before + sent, 0, warmup));
            Ok(())
        },
        |source| LoadError::Socket {
            what: format!("sending requests to {}", cfg.server),
            source,
        },
    )?;
    if !cfg.sample_interval.is_zero() && sampler.stale() {
        let now = Snapshot::take(program)?;
        on_sample(&sampler.sample(now, sent_before + out.sent, 0, warmup));
    }
    Ok(out)
}

/// The open loop with the socket sender: paced in user space, a few requests per call.
pub(super) fn open_socket(
    cfg: &LoadConfig,
    program: &mut LoadProgram,
    tx: &mut SocketTx,
    stop: &AtomicBool,
    on_sample: &mut impl FnMut(&LoadSample),
) -> Result<LoadReport, LoadError> {
    let super::Pattern::Open { rate_pps } = cfg.pattern else {
        unreachable!("the socket sender runs open loops only")
    };
    // Sleeps end within microseconds of their deadline, not the default 50 us.
    let _slack = netmit_user::sys::process::TimerSlack::set(1);
    program.set_control(LOAD_CTL_RUN)?;
    let start = Instant::now();
    let mut sampler = Sampler::new(Snapshot::take(program)?, start, 0);
    let mut sent_total = 0;
    let mut stopped = false;
    if !cfg.warmup.is_zero() {
        let r = socket_phase(
            cfg,
            rate_pps,
            tx,
            program,
            &mut sampler,
            stop,
            cfg.warmup,
            true,
            0,
            &mut SendTally::default(),
            on_sample,
        )?;
        sent_total += r.sent;
        stopped = r.stopped;
    }
    program.set_slot(0, monotonic_ns())?;
    let s0 = Snapshot::take(program)?;
    let mut tally = SendTally::default();
    let mut out = super::pace::Outcome::default();
    if !stopped {
        out = socket_phase(
            cfg,
            rate_pps,
            tx,
            program,
            &mut sampler,
            stop,
            cfg.duration,
            false,
            sent_total,
            &mut tally,
            on_sample,
        )?;
        stopped = out.stopped;
    }
    let sent = out.sent;
    let s1 = Snapshot::take(program)?;
    let s2 = drain(program, &s0, |d| d.replies >= sent)?;
    let d01 = delta(&s0.c, &s1.c);
    let d02 = delta(&s0.c, &s2.c);
    let seconds = s1.at.duration_since(s0.at).as_secs_f64();
    let hist = s2.hist.since(&s0.hist);
    let (calls, burst_max, burst_mean, send_error) = tally.stats();
    Ok(LoadReport {
        iface: cfg.iface.clone(),
        server: cfg.server,
        pattern: cfg.pattern,
        offered_pps: Some(rate_pps),
        flows: cfg.flows_used(),
        payload_len: cfg.payload_len,
        frame_len: cfg.frame_len(),
        warmup_secs: cfg.warmup.as_secs_f64(),
        sent,
        behind_schedule: out.behind_schedule,
        received: d02.replies,
        lost: sent.saturating_sub(d02.replies),
        reseeded: 0,
        stale: d02.stale,
        foreign: d02.passed + d02.bad_stamp,
        seconds,
        achieved_pps: per_sec(d01.replies, seconds),
        latency: hist.summary(Some(d02.latency_sum_ns)),
        histogram: hist.non_empty(),
        stopped,
        send: Some(SendReport {
            sender: Sender::Socket,
            arrivals: cfg.arrivals,
            calls,
            burst_max,
            burst_mean,
            bursts: tally.calls.clone(),
            send_error: Some(send_error),
            refused: tally.refused,
        }),
        samples: sampler.samples,
    })
}

/// The closed loop: seed every slot, then watch the slots and re-seed the ones whose
/// request was lost until the window is over; then drain.
pub(super) fn closed(
    cfg: &LoadConfig,
    window: u32,
    program: &mut LoadProgram,
    generator: &mut Generator,
    stop: &AtomicBool,
    on_sample: &mut impl FnMut(&LoadSample),
) -> Result<LoadReport, LoadError> {
    program.set_control(LOAD_CTL_RUN)?;
    let start = Instant::now();
    let first = Snapshot::take(program)?;
    let reflected0 = first.c.reflected;
    let mut sampler = Sampler::new(first, start, reflected0);
    // Replies to anything sent before now (an earlier run) are stale from here on.
    let now = monotonic_ns();
    for s in 0..window {
        program.set_slot(s, now)?;
    }
    // One frame per flow, flows 0..window in order.
    let mut sent_by_user = generator.send_flow(0, window)?;
    let mut reseeded = 0u64;
    let warm_end = start + cfg.warmup;
    let end = warm_end + cfg.duration;
    let tick = (cfg.reseed_timeout / 5).clamp(Duration::from_millis(1), Duration::from_millis(20));
    let timeout_ns = u64::try_from(cfg.reseed_timeout.as_nanos()).unwrap_or(u64::MAX);
    let interval = cfg.sample_interval;
    let mut next_sample = start + interval;
    let mut s0: Option<(Snapshot, u64, u64)> = None;
    let mut stopped = false;
    loop {
        let now = Instant::now();
        if s0.is_none() && now >= warm_end {
            let snap = Snapshot::take(program)?;
            if !interval.is_zero() && !cfg.warmup.is_zero() && sampler.stale() {
                let total = snap.c.reflected + sent_by_user;
                on_sample(&sampler.sample(snap.clone(), total, reseeded, true));
            }
            next_sample = snap.at + interval;
            s0 = Some((snap, sent_by_user, reseeded));
        }
        if stop.load(Ordering::Relaxed) {
            stopped = true;
            break;
        }
        if now >= end {
            break;
        }
        if !interval.is_zero() && now >= next_sample {
            let snap = Snapshot::take(program)?;
            let total = snap.c.reflected + sent_by_user;
            on_sample(&sampler.sample(snap, total, reseeded, s0.is_none()));
            next_sample += interval;
        }
        let now_ns = monotonic_ns();
        let mut sent = Vec::with_capacity(window as usize);
        for s in 0..window {
            sent.push((s, program.slot(s)?));
        }
        for s in slots::overdue(now_ns, sent, timeout_ns) {
            // First the slot's time, so that a late reply to the old request is stale.
            program.set_slot(s, monotonic_ns())?;
            sent_by_user += generator.send_flow(s, 1)?;
            reseeded += 1;
        }
        let mut wake = (Instant::now() + tick).min(end);
        if !interval.is_zero() {
            wake = wake.min(next_sample);
        }
        if s0.is_none() {
            wake = wake.min(warm_end);
        }
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    program.set_control(LOAD_CTL_DRAIN)?;
    let s1 = Snapshot::take(program)?;
    if let Some(_) = &s0
        && !interval.is_zero()
        && sampler.stale()
    {
        let total = s1.c.reflected + sent_by_user;
        on_sample(&sampler.sample(s1.clone(), total, reseeded, false));
    }
    let measured = s0.is_some();
    let (s0, user0, reseeded0) = s0.unwrap_or_else(|| (s1.clone(), sent_by_user, reseeded));
    let outstanding = u64::from(window);
    let s2 = drain(program, &s1, |d| d.replies + d.stale >= outstanding)?;
    let d01 = delta(&s0.c, &s1.c);
    let d02 = delta(&s0.c, &s2.c);
    let sent = d01.reflected + (sent_by_user - user0);
    let received = if measured { d02.replies } else { 0 };
    let seconds = s1.at.duration_since(s0.at).as_secs_f64();
    let hist = if measured {
        s2.hist.since(&s0.hist)
    } else {
        Buckets::default()
    };
    Ok(LoadReport {
        iface: cfg.iface.clone(),
        server: cfg.server,
        pattern: cfg.pattern,
        offered_pps: None,
        flows: window,
        payload_len: cfg.payload_len,
        frame_len: cfg.frame_len(),
        warmup_secs: cfg.warmup.as_secs_f64(),
        sent,
        behind_schedule: 0,
        received,
        lost: if measured {
            (outstanding + sent).saturating_sub(received + d02.stale)
        } else {
            0
        },
        reseeded: reseeded - reseeded0,
        stale: d02.stale,
        foreign: d02.passed + d02.bad_stamp,
        seconds,
        achieved_pps: per_sec(d01.replies, seconds),
        latency: if measured {
            hist.summary(Some(d02.latency_sum_ns))
        } else {
            Default::default()
        },
        histogram: hist.non_empty(),
        stopped,
        send: None,
        samples: sampler.samples,
    })
}

/// Pins the calling thread to one CPU and restores its affinity on drop.
pub(super) struct CpuPin(#[allow(dead_code)] netmit_user::sys::cpu::Pinned);

impl CpuPin {
    pub(super) fn new(cpu: usize) -> Result<Self, LoadError> {
        netmit_user::sys::cpu::Pinned::to(cpu)
            .map(CpuPin)
            .map_err(|source| LoadError::Affinity { cpu, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(at: Instant, replies: u64, reflected: u64, lat: &[u64]) -> Snapshot {
        let mut hist = Buckets::default();
        for &l in lat {
            hist.record(l);
        }
        Snapshot {
            at,
            c: LoadCounters {
                replies,
                reflected,
                latency_sum_ns: lat.iter().sum(),
                ..Default::default()
            },
            hist,
        }
    }

    #[test]
    fn samples_are_deltas_between_snapshots() {
        let t0 = Instant::now();
        let mut s = Sampler::new(snap(t0, 10, 0, &[1000]), t0, 5);
        let t1 = t0 + Duration::from_millis(500);
        let a = s.sample(snap(t1, 110, 0, &[1000, 2000, 2000]), 105, 2, true);
        assert_eq!(
            (a.sent, a.received, a.reseeded, a.warmup),
            (100, 100, 2, true)
        );
        assert_eq!((a.sent_pps, a.received_pps), (200.0, 200.0));
        assert_eq!(a.latency.samples, 2);
        assert_eq!(a.latency.mean_ns, 2000.0);
        assert!((a.at_secs - 0.5).abs() < 1e-9);
        let t2 = t1 + Duration::from_millis(250);
        let b = s.sample(snap(t2, 110, 0, &[1000, 2000, 2000]), 105, 2, false);
        assert_eq!((b.sent, b.received, b.reseeded), (0, 0, 0));
        assert_eq!(b.latency.samples, 0);
        assert_eq!(s.samples.len(), 2);
    }

    #[test]
    fn cpu_pin_restores_the_affinity() {
        let read = || netmit_user::sys::cpu::current().unwrap().cpus();
        let before = read();
        {
            let _pin = CpuPin::new(before[0]).unwrap();
            assert_eq!(read(), vec![before[0]]);
        }
        assert_eq!(read(), before);
        assert!(matches!(
            CpuPin::new(100_000),
            Err(LoadError::Affinity { cpu: 100_000, .. })
        ));
    }
}
