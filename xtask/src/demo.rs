//! `cargo xtask demo [args...]`: runs the `netmit-demo` binary of the tests crate.
//!
//! The demo builds a namespace testbed and drives netmit through it, so it needs the same
//! setup as the tests (bpf-linker to build, bpffs, the Debian tools); this wrapper runs setup
//! first and uses a release build.

use std::{ffi::OsString, process::ExitCode};

use anyhow::Result;

use crate::{cargo, exit_code, run_streaming, setup, target_dir};

/// Runs setup, builds the release `netmit` binary the demo drives, then
/// `cargo run --release -p tests --bin netmit-demo -- <args>`, returning its exit code.
pub fn run(args: Vec<OsString>) -> Result<ExitCode> {
    setup::run()?;
    let mut build = cargo();
    build.args(["build", "--release", "-p", "netmit-cli", "--bin", "netmit"]);
    let status = run_streaming(&mut build)?;
    if !status.success() {
        return Ok(exit_code(status));
    }
    let mut cmd = cargo();
    cmd.env("NETMIT_BIN", target_dir().join("release/netmit"));
    cmd.args([
        "run",
        "--release",
        "-p",
        "tests",
        "--bin",
        "netmit-demo",
        "--",
    ])
    .args(args);
    Ok(exit_code(run_streaming(&mut cmd)?))
}
