//! Stopping long-running subcommands (`rx`, `gen`, `serve`) on SIGINT/SIGTERM: the
//! handler only sets a flag (`netmit_user::sys::signal`), and the work loops check it and
//! still print their report.

use anyhow::Context;
use netmit_user::sys::signal;

/// Whether a stop was asked for.
pub fn requested() -> bool {
    signal::stop_requested()
}

/// Installs the handler for SIGINT and SIGTERM.
pub fn install() -> anyhow::Result<()> {
    signal::install_stop().context("installing a signal handler")
}
