//! `netmit attach`.

use anyhow::Context;
use netmit_user::ebpf::{self, AttachOptions, ModeRequest};
use serde_json::json;

use crate::args::RULE_HELP;
use crate::output;
use clap::{Args, ValueEnum};
use netmit_user::steer::Rule;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Mode {
    /// Native (driver) XDP if available, else generic.
    #[default]
    Auto,
    /// Native (driver) XDP only.
    Native,
    /// Generic (skb) XDP only: works on every device, slower.
    Generic,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Interface to attach to.
    pub iface: String,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// A steering rule (repeatable).
    #[arg(long = "steer", value_name = "RULE", help = RULE_HELP)]
    pub rules: Vec<Rule>,
    /// Replace an XDP program that netmit did not attach.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: AttachArgs) -> anyhow::Result<()> {
    let opts = AttachOptions {
        mode: match args.mode {
            Mode::Auto => ModeRequest::Auto,
            Mode::Native => ModeRequest::Native,
            Mode::Generic => ModeRequest::Generic,
        },
        rules: args.rules.clone(),
        force: args.force,
    };
    let a =
        ebpf::attach(&args.iface, &opts).with_context(|| format!("attaching to {}", args.iface))?;
    let mode = output::mode_name(a.mode as u32);
    if args.json {
        return output::print_json(&json!({
            "iface": a.iface, "ifindex": a.ifindex, "mode": mode, "prog_id": a.prog_id,
            "rule_ids": a.rule_ids, "replaced_prog_id": a.replaced, "native_error": a.native_error,
        }));
    }
    if let Some(id) = a.replaced {
        println!("replaced foreign XDP program {id} (--force)");
    }
    if let Some(why) = &a.native_error
        && matches!(args.mode, Mode::Auto)
    {
        println!("native mode unavailable ({why}); using generic mode");
    }
    println!(
        "attached to {} (ifindex {}) in {mode} mode, program {}, {} rule(s); pinned under {}",
        a.iface,
        a.ifindex,
        a.prog_id,
        a.rule_ids.len(),
        ebpf::PinLayout::for_iface(&a.iface).dir().display()
    );
    Ok(())
}
