//! The effect rules through the controller, with the defaults (1 s samples: Defer after 3
//! high samples, judged 2 s after the switch against the 2 s before it).

use std::time::Duration;

use crate::control::{Capabilities, Controller, Decision, Mode, Policy, Rule, Sample};

const SECOND: Duration = Duration::from_secs(1);

/// A server's interval: received and transmitted packets/s and NAPI polls/s.
fn s(rx: f64, tx: f64, polls: f64) -> Sample {
    Sample {
        packets_per_sec: Some(rx),
        tx_packets_per_sec: Some(tx),
        polls_per_sec: Some(polls),
        ..Sample::new(SECOND)
    }
}

/// Feeds samples; every switch as (index, from, to, rule).
fn run(c: &mut Controller, samples: &[Sample]) -> Vec<(usize, Mode, Mode, Rule)> {
    samples
        .iter()
        .enumerate()
        .filter_map(|(i, x)| match c.decide(x) {
            Decision::Switch { from, to, rule, .. } => Some((i, from, to, rule)),
            _ => None,
        })
        .collect()
}

fn controller() -> Controller {
    Controller::new(Policy::default(), Capabilities::ALL)
}

/// Interrupt at 1 poll per packet.
fn interrupt(rx: f64) -> Sample {
    s(rx, rx, rx)
}

/// Deferral batching: 1 poll per 50 packets.
fn deferred(rx: f64) -> Sample {
    s(rx, rx, rx / 50.0)
}

#[test]
fn a_switch_that_pays_is_kept_and_explained() {
    let mut c = controller();
    let mut samples = vec![interrupt(29_000.0); 3];
    samples.extend(vec![deferred(29_000.0); 20]);
    assert_eq!(
        run(&mut c, &samples),
        [(2, Mode::Interrupt, Mode::Defer, Rule::LoadHigh)]
    );
    assert_eq!(c.mode(), Mode::Defer);
    let judged = c.take_judgement().expect("judged");
    assert!(judged.contains("kept"), "{judged}");
    assert!(
        judged.contains("polls per packet 1.000 -> 0.020"),
        "{judged}"
    );
}

/// Issue 15's memcached case: a closed-loop client slows down (28.8k -> 12.7k/s) once
/// every request waits for the watchdog; still above the Defer exit threshold.
#[test]
fn the_load_falling_after_defer_takes_the_switch_back_with_backoff() {
    let mut c = controller();
    let mut samples = vec![interrupt(28_800.0); 3];
    samples.extend(vec![deferred(12_700.0); 2]);
    let mut seen = run(&mut c, &samples);
    assert_eq!(
        seen,
        [
            (2, Mode::Interrupt, Mode::Defer, Rule::LoadHigh),
            (4, Mode::Defer, Mode::Interrupt, Rule::LoadFell)
        ]
    );
    assert_eq!(c.holdoff(Mode::Defer), Some(Duration::from_secs(30)));
    // Back in Interrupt the client recovers: no Defer for the 30 s hold-off (29 s here).
    seen = run(&mut c, &vec![interrupt(28_800.0); 29]);
    assert_eq!(seen, [], "held off");
    // Then Defer is tried again (3 high samples already agree), fails again, and the
    // hold-off doubles.
    let mut again = vec![interrupt(28_800.0)];
    again.extend(vec![deferred(12_700.0); 2]);
    seen = run(&mut c, &again);
    assert_eq!(
        seen,
        [
            (0, Mode::Interrupt, Mode::Defer, Rule::LoadHigh),
            (2, Mode::Defer, Mode::Interrupt, Rule::LoadFell)
        ]
    );
    assert_eq!(c.holdoff(Mode::Defer), Some(Duration::from_secs(60)));
}

#[test]
fn replies_falling_alone_fail_the_switch_and_the_reason_has_the_numbers() {
    let mut c = controller();
    for x in vec![interrupt(40_000.0); 3] {
        c.decide(&x);
    }
    assert_eq!(c.mode(), Mode::Defer);
    // The offered packets hold (open loop), but the replies fall to 50%.
    c.decide(&s(40_000.0, 20_000.0, 800.0));
    match c.decide(&s(40_000.0, 20_000.0, 800.0)) {
        Decision::Switch {
            to, rule, reason, ..
        } => {
            assert_eq!((to, rule), (Mode::Interrupt, Rule::LoadFell));
            assert!(
                reason.contains("transmitted packets 40000/s -> 20000/s (50%)"),
                "{reason}"
            );
            assert!(reason.contains("holding defer off for 30 s"), "{reason}");
        }
        d => panic!("expected a take-back, got {d:?}"),
    }
}

