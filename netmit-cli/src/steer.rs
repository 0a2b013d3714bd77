//! `netmit steer list|add|del`: change the rules of an attached interface live.

use anyhow::{Context, bail};
use netmit_user::{
    ebpf::{PinRoot, SteerTables},
    steer::{Rule, compile::ranked},
    sys::{IfName, Netdev, bpf, fs::DirLock},
};
use serde_json::json;

use crate::args::RULE_HELP;
use crate::output;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum SteerCommand {
    /// List the rules, best-ranked first, with their ids and hit counts.
    List {
        /// Interface.
        iface: IfName,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add one or more rules.
    Add {
        /// Interface.
        iface: IfName,
        /// Rules to add.
        #[arg(required = true, value_name = "RULE", help = RULE_HELP)]
        rules: Vec<Rule>,
    },
    /// Delete a rule by id (from `steer list`) or by its exact text.
    Del {
        /// Interface.
        iface: IfName,
        /// Rule id, or the rule text.
        rule: String,
    },
}

/// The pinned maps of `iface`, and, for a change, the namespace's lock: every writer of an
/// attachment (steer add/del, attach, detach, the daemon) holds it, so concurrent edits
/// take turns and none is lost.
fn open(iface: &IfName, edit: bool) -> anyhow::Result<(SteerTables, Option<DirLock>)> {
    let dev = Netdev::resolve(iface)?;
    let root = PinRoot::default();
    if !bpf::has_bpf_privileges() {
        bail!("reading netmit's maps needs root (CAP_BPF or CAP_SYS_ADMIN): run it with sudo");
    }
    // Only lock (which creates the namespace's pin directory) where something may be
    // attached: an edit of an interface that is not attached changes nothing on disk.
    let lock = if edit && root.check(&dev.netns)? {
        Some(root.lock(&dev.netns)?)
    } else {
        None
    };
    let Some(layout) = root.find(&dev)? else {
        bail!("netmit is not attached to {iface}; run `netmit attach {iface}` first");
    };
    let tables =
        SteerTables::from_pins(&layout).with_context(|| format!("opening the pins of {iface}"))?;
    Ok((tables, lock))
}

pub fn run(cmd: SteerCommand) -> anyhow::Result<()> {
    match cmd {
        SteerCommand::List { iface, json } => list(&iface, json),
        SteerCommand::Add { iface, rules } => {
            let (mut tables, _lock) = open(&iface, true)?;
            let ids = tables
                .add_rules(&rules)
                .with_context(|| format!("adding rules to {iface}"))?;
            for (id, rule) in ids.iter().zip(&rules) {
                println!("added rule {id}: {rule}");
            }
            Ok(())
        }
        SteerCommand::Del { iface, rule } => {
            let (mut tables, _lock) = open(&iface, true)?;
            let id = match rule.parse::<u16>() {
                Ok(id) => id,
                Err(_) => {
                    let wanted: Rule = rule.parse().with_context(|| {
                        format!("`{rule}` is neither a rule id nor a valid rule")
                    })?;
                    let rules = tables.rules()?;
                    let Some(found) = rules.iter().find(|r| r.rule == wanted) else {
                        bail!("no rule `{wanted}` on {iface} (see `netmit steer list {iface}`)");
                    };
                    found.id
                }
            };
            let removed = tables
                .delete_rule(id)
                .with_context(|| format!("deleting rule {id} from {iface}"))?;
            println!("deleted rule {id}: {removed}");
            Ok(())
        }
    }
}

fn list(iface: &IfName, as_json: bool) -> anyhow::Result<()> {
    let (tables, _) = open(iface, false)?;
    let rules = tables.rules()?;
    let hits = tables.rule_hits(rules.iter().map(|r| r.id))?;
    let ranked = ranked(&rules);
    if as_json {
        let v: Vec<_> = ranked
            .iter()
            .map(|r| {
                let h = hits[&r.id];
                json!({"id": r.id, "rule": r.rule, "prio": r.rule.prio, "packets": h.packets, "bytes": h.bytes})
            })
            .collect();
        return output::print_json(&json!({"iface": iface, "rules": v}));
    }
    if ranked.is_empty() {
        println!("{iface}: no rules (every packet goes to the kernel)");
        return Ok(());
    }
    println!(
        "{:>4}  {:>12}  {:>14}  rule (best-ranked first)",
        "id", "packets", "bytes"
    );
    for r in ranked {
        let h = hits[&r.id];
        println!(
            "{:>4}  {:>12}  {:>14}  {}",
            r.id, h.packets, h.bytes, r.rule
        );
    }
    Ok(())
}
