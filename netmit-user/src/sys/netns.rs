//! Network namespaces: which one the calling thread is in, opening one by path, and running
//! code or a child process inside one.
//!
//! An interface name and an ifindex mean something only inside one network namespace, and
//! netmit's global state (bpffs pins, the restore journal) outlives the processes that
//! made it, so that state is keyed by the namespace as well. Two identities are kept:
//!
//! - the **cookie** (`SO_NETNS_COOKIE`, Linux 5.14): a 64-bit number the kernel gives each
//!   namespace at creation and never reuses until reboot: the key for state, because a
//!   stale key can never match a newer namespace;
//! - the **inode** of `/proc/thread-self/ns/net` (what `ip netns identify` and
//!   `ls -l /proc/PID/ns/net` show as `net:[INODE]`): for people, and the fallback key on
//!   kernels without the cookie. Inode numbers are reused after a namespace dies.
//!
//! Namespaces are per *thread*: [`run_in`] enters one on a scoped helper thread and
//! [`enter_in_child`] in a child's `pre_exec`, so the calling thread never moves.
//! (`ip netns exec` would also remount /sys, which hides bpffs.)

use std::{
    fmt, fs, io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::{fs::MetadataExt, process::CommandExt},
    },
    path::Path,
    process::Command,
    sync::Arc,
};

use serde::{Deserialize, Serialize};

/// `SO_NETNS_COOKIE` (include/uapi/asm-generic/socket.h), Linux 5.14.
const SO_NETNS_COOKIE: libc::c_int = 71;
/// Where `ip netns add` keeps its named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Errors about network namespaces.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// Reading the calling thread's namespace failed.
    #[error("reading the network namespace of this thread (/proc/thread-self/ns/net)")]
    Current(#[source] io::Error),
    /// A namespace file could not be opened.
    #[error("opening the network namespace {path}")]
    Open {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `setns` failed.
    #[error("entering the network namespace {ns} (setns): netmit needs CAP_SYS_ADMIN for that")]
    Enter {
        /// The namespace.
        ns: NetnsId,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `unshare(CLONE_NEWNET)` failed.
    #[error("creating a private network namespace (unshare): netmit needs CAP_SYS_ADMIN for that")]
    Unshare(#[source] io::Error),
    /// The helper thread could not be started or panicked.
    #[error("a helper thread in the network namespace {ns} failed: {reason}")]
    Thread {
        /// The namespace.
        ns: NetnsId,
        /// What happened.
        reason: String,
    },
}

/// The identity of a network namespace (see the module documentation).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetnsId {
    /// `SO_NETNS_COOKIE`; 0 where the kernel lacks it (before 5.14).
    pub cookie: u64,
    /// Inode of the namespace file.
    pub inode: u64,
}

impl NetnsId {
    /// The calling thread's network namespace.
    ///
    /// # Errors
    ///
    /// [`NetnsError::Current`] when /proc is not mounted or the socket cannot be made.
    pub fn current() -> Result<NetnsId, NetnsError> {
        let inode = fs::metadata("/proc/thread-self/ns/net")
            .map_err(NetnsError::Current)?
            .ino();
        Ok(NetnsId {
            cookie: current_cookie().map_err(NetnsError::Current)?,
            inode,
        })
    }

    /// The initial network namespace (of pid 1), if /proc shows it.
    pub fn initial_inode() -> Option<u64> {
        fs::metadata("/proc/1/ns/net").ok().map(|m| m.ino())
    }

    /// Whether this is the initial network namespace, where the system-wide networking
    /// sysctls (`net.core.busy_poll`, ...) live.
    pub fn is_initial(&self) -> bool {
        Self::initial_inode() == Some(self.inode)
    }

    /// Whether `other` is the same namespace. Both cookies are compared where both are
    /// known (they are never reused), else the inodes.
    pub fn same(&self, other: &NetnsId) -> bool {
        if self.cookie != 0 && other.cookie != 0 {
            self.cookie == other.cookie
        } else {
            self.inode == other.inode
        }
    }

    /// A file-name-safe key for state kept per namespace: `netns-<cookie>`, or
    /// `netns-i<inode>` without a cookie.
    pub fn key(&self) -> String {
        if self.cookie != 0 {
            format!("netns-{}", self.cookie)
        } else {
            format!("netns-i{}", self.inode)
        }
    }

    /// The name `ip netns` knows this namespace by, if any (`/run/netns/NAME`).
    pub fn ip_netns_name(&self) -> Option<String> {
        let entries = fs::read_dir(NETNS_RUN_DIR).ok()?;
        entries.filter_map(Result::ok).find_map(|e| {
            let meta = fs::metadata(e.path()).ok()?;
            (meta.ino() == self.inode && meta.dev() != 0)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
    }

    /// How to name the namespace to a person: `the initial network namespace`,
    /// `network namespace blue (net:[4026532281])` or `network namespace net:[4026532281]`.
    pub fn describe(&self) -> String {
        if self.is_initial() {
            return "the initial network namespace".into();
        }
        match self.ip_netns_name() {
            Some(name) => format!("network namespace {name} (net:[{}])", self.inode),
            None => format!("network namespace net:[{}]", self.inode),
        }
    }
}

impl fmt::Display for NetnsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.inode)
    }
}

/// The calling thread's namespace cookie, 0 where the kernel does not report one.
fn current_cookie() -> io::Result<u64> {
    // SAFETY: socket(2) with constant arguments; the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    match rc {
        0 => Ok(cookie),
        // ENOPROTOOPT: a kernel before 5.14.
        _ => Ok(0),
    }
}

