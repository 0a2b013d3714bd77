//! The maintainer scripts, run for real: `dpkg --install`, an upgrade, `--remove` and
//! `--purge` of the package on this host's own dpkg database, inside a private mount and
//! network namespace where /usr, /etc and /var are overlays whose writes go to a scratch
//! directory, /run is a fresh tmpfs that looks like a systemd host, and `systemctl` is a
//! stub that records what the scripts asked of it. When the namespace ends, the host is as
//! before: nothing was installed, no unit reloaded, no device tuned.
//!
//! The `dpkg --root` install in deb.rs checks the files; its scripts are no-ops there
//! (DPKG_ROOT set). This checks what they do: install reloads systemd and tells the admin
//! what to do, but neither enables nor starts the daemon; an upgrade restarts a running
//! daemon; remove stops it and puts back a setting `netmit tune set` made (on a veth of
//! the namespace, journalled in its /run).

use std::{fs, os::unix::fs::DirBuilderExt, path::Path, process::Command};

use anyhow::{Context, Result, bail, ensure};

use super::{Build, CONFIG_PATH, output, which};

/// The script run inside the namespaces: `$DEB` is the package, `$S` the scratch directory.
/// Each step prints a `== step` line, then the stub's log since the step before.
const SCRIPT: &str = r#"set -eu
for d in usr etc var; do
    mkdir -p "$S/$d.up" "$S/$d.work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$S/$d.up,workdir=$S/$d.work" "/$d"
done
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/system "$S/bin"
mount -t sysfs sysfs /sys
printf '#!/bin/sh\necho "systemctl $*" >> "%s/systemctl.log"\n' "$S" > "$S/bin/systemctl"
chmod 0755 "$S/bin/systemctl"
: > "$S/systemctl.log"
export PATH="$S/bin:$PATH"
step() {
    echo "== $1"
    cat "$S/systemctl.log"
    : > "$S/systemctl.log"
}
ip link add nmdeb0 type veth peer name nmdeb1
ip link set nmdeb0 up
ip link set nmdeb1 up
ethtool -K nmdeb0 gro on >/dev/null
dpkg --install "$DEB"
step install
test -f /etc/netmit/netmit.toml && echo "conffile present"
netmit tune set nmdeb0 --gro-flush-timeout 50us
netmit tune show nmdeb0 | grep -o 'gro-flush-timeout [0-9a-z]*' | head -1
dpkg --install "$DEB" >/dev/null
step upgrade
dpkg --remove netmit
step remove
netmit tune show nmdeb0 2>/dev/null && echo "binary still installed"
test -f /etc/netmit/netmit.toml && echo "conffile kept"
dpkg --purge netmit >/dev/null
step purge
test -e /etc/netmit/netmit.toml || echo "conffile purged"
"#;

/// Runs [`SCRIPT`] and checks its transcript; skipped, with the reason printed, where it
/// cannot run (not root, no unshare, no overlayfs).
pub fn check(_b: &Build, deb: &Path) -> Result<()> {
    if let Some(why) = unavailable() {
        println!("xtask: dist: live install of the maintainer scripts skipped: {why}");
        return Ok(());
    }
    // A fresh directory of our own outside /usr, /etc and /var (an overlay's upper
    // directory may not lie inside its lower one).
    let scratch = std::env::temp_dir().join(format!("netmit-live-install-{}", std::process::id()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&scratch)
        .with_context(|| {
            format!(
                "creating {} (left by another run? remove it)",
                scratch.display()
            )
        })?;
    let result = output(
        Command::new("unshare")
            .args(["--mount", "--net", "--propagation", "private", "--fork"])
            .args(["sh", "-c", SCRIPT])
            .env("DEB", deb)
            .env("S", &scratch),
    );
    fs::remove_dir_all(&scratch).ok();
    let transcript = result.context("installing and removing the package in a namespace")?;
    judge(&transcript)?;
    println!(
        "xtask: dist: live install: install reloads systemd and starts nothing, upgrade \
         try-restarts, remove stops the daemon and restores a tuned setting, purge removes \
         {CONFIG_PATH}"
    );
    Ok(())
}

fn unavailable() -> Option<String> {
    if !crate::setup::is_root().unwrap_or(false) {
        return Some("needs root (mount and network namespaces, dpkg)".into());
    }
    for tool in ["unshare", "dpkg", "ip", "ethtool"] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    // Only /usr, /etc and /var are overlaid: everything the package and its scripts
    // write must be there, which holds on a merged-/usr system.
    for dir in ["/bin", "/sbin", "/lib"] {
        if !Path::new(dir).is_symlink() {
            return Some(format!(
                "{dir} is not a link into /usr (not a merged-/usr system)"
            ));
        }
    }
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "netmit"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"));
    if installed {
        return Some("netmit is installed on this host (the check needs a first install)".into());
    }
    let may_unshare = Command::new("unshare")
        .args(["--mount", "--net", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !may_unshare {
        return Some("`unshare --mount --net` is not permitted here (no CAP_SYS_ADMIN?)".into());
    }
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        return Some("the kernel has no overlayfs (modprobe overlay)".into());
    }
    None
}

/// The systemctl calls recorded in each step (`== step` sections of the transcript).
fn calls<'a>(transcript: &'a str, step: &str) -> Result<Vec<&'a str>> {
    let header = format!("== {step}");
    let mut lines = transcript.lines().skip_while(|l| *l != header);
    if lines.next().is_none() {
        bail!("the transcript has no `{header}` step:\n{transcript}");
    }
    Ok(lines
        .take_while(|l| !l.starts_with("== "))
        .filter(|l| l.starts_with("systemctl "))
        .collect())
}

