//! Property-based fuzzing (proptest) of netmit's input parsers, bounded so that it runs in
//! every `cargo xtask test` (cargo-fuzz needs nightly sanitizer runtimes and an unbounded
//! run; proptest is reproducible and shrinks a failure to a small input). The campaign
//! in `tests/data/bad-inputs/` is the committed seed corpus: strategies mutate its
//! entries as well as generating from scratch. `NETMIT_FUZZ_CASES` raises the case count
//! for a longer run; failures are kept in `tests/proptest-regressions/` (commit them).
//!
//! Targets: the rule parser, the daemon configuration parser, the duration parser, the
//! capture reader, and the frame parser of the XDP program against the reference
//! classifier (BPF_PROG_TEST_RUN, root).

use std::time::Duration;

use netmit_user::{
    capture,
    classify::{Classifier, Program},
    daemon::DaemonConfig,
    duration,
    steer::Rule,
};
use proptest::{prelude::*, sample::select, test_runner::FileFailurePersistence};
use tests::{campaign, packet, reference, support::require_root};

fn cases(default: u32) -> u32 {
    std::env::var("NETMIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// A seed with a few byte-level edits: insert, delete or replace at random places.
fn mutated(seeds: Vec<String>) -> impl Strategy<Value = String> {
    (
        select(seeds),
        prop::collection::vec((any::<usize>(), 0u8..3, any::<char>()), 0..4),
    )
        .prop_map(|(seed, edits)| {
            let mut chars: Vec<char> = seed.chars().collect();
            for (at, op, c) in edits {
                let i = if chars.is_empty() {
                    0
                } else {
                    at % (chars.len() + 1)
                };
                match op {
                    0 => chars.insert(i, c),
                    1 if i < chars.len() => {
                        chars.remove(i);
                    }
                    _ if i < chars.len() => chars[i] = c,
                    _ => chars.push(c),
                }
            }
            chars.into_iter().collect()
        })
}

/// Rule text from the syntax's own pieces, valid or not.
fn rule_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("proto=udp".to_string()),
        Just("proto=tcp".to_string()),
        (0u32..70000, 0u32..70000).prop_map(|(a, b)| format!("dport={a}-{b}")),
        (0u32..70000).prop_map(|a| format!("dport={a}")),
        (0u32..5000).prop_map(|v| format!("vlan={v}")),
        (0u32..70000).prop_map(|v| format!("prio={v}")),
        select(vec!["action=xsk", "action=pass", "action=drop"]).prop_map(String::from),
        (any::<[u8; 4]>(), 0u8..40)
            .prop_map(|(a, l)| format!("dst={}.{}.{}.{}/{l}", a[0], a[1], a[2], a[3])),
        "[a-z=,+ -]{0,6}",
    ];
    prop::collection::vec(piece, 0..6).prop_map(|v| v.join(","))
}

