//! The kernels `cargo xtask test --kernel` boots: a Debian series (`6.1`, `6.12`), an
//! installed release, or a kernel image by path; `host` means the running kernel, tested
//! without a VM.
//!
//! A series is looked up among the kernels installed on this machine (`/boot` plus
//! `/lib/modules`), then among the ones this command unpacked before, and otherwise
//! fetched with apt: `apt-get download` of Debian's signed image package from bookworm,
//! bookworm-backports or trixie, through a private apt state under
//! `~/.cache/netmit-vm/apt` (the host's sources, lists and installed kernels stay as they
//! are), unpacked with `dpkg-deb -x` into `~/.cache/netmit-vm/kernels/RELEASE` and given a
//! `modules.dep` with `depmod -b`. virtme-ng finds the modules next to the image and
//! shows them to the guest as `/lib/modules/RELEASE`, so `modprobe veth` works there.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};

/// Debian suites searched for kernel packages, with the series each brings.
const SOURCES: &str = "\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm-backports main
deb http://deb.debian.org/debian trixie main
";

/// What to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// The running kernel, natively.
    Host,
    /// The newest Debian kernel of a series such as `6.1`, or an exact release.
    Debian(String),
    /// A kernel image file.
    Path(PathBuf),
}

impl Spec {
    /// `host`, a path (contains `/`), or a series/release.
    pub fn parse(s: &str) -> Result<Spec> {
        if s == "host" {
            return Ok(Spec::Host);
        }
        if s.contains('/') {
            let p = PathBuf::from(s);
            ensure!(p.is_file(), "kernel image {s} does not exist");
            return Ok(Spec::Path(p));
        }
        ensure!(
            !s.is_empty()
                && s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-+~_".contains(c)),
            "`{s}` is neither `host`, a kernel image path nor a version such as 6.1 or 6.12"
        );
        Ok(Spec::Debian(s.to_string()))
    }
}

/// A kernel image ready to boot.
#[derive(Clone, Debug)]
pub struct GuestKernel {
    /// Its release (`uname -r` in the guest).
    pub release: String,
    /// The bzImage.
    pub image: PathBuf,
}

/// The cache of VM tools and kernels (outlives `cargo clean`, like the bpf-linker LLVM).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".cache/netmit-vm")
}

/// Whether `release` belongs to `series` (`6.1` matches `6.1.0-57-amd64`, not `6.12.x`).
fn in_series(release: &str, series: &str) -> bool {
    release == series
        || release
            .strip_prefix(series)
            .is_some_and(|rest| rest.starts_with(['.', '-', '+']))
}

/// Finds or fetches the kernel for a Debian series or release.
pub fn debian(series: &str) -> Result<GuestKernel> {
    if let Some(k) = installed(series)? {
        return Ok(k);
    }
    fetch(series)
}

/// The newest matching kernel already on this machine (installed or unpacked before).
fn installed(series: &str) -> Result<Option<GuestKernel>> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir("/boot") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rel) = name.strip_prefix("vmlinuz-")
                && Path::new("/lib/modules").join(rel).is_dir()
            {
                found.push((rel.to_string(), e.path()));
            }
        }
    }
    if let Ok(entries) = fs::read_dir(cache_dir().join("kernels")) {
        for e in entries.flatten() {
            let rel = e.file_name().to_string_lossy().into_owned();
            let image = e.path().join(format!("boot/vmlinuz-{rel}"));
            if image.is_file() && e.path().join("lib/modules").join(&rel).is_dir() {
                found.push((rel, image));
            }
        }
    }
    found.retain(|(rel, _)| in_series(rel, series) && rel.ends_with("-amd64"));
    found.sort_by(|a, b| version_cmp(&a.0, &b.0));
    Ok(found
        .pop()
        .map(|(release, image)| GuestKernel { release, image }))
}

/// Compares releases numerically field by field (`6.12.95` after `6.12.9`).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    key(a).cmp(&key(b))
}

/// apt with the private state under the cache dir.
fn apt(tool: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(tool);
    for opt in [
        format!(
            "Dir::Etc::SourceList={}",
            dir.join("sources.list").display()
        ),
        "Dir::Etc::SourceParts=/nonexistent".into(),
        format!("Dir::State::Lists={}", dir.join("lists").display()),
        format!("Dir::Cache={}", dir.join("cache").display()),
        "APT::Sandbox::User=root".into(),
        "Acquire::Languages=none".into(),
        "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
        "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
        "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
        "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false".into(),
    ] {
        cmd.arg("-o").arg(opt);
    }
    cmd
}

