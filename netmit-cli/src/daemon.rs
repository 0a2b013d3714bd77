//! `netmit daemon`: the adaptive daemon, or `--check-config` to validate its configuration.

use anyhow::{Context, bail};
use clap::Args;
use netmit_user::{
    daemon::{self, DaemonConfig},
    duration,
    host::System,
    sys::caps,
};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the configuration (and that its interfaces exist here), print the
    /// problems with their line and key, and exit: 0 when valid.
    #[arg(long)]
    pub check_config: bool,
    /// Advice mode: sample and decide, but change nothing (no XDP attached, no setting
    /// written or restored); print every switch it would make.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    if args.check_config {
        let config = DaemonConfig::load(&args.config)?;
        config.check_system(&System::new())?;
        println!(
            "{}: valid ({} interface(s), interval {}, metrics on {})",
            args.config.display(),
            config.interfaces.len(),
            duration::Display(config.interval),
            config.metrics_address
        );
        return Ok(());
    }
    if !caps::is_root() {
        bail!(
            "the daemon needs root (BPF programs, netlink settings, /run/netmit): run it with sudo"
        );
    }
    daemon::run(&args.config, args.dry_run)
        .with_context(|| format!("netmit daemon --config {}", args.config.display()))
}
