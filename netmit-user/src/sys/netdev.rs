//! Network devices: a validated interface name ([`IfName`]) and the device handle
//! ([`Netdev`]) that every layer above passes around.
//!
//! A name is resolved once, at the edge (a command-line argument, a configuration entry,
//! a device that appeared), into a `Netdev`: the network namespace it was resolved in, the
//! ifindex, and the name it had then. The ifindex is the identity inside the namespace
//! (names can change under a running program, `ip link set NAME name OTHER`); the name is
//! for people. State netmit keeps for a device (bpffs pins, journal entries) is keyed by
//! namespace and ifindex, never by name.

use std::{ffi::CString, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use super::netns::{NetnsError, NetnsId};

/// The longest interface name the kernel takes (`IFNAMSIZ` minus the NUL).
pub const IFNAME_MAX: usize = libc::IF_NAMESIZE - 1;

/// An interface name that follows the kernel's rules (`dev_valid_name`): 1 to 15 bytes,
/// not `.` or `..`, no `/`, `:`, white space or NUL. Such a name is safe to put into a
/// path (`/sys/class/net/NAME`): it can never leave its directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

/// Why a name is not a valid interface name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IfNameError {
    /// Empty.
    #[error("an empty interface name: name an interface, e.g. eth1 (see `ip link`)")]
    Empty,
    /// Longer than the kernel allows.
    #[error(
        "`{name}` is not an interface name: {len} bytes, the kernel allows at most {IFNAME_MAX}"
    )]
    TooLong {
        /// The name given.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// `.` or `..`.
    #[error(
        "`{0}` is not an interface name: the kernel refuses `.` and `..`; give the name \
         `ip link` shows"
    )]
    Dots(String),
    /// A character the kernel refuses.
    #[error(
        "`{name}` is not an interface name: {what} at byte {pos}; the kernel refuses `/`, \
         `:`, white space and control characters: give the name `ip link` shows"
    )]
    BadChar {
        /// The name given (control characters escaped).
        name: String,
        /// The character, described.
        what: String,
        /// Its byte offset.
        pos: usize,
    },
}

impl IfName {
    /// Checks `name` against the kernel's rules.
    ///
    /// # Errors
    ///
    /// [`IfNameError`] saying which rule the name breaks.
    pub fn new(name: &str) -> Result<IfName, IfNameError> {
        if name.is_empty() {
            return Err(IfNameError::Empty);
        }
        if let Some((pos, c)) = name
            .char_indices()
            .find(|&(_, c)| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(IfNameError::BadChar {
                name: name.escape_debug().to_string(),
                what: match c {
                    '/' => "`/`".into(),
                    ':' => "`:`".into(),
                    c if c.is_whitespace() && !c.is_control() => format!("a space ({c:?})"),
                    c => format!("the control character {}", c.escape_unicode()),
                },
                pos,
            });
        }
        if name.len() > IFNAME_MAX {
            return Err(IfNameError::TooLong {
                name: name.into(),
                len: name.len(),
            });
        }
        if name == "." || name == ".." {
            return Err(IfNameError::Dots(name.into()));
        }
        Ok(IfName(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IfName {
    type Err = IfNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IfName::new(s)
    }
}

impl TryFrom<String> for IfName {
    type Error = IfNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        IfName::new(&s)
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

impl AsRef<str> for IfName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors finding a device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetdevError {
    /// No interface of this name in the namespace.
    #[error(
        "interface `{name}` does not exist in {} (see `ip link`; for an interface of another \
         namespace run netmit inside it, e.g. `nsenter --net=/run/netns/NAME netmit ...`)",
        .netns.describe()
    )]
    NoSuchInterface {
        /// The name.
        name: IfName,
        /// The namespace looked in.
        netns: NetnsId,
    },
    /// No interface with this index in the namespace.
    #[error("no interface with index {ifindex} in {} (see `ip link`)", .netns.describe())]
    NoSuchIndex {
        /// The index.
        ifindex: u32,
        /// The namespace looked in.
        netns: NetnsId,
    },
    /// The device belongs to another namespace than the calling thread's.
    #[error(
        "{dev} belongs to {}, but this runs in {}: run netmit in the device's namespace",
        .dev.netns.describe(), .here.describe()
    )]
    OtherNamespace {
        /// The device.
        dev: Box<Netdev>,
        /// The calling thread's namespace.
        here: NetnsId,
    },
    /// The namespace could not be identified.
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// A network device, resolved in one network namespace (see the module documentation).
///
/// Two handles are equal when they name the same device: the same namespace and ifindex,
/// whatever name each was resolved under.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Netdev {
    /// The namespace it lives in.
    pub netns: NetnsId,
    /// Its index there.
    pub ifindex: u32,
    /// Its name when it was resolved.
    pub name: IfName,
}

