//! `netmit status`: attachment, rules and per-queue counters with rates, and the daemon's
//! view (gathered and rendered by `netmit_user::status`).

use std::time::Duration;

use clap::Args;
use netmit_user::{
    ebpf::PinRoot,
    status,
    sys::{IfName, Netdev},
    tune::journal,
};

use crate::{args::parse_duration, output};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Interface (default: every interface netmit is attached to in this namespace).
    pub iface: Option<IfName>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Sampling interval for rates, e.g. 1s or 500ms; 0 shows totals only.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let dev = args.iface.as_ref().map(Netdev::resolve).transpose()?;
    let report = status::gather(
        &PinRoot::default(),
        &journal::run_dir(),
        dev.as_ref(),
        args.interval,
    )?;
    if args.json {
        return output::print_json(&serde_json::to_value(&report)?);
    }
    output::print(&status::render(&report))
}
