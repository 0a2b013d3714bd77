//! System-wide settings under `/proc/sys/net/core`: the busy-poll defaults and the
//! NET_RX softirq budget.
//!
//! These live in the initial network namespace only (the kernel registers them for
//! `init_net`) and apply to every namespace's sockets, so reading them from another
//! namespace fails with [`SysctlError::OtherNamespace`], which says where to set them.

use std::{fs, io, path::PathBuf};

use serde::{Deserialize, Serialize};

/// A system-wide networking sysctl.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Sysctl {
    /// `net.core.busy_poll`.
    BusyPoll,
    /// `net.core.busy_read`.
    BusyRead,
    /// `net.core.netdev_budget`.
    NetdevBudget,
    /// `net.core.netdev_budget_usecs`.
    NetdevBudgetUsecs,
}

/// Errors of sysctl access.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SysctlError {
    /// Reading or writing the file failed.
    #[error("{what} {path}")]
    Io {
        /// "reading" or "writing".
        what: &'static str,
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file did not hold a number.
    #[error("{path} holds `{content}`, not a number")]
    NotANumber {
        /// The file.
        path: String,
        /// What it held.
        content: String,
    },
    /// Asked from a network namespace other than the initial one, where the kernel does
    /// not register these sysctls.
    #[error(
        "{name} is system-wide: the kernel has it only in the initial network namespace, and \
         this runs in {here}; set it from there, e.g. `nsenter --net=/proc/1/ns/net netmit tune \
         set --sysctl {name}=N` (it applies to every namespace's sockets)"
    )]
    OtherNamespace {
        /// The sysctl.
        name: &'static str,
        /// The namespace asked from, described.
        here: String,
    },
    /// A value outside the range the kernel accepts.
    #[error("{value} is out of range for {name}: give 0 to {max}")]
    OutOfRange {
        /// The sysctl.
        name: &'static str,
        /// The value.
        value: u64,
        /// The maximum.
        max: u64,
    },
}

impl Sysctl {
    /// Every sysctl netmit manages.
    pub const ALL: [Sysctl; 4] = [
        Sysctl::BusyPoll,
        Sysctl::BusyRead,
        Sysctl::NetdevBudget,
        Sysctl::NetdevBudgetUsecs,
    ];

    /// The sysctl's dotted name.
    pub fn name(self) -> &'static str {
        match self {
            Sysctl::BusyPoll => "net.core.busy_poll",
            Sysctl::BusyRead => "net.core.busy_read",
            Sysctl::NetdevBudget => "net.core.netdev_budget",
            Sysctl::NetdevBudgetUsecs => "net.core.netdev_budget_usecs",
        }
    }

    /// Parses a dotted name.
    pub fn from_name(name: &str) -> Option<Sysctl> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Its file under /proc/sys.
    pub fn path(self) -> PathBuf {
        PathBuf::from("/proc/sys").join(self.name().replace('.', "/"))
    }

    /// The largest accepted value (they are `int` sysctls with a lower bound of 0).
    pub fn max(self) -> u64 {
        i32::MAX as u64
    }

    /// What it does, its unit and the kernel that has it.
    pub fn description(self) -> &'static str {
        match self {
            Sysctl::BusyPoll => {
                "microseconds poll()/select()/epoll busy-poll the device queue of the \
                 sockets they wait on before sleeping; 0 disables (Linux 3.11)"
            }
            Sysctl::BusyRead => {
                "microseconds a blocking socket read busy-polls the device queue; the \
                 default of SO_BUSY_POLL; 0 disables (Linux 3.11)"
            }
            Sysctl::NetdevBudget => {
                "packets one NET_RX softirq run may process across all NAPI instances \
                 before it yields (Linux 2.6)"
            }
            Sysctl::NetdevBudgetUsecs => {
                "microseconds one NET_RX softirq run may take before it yields (Linux 4.12)"
            }
        }
    }

    /// The error for a missing file: these sysctls exist only in the initial namespace.
    fn io_error(
        self,
        what: &'static str,
        path: &std::path::Path,
        source: io::Error,
    ) -> SysctlError {
        if source.kind() == io::ErrorKind::NotFound
            && let Ok(here) = super::NetnsId::current()
            && !here.is_initial()
        {
            return SysctlError::OtherNamespace {
                name: self.name(),
                here: here.describe(),
            };
        }
        SysctlError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }

    /// Reads the current value.
    ///
    /// # Errors
    ///
    /// [`SysctlError::OtherNamespace`] outside the initial network namespace, or the file's
    /// error.
    pub fn read(self) -> Result<u64, SysctlError> {
        let path = self.path();
        let text = fs::read_to_string(&path).map_err(|e| self.io_error("reading", &path, e))?;
        text.trim().parse().map_err(|_| SysctlError::NotANumber {
            path: path.display().to_string(),
            content: text.trim().to_string(),
        })
    }

    /// Writes a value (checked against the range first: nothing is written when it is
    /// out of range).
    pub fn write(self, value: u64) -> Result<(), SysctlError> {
        if value > self.max() {
            return Err(SysctlError::OutOfRange {
                name: self.name(),
                value,
                max: self.max(),
            });
        }
        let path = self.path();
        fs::write(&path, value.to_string()).map_err(|e| self.io_error("writing", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        for s in Sysctl::ALL {
            assert_eq!(Sysctl::from_name(s.name()), Some(s));
        }
        assert_eq!(
            Sysctl::BusyPoll.path(),
            PathBuf::from("/proc/sys/net/core/busy_poll")
        );
        assert!(matches!(
            Sysctl::BusyRead.write(1 << 40),
            Err(SysctlError::OutOfRange { .. })
        ));
    }
}
