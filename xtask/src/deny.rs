//! `cargo deny` over the dependency graph (licences, duplicate versions, sources and
//! advisories; `deny.toml` says what is allowed and why each exception is there), run by
//! `cargo xtask test`.
//!
//! cargo-deny is installed from crates.io when it is missing (about 3 minutes to build).
//! The RustSec advisory database is a git repository on github.com: where that cannot be
//! reached (the CI machines reach only the package registries), the advisories are
//! checked against a copy already on the machine (`~/.cargo/advisory-dbs/`, as
//! `cargo deny fetch` leaves it), else against the snapshot kept in the repository
//! ([`crate::advisories`]).

use std::{net::ToSocketAddrs, path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result, bail};

use crate::{cargo, run_streaming, setup};

/// The cargo-deny release that builds with the installed toolchain.
const VERSION: &str = "0.20.2";

/// Runs the checks; an error when one fails.
pub fn check() -> Result<()> {
    ensure_installed()?;
    let status = run_streaming(cargo().args(["deny", "check", "licenses", "bans", "sources"]))?;
    if !status.success() {
        bail!("cargo deny found licence, duplicate or source problems (see above and deny.toml)");
    }
    // Resolving is not enough (a resolver may answer where no route leads): connect.
    let reachable = ("github.com", 443)
        .to_socket_addrs()
        .is_ok_and(|mut addrs| {
            addrs.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok())
        });
    if reachable {
        let status = run_streaming(cargo().args(["deny", "check", "advisories"]))?;
        if !status.success() {
            bail!("cargo deny found advisories for dependencies (see above)");
        }
    } else if let Some(db) = local_db() {
        println!(
            "xtask: github.com is unreachable; checking advisories against the copy in {}",
            db.display()
        );
        offline_advisories(None)?;
    } else {
        let prepared = crate::advisories::prepare()?;
        println!(
            "xtask: github.com is unreachable; checking advisories against the snapshot in \
             deny/advisory-db ({}; accepted up to {} old)",
            prepared.source,
            crate::advisories::MAX_AGE_TEXT
        );
        offline_advisories(Some(&prepared.config))?;
    }
    Ok(())
}

/// `cargo deny --offline check advisories`, after `cargo fetch` (offline, cargo metadata
/// needs every platform's crates on disk, not only this one's).
fn offline_advisories(config: Option<&std::path::Path>) -> Result<()> {
    let status = run_streaming(cargo().args(["fetch", "--quiet", "--locked"]))?;
    if !status.success() {
        bail!("cargo fetch failed ({status}): the advisories check needs the crates' metadata");
    }
    let mut deny = cargo();
    deny.args(["deny", "--offline"]);
    if let Some(config) = config {
        deny.arg("--config").arg(config);
    }
    let status = run_streaming(deny.args(["check", "advisories"]))?;
    if !status.success() {
        bail!("cargo deny found advisories for dependencies (see above)");
    }
    Ok(())
}

fn local_db() -> Option<PathBuf> {
    let dir = setup::home().ok()?.join(".cargo/advisory-dbs");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("crates").is_dir())
}

fn ensure_installed() -> Result<()> {
    let works = Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Ok(());
    }
    println!("xtask: cargo-deny is missing; installing {VERSION} from crates.io (about 3 minutes)");
    let status = run_streaming(cargo().args([
        "install",
        "cargo-deny",
        "--locked",
        "--version",
        &format!("={VERSION}"),
    ]))
    .context("installing cargo-deny")?;
    if !status.success() {
        bail!("installing cargo-deny {VERSION} failed ({status}); see the messages above");
    }
    Ok(())
}
