//! `cargo xtask test`: the one command CI runs (`.ci/run`), and what developers run locally.
//!
//! It runs setup first (a fresh machine has no bpf-linker, which the build needs), builds the
//! test packages together (so the `netmit` binary the integration tests drive exists, has
//! the `test-hooks` feature the `tests` crate turns on, and is the one just built: its path
//! goes to the tests as `NETMIT_BIN`), then runs the tests.
//!
//! The integration tests create network namespaces, veths and bpffs pins on the host. A test
//! that leaks them may pass and still break the next run, so with `CI` set this command also
//! checks that nothing the tests own (`nm*` namespaces, `nm*` veths, pins under
//! /sys/fs/bpf/netmit) is left behind, and fails if something is.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context, Result};

use crate::{cargo, exit_code, run_streaming, setup, target_dir, workspace_root};

/// The packages whose tests run (netmit-ebpf has none: it only builds for the BPF target).
pub const TEST_PACKAGES: &[&str] = &[
    "netmit-common",
    "netmit-user",
    "netmit-lab",
    "netmit-cli",
    "netmit-preload",
    "tests",
];

/// `cargo build` of [`TEST_PACKAGES`] in one invocation: features are unified across
/// them, so this `target/debug/netmit` carries the test hooks and a release build of
/// `netmit-cli` alone never does.
fn build_test_packages() -> Command {
    let mut build = cargo();
    build.arg("build");
    for pkg in TEST_PACKAGES {
        build.args(["-p", pkg]);
    }
    build
}

/// Prefix of the network namespaces the tests create: every testbed name starts with
/// `netmit_lab::testbed::NAME_STEM` (`nm<pid>x…`, or `nm<tag><pid>x…` for tagged
/// testbeds such as `netmit bench modes`' `nmb<pid>x…`).
pub const NETNS_PREFIX: &str = "nm";

/// Prefix of the veth interfaces the tests create.
pub const VETH_PREFIX: &str = "nm";

/// The bpffs the tests pin in: netmit under `netmit/`, and a peer's object (xdp-filter,
/// whose maps are pinned by name) in a directory of its own. Anything new anywhere in it
/// after the tests is a leak, not only under `netmit/` (xdp-filter's maps once stayed at
/// the top level, unseen by a check of `netmit/` alone).
pub const PIN_DIR: &str = "/sys/fs/bpf";

/// Which other kernels to test (xtask/src/matrix.rs).
pub struct Kernels {
    /// `--kernel`/`--kernels`: the compat set on these instead of the suite.
    pub specs: Vec<String>,
    /// `--write-docs`.
    pub write_docs: bool,
    /// `--only`: these tests of the compat set alone.
    pub only: Vec<String>,
    /// `--no-vm`: no smoke run on 6.1 after the suite.
    pub no_vm: bool,
}

/// Runs setup, the build and the tests with `extra` passed to `cargo test`, and prints the
/// elapsed time. Returns the tests' exit code (or failure if something was left behind in CI).
pub fn run(extra: Vec<OsString>, kernels: Kernels, no_dist: bool) -> Result<ExitCode> {
    let start = Instant::now();
    let result = run_inner(extra, kernels, no_dist);
    println!("xtask test: total {:.1} s", start.elapsed().as_secs_f64());
    result
}

