//! The controller fed synthetic sample sequences. With the defaults and 1 s intervals:
//! Defer after 3 high samples, Suspend after 2 busy ones, out of Defer after 5 low ones,
//! out of Suspend after 3 quiet ones, dwell 5 s, fallback after 10 s without signals.

use std::time::Duration;

use super::*;
use crate::control::{config::PolicyConfig, sample::Sample};

const SECOND: Duration = Duration::from_secs(1);

/// A 1 s sample with a packet rate and a poll rate.
fn load(pps: f64, polls: f64) -> Sample {
    Sample {
        packets_per_sec: Some(pps),
        polls_per_sec: Some(polls),
        ..Sample::new(SECOND)
    }
}

/// `load` with a busy-polled packet rate.
fn busy(pps: f64, busy_pps: f64) -> Sample {
    Sample {
        busy_poll_packets_per_sec: Some(busy_pps),
        ..load(pps, pps / 4.0)
    }
}

/// The load and busy-poll rules alone: these samples carry no effect of the mode (the
/// poll rate does not fall with deferral), so the effect rules, tested in `effect_tests`,
/// are off here.
fn controller() -> Controller {
    controller_with(|_| {})
}

/// The default policy without the effect rules (see [`controller`]).
fn policy() -> Policy {
    let mut config = PolicyConfig::default();
    config.effect.enabled = false;
    Policy::new(config).expect("valid")
}

fn controller_with(edit: impl FnOnce(&mut PolicyConfig)) -> Controller {
    let mut config = PolicyConfig::default();
    config.effect.enabled = false;
    edit(&mut config);
    Controller::new(
        Policy::new(config).expect("valid test config"),
        Capabilities::ALL,
    )
}

/// Feeds `samples` and returns every switch as (sample index, from, to).
fn switches<'a>(
    c: &mut Controller,
    samples: impl IntoIterator<Item = &'a Sample>,
) -> Vec<(usize, Mode, Mode)> {
    samples
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| match c.decide(s) {
            Decision::Stay => None,
            Decision::Switch { from, to, .. } => Some((i, from, to)),
        })
        .collect()
}

/// A deterministic xorshift64* generator, so noisy tests are exact and repeatable.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

#[test]
fn low_load_stays_interrupt() {
    let mut c = controller();
    let quiet: Vec<_> = (0..1000)
        .map(|i| busy(5_000.0 + (i % 7) as f64 * 1_000.0, 50.0))
        .collect();
    assert_eq!(switches(&mut c, &quiet), []);
    assert_eq!(c.mode(), Mode::Interrupt);
}

#[test]
fn rising_load_defers_after_exactly_the_hold_time() {
    let mut c = controller();
    let mut samples = vec![load(5_000.0, 5_000.0); 10];
    samples.extend(vec![load(40_000.0, 30_000.0); 10]);
    let mut decisions = samples.iter().map(|s| c.decide(s));
    // 10 low samples, then the 3rd high one (index 12) switches.
    for i in 0..12 {
        assert_eq!(decisions.next(), Some(Decision::Stay), "sample {i}");
    }
    assert_eq!(
        decisions.next(),
        Some(Decision::Switch {
            from: Mode::Interrupt,
            to: Mode::Defer,
            rule: Rule::LoadHigh,
            reason: "packets 40000/s >= 20000/s and wake-ups 30000/s (NAPI polls) >= 10000/s \
                     for 3 intervals (3.0 s); 1.3 packets per poll"
                .into()
        })
    );
    assert!(decisions.all(|d| d == Decision::Stay));
    assert_eq!(c.mode(), Mode::Defer);

    // The hold is a duration: with 250 ms samples it takes 12 of them.
    let mut c = controller();
    let quarter = Sample {
        interval: Duration::from_millis(250),
        ..load(40_000.0, 30_000.0)
    };
    assert_eq!(
        switches(&mut c, &vec![quarter; 20]),
        [(11, Mode::Interrupt, Mode::Defer)]
    );
}

#[test]
fn a_single_dip_restarts_the_hold() {
    let mut c = controller();
    let high = load(40_000.0, 30_000.0);
    let dip = load(19_999.0, 19_999.0);
    let samples = [&high, &high, &dip, &high, &high, &high];
    assert_eq!(
        switches(&mut c, samples),
        [(5, Mode::Interrupt, Mode::Defer)]
    );
}

