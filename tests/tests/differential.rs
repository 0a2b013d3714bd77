//! Differential test: the XDP steering program, run through BPF_PROG_TEST_RUN, against
//! the independent reference classifier (`tests::reference`), on crafted edge cases and
//! random frames, with rule sets of 0, 1, 16 and 256 rules.

use netmit_user::{
    classify::{Classifier, Program},
    steer::Rule,
};
use rand::{SeedableRng, rngs::StdRng};
use tests::{packet, reference, support::require_root};

#[test]
fn xdp_program_agrees_with_reference_classifier() {
    if !require_root("differential") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(0x6e65_746d_6974);
    let mut frames = packet::edge_case_packets();
    let edge = frames.len();
    frames.extend(packet::random_packets(&mut rng, 10_000));
    assert!(frames.len() >= 10_000);

    let mut compared = 0usize;
    let mut verdicts_seen = std::collections::BTreeSet::new();
    for n_rules in [0usize, 1, 16, 256] {
        let ref_rules = reference::random_rules(&mut rng, n_rules);
        let rules: Vec<Rule> = ref_rules
            .iter()
            .map(|r| {
                r.to_rule_string()
                    .parse()
                    .unwrap_or_else(|e| panic!("{}: {e}", r.to_rule_string()))
            })
            .collect();
        let classifier = Classifier::new(Program::Steer, &rules).expect("load steering program");
        let mut mismatches = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let want = reference::classify(frame, &ref_rules, false);
            let got = match classifier.classify(frame) {
                Ok(c) => c,
                // The kernel refuses test frames shorter than an Ethernet header; XDP never
                // sees such frames, and the reference must call them malformed.
                Err(_) if frame.len() < 14 => {
                    assert_eq!(want.verdict.name(), "malformed", "frame {i}");
                    continue;
                }
                Err(e) => panic!("frame {i}: {e}"),
            };
            compared += 1;
            verdicts_seen.insert(got.verdict.name());
            let got_rule = got.rule_id.map(usize::from);
            if got.verdict.name() != want.verdict.name() || got_rule != want.rule {
                mismatches.push(format!(
                    "{n_rules} rules, frame {i}{} ({} bytes): xdp {} rule {:?} (malformed: {}), reference {} rule {:?}\n  {}",
                    if i < edge { " [edge case]" } else { "" },
                    frame.len(),
                    got.verdict.name(),
                    got_rule,
                    got.malformed.name(),
                    want.verdict.name(),
                    want.rule,
                    frame.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                ));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} of {} frames disagree with {n_rules} rules; first ones:\n{}\nrules:\n{}",
            mismatches.len(),
            frames.len(),
            mismatches
                .iter()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| format!("  {i}: {r}"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    println!("compared {compared} frames; verdicts seen: {verdicts_seen:?}");
    assert!(compared >= 40_000);
    for v in ["malformed", "unmatched", "pass", "drop", "xsk_fallback"] {
        assert!(verdicts_seen.contains(v), "no frame produced verdict {v}");
    }
}
