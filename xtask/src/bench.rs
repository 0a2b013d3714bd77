//! `cargo xtask bench <name> [args...]`: runs one of netmit's benchmarks.
//!
//! The benchmarks live in the `netmit` binary itself (`netmit bench <name>`), so they measure
//! exactly the code that ships; this wrapper only makes sure the machine is set up and that
//! a release build is used (debug builds would measure the wrong thing).

use std::{ffi::OsString, process::ExitCode};

use anyhow::Result;

use crate::{cargo, exit_code, run_streaming, setup};

/// Runs setup, then `cargo run --release -p netmit-user --bin netmit -- bench <name> <args>`,
/// returning its exit code.
pub fn run(name: OsString, args: Vec<OsString>) -> Result<ExitCode> {
    setup::run()?;
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "netmit-user",
        "--bin",
        "netmit",
        "--",
        "bench",
    ])
    .arg(name)
    .args(args);
    Ok(exit_code(run_streaming(&mut cmd)?))
}