#[test]
fn notifications_already_mitigated_do_not_defer() {
    // 100,000 packets/s in 5,000 wake-ups (20 packets per poll, e.g. NIC coalescing):
    // below the wake-up threshold, nothing to gain.
    let mut c = controller();
    assert_eq!(switches(&mut c, &vec![load(100_000.0, 5_000.0); 100]), []);
    // Full-budget polls are re-polls, not wake-ups: 40,000 polls of which 80% full.
    let mut c = controller();
    let saturated = Sample {
        full_budget_fraction: Some(0.8),
        ..load(2_000_000.0, 40_000.0)
    };
    assert_eq!(switches(&mut c, &vec![saturated; 100]), []);
    // Without any wake-up signal the packet rate alone decides.
    let mut c = controller();
    let pps_only = Sample {
        packets_per_sec: Some(30_000.0),
        ..Sample::new(SECOND)
    };
    let mut decisions = (0..3).map(|_| c.decide(&pps_only));
    assert_eq!(
        decisions
            .nth(2)
            .and_then(|d| match d {
                Decision::Switch { reason, .. } => Some(reason),
                Decision::Stay => None,
            })
            .as_deref(),
        Some("packets 30000/s >= 20000/s and no wake-up signal for 3 intervals (3.0 s)")
    );
}

#[test]
fn noise_around_a_threshold_does_not_flap() {
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    // Around the enter threshold (20,000 ± 5,000): one switch to Defer, and the exit
    // threshold (10,000) is never reached again.
    let samples: Vec<_> = (0..1000)
        .map(|_| {
            let pps = noise.uniform(15_000.0, 25_000.0);
            load(pps, pps)
        })
        .collect();
    let mut c = controller();
    let s = switches(&mut c, &samples);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!((s[0].1, s[0].2), (Mode::Interrupt, Mode::Defer));
    assert!(s[0].0 < 100, "should enter early, entered at {}", s[0].0);

    // Around the exit threshold (10,000 ± 5,000) in Defer: one switch to Interrupt.
    let samples: Vec<_> = (0..1000)
        .map(|_| {
            let pps = noise.uniform(5_000.0, 15_000.0);
            load(pps, pps)
        })
        .collect();
    let mut c = controller();
    c.set_mode(Mode::Defer);
    let s = switches(&mut c, &samples);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!((s[0].1, s[0].2), (Mode::Defer, Mode::Interrupt));

    // Busy polling around its enter threshold (1,000 ± 800) in Suspend: never below the
    // exit threshold (100), no switch at all.
    let samples: Vec<_> = (0..1000)
        .map(|_| busy(50_000.0, noise.uniform(200.0, 1_800.0)))
        .collect();
    let mut c = controller();
    c.set_mode(Mode::Suspend);
    assert_eq!(switches(&mut c, &samples), []);
}

#[test]
fn never_switches_faster_than_the_dwell() {
    // Regimes of random length (1-12 s) and random load and busy polling, with ±30% jitter
    // and 10% missing values on every signal: whatever happens, two switches are at least
    // min_dwell (5 samples) apart, and the mode never exceeds the ceiling.
    let mut noise = Noise(42);
    let maybe = |n: &mut Noise, v: f64| (n.next() > 0.1).then_some(v);
    let mut samples = Vec::new();
    while samples.len() < 5000 {
        let len = 1 + (noise.next() * 12.0) as usize;
        let pps = noise.uniform(0.0, 60_000.0);
        let busy_pps = if noise.next() < 0.5 {
            0.0
        } else {
            noise.uniform(0.0, 5_000.0)
        };
        let xsk = noise.next() < 0.1;
        for _ in 0..len {
            let pps = pps * noise.uniform(0.7, 1.3);
            let polls = pps * noise.uniform(0.1, 1.0);
            let busy_pps = busy_pps * noise.uniform(0.7, 1.3);
            samples.push(Sample {
                packets_per_sec: maybe(&mut noise, pps),
                polls_per_sec: maybe(&mut noise, polls),
                busy_poll_packets_per_sec: maybe(&mut noise, busy_pps),
                xsk_busy_poll: xsk.then_some(true),
                ..Sample::new(SECOND)
            });
        }
    }
    for caps in [
        Capabilities::ALL,
        Capabilities {
            deferral: true,
            irq_suspension: false,
        },
    ] {
        let mut c = Controller::new(policy(), caps);
        let s = switches(&mut c, &samples);
        assert!(
            s.len() > 50,
            "the regimes should cause many switches: {}",
            s.len()
        );
        for w in s.windows(2) {
            assert!(w[1].0 - w[0].0 >= 5, "switches too close: {w:?}");
            assert_eq!(w[0].2, w[1].1, "switch chain broken: {w:?}");
        }
        assert!(s.iter().all(|&(_, _, to)| to <= caps.max_mode()));
    }
}

