//! `netmit detach`.

use anyhow::Context;
use clap::Args;
use netmit_user::{
    ebpf::{self, PinRoot},
    sys::{IfName, Netdev},
};

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Interface to detach from.
    pub iface: IfName,
}

pub fn run(args: DetachArgs) -> anyhow::Result<()> {
    let dev = Netdev::resolve(&args.iface)?;
    let prog = ebpf::detach(&PinRoot::default(), &dev)
        .with_context(|| format!("detaching from {}", args.iface))?;
    match prog {
        Some(id) => println!("detached program {id} from {}; pins removed", args.iface),
        None => println!("detached from {}; pins removed", args.iface),
    }
    Ok(())
}