/// A server that sends only a few frames (ARP, neighbour discovery: 17/s -> 2/s seen on
/// the veth testbed) has no replies to judge.
#[test]
fn a_trickle_of_transmitted_frames_is_not_judged() {
    let mut c = controller();
    let mut samples = vec![s(300_000.0, 17.0, 300_000.0); 3];
    samples.extend(vec![s(300_000.0, 2.0, 6_000.0); 10]);
    assert_eq!(
        run(&mut c, &samples),
        [(2, Mode::Interrupt, Mode::Defer, Rule::LoadHigh)]
    );
    let judged = c.take_judgement().unwrap();
    assert!(judged.contains("17/s -> 2/s (not judged)"), "{judged}");
}

#[test]
fn deferral_that_does_not_batch_is_taken_back() {
    let mut c = controller();
    let mut samples = vec![interrupt(40_000.0); 3];
    // Polls per packet only down to 95%.
    samples.extend(vec![s(40_000.0, 40_000.0, 38_000.0); 2]);
    assert_eq!(
        run(&mut c, &samples)[1],
        (4, Mode::Defer, Mode::Interrupt, Rule::NoBatching)
    );
}

/// Load that drifts down by 2% a second through the switch is not the mode's doing: the
/// two 2 s windows differ by less than the 20% the rule allows.
#[test]
fn drift_does_not_fail_a_switch() {
    let mut c = controller();
    let samples: Vec<Sample> = (0..40)
        .map(|i| {
            let rx = 60_000.0 * 0.98f64.powi(i);
            if c.mode() == Mode::Defer || i >= 3 {
                deferred(rx)
            } else {
                interrupt(rx)
            }
        })
        .collect();
    let seen = run(&mut c, &samples);
    assert_eq!(seen, [(2, Mode::Interrupt, Mode::Defer, Rule::LoadHigh)]);
    assert!(c.take_judgement().is_some());
}

#[test]
fn a_passed_trial_resets_the_backoff_and_missing_rates_pass() {
    let mut c = controller();
    let mut samples = vec![interrupt(28_800.0); 3];
    samples.extend(vec![deferred(12_700.0); 2]);
    run(&mut c, &samples);
    assert_eq!(c.holdoff(Mode::Defer), Some(Duration::from_secs(30)));
    // After the hold-off the switch pays: the back-off starts from scratch.
    run(&mut c, &vec![interrupt(28_800.0); 29]);
    let ok = run(
        &mut c,
        &[interrupt(28_800.0), deferred(28_800.0), deferred(28_800.0)],
    );
    assert_eq!(ok, [(0, Mode::Interrupt, Mode::Defer, Rule::LoadHigh)]);
    assert!(c.take_judgement().is_some());
    assert_eq!(c.holdoff(Mode::Defer), None);

    // Without tx or poll rates only the received packets judge; without any, nothing.
    let mut c = controller();
    let bare = |rx: f64| Sample {
        packets_per_sec: Some(rx),
        ..Sample::new(SECOND)
    };
    let seen = run(&mut c, &vec![bare(40_000.0); 10]);
    assert_eq!(seen, [(2, Mode::Interrupt, Mode::Defer, Rule::LoadHigh)]);
}

#[test]
fn the_effect_rules_validate_and_can_be_turned_off() {
    use crate::control::PolicyConfig;
    for edit in [
        |c: &mut PolicyConfig| c.effect.min_load_percent = 0,
        |c: &mut PolicyConfig| c.effect.min_load_percent = 101,
        |c: &mut PolicyConfig| c.effect.judge_after_ms = 0,
        |c: &mut PolicyConfig| c.effect.max_polls_per_packet_percent = 101,
        |c: &mut PolicyConfig| c.effect.holdoff_ms = c.effect.max_holdoff_ms + 1,
    ] {
        let mut config = PolicyConfig::default();
        edit(&mut config);
        assert!(Policy::new(config).is_err());
    }
    let mut config = PolicyConfig::default();
    config.effect.enabled = false;
    let mut c = Controller::new(Policy::new(config).unwrap(), Capabilities::ALL);
    let mut samples = vec![interrupt(28_800.0); 3];
    samples.extend(vec![deferred(12_700.0); 10]);
    assert_eq!(
        run(&mut c, &samples),
        [(2, Mode::Interrupt, Mode::Defer, Rule::LoadHigh)]
    );
}
