//! `cargo xtask setup`: makes a fresh machine able to build and test netmit.
//!
//! Every machine of this project starts from the same image, which has the stable and
//! nightly toolchains but not what the eBPF build and the tests need on top. This step is
//! idempotent and cheap when everything is present (a few quick probes, about a second), so
//! `test`, `bench` and `demo` run it first. Each item prints one line: `ok`, or what it did.
//!
//! Why each item:
//! - nightly + `rust-src`: netmit-ebpf is built with `-Z build-std=core` for bpfel-unknown-none.
//!   Toolchains cannot be downloaded here, components can.
//! - `bpf-linker`: links the BPF object. Built against the libLLVM that ships inside the
//!   nightly toolchain, found through a runpath into `~/.cache/netmit-llvm/lib` (outside
//!   `target/`, so `cargo clean` cannot break it). It is probed by running it, because a
//!   binary whose libLLVM symlinks are gone is present but broken.
//! - Debian tools: the integration tests drive `ip`, `ethtool`, `ping`, ... directly.
//! - bpffs at /sys/fs/bpf: netmit pins its programs and maps there.
//!
//! Installing packages and mounting need root; without root those items are only checked,
//! and the step fails only if one of them actually needs doing.

use std::{
    collections::BTreeSet,
    env, fs,
    io::ErrorKind,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::{cargo, describe, run_streaming};

/// Commands the tests and benchmarks run, each with the Debian package that provides it;
/// an absolute path stands for a file the package installs (a C header, for the libxdp
/// reference receiver of `bench xsk`). Add an entry here when a test starts using a new
/// tool; `setup` installs whatever is missing in one go.
pub const DEB_PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ethtool", "ethtool"),
    ("ping", "iputils-ping"),
    ("nsenter", "util-linux"),
    ("tcpdump", "tcpdump"),
    ("bpftool", "bpftool"),
    ("perf", "linux-perf"),
    ("setpriv", "util-linux"),
    ("cc", "gcc"),
    ("/usr/include/xdp/xsk.h", "libxdp-dev"),
    ("/usr/include/bpf/bpf.h", "libbpf-dev"),
    ("/usr/bin/python3", "python3"),
    (
        "/usr/lib/python3/dist-packages/yaml/__init__.py",
        "python3-yaml",
    ),
    ("systemd-analyze", "systemd"),
    ("promtool", "prometheus"),
    ("prometheus", "prometheus"),
    ("sockperf", "sockperf"),
    // `bench xdp`'s peer, xdp-filter's BPF objects.
    (
        "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_all.o",
        "xdp-tools",
    ),
    // Unmodified epoll servers under `netmit run` (tests/tests/preload.rs).
    ("memcached", "memcached"),
    ("redis-server", "redis-server"),
    // `xtask dist`'s checks: the package's dependencies and lintian, the man pages, and
    // the image under podman (runc where crun refuses a host's hybrid cgroups).
    ("dpkg-shlibdeps", "dpkg-dev"),
    ("lintian", "lintian"),
    ("man", "man-db"),
    ("podman", "podman"),
    ("runc", "runc"),
    // `depmod -b` lays out the modules of the kernels the compat tests boot (kernels.rs).
    ("depmod", "kmod"),
];

/// The bpf-linker release that fits the installed toolchains: 0.13 builds (about 30 s)
/// against the LLVM inside the nightly toolchain, with the `llvm-NN` feature of its major
/// version, so no system LLVM is needed.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Where bpffs must be mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Directories searched for commands besides `PATH`: a non-root user's `PATH` often lacks
/// the sbin directories where `ip` and `ethtool` live.
const EXTRA_BIN_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// What one setup item found.
enum Outcome {
    /// Already in place; the string says what was found.
    Present(String),
    /// Was missing or broken and has been fixed; the string says what was done.
    Installed(String),
}