/// Downloads and unpacks the newest Debian kernel of `series`.
fn fetch(series: &str) -> Result<GuestKernel> {
    let dir = cache_dir().join("apt");
    for sub in ["lists/partial", "cache/archives/partial", "debs"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    fs::write(dir.join("sources.list"), SOURCES)?;
    println!("xtask vm: looking for a Debian {series} kernel (apt-get update, private lists)");
    crate::setup::capture(apt("apt-get", &dir).arg("update").arg("-qq"))?;
    // linux-image-amd64 is the meta package of each suite: its Depends names the image.
    let show = crate::setup::capture(apt("apt-cache", &dir).args(["show", "linux-image-amd64"]))?;
    let mut packages: Vec<String> = show
        .lines()
        .filter_map(|l| l.strip_prefix("Depends: "))
        .filter_map(|d| d.split([' ', ',']).next())
        .filter_map(|p| p.strip_prefix("linux-image-"))
        .filter(|rel| in_series(rel, series))
        .map(str::to_string)
        .collect();
    if packages.is_empty() {
        // An exact release that is not any suite's default: ask for its package.
        let name = format!("linux-image-{series}");
        if apt("apt-cache", &dir)
            .args(["show", &name])
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
        {
            packages.push(series.to_string());
        }
    }
    packages.sort_by(|a, b| version_cmp(a, b));
    let Some(release) = packages.pop() else {
        bail!(
            "no Debian kernel package for {series} in bookworm, bookworm-backports or trixie \
             (try 6.1 or 6.12, or give an image path)"
        );
    };
    let debs = dir.join("debs");
    println!("xtask vm: downloading linux-image-{release}");
    crate::setup::capture(apt("apt-get", &dir).current_dir(&debs).args([
        "download",
        "-qq",
        &format!("linux-image-{release}"),
    ]))?;
    let deb = fs::read_dir(&debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(&format!("linux-image-{release}_"))
            })
        })
        .context("apt-get download left no .deb")?;
    let kernels = cache_dir().join("kernels");
    let partial = kernels.join(format!(".{release}.partial"));
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    crate::setup::capture(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    crate::setup::capture(Command::new("depmod").arg("-b").arg(&partial).arg(&release))?;
    let image = partial.join(format!("boot/vmlinuz-{release}"));
    ensure!(image.is_file(), "{} has no kernel image", deb.display());
    let final_dir = kernels.join(&release);
    fs::rename(&partial, &final_dir)?;
    fs::remove_file(&deb)?;
    Ok(GuestKernel {
        image: final_dir.join(format!("boot/vmlinuz-{release}")),
        release,
    })
}

/// A kernel given as an image path: its release is read from the image by virtme-ng.
pub fn from_path(image: &Path) -> GuestKernel {
    GuestKernel {
        release: image
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .trim_start_matches("vmlinuz-")
                    .to_string()
            })
            .unwrap_or_default(),
        image: image.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(Spec::parse("host").unwrap(), Spec::Host);
        assert_eq!(Spec::parse("6.1").unwrap(), Spec::Debian("6.1".into()));
        assert_eq!(
            Spec::parse("6.12.95+deb12-amd64").unwrap(),
            Spec::Debian("6.12.95+deb12-amd64".into())
        );
        assert!(Spec::parse("/nonexistent/vmlinuz").is_err());
        assert!(Spec::parse("latest").is_err());
        assert!(Spec::parse("6.1;rm").is_err());
    }

    #[test]
    fn series_match_whole_fields() {
        assert!(in_series("6.1.0-57-amd64", "6.1"));
        assert!(!in_series("6.12.95+deb12-amd64", "6.1"));
        assert!(in_series("6.12.95+deb12-amd64", "6.12"));
        assert!(in_series("6.12.95+deb12-amd64", "6.12.95+deb12-amd64"));
    }

    #[test]
    fn versions_order_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(
            version_cmp("6.12.95+deb12-amd64", "6.12.9+deb12-amd64"),
            Greater
        );
        assert_eq!(version_cmp("6.1.0-57-amd64", "6.1.0-47-amd64"), Greater);
        assert_eq!(version_cmp("6.1.0-5-amd64", "6.1.0-5-amd64"), Equal);
    }
}