fn judge(t: &str) -> Result<()> {
    let reload = "systemctl --system daemon-reload";
    let starts: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("systemctl enable") || l.starts_with("systemctl start"))
        .collect();
    ensure!(
        starts.is_empty(),
        "the scripts must never enable or start the daemon; they called: {starts:?}"
    );
    let install = calls(t, "install")?;
    ensure!(
        install.iter().all(|c| *c == reload) && !install.is_empty(),
        "install must only reload systemd (never enable or start an unconfigured daemon); \
         it called: {install:?}"
    );
    ensure!(
        t.contains("systemctl enable --now netmit.service") && t.contains("conffile present"),
        "install did not install the conffile or tell the admin how to start the daemon:\n{t}"
    );
    ensure!(
        t.contains("gro-flush-timeout 50us"),
        "`netmit tune set` did not take effect:\n{t}"
    );
    let upgrade = calls(t, "upgrade")?;
    ensure!(
        upgrade.contains(&"systemctl try-restart netmit.service"),
        "an upgrade must restart a running daemon; it called: {upgrade:?}"
    );
    let remove = calls(t, "remove")?;
    ensure!(
        remove.first() == Some(&"systemctl stop netmit.service"),
        "remove must stop the daemon first; it called: {remove:?}"
    );
    ensure!(
        t.contains("restored nmdeb0 napi") && t.contains("gro-flush-timeout = 0"),
        "remove did not restore the tuned gro-flush-timeout:\n{t}"
    );
    ensure!(
        !t.contains("binary still installed") && t.contains("conffile kept"),
        "remove left the binary or took the conffile:\n{t}"
    );
    ensure!(
        t.contains("conffile purged"),
        "purge left {CONFIG_PATH}:\n{t}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
== install\nsystemctl --system daemon-reload\n\
then start the daemon: systemctl enable --now netmit.service\nconffile present\n\
gro-flush-timeout 50us\n\
== upgrade\nsystemctl --system daemon-reload\nsystemctl try-restart netmit.service\n\
restored nmdeb0 napi 268 gro-flush-timeout = 0\n\
== remove\nsystemctl stop netmit.service\nsystemctl --system daemon-reload\n\
conffile kept\n== purge\nsystemctl --system daemon-reload\nconffile purged\n";

    #[test]
    fn a_good_transcript_passes_and_each_fault_is_named() {
        judge(GOOD).unwrap();
        for (from, to, named) in [
            (
                "== upgrade\nsystemctl --system daemon-reload\n",
                "systemctl enable netmit.service\n== upgrade\nsystemctl --system daemon-reload\n",
                "never enable or start",
            ),
            (
                "systemctl try-restart",
                "systemctl restart-not",
                "restart a running",
            ),
            (
                "== remove\nsystemctl stop netmit.service\n",
                "== remove\n",
                "stop the daemon",
            ),
            ("gro-flush-timeout = 0", "", "restore"),
            ("conffile purged", "", "purge left"),
        ] {
            let bad = GOOD.replacen(from, to, 1);
            let err = judge(&bad).unwrap_err().to_string();
            assert!(err.contains(named), "{named}: {err}");
        }
    }
}
