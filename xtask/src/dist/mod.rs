//! `cargo xtask dist`: the release artefacts, built from the workspace and checked before
//! they are called done.
//!
//! Writes into `target/dist/`:
//! - `netmit_VERSION_amd64.deb` (deb.rs): binary, preload library, systemd unit, conffile,
//!   man pages, completions, maintainer scripts;
//! - `netmit_VERSION_oci.tar` (oci.rs): an OCI image archive for the DaemonSet in
//!   deploy/kubernetes, loadable with `podman load`;
//! - `SHA256SUMS` and `MANIFEST` (what went in, from which commit and toolchain).
//!
//! Man pages and completions come from the binary itself (`netmit __generate`), so they
//! are the clap definitions of the very binary that is packaged.
//!
//! The names below are what deploy/kubernetes/daemonset.yaml and deploy/systemd use;
//! deploy/check.py reads them from this file and fails when the manifests disagree.

mod deb;
mod live_install;
mod oci;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};

use crate::{cargo, describe, run_streaming, target_dir, workspace_root};

/// The package's (and the image's) version: the workspace version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The image's name as the DaemonSet refers to it (`IMAGE:VERSION`).
pub const IMAGE: &str = "localhost/netmit";
/// Where the package and the image put the binary (the unit's ExecStart, the DaemonSet's
/// command).
pub const BIN_PATH: &str = "/usr/bin/netmit";
/// Where the preload library goes: `netmit run` looks in ../lib/netmit next to the binary
/// and in /usr/lib/netmit (netmit_user::preload::PACKAGE_LIB_DIR).
pub const PRELOAD_PATH: &str = "/usr/lib/netmit/libnetmit_preload.so";
/// The configuration the unit and the DaemonSet pass to `netmit daemon --config`.
pub const CONFIG_PATH: &str = "/etc/netmit/netmit.toml";
/// The systemd unit's place in the package.
pub const UNIT_PATH: &str = "/lib/systemd/system/netmit.service";

/// What was built, handed to the package and image builders.
pub struct Build {
    pub version: String,
    pub binary: PathBuf,
    pub preload: PathBuf,
    /// `netmit __generate` output: man/ and completions/.
    pub generated: PathBuf,
    pub out: PathBuf,
}

pub fn run() -> Result<()> {
    crate::setup::run()?;
    build_and_check()
}

/// [`run`] without setup (`cargo xtask test` has run it already).
pub fn build_and_check() -> Result<()> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        // No `--bin`: target selection applies to every package named, and `--bin netmit`
        // would leave out netmit-preload's library.
        "-p",
        "netmit-cli",
        "-p",
        "netmit-preload",
    ]);
    let status = run_streaming(&mut build)?;
    ensure!(status.success(), "`{}` failed ({status})", describe(&build));
    let release = target_dir().join("release");
    let out = target_dir().join("dist");
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let build = Build {
        version: VERSION.to_string(),
        binary: release.join("netmit"),
        preload: release.join("libnetmit_preload.so"),
        generated: out.join("generated"),
        out,
    };
    for f in [&build.binary, &build.preload] {
        ensure!(f.is_file(), "{} was not built", f.display());
    }
    ensure_no_test_hooks(&build.binary)?;
    let reported = output(Command::new(&build.binary).arg("--version"))?;
    ensure!(
        reported.trim() == format!("netmit {VERSION}"),
        "{} reports `{}`, expected netmit {VERSION}",
        build.binary.display(),
        reported.trim()
    );
    output(
        Command::new(&build.binary)
            .arg("__generate")
            .arg(&build.generated),
    )?;
    crate::dist::check_generated(&build.generated)?;

    let deb = deb::build(&build)?;
    deb::verify(&build, &deb)?;
    live_install::check(&build, &deb)?;
    let image = oci::build(&build)?;
    oci::verify(&build, &image)?;

    let artefacts = [deb.as_path(), image.archive.as_path()];
    let sums = write_sums(&build.out, &artefacts)?;
    let manifest = manifest(&build, &deb, &image, &sums)?;
    fs::write(build.out.join("MANIFEST"), manifest).context("writing MANIFEST")?;
    fs::remove_dir_all(&build.generated).ok();
    println!("xtask: dist: done; in {}:", build.out.display());
    for line in sums.lines() {
        println!("  {line}");
    }
    Ok(())
}