impl PartialEq for Netdev {
    fn eq(&self, other: &Self) -> bool {
        self.ifindex == other.ifindex && self.netns.same(&other.netns)
    }
}

impl Eq for Netdev {}

impl std::hash::Hash for Netdev {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: the namespace is compared by cookie or inode.
        self.ifindex.hash(state);
    }
}

/// What became of a device since it was resolved ([`Netdev::recheck`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Still there under the same name.
    Same,
    /// Still there (same ifindex), under a new name.
    Renamed(IfName),
    /// No device with that ifindex any more.
    Gone,
}

impl Netdev {
    /// Resolves `name` in the calling thread's network namespace.
    ///
    /// # Errors
    ///
    /// [`NetdevError::NoSuchInterface`] naming the namespace.
    pub fn resolve(name: &IfName) -> Result<Netdev, NetdevError> {
        let netns = NetnsId::current()?;
        match if_nametoindex(name) {
            Some(ifindex) => Ok(Netdev {
                netns,
                ifindex,
                name: name.clone(),
            }),
            None => Err(NetdevError::NoSuchInterface {
                name: name.clone(),
                netns,
            }),
        }
    }

    /// The device with index `ifindex` in the calling thread's network namespace.
    ///
    /// # Errors
    ///
    /// [`NetdevError::NoSuchIndex`] naming the namespace.
    pub fn by_index(ifindex: u32) -> Result<Netdev, NetdevError> {
        let netns = NetnsId::current()?;
        match if_indextoname(ifindex) {
            Some(name) => Ok(Netdev {
                netns,
                ifindex,
                name,
            }),
            None => Err(NetdevError::NoSuchIndex { ifindex, netns }),
        }
    }

    /// Fails unless the calling thread is in the device's namespace: every request about
    /// a device by ifindex (netlink, sysfs) means the caller's namespace, and the same
    /// index names another device elsewhere.
    ///
    /// # Errors
    ///
    /// [`NetdevError::OtherNamespace`].
    pub fn check_here(&self) -> Result<(), NetdevError> {
        let here = NetnsId::current()?;
        if !self.netns.same(&here) {
            return Err(NetdevError::OtherNamespace {
                dev: Box::new(self.clone()),
                here,
            });
        }
        Ok(())
    }

    /// What became of the device: the same, renamed or gone (asked in its namespace).
    ///
    /// # Errors
    ///
    /// [`NetdevError::OtherNamespace`] when called from another namespace.
    pub fn recheck(&self) -> Result<Presence, NetdevError> {
        self.check_here()?;
        Ok(match if_indextoname(self.ifindex) {
            None => Presence::Gone,
            Some(name) if name == self.name => Presence::Same,
            Some(name) => Presence::Renamed(name),
        })
    }
}

impl fmt::Display for Netdev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (ifindex {})", self.name, self.ifindex)
    }
}

fn if_nametoindex(name: &IfName) -> Option<u32> {
    // A validated name has no NUL.
    let c = CString::new(name.as_str()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => None,
        i => Some(i),
    }
}

fn if_indextoname(ifindex: u32) -> Option<IfName> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    IfName::new(&name.to_string_lossy()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_name_rules() {
        for ok in ["eth0", "a", "veth-x_1.2", "123456789012345", "ŭ"] {
            assert!(IfName::new(ok).is_ok(), "{ok}");
        }
        let bad = |s: &str| IfName::new(s).unwrap_err().to_string();
        assert!(bad("").contains("empty"));
        assert!(bad(".").contains("`.` and `..`"));
        assert!(bad("..").contains("`.` and `..`"));
        assert!(bad("1234567890123456").contains("16 bytes"));
        assert!(bad("x/..").contains("`/` at byte 1"));
        assert!(bad("a/b").contains("`/`"));
        assert!(bad("eth0:1").contains("`:`"));
        assert!(bad("eth 0").contains("a space"));
        assert!(bad("eth\t0").contains("control character"));
        assert!(bad("eth\n").contains("control character"));
        assert!(bad("a\0b").contains("control character"));
        assert!(bad("\u{85}x").contains("at byte 0"));
    }

    #[test]
    fn names_round_trip_through_serde_and_refuse_bad_ones() {
        let n: IfName = serde_json::from_str("\"eth1\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"eth1\"");
        assert!(serde_json::from_str::<IfName>("\"../x\"").is_err());
    }

    #[test]
    fn loopback_resolves_and_unknown_names_say_where() {
        let lo = Netdev::resolve(&IfName::new("lo").unwrap()).unwrap();
        assert_eq!(lo.ifindex, 1);
        assert_eq!(lo.recheck().unwrap(), Presence::Same);
        assert_eq!(Netdev::by_index(1).unwrap(), lo);
        let e = Netdev::resolve(&IfName::new("nmnosuch0").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`nmnosuch0` does not exist in"), "{e}");
        assert!(e.contains("namespace"), "{e}");
    }
}
