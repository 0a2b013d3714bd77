//! `netmit detach`.

use anyhow::Context;
use clap::Args;
use netmit_user::ebpf;

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Interface to detach from.
    pub iface: String,
}

pub fn run(args: DetachArgs) -> anyhow::Result<()> {
    let prog =
        ebpf::detach(&args.iface).with_context(|| format!("detaching from {}", args.iface))?;
    match prog {
        Some(id) => println!("detached program {id} from {}; pins removed", args.iface),
        None => println!("detached from {}; pins removed", args.iface),
    }
    Ok(())
}
