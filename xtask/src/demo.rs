//! `cargo xtask demo [args...]`: runs the `netmit-demo` binary of the tests crate.
//!
//! The demo builds a namespace testbed and drives netmit through it, so it needs the same
//! setup as the tests (bpf-linker to build, bpffs, the Debian tools); this wrapper runs setup
//! first and uses a release build.

use std::{ffi::OsString, process::Command, process::ExitCode};

use anyhow::{Result, bail};

use crate::{cargo, describe, exit_code, setup, target_dir};

/// Runs setup, builds the release `netmit` binary and the demo quietly (the demo's output
/// is netmit's, not cargo's: compiler errors still show), then runs the demo with
/// `NETMIT_BIN` pointing at that binary, returning its exit code.
pub fn run(args: Vec<OsString>) -> Result<ExitCode> {
    setup::run()?;
    println!("xtask demo: building netmit and the demo (release; a first build takes minutes)");
    // Two builds, not one: cargo unifies features across the packages of one build, and
    // the tests crate turns on netmit-user's test hooks, which the demo's netmit must not
    // carry (it is the binary users get).
    for (pkg, bin) in [("netmit-cli", "netmit"), ("tests", "netmit-demo")] {
        let mut build = cargo();
        build.args(["build", "--quiet", "--release", "-p", pkg, "--bin", bin]);
        let status = build.status()?;
        if !status.success() {
            bail!("`{}` failed ({status})", describe(&build));
        }
    }
    let release = target_dir().join("release");
    let status = Command::new(release.join("netmit-demo"))
        .args(args)
        .env("NETMIT_BIN", release.join("netmit"))
        .status()?;
    Ok(exit_code(status))
}