/// The shipped binary was built without netmit-user's `test-hooks` feature: none of the
/// hooks' environment variable names (all `NETMIT_TEST_*`) is in it. A build that named
/// the `tests` package next to netmit-cli would have unified the feature in.
fn ensure_no_test_hooks(binary: &Path) -> Result<()> {
    const MARKER: &[u8] = b"NETMIT_TEST_";
    let bytes = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    ensure!(
        !bytes.windows(MARKER.len()).any(|w| w == MARKER),
        "{} contains the test hooks (`NETMIT_TEST_*`): build it with `cargo build --release \
         -p netmit-cli`, without the tests package",
        binary.display()
    );
    Ok(())
}

/// The man pages render without warnings (`man -l`), and the bash completion loads and
/// registers `netmit`.
fn check_generated(dir: &Path) -> Result<()> {
    let mut pages = 0;
    for entry in fs::read_dir(dir.join("man")).context("reading generated man pages")? {
        let page = entry?.path();
        if which("man").is_some() {
            let out = Command::new("man")
                .args(["--warnings", "-E", "UTF-8", "-l"])
                .arg(&page)
                .env("MANWIDTH", "80")
                .env("MAN_KEEP_STDERR", "1")
                .output()
                .context("running man")?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(
                out.status.success() && stderr.trim().is_empty() && !out.stdout.is_empty(),
                "man -l {} ({}): {stderr}",
                page.display(),
                out.status
            );
        }
        pages += 1;
    }
    ensure!(pages > 1, "no man pages generated in {}", dir.display());
    let bash = dir.join("completions/netmit.bash");
    let out = output(
        Command::new("bash")
            .arg("-c")
            .arg(format!("source '{}' && complete -p netmit", bash.display())),
    )?;
    ensure!(
        out.contains("netmit"),
        "bash completion did not register: {out}"
    );
    println!(
        "xtask: dist: {pages} man pages render{}; bash completion loads",
        if which("man").is_some() {
            " with `man -l` without warnings"
        } else {
            " (man not installed: not rendered)"
        }
    );
    Ok(())
}

fn write_sums(dir: &Path, files: &[&Path]) -> Result<String> {
    let mut sums = String::new();
    for f in files {
        let name = f.file_name().context("artefact without a name")?;
        sums.push_str(&format!("{}  {}\n", sha256(f)?, name.to_string_lossy()));
    }
    fs::write(dir.join("SHA256SUMS"), &sums).context("writing SHA256SUMS")?;
    // Check what was written the way a user would.
    let check = output(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(dir),
    )?;
    println!(
        "xtask: dist: sha256sum --check: {}",
        check.trim().replace('\n', ", ")
    );
    Ok(sums)
}

fn manifest(build: &Build, deb: &Path, image: &oci::Image, sums: &str) -> Result<String> {
    let commit = output(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(workspace_root()),
    )
    .unwrap_or_else(|_| "unknown\n".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(workspace_root())
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let rustc = output(Command::new("rustc").arg("--version")).unwrap_or_default();
    let contents = output(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let mut m = format!(
        "netmit {version}\n\
         commit: {commit}{dirty}\n\
         toolchain: {rustc}\n\
         \n\
         artefacts (SHA256SUMS):\n{sums}\n\
         image: {IMAGE}:{version} (manifest {manifest}, config {config})\n\
         image files:\n",
        version = build.version,
        commit = commit.trim(),
        dirty = if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        rustc = rustc.trim(),
        manifest = image.manifest_digest,
        config = image.config_digest,
    );
    for f in &image.files {
        m.push_str(&format!("  {f}\n"));
    }
    m.push_str(&format!(
        "\n{} contents:\n",
        deb.file_name().unwrap().to_string_lossy()
    ));
    for line in contents.lines() {
        m.push_str(&format!("  {line}\n"));
    }
    Ok(m)
}

/// The hex SHA-256 of a file (sha256sum, from coreutils).
pub fn sha256(path: &Path) -> Result<String> {
    let out = output(Command::new("sha256sum").arg(path))?;
    let hex = out.split_whitespace().next().unwrap_or_default();
    ensure!(hex.len() == 64, "sha256sum printed `{out}`");
    Ok(hex.to_string())
}

/// Runs `cmd`, returns its stdout; fails with its stderr when it fails.
pub fn output(cmd: &mut Command) -> Result<String> {
    let what = describe(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{what}` printed non-UTF-8"))
}

/// The program's path in PATH, if it is installed.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Copies `from` to `to` (creating parents) with `mode`.
pub fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))
}

/// Writes `bytes` to `to` (creating parents) with `mode`.
pub fn install_bytes(bytes: &[u8], to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(to, bytes).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))
}

/// `path` below `root` (`/usr/bin/netmit` -> `ROOT/usr/bin/netmit`).
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}
