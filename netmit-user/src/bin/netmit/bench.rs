//! `netmit bench`: benchmarks measured as ratios against a baseline in the same run.

use anyhow::{Context, bail};
use netmit_user::bench::xdp::{self, XdpBenchOptions};
use serde_json::json;

use crate::{
    args::{BenchCommand, XdpBenchArgs},
    output,
};

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Xdp(a) => run_xdp(a),
    }
}

fn run_xdp(args: XdpBenchArgs) -> anyhow::Result<()> {
    let opts = XdpBenchOptions {
        repeat: args.repeat,
        rounds: args.rounds,
        ..Default::default()
    };
    let rows = xdp::run(&opts).context("running the XDP benchmark")?;
    let missed: Vec<_> = rows
        .iter()
        .filter(|r| r.goal.is_some_and(|g| r.ratio > g))
        .collect();
    if args.json {
        output::print_json(
            &json!({"repeat": opts.repeat, "rounds": opts.rounds, "rows": rows,
                                   "goals_met": missed.is_empty()}),
        )?;
    } else {
        println!(
            "XDP steering program vs. XDP_PASS, BPF_PROG_TEST_RUN, {} runs x {} rounds (median)",
            opts.repeat, opts.rounds
        );
        println!(
            "{:<6} {:>5} {:>10} {:>11} {:>7} {:>6}  verdict",
            "packet", "rules", "steer ns", "baseline ns", "ratio", "goal"
        );
        for r in &rows {
            let goal = r
                .goal
                .map(|g| format!("{g:.1}x"))
                .unwrap_or_else(|| "-".into());
            let verdict = match r.rule_id {
                Some(id) => format!("{} (rule {id})", r.verdict),
                None => r.verdict.to_string(),
            };
            println!(
                "{:<6} {:>5} {:>10.1} {:>11.1} {:>6.2}x {:>6}  {verdict}{}",
                r.packet,
                r.rules,
                r.steer_ns,
                r.baseline_ns,
                r.ratio,
                goal,
                if r.goal.is_some_and(|g| r.ratio > g) {
                    "  GOAL MISSED"
                } else {
                    ""
                }
            );
        }
    }
    if !missed.is_empty() && !args.no_check {
        bail!(
            "{} case(s) above their goal ratio (pass --no-check to only report)",
            missed.len()
        );
    }
    Ok(())
}
