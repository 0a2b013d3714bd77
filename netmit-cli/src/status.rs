//! `netmit status`: attachment, rules and per-queue counters with rates.

use std::{collections::BTreeMap, time::Instant};

use anyhow::{Context, bail};
use netmit_common::{Counter, Verdict};
use netmit_user::{
    daemon::state,
    ebpf::{PinLayout, SteerTables, pins},
    steer::compile::ranked,
    sys::link as kernel,
};
use serde_json::{Value, json};

use crate::args::parse_duration;
use crate::{output, steer::open};
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Interface (default: every interface netmit is attached to in this namespace).
    pub iface: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Sampling interval for rates, e.g. 1s or 500ms; 0 shows totals only.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

struct Sample {
    at: Instant,
    queues: BTreeMap<u32, netmit_common::QueueStats>,
    hits: BTreeMap<u16, Counter>,
}

fn sample(tables: &SteerTables, ids: &[u16]) -> anyhow::Result<Sample> {
    let queues = tables
        .queue_counters()?
        .into_iter()
        .map(|q| (q.queue, q.stats))
        .collect();
    Ok(Sample {
        at: Instant::now(),
        queues,
        hits: tables.rule_hits(ids.iter().copied())?,
    })
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let ifaces = match &args.iface {
        Some(i) => {
            if !PinLayout::for_iface(i).is_attached() {
                bail!("netmit is not attached to {i}; run `netmit attach {i}` first");
            }
            vec![i.clone()]
        }
        None => pins::attached_ifaces().context("listing /sys/fs/bpf/netmit")?,
    };
    let mut reports = Vec::new();
    for iface in &ifaces {
        let tables = open(iface)?;
        let cfg = tables.config()?;
        // Pins are global, interfaces are per network namespace: skip other namespaces'.
        let here = kernel::ifindex(iface).ok();
        if args.iface.is_none() && here != Some(cfg.ifindex) {
            continue;
        }
        let rules = tables.rules()?;
        let ids: Vec<u16> = rules.iter().map(|r| r.id).collect();
        let first = sample(&tables, &ids)?;
        let (last, secs) = if args.interval.is_zero() {
            (None, 0.0)
        } else {
            std::thread::sleep(args.interval);
            let s = sample(&tables, &ids)?;
            let secs = s.at.duration_since(first.at).as_secs_f64();
            (Some(s), secs)
        };
        let now = last.as_ref().unwrap_or(&first);
        let rate = |before: u64, after: u64| last.as_ref().map(|_| (after - before) as f64 / secs);
        let link = kernel::pinned_link_info(&PinLayout::for_iface(iface).link()).ok();
        let xdp = kernel::xdp_state(cfg.ifindex).ok().flatten();
        let rule_rows: Vec<Value> = ranked(&rules)
            .iter()
            .map(|r| {
                let (b, a) = (first.hits[&r.id], now.hits[&r.id]);
                json!({"id": r.id, "rule": r.rule, "prio": r.rule.prio, "packets": a.packets,
                       "bytes": a.bytes, "pps": rate(b.packets, a.packets)})
            })
            .collect();
        let queue_rows: Vec<Value> = now
            .queues
            .iter()
            .map(|(q, stats)| {
                let before = first.queues.get(q).copied().unwrap_or_default();
                let verdicts: serde_json::Map<String, Value> = Verdict::ALL
                    .iter()
                    .map(|v| {
                        let (b, a) = (before.verdicts[*v as usize], stats.verdicts[*v as usize]);
                        (v.name().to_string(), json!({"packets": a.packets, "bytes": a.bytes,
                            "pps": rate(b.packets, a.packets), "bps": rate(b.bytes, a.bytes).map(|r| r * 8.0)}))
                    })
                    .collect();
                json!({"queue": q, "verdicts": verdicts})
            })
            .collect();
        reports.push(json!({
            "iface": iface,
            "ifindex": cfg.ifindex,
            "in_this_namespace": here == Some(cfg.ifindex),
            "mode": output::mode_name(cfg.attach_mode),
            "prog_id": link.map(|l| l.prog_id),
            "link_id": link.map(|l| l.id),
            "kernel_xdp_prog_id": xdp.map(|x| x.prog_id),
            "generation": cfg.active,
            "rules": rule_rows,
            "queues": queue_rows,
            "interval_secs": secs,
        }));
    }
    let daemon = daemon_view(args.iface.as_deref());
    if let Some(modes) = daemon.as_ref().and_then(|d| d["interfaces"].as_array()) {
        for r in &mut reports {
            let mode = modes.iter().find(|m| m["device"] == r["iface"]);
            r["daemon_mode"] = mode.map_or(Value::Null, |m| m["mode"].clone());
        }
    }
    if args.json {
        return output::print_json(&json!({"interfaces": reports, "daemon": daemon}));
    }
    if reports.is_empty() {
        println!("netmit is not attached to any interface in this network namespace");
    }
    for r in &reports {
        print_human(r);
    }
    if let Some(d) = &daemon {
        print_daemon(d);
    }
    Ok(())
}