proptest! {
    #![proptest_config(config(3000))]

    /// Never panics; an error points inside the text; what parses renders to text that
    /// parses back to the same rule.
    #[test]
    fn rule_parser(text in prop_oneof![
        rule_like(),
        mutated(campaign::load("rules.txt")),
        mutated(vec!["proto=udp,dport=9000-9010,dst=198.18.0.0/15,vlan=10,action=xsk,prio=10".into()]),
        any::<String>(),
    ]) {
        match text.parse::<Rule>() {
            Ok(rule) => {
                let again: Rule = rule.to_string().parse().expect("canonical text parses");
                prop_assert_eq!(again, rule);
                prop_assert!(!text.contains(char::is_whitespace) && !text.contains(",,"));
            }
            Err(e) => {
                prop_assert!(e.pos >= 1 && e.pos <= text.chars().count() + 1, "{}", e);
                prop_assert!(campaign::names_a_fix(&e.to_string()), "{}", e);
            }
        }
    }

    /// Exact against an independent computation in u128 nanoseconds; never panics.
    #[test]
    fn duration_parser(
        int in 0u128..100_000_000_000_000_000_000u128,
        frac in "[0-9]{0,12}",
        unit in select(vec![("ns", 1u128), ("us", 1_000), ("ms", 1_000_000),
            ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
            ("d", 86_400_000_000_000)]),
        junk in prop_oneof![mutated(campaign::load("durations.txt")), any::<String>()],
    ) {
        let text = if frac.is_empty() { format!("{int}{}", unit.0) } else { format!("{int}.{frac}{}", unit.0) };
        // The reference: digits beyond the unit's precision are dropped.
        let mut nanos = int * unit.1;
        let mut scale = unit.1;
        for b in frac.bytes() {
            scale /= 10;
            nanos += u128::from(b - b'0') * scale;
        }
        let want = u64::try_from(nanos / 1_000_000_000)
            .ok()
            .map(|s| Duration::new(s, (nanos % 1_000_000_000) as u32));
        match (duration::parse(&text), want) {
            (Ok(d), Some(w)) => prop_assert_eq!(d, w),
            (Err(e), None) => prop_assert!(e.to_string().contains("too long"), "{}", e),
            (got, want) => prop_assert!(false, "{text}: {got:?}, want {want:?}"),
        }
        let _ = duration::parse(&junk);
        let _ = duration::parse_secs(&junk);
        if let Ok(d) = duration::parse(&junk) {
            prop_assert_eq!(duration::parse(&duration::display(d)), Ok(d));
        }
    }

    /// Never panics; every problem has a line or key and names a fix.
    #[test]
    fn config_parser(text in prop_oneof![
        mutated(campaign::load("configs.txt")),
        mutated(vec![std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/netmit.toml.example")).unwrap()]),
        any::<String>(),
    ]) {
        if let Err(e) = DaemonConfig::parse(&text, "fuzz.toml") {
            for p in e.problems() {
                prop_assert!(p.at.line > 0 || !p.at.key.is_empty(), "{}", p);
                prop_assert!(campaign::names_a_fix(&p.to_string()), "{}", p);
            }
        }
    }

    /// Never panics; a cut capture gives exactly the records before the cut.
    #[test]
    fn capture_reader(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 14..200), 1..6),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        raw in prop_oneof![select(campaign::captures()), prop::collection::vec(any::<u8>(), 0..300)],
    ) {
        let mut whole = Vec::new();
        whole.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        whole.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0]);
        let mut ends = Vec::new();
        for f in &frames {
            for v in [0u32, 0, f.len() as u32, f.len() as u32] {
                whole.extend_from_slice(&v.to_le_bytes());
            }
            whole.extend_from_slice(f);
            ends.push(whole.len());
        }
        let cut = 24 + cut.index(whole.len() - 24 + 1);
        let c = capture::parse(&whole[..cut]).expect("a cut pcap is still a pcap");
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        prop_assert_eq!(&c.frames[..], &frames[..complete]);
        prop_assert_eq!(c.truncated.is_some(), !ends.contains(&cut) && cut != 24);
        if let Some(t) = &c.truncated {
            prop_assert_eq!(t.record, complete + 1);
        }
        let mut bent = raw.clone();
        for (i, b) in flips {
            if !bent.is_empty() {
                let i = i.index(bent.len());
                bent[i] = b;
            }
        }
        let _ = capture::parse(&bent);
    }
}

/// The XDP program's verdict against the reference classifier on mutated frames.
#[test]
fn frame_parser_agrees_with_the_reference() {
    if !require_root("frame_parser_agrees_with_the_reference") {
        return;
    }
    use rand::{SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(13);
    let ref_rules = reference::random_rules(&mut rng, 16);
    let rules: Vec<Rule> = ref_rules
        .iter()
        .map(|r| r.to_rule_string().parse().expect("reference rule"))
        .collect();
    let classifier = Classifier::new(Program::Steer, &rules).expect("load steering program");
    let mut seeds = packet::edge_case_packets();
    seeds.extend(packet::random_packets(&mut rng, 200));
    let mut runner = proptest::test_runner::TestRunner::new(config(2000));
    let strategy = (
        select(seeds),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut frame, edits, cut, truncate)| {
            for (i, b) in edits {
                if !frame.is_empty() {
                    let i = i.index(frame.len());
                    frame[i] = b;
                }
            }
            if truncate && frame.len() > 14 {
                frame.truncate(14 + cut.index(frame.len() - 14));
            }
            frame
        });
    runner
        .run(&strategy, |frame| {
            let want = reference::classify(&frame, &ref_rules, false);
            match classifier.classify(&frame) {
                Err(_) if frame.len() < 14 => {
                    prop_assert_eq!(want.verdict.name(), "malformed");
                }
                Err(e) => prop_assert!(false, "{e}"),
                Ok(got) => {
                    prop_assert_eq!(
                        got.verdict.name(),
                        want.verdict.name(),
                        "frame {:02x?}",
                        frame
                    );
                    prop_assert_eq!(got.rule_id.map(usize::from), want.rule);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}\nrules: {rules:?}"));
}
