//! Where netmit keeps its objects in bpffs, keyed by network namespace and ifindex.
//!
//! ```text
//! /sys/fs/bpf/netmit/                 root, mode 0700, owned by root
//!     netns-<cookie>/                 one per network namespace (SO_NETNS_COOKIE)
//!         <ifindex>/                  one per attached device
//!             link            the XDP bpf_link (keeps the program attached)
//!             NETMIT_CONFIG   active generation, attachment, next rule sequence number
//!             NETMIT_RULES    the rules as written, by rule id
//!             NETMIT_TABLES   every lookup table, one value per generation
//!             NETMIT_QSTATS   per-queue, per-CPU verdict counters
//!             NETMIT_RHITS    per-rule, per-CPU hit counters
//!             NETMIT_XSKS     AF_XDP sockets by RX queue
//! ```
//!
//! bpffs is not namespaced: one mount serves every network namespace, and two namespaces
//! with an `eth1` each (every container host) must not share a directory. An ifindex only
//! means something in its namespace, and a name can change (`ip link set ... name`), so the
//! key is (namespace cookie, ifindex): a renamed device keeps its attachment, and the
//! cookie of a dead namespace is never given to a new one. Without the cookie (Linux before
//! 5.14) the namespace inode stands in (`netns-i<inode>`).
//!
//! The pins are the source of truth: every netmit command (and the daemon) finds the
//! attachment through them, so nothing else needs to be running.
//!
//! # Trust
//!
//! `mount -t bpf bpf /sys/fs/bpf` without options gives a world-writable bpffs, so the root
//! and every namespace directory are checked before use (a real directory, owned by the
//! user running netmit, writable by nobody else; see [`crate::sys::fs`]) and created with
//! mode 0700. An attachment directory is removed only when it holds nothing but the pins
//! above, never by following a link.
//!
//! # The name-keyed layout of netmit 0.1
//!
//! netmit 0.1 pinned at `/sys/fs/bpf/netmit/<IFACE>/`. [`PinRoot::find`] still finds such a
//! directory when its link drives this very device in this namespace, so `status`, `steer`,
//! `rx` and `detach` keep working on an attachment made before the upgrade, and `detach`
//! removes it (only if it holds nothing but netmit's pins). New attachments always use the
//! layout above.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use netmit_common::names;

use crate::sys::{
    Netdev, NetnsId, bpf,
    fs::{DirLock, TrustError, remove_owned_dir, trusted_dir},
    link,
};

/// Default root of netmit's pins.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf/netmit";
/// Where bpffs is mounted.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";
/// The link pin's name.
pub const LINK_PIN: &str = "link";

/// Every map that `attach` pins, in a fixed order.
pub const PINNED_MAPS: [&str; names::STEERING_MAPS.len()] = names::STEERING_MAPS;

/// Every entry an attachment directory may hold.
pub fn expected_entries() -> Vec<&'static str> {
    let mut v = vec![LINK_PIN];
    v.extend(PINNED_MAPS);
    v
}

/// Errors of the pin layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// bpffs is not mounted.
    #[error(
        "no bpffs at {mount}: mount it with `mount -t bpf bpf {mount} -o mode=0700`; inside \
         `ip netns exec`, which remounts /sys and hides bpffs, use `nsenter --net=/run/netns/NAME \
         netmit ...` instead"
    )]
    NoBpffs {
        /// The expected mount point.
        mount: String,
    },
    /// A directory is not trusted, or could not be handled.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// Listing a directory failed.
    #[error("reading {path}")]
    Io {
        /// The directory.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The root of netmit's pins (normally [`BPFFS_ROOT`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinRoot {
    root: PathBuf,
}

impl Default for PinRoot {
    fn default() -> Self {
        PinRoot {
            root: BPFFS_ROOT.into(),
        }
    }
}

