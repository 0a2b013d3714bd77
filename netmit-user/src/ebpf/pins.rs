//! Where netmit keeps its objects in bpffs.
//!
//! ```text
//! /sys/fs/bpf/netmit/<IFACE>/
//!     link            the XDP bpf_link (keeps the program attached)
//!     NETMIT_CONFIG   active generation, attachment, next rule sequence number
//!     NETMIT_RULES    the rules as written, by rule id
//!     NETMIT_TABLES   every lookup table, one value per generation
//!     NETMIT_QSTATS   per-queue, per-CPU verdict counters
//!     NETMIT_RHITS    per-rule, per-CPU hit counters
//!     NETMIT_XSKS     AF_XDP sockets by RX queue
//! ```
//!
//! The pins are the source of truth: every netmit command (and the daemon) finds the
//! attachment through them, so nothing else needs to be running.

use std::path::{Path, PathBuf};

use netmit_common::names;

/// Root of netmit's pins.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf/netmit";
/// bpffs superblock magic (`BPF_FS_MAGIC`).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Every map that `attach` pins, in a fixed order.
pub const PINNED_MAPS: [&str; names::STEERING_MAPS.len()] = names::STEERING_MAPS;

/// Pin paths of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinLayout {
    dir: PathBuf,
}

impl PinLayout {
    /// The layout for interface `iface` under [`BPFFS_ROOT`].
    pub fn for_iface(iface: &str) -> Self {
        Self::under(Path::new(BPFFS_ROOT), iface)
    }

    /// The layout for `iface` under another root (tests).
    pub fn under(root: &Path, iface: &str) -> Self {
        Self {
            dir: root.join(iface),
        }
    }

    /// The interface's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The XDP link pin.
    pub fn link(&self) -> PathBuf {
        self.dir.join("link")
    }

    /// A map's pin.
    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether netmit has this interface attached (its link pin exists).
    pub fn is_attached(&self) -> bool {
        self.link().exists()
    }
}

/// Interfaces with a netmit pin directory, sorted.
pub fn attached_ifaces() -> std::io::Result<Vec<String>> {
    let mut v = Vec::new();
    match std::fs::read_dir(BPFFS_ROOT) {
        Ok(rd) => {
            for e in rd {
                let e = e?;
                if e.path().join("link").exists() {
                    v.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    v.sort();
    Ok(v)
}

/// Whether `/sys/fs/bpf` is a mounted bpffs.
pub fn bpffs_mounted() -> bool {
    let path = c"/sys/fs/bpf";
    // SAFETY: statfs on a valid C string with a zeroed out-struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0) && st.f_type as i64 == BPF_FS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths() {
        let p = PinLayout::for_iface("veth0");
        assert_eq!(p.link(), Path::new("/sys/fs/bpf/netmit/veth0/link"));
        assert_eq!(
            p.map("NETMIT_RULES"),
            Path::new("/sys/fs/bpf/netmit/veth0/NETMIT_RULES")
        );
    }
}
