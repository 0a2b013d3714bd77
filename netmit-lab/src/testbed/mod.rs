//! RAII network-namespace testbeds: two fresh namespaces joined by a veth pair, for
//! netmit's privileged integration tests and for benchmarks (`netmit bench modes`) that
//! need a throwaway link between a client and a server.
//!
//! A [`Testbed`] is two fresh network namespaces, side [`Side::A`] and side [`Side::B`],
//! joined by one veth pair, with IPv4 addresses from the benchmarking range 198.18.0.0/15
//! and IPv6 addresses from the documentation range 2001:db8::/32. Everything it creates
//! lives *inside* those namespaces: the veth pair is created directly in them
//! (`ip link add … netns …`), so it never appears in the namespace of the caller, and no
//! interface the testbed did not create (eth0, …) is ever touched or sent traffic to.
//!
//! It needs root and iproute2 (`ip`); [`skip_reason`] says whether both are there. Tests
//! should start with it and return early when it is `Some`.
//!
//! ```no_run
//! use netmit_lab::testbed::{Side, Testbed};
//!
//! # fn main() -> Result<(), netmit_lab::testbed::TestbedError> {
//! let tb = Testbed::new()?;
//! assert!(tb.ping(Side::B, tb.ip_a(), 3));
//! let sock = tb.udp_socket(Side::A, (tb.ip_a(), 9000).into());
//! let drops = tb.snmp_counter(Side::A, "Udp", "RcvbufErrors")?;
//! # let _ = (sock, drops);
//! # Ok(())
//! # }
//! // Dropping `tb` deletes both namespaces and with them the veth pair.
//! ```
//!
//! # Naming
//!
//! Tests run in parallel, both as threads of one test binary and as several processes, so
//! every name is derived from a prefix that is unique to the process and a process-wide
//! atomic counter `n`: `<prefix><n><side>`. [`Testbed::new`] uses [`process_prefix`],
//! `nm<pid>x`, giving e.g. `nm4711x3a` and `nm4711x3b`; [`Testbed::with_prefix`] takes
//! another one, normally from [`tagged_prefix`] (`nm<tag><pid>x`, e.g. `nmb4711x` for the
//! benchmark), so that its testbeds are recognisable in `ip netns list`. The same string
//! names the namespace (`/run/netns/nm4711x3a`) and the veth end inside it, so the prefix
//! finds everything made with it ([`leftovers`]).
//!
//! Every prefix starts with `nm` ([`NAME_STEM`], so `leftovers("nm")` finds what any
//! testbed left on a host), `nm` followed by a digit is reserved for [`process_prefix`] (so
//! a tagged prefix can never match another process's default names), and a prefix never
//! ends in a digit: the trailing `x` keeps pid 12 from matching pid 123's names.
//!
//! Interface names must fit `IFNAMSIZ - 1` = 15 bytes ([`IFNAME_MAX`]): with a 7-digit pid
//! (Linux's `pid_max` is at most 4194304) four characters remain for `n` after
//! `nm<pid>x`, three after `nmb<pid>x`. While `n` fits in decimal it is written in decimal;
//! after that it is written in the letters `a`–`z` (base 26), which can never collide with
//! an all-digit counter, so names stay unique and readable without hashing. A counter
//! whose namespace already exists (a stale leftover of a crashed process that had the same
//! pid) is skipped.
//!
//! Addresses: testbed `n` uses `198.(18 + (n / 256) % 2).(n % 256).{1,2}/24` and
//! `2001:db8:0:<n % 65536>::{1,2}/64` (added with `nodad`, so they are usable at once).
//! The namespaces are isolated from each other, so addresses need not be unique; they are
//! merely distinct per process to make captures easier to read.
//!
//! [`Testbed::new`] returns only once both veth ends have operstate UP and both IPv6
//! addresses have their local route: both are finished asynchronously by the kernel
//! (linkwatch, addrconf workqueue), and under parallel load the first pings of a fresh
//! testbed were otherwise lost.
//!
//! # Running code inside a namespace
//!
//! `ip netns exec` is deliberately *not* used: it unshares the mount namespace and remounts
//! `/sys` so that `/sys/class/net` matches the network namespace, and that fresh sysfs hides
//! the bpffs mounted at `/sys/fs/bpf` (pinned maps and programs would vanish). Instead:
//!
//! * [`Testbed::in_ns`] runs a closure on a scoped thread that calls
//!   `setns(/run/netns/<name>, CLONE_NEWNET)` on itself only; the calling thread and the
//!   rest of the process stay where they were. Sockets, netlink, `if_nametoindex` and
//!   XDP attachment done by the closure all happen in the namespace. A `Testbed` is
//!   `Send + Sync`, so a client and a server thread may call it on the same testbed at once.
//! * [`Testbed::cmd`] returns a [`Command`](std::process::Command) whose `pre_exec` hook
//!   calls `setns` on an fd of the namespace that was opened when the testbed was created
//!   (no `nsenter` needed, and nothing but the network namespace changes).
//!
//! Caveats of not remounting: `/sys/class/net` still shows the *original* namespace's
//! interfaces, and `/proc/net` / `/proc/self/net` follow the namespace of the process's
//! *main thread* (`/proc/self` is the thread-group leader), not of a `setns`'d thread.
//! Inside [`Testbed::in_ns`] read `/proc/thread-self/net/…` instead, as
//! [`Testbed::snmp_counter`] does. `/proc/sys/net/…` follows the calling thread and works
//! as expected ([`Testbed::sysctl`]).
//!
//! # Cleanup
//!
//! Dropping a [`Testbed`] (also while unwinding from a panicking test) kills any process it
//! spawned that is still alive, removes netmit's bpffs pins of its two interfaces (bpffs
//! is not per namespace; only netmit's own pins of these devices go), closes its
//! namespace fds and deletes both namespaces, which destroys the veth pair. Errors during
//! teardown are printed to stderr (test binaries install no logger, and a leftover must
//! not go unnoticed) and otherwise ignored, so `Drop` never panics. If [`Testbed::new`]
//! fails half-way, whatever it had created is removed before the error is returned.
//! Processes started with [`Testbed::spawn`] are owned by an [`NsChild`] guard that borrows
//! the testbed, so the borrow checker makes them die before the namespaces are deleted.
//!
//! # Errors
//!
//! Every fallible function returns a [`TestbedError`] naming the namespace, command, file
//! or counter involved; a failed command quotes its stdout and stderr.

