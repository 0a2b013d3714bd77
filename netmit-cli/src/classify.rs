//! `netmit classify`: dry-run rules on a capture through the real XDP program.

use std::collections::BTreeMap;

use anyhow::Context;
use netmit_common::{Malformed, Verdict};
use netmit_user::{
    capture,
    classify::{Classifier, ClassifyError, Program},
};
use serde_json::json;

use crate::args::RULE_HELP;
use crate::output;
use clap::Args;
use netmit_user::steer::Rule;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Capture to classify (pcap or pcapng, Ethernet).
    #[arg(long)]
    pub pcap: PathBuf,
    /// A steering rule (repeatable); ids are given in order from 0.
    #[arg(long = "steer", value_name = "RULE", help = RULE_HELP)]
    pub rules: Vec<Rule>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Print only the summary.
    #[arg(long)]
    pub summary: bool,
    /// Refuse a truncated capture (by default its complete records are classified and a
    /// warning names where it was cut).
    #[arg(long)]
    pub strict: bool,
}

fn xdp_action_name(a: u32) -> &'static str {
    match a {
        0 => "XDP_ABORTED",
        1 => "XDP_DROP",
        2 => "XDP_PASS",
        3 => "XDP_TX",
        4 => "XDP_REDIRECT",
        _ => "?",
    }
}

pub fn run(args: ClassifyArgs) -> anyhow::Result<()> {
    let capture = capture::read(&args.pcap, args.strict)?;
    if let Some(t) = &capture.truncated {
        eprintln!(
            "netmit: warning: {} is truncated: {t}; classifying the {} complete record(s) before it",
            args.pcap.display(),
            capture.frames.len()
        );
    }
    let frames = capture.frames;
    let classifier = Classifier::new(Program::Steer, &args.rules)
        .context("loading the steering program for a dry run")?;
    let mut rows = Vec::with_capacity(frames.len());
    let mut summary: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_rule: BTreeMap<u16, u64> = BTreeMap::new();
    let mut runts = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let c = match classifier.classify(frame) {
            Ok(c) => c,
            Err(ClassifyError::Runt(len)) => {
                runts.push((i + 1, len));
                continue;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("frame {} ({} bytes)", i + 1, frame.len()));
            }
        };
        *summary.entry(c.verdict.name()).or_default() += 1;
        if let Some(id) = c.rule_id {
            *by_rule.entry(id).or_default() += 1;
        }
        rows.push((i + 1, frame.len(), c));
    }
    if args.json {
        let packets: Vec<_> = rows
            .iter()
            .map(|(n, len, c)| {
                json!({"index": n, "len": len, "verdict": c.verdict.name(), "rule": c.rule_id,
                       "malformed": (c.malformed != Malformed::None).then(|| c.malformed.name()),
                       "xdp_action": xdp_action_name(c.xdp_action)})
            })
            .collect();
        let rules: Vec<_> = args
            .rules
            .iter()
            .enumerate()
            .map(|(id, r)| json!({"id": id, "rule": r, "packets": by_rule.get(&(id as u16)).copied().unwrap_or(0)}))
            .collect();
        let runts: Vec<_> = runts
            .iter()
            .map(|(n, len)| json!({"index": n, "len": len}))
            .collect();
        let truncated = capture
            .truncated
            .as_ref()
            .map(|t| json!({"record": t.record, "offset": t.offset, "missing": t.missing}));
        return output::print_json(&json!({"packets": packets, "summary": summary,
            "rules": rules, "skipped_runts": runts, "truncated": truncated}));
    }
    if !args.summary {
        for (n, len, c) in &rows {
            let detail = match (c.verdict, c.rule_id) {
                (Verdict::Malformed, _) => format!("({} header)", c.malformed.name()),
                (_, Some(id)) => format!("rule {id}: {}", args.rules[id as usize]),
                (_, None) => String::new(),
            };
            println!(
                "{n:>6} {len:>5}B  {:<13} {:<13} {detail}",
                c.verdict.name(),
                xdp_action_name(c.xdp_action)
            );
        }
    }
    for (n, len) in &runts {
        println!("{n:>6} {len:>5}B  skipped: shorter than an Ethernet header (XDP never sees it)");
    }
    println!("{} frames classified, {} skipped:", rows.len(), runts.len());
    for (verdict, n) in &summary {
        println!("  {verdict:<13} {n}");
    }
    for (id, r) in args.rules.iter().enumerate() {
        println!(
            "  rule {id:<4} {:>8}  {r}",
            by_rule.get(&(id as u16)).copied().unwrap_or(0)
        );
    }
    Ok(())
}
