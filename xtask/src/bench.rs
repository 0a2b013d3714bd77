//! `cargo xtask bench <name> [args...]`: runs one of netmit's benchmarks.
//!
//! The benchmarks live in the `netmit` binary itself (`netmit bench <name>`), so they measure
//! exactly the code that ships; this wrapper only makes sure the machine is set up and that
//! a release build is used (debug builds would measure the wrong thing).

use std::{ffi::OsString, process::ExitCode};

use anyhow::Result;

use crate::{cargo, exit_code, run_streaming, setup};

/// Benchmarks that need a namespace testbed run from the `netmit-bench` binary of the
/// tests crate (it owns the testbed code), driving the release `netmit` binary.
const TESTBED_BENCHES: &[&str] = &["xsk", "xsk-latency", "daemon"];

/// Runs setup, then `cargo run --release -p netmit-cli --bin netmit -- bench <name> <args>`
/// (or, for testbed benchmarks, `netmit-bench <name>`), returning its exit code.
pub fn run(name: OsString, args: Vec<OsString>) -> Result<ExitCode> {
    setup::run()?;
    if TESTBED_BENCHES.iter().any(|b| name == *b) {
        let mut build = cargo();
        build.args(["build", "--release", "-p", "netmit-cli", "--bin", "netmit"]);
        let status = run_streaming(&mut build)?;
        if !status.success() {
            return Ok(exit_code(status));
        }
        let mut cmd = cargo();
        cmd.env("NETMIT_BIN", crate::target_dir().join("release/netmit"))
            .args([
                "run",
                "--release",
                "-p",
                "tests",
                "--bin",
                "netmit-bench",
                "--",
            ])
            .arg(name)
            .args(args);
        return Ok(exit_code(run_streaming(&mut cmd)?));
    }
    if name == "app" {
        // `netmit run` (the app benchmark's busy-poll and suspend setups) preloads the
        // library it finds next to the netmit binary.
        let mut build = cargo();
        build.args(["build", "--release", "-p", "netmit-preload"]);
        let status = run_streaming(&mut build)?;
        if !status.success() {
            return Ok(exit_code(status));
        }
    }
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "netmit-cli",
        "--bin",
        "netmit",
        "--",
        "bench",
    ])
    .arg(name)
    .args(args);
    Ok(exit_code(run_streaming(&mut cmd)?))
}