impl PinRoot {
    /// A root elsewhere (tests with their own bpffs).
    pub fn at(root: impl Into<PathBuf>) -> PinRoot {
        PinRoot { root: root.into() }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The directory of one network namespace.
    pub fn netns_dir(&self, netns: &NetnsId) -> PathBuf {
        self.root.join(netns.key())
    }

    /// The pin paths of a device.
    pub fn layout(&self, dev: &Netdev) -> PinLayout {
        PinLayout {
            dir: self.netns_dir(&dev.netns).join(dev.ifindex.to_string()),
        }
    }

    /// Whether the root's parent is a mounted bpffs.
    pub fn on_bpffs(&self) -> bool {
        self.root.parent().is_some_and(bpf::is_bpffs)
    }

    fn require_bpffs(&self) -> Result<(), PinError> {
        if !self.on_bpffs() {
            return Err(PinError::NoBpffs {
                mount: self
                    .root
                    .parent()
                    .unwrap_or(Path::new(BPFFS_MOUNT))
                    .display()
                    .to_string(),
            });
        }
        Ok(())
    }

    /// Makes sure the root and the namespace's directory exist and are trusted, and takes
    /// the namespace's lock: the one writer at a time for every attachment of the namespace
    /// (attach, detach, rule edits, the daemon's attach).
    ///
    /// # Errors
    ///
    /// [`PinError::NoBpffs`], or [`PinError::Trust`] naming what is wrong and the fix.
    pub fn lock(&self, netns: &NetnsId) -> Result<DirLock, PinError> {
        self.require_bpffs()?;
        let dir = self.netns_dir(netns);
        loop {
            trusted_dir(&self.root, true)?;
            trusted_dir(&dir, true)?;
            let lock = DirLock::acquire(&dir)?;
            // The holder before us may have removed the (then empty) directory.
            if lock.is_current() {
                return Ok(lock);
            }
        }
    }

    /// Checks the root and the namespace directory without creating anything; `Ok(false)`
    /// when either does not exist (nothing is attached in the namespace).
    ///
    /// # Errors
    ///
    /// As [`PinRoot::lock`], for directories that exist but are not trusted.
    pub fn check(&self, netns: &NetnsId) -> Result<bool, PinError> {
        self.require_bpffs()?;
        for dir in [self.root.clone(), self.netns_dir(netns)] {
            match fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                _ => trusted_dir(&dir, false)?,
            }
        }
        Ok(true)
    }

    /// The attachment of `dev`, if netmit has one: its pins in the current layout, or a
    /// directory of the name-keyed layout of netmit 0.1 that provably belongs to this
    /// device (see the module documentation). Reads only; takes no lock.
    ///
    /// # Errors
    ///
    /// As [`PinRoot::check`], and for an old-layout directory that is not trusted.
    pub fn find(&self, dev: &Netdev) -> Result<Option<PinLayout>, PinError> {
        let layout = self.layout(dev);
        if self.check(&dev.netns)? && layout.is_attached() {
            return Ok(Some(layout));
        }
        let old = PinLayout {
            dir: self.root.join(dev.name.as_str()),
        };
        if !self.on_bpffs() || !old.is_attached() {
            return Ok(None);
        }
        trusted_dir(&self.root, false)?;
        trusted_dir(&old.dir, false)?;
        Ok(legacy_belongs_to(&old, dev).then_some(old))
    }