#[test]
fn high_load_with_busy_polling_suspends() {
    // Straight from Interrupt: the busy-poll hold (2 s) is shorter than the load one.
    let mut c = controller();
    let mut decisions = (0..2).map(|_| c.decide(&busy(200_000.0, 150_000.0)));
    assert_eq!(decisions.next(), Some(Decision::Stay));
    assert_eq!(
        decisions.next(),
        Some(Decision::Switch {
            from: Mode::Interrupt,
            to: Mode::Suspend,
            rule: Rule::BusyPolling,
            reason: "busy polling active for 2 intervals (2.0 s): busy-polled packets \
                     150000/s (enter >= 1000/s, exit <= 100/s)"
                .into()
        })
    );

    // Preloaded busy-polling processes (netmit run) are named in the reason; the decision
    // is still the busy-polled packet rate's.
    let mut c = controller();
    let named = |pps: f64, busy_pps: f64, who: &[&str]| Sample {
        preloaded_busy_pollers: who.iter().map(|w| w.to_string()).collect(),
        ..busy(pps, busy_pps)
    };
    assert_eq!(
        c.decide(&named(200_000.0, 150_000.0, &["memcached 7"])),
        Decision::Stay
    );
    match c.decide(&named(200_000.0, 150_000.0, &["memcached 7"])) {
        Decision::Switch {
            to: Mode::Suspend,
            reason,
            ..
        } => assert!(
            reason.ends_with(", preloaded busy-polling process memcached 7 (netmit run)"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let mut c = controller();
    let two = named(200_000.0, 150_000.0, &["memcached 7", "redis-server 9"]);
    c.decide(&two);
    match c.decide(&two) {
        Decision::Switch { reason, .. } => assert!(
            reason.contains(
                "2 preloaded busy-polling processes (netmit run: memcached 7, redis-server 9)"
            ),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // Preloaded but not busy-polling packets: no Suspend.
    let mut c = controller();
    let idle = named(200_000.0, 0.0, &["memcached 7"]);
    for _ in 0..5 {
        assert!(
            !matches!(
                c.decide(&idle),
                Decision::Switch {
                    to: Mode::Suspend,
                    ..
                }
            ),
            "suspend without busy-polled packets"
        );
    }

    // From Defer: the application starts busy polling right after the switch to Defer;
    // the busy streak grows during the dwell, and the switch comes when the dwell ends.
    let mut c = controller();
    let mut samples = vec![load(200_000.0, 50_000.0); 3];
    samples.extend(vec![busy(200_000.0, 150_000.0); 10]);
    assert_eq!(
        switches(&mut c, &samples),
        [
            (2, Mode::Interrupt, Mode::Defer),
            (7, Mode::Defer, Mode::Suspend)
        ]
    );

    // An AF_XDP busy-poll flag alone is enough; the system-wide counter is capped by the
    // interface's packet rate (500/s here, below the 1,000/s threshold).
    let mut c = controller();
    let xsk = Sample {
        xsk_busy_poll: Some(true),
        ..load(500.0, 500.0)
    };
    assert_eq!(
        switches(&mut c, &[xsk.clone(), xsk]),
        [(1, Mode::Interrupt, Mode::Suspend)]
    );
    let mut c = controller();
    assert_eq!(switches(&mut c, &vec![busy(500.0, 90_000.0); 50]), []);
}

#[test]
fn falling_load_returns_to_interrupt_within_bounds() {
    // Defer at sample 2, load falls at sample 3: exit hold (5 s) and dwell (5 s) both end
    // at sample 7.
    let mut c = controller();
    let mut samples = vec![load(200_000.0, 50_000.0); 3];
    samples.extend(vec![load(1_000.0, 1_000.0); 20]);
    assert_eq!(
        switches(&mut c, &samples),
        [
            (2, Mode::Interrupt, Mode::Defer),
            (7, Mode::Defer, Mode::Interrupt)
        ]
    );

    // Falling slowly: the exit hold starts only once packets are at or below 10,000/s.
    let mut c = controller();
    c.set_mode(Mode::Defer);
    let ramp: Vec<_> = [
        50_000.0, 30_000.0, 15_000.0, 10_001.0, 10_000.0, 8_000.0, 5_000.0, 2_000.0, 1_000.0, 500.0,
    ]
    .into_iter()
    .map(|p| load(p, p / 10.0))
    .collect();
    let mut last = None;
    for (i, s) in ramp.iter().enumerate() {
        if let Decision::Switch { to, reason, .. } = c.decide(s) {
            last = Some((i, to, reason));
        }
    }
    assert_eq!(
        last,
        Some((
            8,
            Mode::Interrupt,
            "packets 1000/s <= 10000/s for 5 intervals (5.0 s) without busy polling".into()
        ))
    );

    // Suspend → Defer when busy polling stops under load, → Interrupt when the load goes.
    let mut c = controller();
    c.set_mode(Mode::Suspend);
    let mut samples = vec![busy(100_000.0, 0.0); 6];
    samples.extend(vec![busy(1_000.0, 0.0); 10]);
    assert_eq!(
        switches(&mut c, &samples),
        [
            (4, Mode::Suspend, Mode::Defer),
            (10, Mode::Defer, Mode::Interrupt)
        ]
    );
    let mut c = controller();
    c.set_mode(Mode::Suspend);
    let mut last = None;
    for _ in 0..5 {
        if let Decision::Switch { to, reason, .. } = c.decide(&busy(2_000.0, 10.0)) {
            last = Some((to, reason));
        }
    }
    assert_eq!(
        last,
        Some((
            Mode::Interrupt,
            "busy polling stopped for 5 intervals (5.0 s): busy-polled packets 10/s (enter \
             >= 1000/s, exit <= 100/s); packets 2000/s <= 10000/s"
                .into()
        ))
    );
}

#[test]
fn dwell_is_respected() {
    let mut c = controller_with(|c| c.min_dwell_ms = 12_000);
    let mut samples = vec![load(200_000.0, 50_000.0); 3];
    samples.extend(vec![load(1_000.0, 1_000.0); 30]);
    // Enter at 2; the exit condition holds from sample 3, but the dwell ends at 2 + 12.
    assert_eq!(
        switches(&mut c, &samples),
        [
            (2, Mode::Interrupt, Mode::Defer),
            (14, Mode::Defer, Mode::Interrupt)
        ]
    );
    assert_eq!(c.time_in_mode(), Some(Duration::from_secs(18)));

    // A hold longer than the dwell: the hold decides.
    let mut c = controller_with(|c| {
        c.min_dwell_ms = 2_000;
        c.defer.exit_after_ms = 8_000;
    });
    assert_eq!(
        switches(&mut c, &samples),
        [
            (2, Mode::Interrupt, Mode::Defer),
            (10, Mode::Defer, Mode::Interrupt)
        ]
    );

    // set_mode (after a failed apply) restarts the dwell.
    let mut c = controller();
    c.set_mode(Mode::Interrupt);
    assert_eq!(
        switches(&mut c, &vec![load(200_000.0, 50_000.0); 10]),
        [(4, Mode::Interrupt, Mode::Defer)]
    );
}

#[test]
fn missing_signals_behave_as_documented() {
    let high = load(40_000.0, 30_000.0);
    let nothing = Sample::new(SECOND);
    let garbage = Sample {
        packets_per_sec: Some(f64::NAN),
        polls_per_sec: Some(-3.0),
        busy_poll_packets_per_sec: Some(f64::INFINITY),
        ..Sample::new(SECOND)
    };

    // Interrupt is never left on missing signals.
    let mut c = controller();
    assert_eq!(switches(&mut c, &vec![nothing.clone(); 100]), []);
    assert_eq!(switches(&mut c, &vec![garbage.clone(); 100]), []);

    // A missing sample neither extends nor breaks a streak.
    let mut c = controller();
    assert_eq!(
        switches(&mut c, [&high, &high, &nothing, &garbage, &high]),
        [(4, Mode::Interrupt, Mode::Defer)]
    );

    // Defer without a packet rate: back to Interrupt after 10 s.
    let mut c = controller();
    c.set_mode(Mode::Defer);
    let mut decisions = (0..10).map(|_| c.decide(&garbage));
    assert!(decisions.by_ref().take(9).all(|d| d == Decision::Stay));
    assert_eq!(
        decisions.next(),
        Some(Decision::Switch {
            from: Mode::Defer,
            to: Mode::Interrupt,
            rule: Rule::MissingSignal,
            reason: "no packet rate for 10 intervals (10.0 s): back to the kernel default".into()
        })
    );

    // Suspend without a busy-poll signal but under load: Defer after 10 s.
    let mut c = controller();
    c.set_mode(Mode::Suspend);
    assert_eq!(
        switches(&mut c, &vec![load(100_000.0, 20_000.0); 12]),
        [(9, Mode::Suspend, Mode::Defer)]
    );
    // … and with nothing at all: Interrupt.
    let mut c = controller();
    c.set_mode(Mode::Suspend);
    assert_eq!(
        switches(&mut c, &vec![nothing.clone(); 12]),
        [(9, Mode::Suspend, Mode::Interrupt)]
    );
    // An explicit "no AF_XDP busy polling" does not prove epoll busy polling stopped.
    let mut c = controller();
    c.set_mode(Mode::Suspend);
    let no_xsk = Sample {
        xsk_busy_poll: Some(false),
        ..load(100_000.0, 20_000.0)
    };
    assert_eq!(
        switches(&mut c, &vec![no_xsk; 12]),
        [(9, Mode::Suspend, Mode::Defer)]
    );
    // Zero-length samples are ignored entirely (no time passes).
    let mut c = controller();
    let zero = Sample {
        interval: Duration::ZERO,
        ..high.clone()
    };
    assert_eq!(switches(&mut c, &vec![zero; 10]), []);
    assert_eq!(c.time_in_mode(), None);
}

#[test]
fn allowed_modes_are_respected() {
    let no_suspend = Capabilities {
        deferral: true,
        irq_suspension: false,
    };
    // Busy polling without IRQ suspension: Defer (preferred busy polling), and it holds
    // Defer even at a load that would otherwise leave it.
    let mut c = Controller::new(policy(), no_suspend);
    assert_eq!(c.ceiling(), Mode::Defer);
    assert_eq!(
        switches(&mut c, &vec![busy(5_000.0, 4_000.0); 200]),
        [(1, Mode::Interrupt, Mode::Defer)]
    );

    // max_mode from the configuration.
    let mut c = controller_with(|c| c.max_mode = Mode::Interrupt);
    assert_eq!(switches(&mut c, &vec![busy(500_000.0, 400_000.0); 200]), []);
    let mut c = Controller::new(
        policy(),
        Capabilities {
            deferral: false,
            irq_suspension: false,
        },
    );
    assert_eq!(switches(&mut c, &vec![busy(500_000.0, 400_000.0); 200]), []);

    // A ceiling lowered while in Suspend: left at once, whatever the dwell.
    let mut c = controller();
    assert_eq!(
        switches(&mut c, &vec![busy(200_000.0, 150_000.0); 2]),
        [(1, Mode::Interrupt, Mode::Suspend)]
    );
    assert_eq!(
        c.set_capabilities(no_suspend),
        Decision::Switch {
            from: Mode::Suspend,
            to: Mode::Defer,
            rule: Rule::Ceiling,
            reason: "suspend is not allowed here: the ceiling is defer (max_mode suspend, \
                     capabilities allow up to defer)"
                .into()
        }
    );
    assert_eq!(c.set_capabilities(no_suspend), Decision::Stay);
    assert_eq!(switches(&mut c, &vec![busy(200_000.0, 150_000.0); 50]), []);
    // set_mode clamps to the ceiling too.
    c.set_mode(Mode::Suspend);
    assert_eq!(c.mode(), Mode::Defer);
}
