//! `netmit logs`: the XDP program's log (`netmit attach --log LEVEL`), forwarded to stderr.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use netmit_user::{
    ebpf::{Forwarder, PinRoot},
    sys::{IfName, Netdev, bpf},
};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Interface netmit is attached to.
    pub iface: IfName,
    /// Keep reading until Ctrl-C (default: print what is there and exit).
    #[arg(long, short)]
    pub follow: bool,
}

pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    if !bpf::has_bpf_privileges() {
        bail!("reading the program's log needs root (CAP_BPF or CAP_SYS_ADMIN): run it with sudo");
    }
    let dev = Netdev::resolve(&args.iface)?;
    let Some(layout) = PinRoot::default().find(&dev)? else {
        bail!(
            "netmit is not attached to {0}; run `netmit attach {0} --log info` first",
            args.iface
        );
    };
    let prog_id = bpf::pinned_link_info(&layout.link())
        .with_context(|| format!("reading the link pinned for {}", args.iface))?
        .prog_id;
    let mut log = Forwarder::for_program(prog_id)?;
    log.flush();
    if args.follow {
        crate::stop::install()?;
        while !crate::stop::requested() {
            std::thread::sleep(Duration::from_millis(100));
            log.flush();
        }
    }
    Ok(())
}