fn run_inner(extra: Vec<OsString>, kernels: Kernels, no_dist: bool) -> Result<ExitCode> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    setup::run()?;
    if !kernels.specs.is_empty() {
        let status = run_streaming(&mut build_test_packages())?;
        if !status.success() {
            return Ok(exit_code(status));
        }
        return crate::matrix::run(&kernels.specs, kernels.write_docs, &kernels.only);
    }
    if ci {
        println!("xtask test: kernel {}", kernel_version()?);
        print_netns("before the tests")?;
    }
    // What exists before the tests is not theirs (another run's, or left by a killed one,
    // which the first testbed sweeps away): only what is new afterwards is a leak.
    let before = if ci { leftovers()? } else { Vec::new() };
    if !before.is_empty() {
        println!("xtask test: present before the tests (not counted as theirs):");
        for item in &before {
            println!("  {item}");
        }
    }

    let status = run_streaming(&mut build_test_packages())?;
    if !status.success() {
        return Ok(exit_code(status));
    }

    // Lints, with warnings as errors: among them the workspace's rule that every unsafe
    // block carries its `// SAFETY:` reason (Cargo.toml, [workspace.lints]).
    let mut clippy = cargo();
    clippy.args(["clippy", "--all-targets", "--quiet", "-p", "xtask"]);
    for pkg in TEST_PACKAGES {
        clippy.args(["-p", pkg]);
    }
    clippy.args(["--", "-D", "warnings"]);
    let status = run_streaming(&mut clippy)?;
    if !status.success() {
        eprintln!("xtask test: clippy found problems (see above)");
        return Ok(exit_code(status));
    }

    let netmit_bin = target_dir().join("debug/netmit");
    let mut test = cargo();
    test.args(["test", "--no-fail-fast"]);
    for pkg in TEST_PACKAGES {
        test.args(["-p", pkg]);
    }
    test.args(&extra).env("NETMIT_BIN", &netmit_bin);
    println!("xtask test: NETMIT_BIN={}", netmit_bin.display());
    let mut status = run_streaming(&mut test)?;

    // The deployment files (systemd unit, Prometheus config and alert rules with their
    // unit tests, Grafana dashboard, example config) against promtool, systemd-analyze
    // and docs/metrics.md.
    let mut deploy = Command::new("/usr/bin/python3");
    deploy
        .arg(workspace_root().join("deploy/check.py"))
        .env("NETMIT", &netmit_bin);
    let deploy_status = run_streaming(&mut deploy)?;
    if status.success() && !deploy_status.success() {
        status = deploy_status;
    }

    // Licences, duplicate crates, sources and advisories (deny.toml).
    let deny_ok = match crate::deny::check() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            false
        }
    };

    // The release artefacts, as `cargo xtask dist` builds and checks them: the .deb in a
    // throwaway root and under lintian, the image (under podman where it can run), the
    // man pages and completions.
    let mut dist_ok = true;
    if no_dist {
        println!("xtask test: --no-dist: release artefacts not built");
    } else if let Err(e) = crate::dist::build_and_check() {
        eprintln!("xtask: error: dist: {e:#}");
        dist_ok = false;
    }

    // Another kernel than the host's: the smoke set on 6.1 in a VM (or why not).
    let mut smoke_ok = true;
    if kernels.no_vm {
        println!("xtask test: --no-vm: no run on another kernel");
    } else {
        smoke_ok = crate::matrix::smoke()?;
    }

    if ci {
        print_netns("after the tests")?;
        let left: Vec<String> = leftovers()?
            .into_iter()
            .filter(|item| !before.contains(item))
            .collect();
        if !left.is_empty() {
            eprintln!("xtask: error: the tests left these behind:");
            for item in &left {
                eprintln!("  {item}");
            }
            if status.success() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if status.success() && (!deny_ok || !smoke_ok || !dist_ok) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(exit_code(status))
}

/// `uname -r`-like: the kernel release and build string.
fn kernel_version() -> Result<String> {
    let read = |p: &str| -> Result<String> {
        Ok(fs::read_to_string(p)
            .with_context(|| format!("reading {p}"))?
            .trim()
            .to_string())
    };
    Ok(format!(
        "{} ({})",
        read("/proc/sys/kernel/osrelease")?,
        read("/proc/sys/kernel/version")?
    ))
}

fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("could not run `ip {}`", args.join(" ")))?;
    anyhow::ensure!(
        out.status.success(),
        "`ip {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn print_netns(when: &str) -> Result<()> {
    let list = ip(&["netns", "list"])?;
    println!("xtask test: `ip netns list` {when}:");
    if list.trim().is_empty() {
        println!("  (none)");
    }
    for line in list.lines() {
        println!("  {line}");
    }
    Ok(())
}

/// Everything the tests own that still exists, one description per item.
fn leftovers() -> Result<Vec<String>> {
    let mut left = Vec::new();
    for ns in owned_netns(&ip(&["netns", "list"])?) {
        left.push(format!("network namespace {ns}"));
    }
    for veth in owned_veths(&ip(&["-o", "link", "show", "type", "veth"])?) {
        left.push(format!("veth {veth} in the root namespace"));
    }
    let mut pins = Vec::new();
    list_tree(Path::new(PIN_DIR), &mut pins)?;
    left.extend(
        pins.into_iter()
            .map(|p| format!("bpffs pin {}", p.display())),
    );
    Ok(left)
}

/// Names of the tests' namespaces in `ip netns list` output (lines like `nm4711x3a (id: 3)`).
fn owned_netns(list: &str) -> Vec<&str> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(NETNS_PREFIX))
        .collect()
}

/// Names of the tests' veths in `ip -o link show type veth` output
/// (lines like `7: nmv0@if6: <BROADCAST,...> mtu 1500 ...`).
fn owned_veths(list: &str) -> Vec<&str> {
    list.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|name| name.trim())
        .map(|name| name.split_once('@').map_or(name, |(n, _)| n))
        .filter(|name| name.starts_with(VETH_PREFIX))
        .collect()
}

/// Appends every entry below `dir` (not `dir` itself) to `out`; a missing `dir` is empty.
fn list_tree(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", dir.display()))?
        .into_iter()
        .map(|e| e.path())
        .collect();
    paths.sort();
    for path in paths {
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        out.push(path.clone());
        if is_dir {
            list_tree(&path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_filter() {
        let list = "nm4711x3a (id: 1)\nnmb4711x0b (id: 0)\nother\nxnm1\n";
        assert_eq!(owned_netns(list), ["nm4711x3a", "nmb4711x0b"]);
        assert!(owned_netns("").is_empty());
        assert!(owned_netns("blue\nred (id: 2)\n").is_empty());
    }

    #[test]
    fn veth_filter() {
        let list = "\
7: nmv0@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 2a:...
9: veth1@if8: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether ...
11: nm-b@nmt-x: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN\\    link/ether ...
12: anm0: <BROADCAST> mtu 1500\\    link/ether ...
";
        assert_eq!(owned_veths(list), ["nmv0", "nm-b"]);
        assert!(owned_veths("").is_empty());
    }

    #[test]
    fn pin_listing() {
        let dir = std::env::temp_dir().join(format!("xtask-pins-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut out = Vec::new();
        list_tree(&dir, &mut out).unwrap();
        assert!(out.is_empty(), "a missing dir is empty");
        fs::create_dir_all(dir.join("maps")).unwrap();
        fs::write(dir.join("maps/rules"), "").unwrap();
        fs::write(dir.join("prog"), "").unwrap();
        list_tree(&dir, &mut out).unwrap();
        assert_eq!(
            out,
            [dir.join("maps"), dir.join("maps/rules"), dir.join("prog")]
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