mod child;
mod error;
mod link;
mod naming;
mod netns;
mod proc;
mod sweep;
mod traffic;

#[cfg(test)]
mod tests;

use std::{
    fmt, fs,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

pub use child::NsChild;
pub use error::{Result, TestbedError};
pub use link::Offloads;
pub use naming::{IFNAME_MAX, NAME_STEM, NETNS_RUN_DIR, leftovers, process_prefix, tagged_prefix};
pub use netns::skip_reason;
pub use sweep::{owner_pid, sweep_orphans};

use netmit_user::{ebpf::PinRoot, error::chain, sys::Netdev};
use netns::{NetnsGuard, check_output, ns_command};

/// How many counter values [`Testbed::with_prefix`] tries before giving up on stale names.
const NAME_ATTEMPTS: u32 = 1000;

/// One of the two ends of a [`Testbed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The first namespace; its address ends in `.1` / `::1`.
    A,
    /// The second namespace; its address ends in `.2` / `::2`.
    B,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    fn letter(self) -> char {
        match self {
            Side::A => 'a',
            Side::B => 'b',
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// Locks `m`, also when a panic poisoned it: a panic while the lock was held must not stop
/// cleanup.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One side of a testbed.
#[derive(Debug)]
struct End {
    name: String,
    fd: Arc<OwnedFd>,
    ip: Ipv4Addr,
    ip6: Ipv6Addr,
    mac: [u8; 6],
    ifindex: u32,
}

/// Two network namespaces joined by a veth pair, deleted again on drop.
/// See the [module documentation](self) for naming, addressing and caveats.
#[derive(Debug)]
pub struct Testbed {
    id: u64,
    prefix: String,
    // Field order matters for drop: the namespace fds are closed before `_netns` deletes
    // the namespaces.
    ends: [End; 2],
    /// Pids of live [`NsChild`]ren, killed by `Drop` if a guard was leaked.
    children: Mutex<Vec<u32>>,
    _netns: NetnsGuard,
}

// The bench drives the client and the server from threads sharing one `&Testbed`, and may
// hand an `NsChild` to another thread.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Testbed>();
    send_sync::<NsChild<'static>>();
};

impl Testbed {
    /// Creates two namespaces named after [`process_prefix`], a veth pair between them,
    /// brings up `lo` and both veth ends and assigns the IPv4 and IPv6 addresses. On error
    /// everything created so far is removed again.
    ///
    /// # Errors
    /// [`TestbedError::NoFreeName`] if no unused name is left, or the error of the step
    /// that failed (a [`TestbedError::CommandFailed`] quoting `ip`'s output,
    /// [`TestbedError::NotReady`], …).
    pub fn new() -> Result<Testbed> {
        Self::with_prefix(&process_prefix())
    }

    /// Like [`Testbed::new`], with names `<prefix><n><side>` instead: `prefix` is usually
    /// [`tagged_prefix`]`("b")` (`nmb<pid>x`), so that these testbeds are told apart from
    /// those of [`Testbed::new`] in `ip netns list` and [`leftovers`]. It must follow the
    /// naming rules of the [module documentation](self#naming): start with `nm`, `nm` and a
    /// digit only for [`process_prefix`], ASCII letters, digits, `-` and `_`, no trailing
    /// digit, at most [`IFNAME_MAX`]` - 2` bytes. Several processes may use one prefix only
    /// if it contains the pid (as [`tagged_prefix`] does): names are unique per process.
    ///
    /// # Errors
    /// [`TestbedError::InvalidPrefix`] if `prefix` breaks a rule; otherwise as
    /// [`Testbed::new`].
    pub fn with_prefix(prefix: &str) -> Result<Testbed> {
        naming::check_prefix(prefix)?;
        sweep::sweep_once();
        let mut last = 0;
        for _ in 0..NAME_ATTEMPTS {
            let n = naming::next_counter();
            last = n;
            let base = naming::base_name(prefix, n)?;
            let stale = [Side::A, Side::B]
                .iter()
                .map(|s| Path::new(NETNS_RUN_DIR).join(format!("{base}{}", s.letter())))
                .find(|p| p.exists());
            if let Some(p) = stale {
                eprintln!(
                    "testbed: {} exists (stale, same pid?); skipping counter {n}",
                    p.display()
                );
                continue;
            }
            return Self::create(prefix, n, &base);
        }
        Err(TestbedError::NoFreeName {
            prefix: prefix.to_owned(),
            counter: last,
        })
    }

    fn create(prefix: &str, n: u64, base: &str) -> Result<Testbed> {
        let names = [format!("{base}a"), format!("{base}b")];
        let mut netns = NetnsGuard::default();
        let mut fds = Vec::with_capacity(2);
        for name in &names {
            netns.add(name)?;
            let path = Path::new(NETNS_RUN_DIR).join(name);
            let file = fs::File::open(&path).map_err(|source| TestbedError::OpenNamespace {
                ns: name.clone(),
                path,
                source,
            })?;
            fds.push(Arc::new(OwnedFd::from(file)));
        }
        // Created directly in the two namespaces: the pair never exists in ours.
        check_output(
            std::process::Command::new("ip").args([
                "link", "add", "name", &names[0], "netns", &names[0], "type", "veth", "peer",
                "name", &names[1], "netns", &names[1],
            ]),
            None,
        )?;

        let hi = 18 + ((n >> 8) & 1) as u8;
        let lo = (n & 0xff) as u8;
        let mut ends = Vec::with_capacity(2);
        for (i, (name, fd)) in names.into_iter().zip(fds).enumerate() {
            let host = i as u8 + 1;
            let ip = Ipv4Addr::new(198, hi, lo, host);
            let ip6 = Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                (n & 0xffff) as u16,
                0,
                0,
                0,
                u16::from(host),
            );
            let ipcmd = |args: &[&str]| check_output(&mut ns_command(&fd, "ip", args), Some(&name));
            ipcmd(&["link", "set", "dev", "lo", "up"])?;
            ipcmd(&["addr", "add", &format!("{ip}/24"), "dev", &name])?;
            ipcmd(&[
                "-6",
                "addr",
                "add",
                &format!("{ip6}/64"),
                "dev",
                &name,
                "nodad",
            ])?;
            ipcmd(&["link", "set", "dev", &name, "up"])?;
            ends.push(End {
                name,
                fd,
                ip,
                ip6,
                mac: [0; 6],
                ifindex: 0,
            });
        }
        for end in &mut ends {
            link::wait_until_ready(end)?;
        }
        let Ok([a, b]) = <[End; 2]>::try_from(ends) else {
            unreachable!("two names make two ends");
        };
        Ok(Testbed {
            id: n,
            prefix: prefix.to_owned(),
            ends: [a, b],
            children: Mutex::new(Vec::new()),
            _netns: netns,
        })
    }

    fn end(&self, side: Side) -> &End {
        &self.ends[side.index()]
    }

    /// The counter value `n` this testbed's names and addresses are derived from.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The prefix of this testbed's names ([`process_prefix`] for [`Testbed::new`]); pass
    /// it to [`leftovers`] after dropping the testbed.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The name of `side`'s namespace (as in `ip netns list`).
    pub fn ns(&self, side: Side) -> &str {
        &self.end(side).name
    }
    /// The name of side A's namespace.
    pub fn ns_a(&self) -> &str {
        self.ns(Side::A)
    }
    /// The name of side B's namespace.
    pub fn ns_b(&self) -> &str {
        self.ns(Side::B)
    }
    /// `/run/netns/<name>` of `side`'s namespace.
    pub fn netns_path(&self, side: Side) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(self.ns(side))
    }

    /// The veth end inside `side`'s namespace (same string as the namespace name).
    pub fn ifname(&self, side: Side) -> &str {
        &self.end(side).name
    }
    /// The veth end inside namespace A.
    pub fn if_a(&self) -> &str {
        self.ifname(Side::A)
    }
    /// The veth end inside namespace B.
    pub fn if_b(&self) -> &str {
        self.ifname(Side::B)
    }

    /// `side`'s IPv4 address (prefix length 24).
    pub fn ip(&self, side: Side) -> Ipv4Addr {
        self.end(side).ip
    }
    /// Side A's IPv4 address, `198.18.x.1`.
    pub fn ip_a(&self) -> Ipv4Addr {
        self.ip(Side::A)
    }
    /// Side B's IPv4 address, `198.18.x.2`.
    pub fn ip_b(&self) -> Ipv4Addr {
        self.ip(Side::B)
    }

    /// `side`'s IPv6 address (prefix length 64, no DAD).
    pub fn ip6(&self, side: Side) -> Ipv6Addr {
        self.end(side).ip6
    }
    /// Side A's IPv6 address, `2001:db8:0:x::1`.
    pub fn ip6_a(&self) -> Ipv6Addr {
        self.ip6(Side::A)
    }
    /// Side B's IPv6 address, `2001:db8:0:x::2`.
    pub fn ip6_b(&self) -> Ipv6Addr {
        self.ip6(Side::B)
    }

    /// The MAC address of `side`'s veth end.
    pub fn mac(&self, side: Side) -> [u8; 6] {
        self.end(side).mac
    }
    /// The MAC address of veth end A.
    pub fn mac_a(&self) -> [u8; 6] {
        self.mac(Side::A)
    }
    /// The MAC address of veth end B.
    pub fn mac_b(&self) -> [u8; 6] {
        self.mac(Side::B)
    }

    /// The ifindex of `side`'s veth end, valid inside `side`'s namespace only.
    pub fn ifindex(&self, side: Side) -> u32 {
        self.end(side).ifindex
    }
    /// The ifindex of veth end A (inside namespace A).
    pub fn ifindex_a(&self) -> u32 {
        self.ifindex(Side::A)
    }
    /// The ifindex of veth end B (inside namespace B).
    pub fn ifindex_b(&self) -> u32 {
        self.ifindex(Side::B)
    }

    /// The device handle of `side`'s veth end (resolved inside its namespace).
    ///
    /// # Panics
    ///
    /// If the namespace cannot be entered or the device is gone: testbed devices exist for
    /// the testbed's lifetime unless a test removes them.
    pub fn netdev(&self, side: Side) -> Netdev {
        let ifindex = self.ifindex(side);
        self.in_ns(side, move || Netdev::by_index(ifindex))
            .unwrap_or_else(|e| panic!("testbed {side}: {e}"))
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.kill_leaked_children();
        // netmit pins are global (bpffs is not per namespace); a test that failed before
        // `netmit detach` would leave them behind. Deleting the namespaces removes the
        // veth and with it the XDP link; removing the pins releases the maps. Only
        // netmit's own pins are removed, and only those of this testbed's devices.
        let root = PinRoot::default();
        for side in [Side::A, Side::B] {
            let ifindex = self.ifindex(side);
            let Ok(Ok(dev)) = self.try_in_ns(side, move || Netdev::by_index(ifindex)) else {
                continue;
            };
            let layout = root.layout(&dev);
            if layout.dir().exists() {
                if let Err(e) = root.remove(&layout) {
                    eprintln!(
                        "testbed {}: removing {}: {}",
                        self.id,
                        layout.dir().display(),
                        chain(&e)
                    );
                }
                root.tidy(&dev.netns);
            }
        }
        // Then the fields drop: namespace fds close, and NetnsGuard deletes the namespaces.
    }
}
