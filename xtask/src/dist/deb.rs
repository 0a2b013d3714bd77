//! The Debian package, staged as a directory tree and built with `dpkg-deb --build`.
//!
//! Why dpkg-deb and not cargo-deb: every file's place, mode and the maintainer scripts are
//! spelled out here in one file, dpkg-deb ships with every Debian system (nothing to
//! install from crates.io before a release can be cut), and the man pages and completions
//! come from the packaged binary itself, which cargo-deb would need as pre-built assets
//! anyway. Dependencies are computed by dpkg-shlibdeps from the binaries, as debhelper
//! does.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, ensure};

use super::{
    BIN_PATH, Build, CONFIG_PATH, PRELOAD_PATH, UNIT_PATH, install, install_bytes, output, under,
    which,
};
use crate::workspace_root;

const PACKAGE: &str = "netmit";
const ARCH: &str = "amd64";
const MAINTAINER: &str = "netmit developers <netmit@example.org>";
const DOC_DIR: &str = "/usr/share/doc/netmit";
const MAN_DIR: &str = "/usr/share/man/man8";
const BASH_COMPLETION: &str = "/usr/share/bash-completion/completions/netmit";
const ZSH_COMPLETION: &str = "/usr/share/zsh/vendor-completions/_netmit";
const FISH_COMPLETION: &str = "/usr/share/fish/vendor_completions.d/netmit.fish";

