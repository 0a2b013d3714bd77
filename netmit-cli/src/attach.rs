//! `netmit attach`.

use anyhow::Context;
use netmit_user::{
    ebpf::{self, AttachOptions, LogLevel, ModeRequest, PinRoot},
    sys::{IfName, Netdev},
};
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
    pub iface: IfName,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// A steering rule (repeatable).
    #[arg(long = "steer", value_name = "RULE", help = RULE_HELP)]
    pub rules: Vec<Rule>,
    /// Replace an XDP program that netmit did not attach.
    #[arg(long)]
    pub force: bool,
    /// Log the program's rare events (off, error, warn, info, debug): read them with
    /// `netmit logs IFACE`, or let the daemon forward them. Off costs nothing per packet.
    #[arg(long, value_name = "LEVEL", default_value = "off")]
    pub log: LogLevel,
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
        log: args.log,
    };
    let dev = Netdev::resolve(&args.iface)?;
    let root = PinRoot::default();
    let a =
        ebpf::attach(&root, &dev, &opts).with_context(|| format!("attaching to {}", args.iface))?;
    let mode = a.mode.name();
    if args.json {
        return output::print_json(&json!({
            "iface": a.dev.name, "ifindex": a.dev.ifindex, "netns": a.dev.netns.to_string(),
            "mode": mode, "prog_id": a.prog_id,
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
        a.dev.name,
        a.dev.ifindex,
        a.prog_id,
        a.rule_ids.len(),
        root.layout(&a.dev).dir().display()
    );
    Ok(())
}