/// An open network namespace: a file descriptor that keeps it alive, and its identity.
#[derive(Clone, Debug)]
pub struct Netns {
    fd: Arc<OwnedFd>,
    id: NetnsId,
}

impl Netns {
    /// Opens the namespace file at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`).
    ///
    /// # Errors
    ///
    /// [`NetnsError::Open`] when it cannot be opened; [`NetnsError::Enter`] when its
    /// cookie cannot be read (that takes entering it briefly on a helper thread).
    pub fn open(path: &Path) -> Result<Netns, NetnsError> {
        let file = fs::File::open(path).map_err(|source| NetnsError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let inode = file
            .metadata()
            .map_err(|source| NetnsError::Open {
                path: path.display().to_string(),
                source,
            })?
            .ino();
        let mut ns = Netns {
            fd: Arc::new(file.into()),
            id: NetnsId { cookie: 0, inode },
        };
        ns.id = run_in(&ns, NetnsId::current)??;
        Ok(ns)
    }

    /// Opens a namespace `ip netns add` created (`/run/netns/NAME`).
    ///
    /// # Errors
    ///
    /// As [`Netns::open`].
    pub fn named(name: &str) -> Result<Netns, NetnsError> {
        Netns::open(&Path::new(NETNS_RUN_DIR).join(name))
    }

    /// The calling thread's own namespace.
    ///
    /// # Errors
    ///
    /// As [`Netns::open`].
    pub fn current() -> Result<Netns, NetnsError> {
        Netns::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// Its identity.
    pub fn id(&self) -> NetnsId {
        self.id
    }
}

/// Moves the calling thread into `ns`, or leaves it where it is when it is there already:
/// setns(2) needs CAP_SYS_ADMIN even into the thread's own namespace, which a container
/// with the host's network and only CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (the
/// DaemonSet) does not have.
fn setns(ns: &Netns) -> Result<(), NetnsError> {
    if NetnsId::current().is_ok_and(|here| here.same(&ns.id)) {
        return Ok(());
    }
    enter_fd(ns.fd.as_fd()).map_err(|source| NetnsError::Enter { ns: ns.id, source })
}

/// Moves the calling thread into the network namespace `fd` refers to (an open
/// `/run/netns/NAME` or `/proc/PID/ns/net`). Only this thread moves; callers run it on a
/// thread of their own.
///
/// # Errors
///
/// setns(2)'s error: `EINVAL` when `fd` is not a network namespace, `EPERM` without
/// CAP_SYS_ADMIN.
pub fn enter_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns only reads its arguments and changes the calling thread alone.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a scoped helper thread inside `ns` and returns its result; the calling
/// thread stays where it is.
///
/// # Errors
///
/// [`NetnsError::Enter`] when the thread cannot enter `ns`, [`NetnsError::Thread`] when
/// `f` panicked.
pub fn run_in<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    std::thread::scope(|s| {
        s.spawn(|| setns(ns).map(|()| f()))
            .join()
            .map_err(|panic| NetnsError::Thread {
                ns: ns.id,
                reason: panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "it panicked".into()),
            })?
    })
}

/// Runs `f` on a scoped helper thread in a new, empty network namespace of its own (it
/// goes away with the thread); the calling thread stays where it is.
///
/// # Errors
///
/// [`NetnsError::Unshare`] when `unshare(CLONE_NEWNET)` fails (it needs CAP_SYS_ADMIN),
/// [`NetnsError::Thread`] when `f` panicked.
pub fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let here = NetnsId::current()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare only changes the calling (helper) thread's namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(NetnsError::Unshare(io::Error::last_os_error()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| NetnsError::Thread {
            ns: here,
            reason: "it panicked".into(),
        })?
    })
}

/// Makes `cmd`'s child process enter `ns` before it executes (the parent stays); nothing
/// to do when the calling thread, whose namespace the child inherits, is in `ns` already.
pub fn enter_in_child(cmd: &mut Command, ns: &Netns) {
    if NetnsId::current().is_ok_and(|here| here.same(&ns.id)) {
        return;
    }
    enter_fd_in_child(cmd, Arc::clone(&ns.fd));
}

/// Makes `cmd`'s child process enter the network namespace `fd` refers to before it
/// executes; the `Arc` keeps the descriptor open for as long as the `Command` exists.
pub fn enter_fd_in_child(cmd: &mut Command, fd: Arc<OwnedFd>) {
    // SAFETY: the hook only reads an integer and makes the setns system call, both
    // async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_sameness() {
        let a = NetnsId {
            cookie: 7,
            inode: 4026531840,
        };
        let b = NetnsId {
            cookie: 8,
            inode: 4026531840,
        };
        assert!(
            !a.same(&b),
            "a reused inode with another cookie is another namespace"
        );
        let old = NetnsId {
            cookie: 0,
            inode: 4026531840,
        };
        assert!(
            a.same(&old) && old.same(&b),
            "without a cookie the inode decides"
        );
        assert_eq!(a.key(), "netns-7");
        assert_eq!(old.key(), "netns-i4026531840");
        assert_eq!(a.to_string(), "net:[4026531840]");
    }

    #[test]
    fn current_namespace_has_a_cookie_here() {
        let id = NetnsId::current().unwrap();
        assert_ne!(id.inode, 0);
        // Linux 5.14+: every supported kernel of this project has the cookie.
        assert_ne!(id.cookie, 0);
        assert!(id.same(&NetnsId::current().unwrap()));
    }
}