    /// The ifindexes with an attachment in the namespace, sorted.
    ///
    /// # Errors
    ///
    /// As [`PinRoot::check`], or [`PinError::Io`] when the directory cannot be read.
    pub fn attached(&self, netns: &NetnsId) -> Result<Vec<u32>, PinError> {
        if !self.check(netns)? {
            return Ok(Vec::new());
        }
        let dir = self.netns_dir(netns);
        let mut v: Vec<u32> = fs::read_dir(&dir)
            .map_err(|source| PinError::Io {
                path: dir.display().to_string(),
                source,
            })?
            .filter_map(Result::ok)
            .filter(|e| e.path().join(LINK_PIN).exists())
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Removes an attachment directory, only if it holds nothing but netmit's pins.
    ///
    /// # Errors
    ///
    /// [`PinError::Trust`] (nothing removed) when something else is there.
    pub fn remove(&self, layout: &PinLayout) -> Result<bool, PinError> {
        Ok(remove_owned_dir(&layout.dir, &expected_entries())?)
    }

    /// Removes the namespace directory when nothing is attached there any more (best
    /// effort: another process may be attaching at this moment, then it stays).
    pub fn tidy(&self, netns: &NetnsId) {
        let _ = remove_owned_dir(&self.netns_dir(netns), &[]);
    }
}

impl PinRoot {
    /// Removes the attachments whose link is defunct: its device went away (a namespace
    /// deleted with its veth, a device unplugged), which leaves netmit's pins holding
    /// maps that nothing uses. Only directories holding nothing but netmit's pins are
    /// removed, each namespace under its lock; a directory without a link (an attach in
    /// progress) is left alone. Returns what was removed.
    pub fn sweep_defunct(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        if !self.on_bpffs() || trusted_dir(&self.root, false).is_err() {
            return removed;
        }
        let Ok(namespaces) = fs::read_dir(&self.root) else {
            return removed;
        };
        for ns in namespaces.filter_map(Result::ok) {
            let name = ns.file_name().to_string_lossy().into_owned();
            if !name.starts_with("netns-") || trusted_dir(&ns.path(), false).is_err() {
                continue;
            }
            let Ok(_lock) = DirLock::acquire(&ns.path()) else {
                continue;
            };
            let Ok(devices) = fs::read_dir(ns.path()) else {
                continue;
            };
            for dev in devices.filter_map(Result::ok) {
                let layout = PinLayout { dir: dev.path() };
                let defunct = layout.is_attached()
                    && bpf::pinned_link_info(&layout.link()).is_ok_and(|l| l.ifindex == 0);
                if defunct && self.remove(&layout).is_ok() {
                    removed.push(layout.dir);
                }
            }
            let _ = remove_owned_dir(&ns.path(), &[]);
        }
        removed
    }
}

/// Whether the link pinned in an old-layout directory drives `dev` here: same ifindex in
/// the link's info and the same program in the device's XDP state.
fn legacy_belongs_to(old: &PinLayout, dev: &Netdev) -> bool {
    let (Ok(info), Ok(Some(state))) = (bpf::pinned_link_info(&old.link()), link::xdp_state(dev))
    else {
        return false;
    };
    info.ifindex == dev.ifindex && info.prog_id == state.prog_id
}

/// Pin paths of one device's attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinLayout {
    dir: PathBuf,
}

impl PinLayout {
    /// A layout in `dir` (tests).
    pub fn in_dir(dir: impl Into<PathBuf>) -> PinLayout {
        PinLayout { dir: dir.into() }
    }

    /// The device's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The XDP link pin.
    pub fn link(&self) -> PathBuf {
        self.dir.join(LINK_PIN)
    }

    /// A map's pin.
    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether the link pin exists.
    pub fn is_attached(&self) -> bool {
        fs::symlink_metadata(self.link()).is_ok_and(|m| m.file_type().is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::IfName;

    #[test]
    fn layout_is_keyed_by_namespace_and_ifindex() {
        let dev = Netdev {
            netns: NetnsId {
                cookie: 4096,
                inode: 4026531840,
            },
            ifindex: 7,
            name: IfName::new("veth0").unwrap(),
        };
        let p = PinRoot::default().layout(&dev);
        assert_eq!(p.link(), Path::new("/sys/fs/bpf/netmit/netns-4096/7/link"));
        assert_eq!(
            p.map("NETMIT_RULES"),
            Path::new("/sys/fs/bpf/netmit/netns-4096/7/NETMIT_RULES")
        );
        let renamed = Netdev {
            name: IfName::new("eth1").unwrap(),
            ..dev.clone()
        };
        assert_eq!(
            PinRoot::default().layout(&renamed),
            p,
            "a rename keeps the pins"
        );
        assert!(expected_entries().contains(&"NETMIT_XSKS"));
    }
}
