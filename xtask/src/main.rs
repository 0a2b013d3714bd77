//! netmit's task runner, invoked as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! Every machine of this project starts fresh, and building netmit needs things cargo does
//! not install by itself (nightly `rust-src`, `bpf-linker`, a mounted bpffs, a few Debian
//! tools the tests drive). Keeping those steps in Rust, next to the code, means there is one
//! entry point for developers and CI alike (`.ci/run` is just `cargo xtask test`).
//!
//! This crate must build on a machine where nothing has been set up yet, so it depends only
//! on anyhow and clap, never on the other workspace crates (building netmit-user already
//! needs bpf-linker).

mod advisories;
mod bench;
mod demo;
mod deny;
mod dist;
mod kernels;
mod matrix;
mod setup;
mod test;
mod vm;

use std::{
    ffi::OsString,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, ExitCode, ExitStatus},
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Command line of `cargo xtask`.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "netmit's task runner",
    version
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check and, where missing, install what building and testing netmit needs (idempotent).
    Setup,
    /// Run setup, build the workspace and run the tests of every crate (netmit-ebpf has none).
    ///
    /// Arguments (after an optional `--`) go to `cargo test` unchanged; arguments for the test
    /// binaries need their own `--`, e.g. `cargo xtask test -- steer -- --nocapture`
    /// or `cargo xtask test -- -- --nocapture`.
    /// With `CI` set, also fails on namespaces, veths or bpffs pins the tests left behind.
    ///
    /// Then runs the smoke set of the compat tests on Linux 6.1 in a virtual machine
    /// (or prints why it cannot); `--kernel`/`--kernels` run the whole compat set instead
    /// of the suite.
    Test {
        /// Run the compat set on this kernel instead of the suite: a Debian series or
        /// release (`6.1`, `6.12`; fetched with apt if missing), a kernel image path, or
        /// `host`. Repeatable.
        #[arg(long, value_name = "VERSION|PATH")]
        kernel: Vec<String>,
        /// Run the compat set on 6.1, 6.12 and the host's kernel and print the matrix.
        #[arg(long)]
        kernels: bool,
        /// With --kernels: write the measured matrix into docs/kernel-compat.md.
        #[arg(long, requires = "kernels")]
        write_docs: bool,
        /// With --kernel/--kernels: run only this test of the compat set (repeatable),
        /// e.g. to look into one failure on an older kernel.
        #[arg(long, value_name = "TEST", conflicts_with = "write_docs")]
        only: Vec<String>,
        /// Skip the other-kernel smoke run of the default suite.
        #[arg(long)]
        no_vm: bool,
        /// Skip building and checking the release artefacts (what `cargo xtask dist`
        /// does) after the suite.
        #[arg(long)]
        no_dist: bool,
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run setup, then `netmit bench <NAME> [ARGS...]` from a release build.
    Bench {
        /// Benchmark to run (e.g. `xdp`).
        name: OsString,
        /// Arguments for the benchmark.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Build the release artefacts into target/dist: the Debian package, the OCI image
    /// archive for deploy/kubernetes, SHA256SUMS and MANIFEST, each checked.
    Dist,
    /// Run cargo deny (licences, duplicate crates, sources, advisories) as `cargo xtask
    /// test` does.
    Deny,
    /// Rewrite the RustSec advisory snapshot in deny/advisory-db from a checkout of
    /// https://github.com/rustsec/advisory-db (the advisories of Cargo.lock's crates).
    AdvisoriesRefresh {
        /// Path of the advisory-db checkout.
        db: PathBuf,
    },
    /// Run setup, then the `netmit-demo` binary of the tests crate from a release build.
    Demo {
        /// Arguments for netmit-demo.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Setup => setup::run().map(|()| ExitCode::SUCCESS),
        Cmd::Test {
            kernel,
            kernels,
            write_docs,
            only,
            no_vm,
            no_dist,
            args,
        } => {
            let specs = if kernels {
                matrix::MATRIX.iter().map(|s| s.to_string()).collect()
            } else {
                kernel
            };
            test::run(
                args,
                test::Kernels {
                    specs,
                    write_docs,
                    only,
                    no_vm,
                },
                no_dist,
            )
        }
        Cmd::Bench { name, args } => bench::run(name, args),
        Cmd::Demo { args } => demo::run(args),
        Cmd::Dist => dist::run().map(|()| ExitCode::SUCCESS),
        Cmd::Deny => deny::check().map(|()| ExitCode::SUCCESS),
        Cmd::AdvisoriesRefresh { db } => advisories::refresh(&db).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask lives in `<root>/xtask`.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask's manifest dir has a parent")
}

/// The directory cargo builds into: `CARGO_TARGET_DIR` (relative to the workspace root,
/// where xtask runs cargo) if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// A `cargo` command, using the same cargo that runs xtask, started in the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// A shell-like rendering of `cmd` for log lines (the program's file name, not its path).
pub fn describe(cmd: &Command) -> String {
    let prog = Path::new(cmd.get_program());
    let mut s = prog
        .file_name()
        .unwrap_or(prog.as_os_str())
        .to_string_lossy()
        .into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio (its output streams through) and returns its status.
pub fn run_streaming(cmd: &mut Command) -> Result<ExitStatus> {
    let what = describe(cmd);
    println!("xtask: running `{what}`");
    cmd.status()
        .with_context(|| format!("could not start `{what}`"))
}

/// The exit code to pass on for a child's status: its own code, or 128 + signal number.
pub fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cmd {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .unwrap()
            .cmd
    }

    fn strs(v: &[OsString]) -> Vec<&str> {
        v.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_args_pass_through() {
        // clap eats the first `--` only; everything else reaches `cargo test` verbatim.
        let args = |cli: &[&str]| match parse(cli) {
            Cmd::Test { args, .. } => strs(&args)
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
            other => panic!("not test: {other:?}"),
        };
        assert_eq!(
            args(&["test", "--", "filter", "--", "--nocapture"]),
            ["filter", "--", "--nocapture"]
        );
        assert_eq!(
            args(&["test", "--", "--", "--nocapture"]),
            ["--", "--nocapture"]
        );
        assert_eq!(
            args(&["test", "filter", "--release", "--", "--nocapture"]),
            ["filter", "--release", "--", "--nocapture"]
        );
        assert!(args(&["test"]).is_empty());
        assert!(args(&["test", "--"]).is_empty());
    }

    #[test]
    fn kernel_flags_come_before_cargo_args() {
        let Cmd::Test {
            kernel,
            kernels,
            write_docs,
            args,
            ..
        } = parse(&["test", "--kernel", "6.1", "--kernel", "host", "--", "-q"])
        else {
            panic!("not test");
        };
        assert_eq!(kernel, ["6.1", "host"]);
        assert!(!kernels && !write_docs);
        assert_eq!(strs(&args), ["-q"]);
        let Cmd::Test {
            kernels,
            write_docs,
            ..
        } = parse(&["test", "--kernels", "--write-docs"])
        else {
            panic!("not test");
        };
        assert!(kernels && write_docs);
        assert!(Cli::try_parse_from(["xtask", "test", "--write-docs"]).is_err());
    }

    #[test]
    fn bench_takes_name_and_args() {
        let Cmd::Bench { name, args } = parse(&["bench", "xdp", "--secs", "3", "-v"]) else {
            panic!("not bench");
        };
        assert_eq!(name, "xdp");
        assert_eq!(strs(&args), ["--secs", "3", "-v"]);
        assert!(Cli::try_parse_from(["xtask", "bench"]).is_err());
    }

    #[test]
    fn exit_codes_are_propagated() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), ExitCode::from(3));
        assert_eq!(exit_code(ExitStatus::from_raw(0)), ExitCode::SUCCESS);
        // Killed by SIGINT (2): shells report 130.
        assert_eq!(exit_code(ExitStatus::from_raw(2)), ExitCode::from(130));
    }

    #[test]
    fn describe_uses_program_file_name() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.args(["test", "-p", "tests"]);
        assert_eq!(describe(&cmd), "cargo test -p tests");
    }
}