/// The running daemon's view (state file in the run directory, then `GET /status`), in
/// short: pid, address, and per managed interface its mode and last transition. `None`
/// when no daemon runs.
fn daemon_view(iface: Option<&str>) -> Option<Value> {
    let st = state::running()?;
    let base = json!({"pid": st.pid, "address": st.metrics_address});
    let status = match state::query_status(&st, std::time::Duration::from_millis(500)) {
        Ok(s) => s,
        Err(e) => {
            let mut v = base;
            v["error"] = json!(format!("{:#}", anyhow::Error::from(e)));
            return Some(v);
        }
    };
    let interfaces: Vec<Value> = status["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| iface.is_none_or(|want| i["device"] == want))
        .map(|i| {
            json!({"device": i["device"], "mode": i["mode"], "mode_since_unix": i["mode_since_unix"],
                   "last_transition": i["last_transition"], "transitions": i["transitions"]})
        })
        .collect();
    let mut v = base;
    v["healthy"] = status["healthy"].clone();
    v["interfaces"] = json!(interfaces);
    Some(v)
}

fn print_daemon(d: &Value) {
    println!(
        "daemon (pid {}, http://{}):",
        d["pid"],
        d["address"].as_str().unwrap_or("?")
    );
    if let Some(e) = d["error"].as_str() {
        println!("  not reachable: {e}");
        return;
    }
    for i in d["interfaces"].as_array().into_iter().flatten() {
        let last = match &i["last_transition"] {
            Value::Null => String::new(),
            t => format!(
                " (last switch {} -> {}: {})",
                t["from"].as_str().unwrap_or("?"),
                t["to"].as_str().unwrap_or("?"),
                t["reason"].as_str().unwrap_or("")
            ),
        };
        println!(
            "  {:<15} mode {}{last}",
            i["device"].as_str().unwrap_or("?"),
            i["mode"].as_str().unwrap_or("?")
        );
    }
}

fn fmt_rate(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(r) if r >= 1e6 => format!("{:.2}M", r / 1e6),
        Some(r) if r >= 1e3 => format!("{:.1}k", r / 1e3),
        Some(r) => format!("{r:.0}"),
    }
}

fn print_human(r: &Value) {
    let agree = r["prog_id"] == r["kernel_xdp_prog_id"];
    println!(
        "{} (ifindex {}): {} XDP, program {}, link {}{}",
        r["iface"].as_str().unwrap_or("?"),
        r["ifindex"],
        r["mode"].as_str().unwrap_or("?"),
        r["prog_id"],
        r["link_id"],
        if agree {
            String::new()
        } else {
            format!(" (kernel reports program {})", r["kernel_xdp_prog_id"])
        }
    );
    let rules = r["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        println!("  no rules: every packet goes to the kernel");
    } else {
        println!("  {:>4} {:>12} {:>10}  rule", "id", "packets", "pps");
        for rule in rules {
            println!(
                "  {:>4} {:>12} {:>10}  {}",
                rule["id"].as_u64().unwrap_or(0),
                rule["packets"].as_u64().unwrap_or(0),
                fmt_rate(&rule["pps"]),
                rule["rule"].as_str().unwrap_or("")
            );
        }
    }
    for q in r["queues"].as_array().cloned().unwrap_or_default() {
        println!("  queue {}:", q["queue"]);
        if let Some(vs) = q["verdicts"].as_object() {
            for (name, c) in vs {
                if c["packets"].as_u64() == Some(0) {
                    continue;
                }
                println!(
                    "    {:<13} {:>12} pkts {:>14} bytes {:>10} pps",
                    name,
                    c["packets"].as_u64().unwrap_or(0),
                    c["bytes"].as_u64().unwrap_or(0),
                    fmt_rate(&c["pps"])
                );
            }
        }
    }
}