/// Runs every setup item, printing one line per item. Fails (after trying all items) if any
/// item is missing and could not be installed, with a message saying what to do.
pub fn run() -> Result<()> {
    let root = is_root()?;
    if !root {
        println!(
            "setup: not running as root: installing Debian packages and mounting bpffs need \
             root, so those items are only checked"
        );
    }
    let mut failed = Vec::new();
    let mut report = |item: &str, result: Result<Outcome>| match result {
        Ok(Outcome::Present(what)) => println!("setup: {item:<24} ok ({what})"),
        Ok(Outcome::Installed(what)) => println!("setup: {item:<24} installed: {what}"),
        Err(e) => {
            println!("setup: {item:<24} FAILED: {e:#}");
            failed.push(item.to_string());
        }
    };

    let nightly = nightly_toolchain();
    let have_nightly = nightly.is_ok();
    report("nightly toolchain", nightly);
    if have_nightly {
        report("nightly rust-src", rust_src());
        report("bpf-linker", bpf_linker());
    } else {
        for item in ["nightly rust-src", "bpf-linker"] {
            report(
                item,
                Err(anyhow!("not checked: needs the nightly toolchain")),
            );
        }
    }
    for (item, result) in debian_packages(root) {
        report(&item, result);
    }
    report("bpffs", bpffs(root));

    if !failed.is_empty() {
        bail!(
            "setup incomplete: {}; see the messages above, then re-run `cargo xtask setup`",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Whether this process runs with effective uid 0.
pub(crate) fn is_root() -> Result<bool> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = effective_uid(&status).context("no Uid line in /proc/self/status")?;
    Ok(euid == 0)
}

/// The effective uid from the text of `/proc/<pid>/status` (`Uid: real effective saved fs`).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `cmd`, capturing its output; fails unless it exits 0. Returns stdout.
pub(crate) fn capture(cmd: &mut Command) -> Result<String> {
    let what = describe(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("could not run `{what}`"))?;
    ensure!(
        out.status.success(),
        "`{what}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rustup() -> Command {
    Command::new("rustup")
}

// ---------------------------------------------------------------------------------------------
// Toolchain

fn nightly_toolchain() -> Result<Outcome> {
    let list = capture(rustup().args(["toolchain", "list"]))
        .context("rustup is needed to manage the toolchains; is ~/.cargo/bin on PATH?")?;
    match nightly_in_toolchain_list(&list) {
        Some(name) => Ok(Outcome::Present(name.to_string())),
        None => bail!(
            "the nightly toolchain is not installed (`rustup toolchain list` shows none), and \
             toolchains cannot be downloaded on these machines. Use a machine image that has \
             it, or where network access allows run `rustup toolchain install nightly`"
        ),
    }
}

/// The nightly toolchain's name in `rustup toolchain list` output, if there is one.
/// Lines look like `nightly-x86_64-unknown-linux-gnu (active)`; dated nightlies
/// (`nightly-2026-05-19-...`) are not what `+nightly` resolves to, so they do not count.
fn nightly_in_toolchain_list(list: &str) -> Option<&str> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|name| {
            *name == "nightly"
                || name
                    .strip_prefix("nightly-")
                    .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        })
}

fn rust_src() -> Result<Outcome> {
    let installed =
        capture(rustup().args(["component", "list", "--toolchain", "nightly", "--installed"]))?;
    if has_component(&installed, "rust-src") {
        return Ok(Outcome::Present("rust-src".into()));
    }
    println!("setup: nightly rust-src missing, adding it");
    let status =
        run_streaming(rustup().args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    ensure!(
        status.success(),
        "`rustup component add rust-src --toolchain nightly` failed ({status}); check network \
         access and free space in ~/.rustup, then re-run it"
    );
    Ok(Outcome::Installed(
        "rustup component add rust-src --toolchain nightly".into(),
    ))
}

/// Whether `rustup component list --installed` output lists `component` by its bare name.
/// Target-independent components such as `rust-src` appear bare; per-target ones carry a
/// triple suffix (`rust-std-x86_64-unknown-linux-gnu`) and are not what this checks.
fn has_component(list: &str, component: &str) -> bool {
    list.lines().any(|l| l.trim() == component)
}

// ---------------------------------------------------------------------------------------------
// bpf-linker

/// What running `bpf-linker --version` showed.
enum Probe {
    Works(String),
    Missing,
    Broken(String),
}

fn probe(program: &Path) -> Probe {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => {
            Probe::Works(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().map(str::trim).find(|l| !l.is_empty());
            let first = first.unwrap_or("(no error output)");
            Probe::Broken(format!(
                "`{} --version` failed ({}): {first}",
                program.display(),
                out.status
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Probe::Missing,
        Err(e) => Probe::Broken(format!("cannot run {}: {e}", program.display())),
    }
}

pub fn home() -> Result<PathBuf> {
    env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set"))
}

/// Where `cargo install` puts binaries: `CARGO_INSTALL_ROOT`, else `CARGO_HOME`, else
/// `~/.cargo`; binaries go to its `bin/`.
fn cargo_install_bin() -> Result<PathBuf> {
    let root = match env::var_os("CARGO_INSTALL_ROOT").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match env::var_os("CARGO_HOME").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => home()?.join(".cargo"),
        },
    };
    Ok(root.join("bin"))
}

/// The directory whose `lib/` holds the libLLVM symlinks bpf-linker is built and run against.
/// Under `~/.cache` so that it outlives `cargo clean`; the installed binary has a runpath here.
fn llvm_prefix() -> Result<PathBuf> {
    Ok(home()?.join(".cache/netmit-llvm"))
}

fn bpf_linker() -> Result<Outcome> {
    let on_path = Path::new("bpf-linker");
    let broken = match probe(on_path) {
        Probe::Works(version) => return Ok(Outcome::Present(version)),
        Probe::Missing => {
            let installed = cargo_install_bin()?.join("bpf-linker");
            if let Probe::Works(_) = probe(&installed) {
                bail!(
                    "bpf-linker is installed at {} but that directory is not on PATH; add it \
                     (e.g. `export PATH=\"{}:$PATH\"`) and re-run",
                    installed.display(),
                    installed.parent().unwrap().display()
                );
            }
            println!("setup: bpf-linker not found on PATH, installing it");
            false
        }
        Probe::Broken(why) => {
            println!("setup: bpf-linker is broken: {why}");
            true
        }
    };

    let prefix = llvm_prefix()?;
    let linked = link_nightly_llvm(&prefix.join("lib"))?;
    if broken {
        // The usual breakage is a removed symlink dir; relinking is enough unless the nightly
        // toolchain (and with it libLLVM's soname) changed since bpf-linker was built.
        if let Probe::Works(version) = probe(on_path) {
            return Ok(Outcome::Installed(format!(
                "re-linked {} for {version}",
                linked.display()
            )));
        }
    }

    let major = llvm_major(&capture(rustup().args(["run", "nightly", "rustc", "-vV"]))?)?;
    let mut install = cargo();
    install
        // Not from the workspace: its config must not affect this build.
        .current_dir(&prefix)
        .env("LLVM_PREFIX", &prefix)
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ]);
    let status = run_streaming(&mut install)?;
    ensure!(
        status.success(),
        "installing bpf-linker failed ({status}). Command: `LLVM_PREFIX={} {}`. It needs \
         crates.io access and the nightly toolchain's libLLVM (linked at {})",
        prefix.display(),
        describe(&install),
        linked.display()
    );

    match probe(on_path) {
        Probe::Works(version) => Ok(Outcome::Installed(format!(
            "{version} (cargo install, LLVM {major} from the nightly toolchain)"
        ))),
        Probe::Missing => bail!(
            "bpf-linker was installed into {} but that directory is not on PATH; add it and \
             re-run",
            cargo_install_bin()?.display()
        ),
        Probe::Broken(why) => bail!(
            "bpf-linker was installed but does not run: {why}. Check the symlinks in {}",
            prefix.join("lib").display()
        ),
    }
}

/// Makes `lib_dir` hold symlinks to the nightly toolchain's libLLVM, under its own name (its
/// soname, which the built binary asks for) and as `libLLVM.so` (what bpf-linker's build links
/// against). Returns the real library's path.
fn link_nightly_llvm(lib_dir: &Path) -> Result<PathBuf> {
    let sysroot = capture(rustup().args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    let sysroot_lib = Path::new(sysroot.trim()).join("lib");
    let mut candidates: Vec<PathBuf> = fs::read_dir(&sysroot_lib)
        .with_context(|| format!("reading {}", sysroot_lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .collect();
    candidates.sort();
    let real = candidates.into_iter().next().with_context(|| {
        format!(
            "no libLLVM.so.* in {}; the nightly toolchain looks incomplete (try `rustup \
             component add llvm-tools --toolchain nightly`)",
            sysroot_lib.display()
        )
    })?;
    fs::create_dir_all(lib_dir).with_context(|| format!("creating {}", lib_dir.display()))?;
    for link in [
        lib_dir.join(real.file_name().unwrap()),
        lib_dir.join("libLLVM.so"),
    ] {
        if fs::symlink_metadata(&link).is_ok() {
            fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
        }
        std::os::unix::fs::symlink(&real, &link)
            .with_context(|| format!("linking {} -> {}", link.display(), real.display()))?;
    }
    Ok(real)
}

/// The LLVM major version from `rustc -vV` output (`LLVM version: 22.1.4` -> 22), which picks
/// bpf-linker's `llvm-NN` feature.
fn llvm_major(rustc_vv: &str) -> Result<u32> {
    let version = rustc_vv
        .lines()
        .find_map(|l| l.trim().strip_prefix("LLVM version:"))
        .context("`rustc +nightly -vV` printed no `LLVM version:` line")?
        .trim();
    let major = version.split('.').next().unwrap_or("");
    major
        .parse()
        .with_context(|| format!("cannot parse the LLVM major version from {version:?}"))
}

// ---------------------------------------------------------------------------------------------
// Debian packages

/// Whether `name` is an executable file in `PATH` or one of [`EXTRA_BIN_DIRS`].
fn find_command(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(EXTRA_BIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The packages to install for the commands `missing` (deduplicated, in table order).
fn packages_for<'a>(missing: &[&'a str]) -> Vec<&'a str> {
    let mut seen = BTreeSet::new();
    DEB_PACKAGES
        .iter()
        .filter(|(cmd, _)| missing.contains(cmd))
        .map(|(_, pkg)| *pkg)
        .filter(|pkg| seen.insert(*pkg))
        .collect()
}

/// Checks every command of [`DEB_PACKAGES`], installs the packages of the missing ones with
/// one `apt-get update` + `apt-get install`, and returns one result per command.
fn debian_packages(root: bool) -> Vec<(String, Result<Outcome>)> {
    let item = |cmd: &str, pkg: &str| format!("{cmd} ({pkg})");
    let missing: Vec<&str> = DEB_PACKAGES
        .iter()
        .map(|(cmd, _)| *cmd)
        .filter(|cmd| find_command(cmd).is_none())
        .collect();
    let pkgs = packages_for(&missing);

    let install: Result<()> = if missing.is_empty() {
        Ok(())
    } else if !root {
        Err(anyhow!(
            "missing; as root run `apt-get update && apt-get install -y --no-install-recommends \
             {}` (or `sudo cargo xtask setup`)",
            pkgs.join(" ")
        ))
    } else {
        println!("setup: installing Debian packages: {}", pkgs.join(" "));
        apt_install(&pkgs)
    };

    DEB_PACKAGES
        .iter()
        .map(|(cmd, pkg)| {
            let result = if !missing.contains(cmd) {
                Ok(Outcome::Present(
                    find_command(cmd).unwrap().display().to_string(),
                ))
            } else {
                match &install {
                    Err(e) => Err(anyhow!("{e:#}")),
                    Ok(()) => match find_command(cmd) {
                        Some(path) => Ok(Outcome::Installed(format!(
                            "apt-get install {pkg} -> {}",
                            path.display()
                        ))),
                        None => Err(anyhow!(
                            "package {pkg} was installed but `{cmd}` is still not found; check \
                             `dpkg -L {pkg}` and the DEB_PACKAGES table in xtask/src/setup.rs"
                        )),
                    },
                }
            };
            (item(cmd, pkg), result)
        })
        .collect()
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    let status = run_streaming(Command::new("apt-get").arg("update"))?;
    ensure!(
        status.success(),
        "`apt-get update` failed ({status}); check the network and /etc/apt/sources.list, then \
         re-run `cargo xtask setup`"
    );
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(pkgs);
    let status = run_streaming(&mut install)?;
    ensure!(
        status.success(),
        "`DEBIAN_FRONTEND=noninteractive {}` failed ({status}); fix the apt error above and \
         re-run `cargo xtask setup`",
        describe(&install)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// bpffs

/// Whether `/proc/mounts` text has a filesystem of type `bpf` mounted at `mountpoint`.
fn bpffs_mounted(mounts: &str, mountpoint: &str) -> bool {
    mounts.lines().any(|l| {
        let mut fields = l.split_whitespace();
        let (_src, dir, fstype) = (fields.next(), fields.next(), fields.next());
        dir == Some(mountpoint) && fstype == Some("bpf")
    })
}

fn read_mounts() -> Result<String> {
    fs::read_to_string("/proc/mounts").context("reading /proc/mounts")
}

fn bpffs(root: bool) -> Result<Outcome> {
    if bpffs_mounted(&read_mounts()?, BPFFS) {
        return Ok(Outcome::Present(format!("mounted at {BPFFS}")));
    }
    // mode=0700 (as systemd mounts it): other users cannot plant entries where root keeps
    // its pins (the kernel adds the sticky bit either way).
    let cmd_line = format!("mount -t bpf bpf {BPFFS} -o mode=0700");
    ensure!(
        root,
        "bpffs is not mounted at {BPFFS}; as root run `{cmd_line}`"
    );
    let status =
        run_streaming(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS, "-o", "mode=0700"]))?;
    ensure!(
        status.success(),
        "`{cmd_line}` failed ({status}); the kernel needs CONFIG_BPF_SYSCALL and {BPFFS} must exist"
    );
    ensure!(
        bpffs_mounted(&read_mounts()?, BPFFS),
        "`{cmd_line}` succeeded but /proc/mounts shows no bpf filesystem at {BPFFS}"
    );
    Ok(Outcome::Installed(cmd_line))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUSTC_VV: &str = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)
binary: rustc
commit-hash: e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a
commit-date: 2026-05-19
host: x86_64-unknown-linux-gnu
release: 1.97.0-nightly
LLVM version: 22.1.4
";

    #[test]
    fn llvm_major_from_rustc_vv() {
        assert_eq!(llvm_major(RUSTC_VV).unwrap(), 22);
        assert_eq!(llvm_major("LLVM version: 19.1\n").unwrap(), 19);
        assert_eq!(llvm_major("rustc 1.0\r\nLLVM version: 8\r\n").unwrap(), 8);
        assert!(llvm_major("rustc 1.97.0\nrelease: 1.97.0\n").is_err());
        assert!(llvm_major("LLVM version: x.1\n").is_err());
    }

    #[test]
    fn bpffs_detection() {
        let mounts = "proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0
";
        assert!(bpffs_mounted(mounts, "/sys/fs/bpf"));
        // Same place, another type (sysfs shows an empty /sys/fs/bpf before mounting).
        assert!(!bpffs_mounted(
            "sysfs /sys/fs/bpf sysfs rw 0 0\n",
            "/sys/fs/bpf"
        ));
        // bpffs elsewhere does not count.
        assert!(!bpffs_mounted("bpf /run/bpf bpf rw 0 0\n", "/sys/fs/bpf"));
        assert!(!bpffs_mounted(
            "none /sys/fs/bpf/x bpf rw 0 0\n",
            "/sys/fs/bpf"
        ));
        assert!(!bpffs_mounted("", "/sys/fs/bpf"));
    }

    #[test]
    fn nightly_detection() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n1.95.0-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            nightly_in_toolchain_list(list),
            Some("nightly-x86_64-unknown-linux-gnu")
        );
        assert_eq!(
            nightly_in_toolchain_list("stable-x86_64-unknown-linux-gnu (default)\n"),
            None
        );
        assert_eq!(
            nightly_in_toolchain_list("nightly-2026-05-19-x86_64-unknown-linux-gnu\n"),
            None
        );
        assert_eq!(nightly_in_toolchain_list("no installed toolchains\n"), None);
    }

    #[test]
    fn component_detection() {
        let installed =
            "cargo-x86_64-unknown-linux-gnu\nrust-src\nrust-std-x86_64-unknown-linux-gnu\n";
        assert!(has_component(installed, "rust-src"));
        assert!(!has_component(installed, "rust"));
        assert!(!has_component("rust-src-preview\n", "rust-src"));
        assert!(!has_component(
            "rust-std-x86_64-unknown-linux-gnu\n",
            "rust-src"
        ));
    }

    #[test]
    fn effective_uid_from_status() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t0\t1000\t1000\t1000\n"), Some(1000));
        assert_eq!(effective_uid("Name:\tcat\n"), None);
    }

    #[test]
    fn package_table() {
        // Every command appears once, so a lookup is unambiguous.
        let cmds: BTreeSet<_> = DEB_PACKAGES.iter().map(|(c, _)| c).collect();
        assert_eq!(cmds.len(), DEB_PACKAGES.len());
        assert_eq!(packages_for(&["ping", "ip"]), ["iproute2", "iputils-ping"]);
        assert!(packages_for(&[]).is_empty());
        assert!(packages_for(&["not-in-table"]).is_empty());
    }

    #[test]
    fn find_command_searches_sbin() {
        // `sh` is on every PATH; a name with a NUL-free but absurd value is nowhere.
        assert!(find_command("sh").is_some());
        assert!(find_command("netmit-no-such-command-xyz").is_none());
    }
}