/// Configure: reload systemd so it sees the unit, never enable or start it (the shipped
/// configuration names an example interface; the admin edits it first). An upgrade
/// restarts a daemon that was running. Under `dpkg --root` (DPKG_ROOT set) the live system
/// is left alone.
const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = configure ] && [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
    if [ -n "$2" ]; then
        # An upgrade: a running daemon restarts on the new binary (it restores and re-tunes).
        systemctl try-restart netmit.service >/dev/null || true
    else
        echo "netmit: edit /etc/netmit/netmit.toml (interfaces and policy), check it with"
        echo "  netmit daemon --config /etc/netmit/netmit.toml --check-config"
        echo "then start the daemon: systemctl enable --now netmit.service"
    fi
fi
exit 0
"#;

/// Remove: stop the daemon (it restores what it changed and detaches), then put back every
/// setting left in the restore journal (`netmit tune` changes, a crashed daemon's), while
/// the binary is still there. A restore that fails is reported and does not block removal.
const PRERM: &str = r#"#!/bin/sh
set -e
if [ "$1" = remove ] && [ -z "$DPKG_ROOT" ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop netmit.service >/dev/null 2>&1 || true
    fi
    if ! /usr/bin/netmit tune restore; then
        echo "netmit: warning: some settings could not be restored; the journal stays in /run/netmit" >&2
    fi
fi
exit 0
"#;

/// Remove/purge: forget the unit; on purge also its enablement state.
const POSTRM: &str = r#"#!/bin/sh
set -e
if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = purge ] && [ -z "$DPKG_ROOT" ]; then
    rm -f /etc/systemd/system/multi-user.target.wants/netmit.service
fi
exit 0
"#;

/// Every path the package must contain (checked after the build).
fn expected_paths() -> Vec<String> {
    let mut v: Vec<String> = [
        BIN_PATH,
        PRELOAD_PATH,
        UNIT_PATH,
        CONFIG_PATH,
        BASH_COMPLETION,
        ZSH_COMPLETION,
        FISH_COMPLETION,
        "/usr/share/doc/netmit/copyright",
        "/usr/share/doc/netmit/changelog.gz",
        "/usr/share/doc/netmit/netmit.toml.example",
        "/usr/share/man/man8/netmit.8.gz",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.sort();
    v
}

/// Stages the tree and builds `netmit_VERSION_amd64.deb` in `build.out`.
pub fn build(b: &Build) -> Result<PathBuf> {
    let root = b.out.join("deb-root");
    let ws = workspace_root();
    // Binaries, stripped as dh_strip does (debug info stays in target/release).
    install(&b.binary, &under(&root, BIN_PATH), 0o755)?;
    install(&b.preload, &under(&root, PRELOAD_PATH), 0o644)?;
    for (f, strip_all) in [(BIN_PATH, true), (PRELOAD_PATH, false)] {
        let path = under(&root, f);
        let mut strip = Command::new("strip");
        strip.args(["--remove-section=.comment", "--remove-section=.note"]);
        strip.arg(if strip_all {
            "--strip-all"
        } else {
            "--strip-unneeded"
        });
        output(strip.arg(&path))?;
    }
    install(
        &ws.join("deploy/systemd/netmit.service"),
        &under(&root, UNIT_PATH),
        0o644,
    )?;
    let example = ws.join("deploy/netmit.toml.example");
    install(&example, &under(&root, CONFIG_PATH), 0o644)?;
    install(
        &example,
        &under(&root, &format!("{DOC_DIR}/netmit.toml.example")),
        0o644,
    )?;
    install_bytes(
        copyright().as_bytes(),
        &under(&root, &format!("{DOC_DIR}/copyright")),
        0o644,
    )?;
    let changelog = under(&root, &format!("{DOC_DIR}/changelog"));
    install_bytes(changelog_entry(&b.version)?.as_bytes(), &changelog, 0o644)?;
    gzip(&changelog)?;
    for entry in fs::read_dir(b.generated.join("man")).context("reading man pages")? {
        let page = entry?.path();
        let name = page
            .file_name()
            .context("page without a name")?
            .to_string_lossy()
            .into_owned();
        let to = under(&root, &format!("{MAN_DIR}/{name}"));
        install(&page, &to, 0o644)?;
        gzip(&to)?;
    }
    let comp = b.generated.join("completions");
    install(
        &comp.join("netmit.bash"),
        &under(&root, BASH_COMPLETION),
        0o644,
    )?;
    install(&comp.join("_netmit"), &under(&root, ZSH_COMPLETION), 0o644)?;
    install(
        &comp.join("netmit.fish"),
        &under(&root, FISH_COMPLETION),
        0o644,
    )?;

    let control = root.join("DEBIAN");
    let depends = shlib_depends(
        &b.out,
        &[under(&root, BIN_PATH), under(&root, PRELOAD_PATH)],
    )?;
    let installed_kb = du_kb(&root)?;
    install_bytes(
        format!(
            "Package: {PACKAGE}\n\
             Version: {version}\n\
             Architecture: {ARCH}\n\
             Maintainer: {MAINTAINER}\n\
             Installed-Size: {installed_kb}\n\
             Depends: {depends}\n\
             Recommends: systemd\n\
             Section: net\n\
             Priority: optional\n\
             Homepage: https://netmit.example.org/\n\
             Description: take interrupt overhead out of Linux networking\n \
             netmit steers chosen flows into AF_XDP sockets with an XDP program, tunes\n \
             NAPI deferral, busy polling and IRQ suspension over netlink with a\n \
             crash-safe restore journal, and runs a daemon that switches each\n \
             interface's interrupt mode with its load and serves Prometheus metrics.\n \
             `netmit run` starts unmodified epoll servers with busy polling.\n",
            version = b.version
        )
        .as_bytes(),
        &control.join("control"),
        0o644,
    )?;
    install_bytes(
        format!("{CONFIG_PATH}\n").as_bytes(),
        &control.join("conffiles"),
        0o644,
    )?;
    install_bytes(POSTINST.as_bytes(), &control.join("postinst"), 0o755)?;
    install_bytes(PRERM.as_bytes(), &control.join("prerm"), 0o755)?;
    install_bytes(POSTRM.as_bytes(), &control.join("postrm"), 0o755)?;
    install_bytes(md5sums(&root)?.as_bytes(), &control.join("md5sums"), 0o644)?;

    let deb = b.out.join(format!("{PACKAGE}_{}_{ARCH}.deb", b.version));
    output(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&root)
            .arg(&deb),
    )?;
    fs::remove_dir_all(&root).ok();
    Ok(deb)
}

/// Checks the package: its control data and file list, lintian (if installed) without
/// errors, and an install and removal into a throwaway root with `dpkg --root`, after which
/// every expected file is in place, the conffile is registered, and removal leaves only
/// the conffile.
pub fn verify(b: &Build, deb: &Path) -> Result<()> {
    let info = output(Command::new("dpkg-deb").arg("--info").arg(deb))?;
    for field in [
        "Package: netmit",
        "Depends: libc6",
        "postinst",
        "prerm",
        "postrm",
        "conffiles",
    ] {
        ensure!(
            info.contains(field),
            "dpkg-deb --info lacks `{field}`:\n{info}"
        );
    }
    let contents = output(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let listed: Vec<String> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    let mut missing: Vec<String> = expected_paths()
        .into_iter()
        .filter(|p| !listed.contains(p))
        .collect();
    let pages = fs::read_dir(b.generated.join("man"))?.count();
    let listed_pages = listed
        .iter()
        .filter(|p| p.starts_with(MAN_DIR) && p.ends_with(".8.gz"))
        .count();
    if listed_pages != pages {
        missing.push(format!("{pages} man pages (found {listed_pages})"));
    }
    ensure!(
        missing.is_empty(),
        "the package lacks {missing:?}:\n{contents}"
    );
    ensure!(
        !listed.iter().any(|p| p.starts_with("/usr/local")),
        "the package installs into /usr/local"
    );
    println!(
        "xtask: dist: {} has {} entries, all expected ones",
        deb.display(),
        listed.len()
    );

    match which("lintian") {
        Some(_) => {
            // lintian leaves an `mldbm-elf-*` file in TMPDIR on every run: give it a
            // directory of ours and remove that.
            let tmp = b.out.join("lintian-tmp");
            fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let out = Command::new("lintian")
                .args(["--fail-on", "error", "--no-tag-display-limit"])
                .arg(deb)
                .env("TMPDIR", &tmp)
                .output()
                .context("running lintian");
            fs::remove_dir_all(&tmp).ok();
            let out = out?;
            let text = String::from_utf8_lossy(&out.stdout);
            ensure!(
                out.status.success(),
                "lintian reports errors:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let warnings = text.lines().filter(|l| l.starts_with("W:")).count();
            println!("xtask: dist: lintian: no errors, {warnings} warnings");
            for line in text.lines() {
                println!("  {line}");
            }
        }
        None => println!("xtask: dist: lintian not installed (apt-get install lintian): skipped"),
    }
    throwaway_install(b, deb)
}

fn throwaway_install(b: &Build, deb: &Path) -> Result<()> {
    let root = b.out.join("install-root");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::write(root.join("var/lib/dpkg/status"), "")?;
    let dpkg = |args: &[&str]| {
        let mut cmd = Command::new("dpkg");
        cmd.arg(format!("--root={}", root.display()))
            // The scripts run without chroot (the root has no shell) with DPKG_ROOT set,
            // which makes them leave the live system alone.
            .args([
                "--force-script-chrootless",
                "--force-depends",
                "--no-triggers",
            ])
            .args(args);
        output(&mut cmd)
    };
    dpkg(&["--install", deb.to_str().context("non-UTF-8 path")?])?;
    let mut missing = Vec::new();
    for p in expected_paths() {
        if !under(&root, &p).is_file() {
            missing.push(p);
        }
    }
    ensure!(
        missing.is_empty(),
        "after dpkg --install, missing: {missing:?}"
    );
    let status = fs::read_to_string(root.join("var/lib/dpkg/status"))?;
    ensure!(
        status.contains("Status: install ok installed")
            && status.contains(&format!(" {CONFIG_PATH} ")),
        "dpkg status after install:\n{status}"
    );
    // The unit runs the installed binary with the installed configuration.
    let unit = fs::read_to_string(under(&root, UNIT_PATH))?;
    ensure!(
        unit.contains(&format!(
            "ExecStart={BIN_PATH} daemon --config {CONFIG_PATH}"
        )),
        "the unit does not start {BIN_PATH} with {CONFIG_PATH}"
    );
    // The packaged binary finds its preload library where the package put it.
    ensure!(
        Path::new(BIN_PATH)
            .parent()
            .unwrap()
            .join("../lib/netmit")
            .join("libnetmit_preload.so")
            == Path::new("/usr/bin/../lib/netmit/libnetmit_preload.so"),
        "preload lookup path changed"
    );
    dpkg(&["--remove", PACKAGE])?;
    ensure!(
        !under(&root, BIN_PATH).exists(),
        "dpkg --remove left {BIN_PATH}"
    );
    ensure!(
        under(&root, CONFIG_PATH).exists(),
        "dpkg --remove removed the conffile"
    );
    dpkg(&["--purge", PACKAGE])?;
    ensure!(
        !under(&root, CONFIG_PATH).exists(),
        "dpkg --purge left {CONFIG_PATH}"
    );
    fs::remove_dir_all(&root)?;
    println!(
        "xtask: dist: dpkg --root install: every file in place, conffile registered; remove keeps and purge removes {CONFIG_PATH}"
    );
    Ok(())
}

/// `Depends:` from dpkg-shlibdeps (needs a debian/control to exist, so a scratch one).
fn shlib_depends(out: &Path, binaries: &[PathBuf]) -> Result<String> {
    let dir = out.join("shlibdeps");
    install_bytes(
        b"Source: netmit\n\nPackage: netmit\nArchitecture: amd64\n",
        &dir.join("debian/control"),
        0o644,
    )?;
    let mut cmd = Command::new("dpkg-shlibdeps");
    cmd.arg("-O").current_dir(&dir);
    for bin in binaries {
        cmd.arg(format!("-e{}", bin.display()));
    }
    let printed = output(&mut cmd)?;
    fs::remove_dir_all(&dir).ok();
    let deps = printed
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("dpkg-shlibdeps printed no dependencies: {printed}"))?;
    Ok(deps.trim().to_string())
}

fn du_kb(root: &Path) -> Result<u64> {
    let out = output(
        Command::new("du")
            .args(["-sk", "--apparent-size"])
            .arg(root),
    )?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("du printed `{out}`"))
}

fn md5sums(root: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(root, root, &mut files)?;
    files.sort();
    let mut cmd = Command::new("md5sum");
    cmd.current_dir(root).args(&files);
    output(&mut cmd)
}

fn collect_files(root: &Path, dir: &Path, files: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
        if rel == "DEBIAN" || rel.starts_with("etc/") {
            // Control data is not a file of the package; conffiles have their own sums.
            continue;
        }
        if path.is_dir() {
            collect_files(root, &path, files)?;
        } else {
            files.push(rel);
        }
    }
    Ok(())
}

fn gzip(path: &Path) -> Result<()> {
    // -n: no name or timestamp in the header, so the package is reproducible.
    output(Command::new("gzip").args(["-9", "-n", "-f"]).arg(path)).map(drop)
}

fn changelog_entry(version: &str) -> Result<String> {
    // The commit's date, not now: the same commit gives the same package.
    let date = output(
        Command::new("git")
            .args(["log", "-1", "--format=%aD"])
            .current_dir(workspace_root()),
    )
    .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into());
    Ok(format!(
        "netmit ({version}) unstable; urgency=medium\n\n  \
         * Release {version}; see /usr/share/doc/netmit for the project's CHANGELOG.\n\n \
         -- {MAINTAINER}  {date}\n",
        date = date.trim()
    ))
}

fn copyright() -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: netmit\n\
         \n\
         Files: *\n\
         Copyright: netmit developers\n\
         License: MIT or Apache-2.0\n\
         \n\
         License: Apache-2.0\n \
         On Debian systems, the complete text of the Apache License, Version 2.0 can be\n \
         found in /usr/share/common-licenses/Apache-2.0.\n\
         \n\
         License: MIT\n{}",
        MIT.lines()
            .map(|l| if l.is_empty() {
                " .\n".to_string()
            } else {
                format!(" {l}\n")
            })
            .collect::<String>()
    )
}

const MIT: &str = "Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the \"Software\"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
THE SOFTWARE.";
