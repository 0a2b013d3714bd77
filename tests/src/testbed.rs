//! RAII network-namespace testbeds for netmit's privileged integration tests.
//!
//! A [`Testbed`] is two fresh network namespaces, side [`Side::A`] and side [`Side::B`],
//! joined by one veth pair, with IPv4 addresses from the benchmarking range 198.18.0.0/15
//! and IPv6 addresses from the documentation range 2001:db8::/32. Everything it creates
//! lives *inside* those namespaces: the veth pair is created directly in them
//! (`ip link add … netns …`), so it never appears in the namespace the tests run in, and no
//! interface the testbed did not create (eth0, …) is ever touched or sent traffic to.
//!
//! # Naming
//!
//! Tests run in parallel, both as threads of one test binary and as several processes, so
//! every name is derived from the process id and a process-wide atomic counter `n`:
//! `nm<pid>x<n><side>`, e.g. `nm4711x3a` and `nm4711x3b`. The same string names the
//! namespace (`/run/netns/nm4711x3a`) and the veth end inside it, so one prefix,
//! [`process_prefix`] (`nm<pid>x`), finds everything this process made ([`leftovers`]).
//! Interface names must fit `IFNAMSIZ - 1` = 15 bytes: with a 7-digit pid (Linux's
//! `pid_max` is at most 4194304) four characters remain for `n`. While `n` fits in decimal
//! it is written in decimal; after that it is written in the letters `a`–`z` (base 26),
//! which can never collide with an all-digit counter, so names stay unique and readable
//! without hashing. The trailing `x` keeps pid 12 from matching pid 123's names.
//! A counter whose namespace already exists (a stale leftover of a crashed process that had
//! the same pid) is skipped.
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
//!   XDP attachment done by the closure all happen in the namespace.
//! * [`Testbed::cmd`] returns a [`Command`] whose `pre_exec` hook calls `setns` on an fd of
//!   the namespace that was opened when the testbed was created (no `nsenter` needed, and
//!   nothing but the network namespace changes).
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
//! spawned that is still alive, closes its namespace fds and deletes both namespaces, which
//! destroys the veth pair. Errors during teardown are printed to stderr and otherwise
//! ignored, so `Drop` never panics. If [`Testbed::new`] fails half-way, whatever it had
//! created is removed before the error is returned. Processes started with
//! [`Testbed::spawn`] are owned by an [`NsChild`] guard that borrows the testbed, so the
//! borrow checker makes them die before the namespaces are deleted.
//!
//! Privileged tests should start with [`skip_reason`] and return early when it is `Some`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::panic;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

/// Where `ip netns` keeps its named namespaces (bind mounts of `/proc/<pid>/ns/net`).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Longest interface name the kernel accepts (`IFNAMSIZ` minus the terminating NUL).
pub const IFNAME_MAX: usize = 15;

/// Process-wide counter making testbed names unique within this process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Serialises `ip netns add` within this process: the very first `ip netns add` on a host
/// turns `/run/netns` into a shared mount, which races when done concurrently.
static NETNS_ADD_LOCK: Mutex<()> = Mutex::new(());

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

/// Returns why privileged testbed tests cannot run here (not root, or no `ip` binary),
/// or `None` when they can. Tests print the reason and return early.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!("testbed needs root (euid is {euid})"));
    }
    match Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("`ip -V` failed ({s}); iproute2 is needed")),
        Err(e) => Some(format!("cannot run `ip` ({e}); iproute2 is needed")),
    }
}

/// The prefix shared by every namespace and interface name this process creates:
/// `nm<pid>x`. Pass it to [`leftovers`].
pub fn process_prefix() -> String {
    format!("nm{}x", std::process::id())
}

/// Lists what starts with `prefix` and still exists: named namespaces in
/// [`NETNS_RUN_DIR`] (as `"netns <name>"`) and interfaces in this process's own network
/// namespace, read from `/sys/class/net` (as `"link <name>"`). Empty means nothing was left
/// behind. Unreadable directories count as empty.
pub fn leftovers(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (dir, kind) in [(NETNS_RUN_DIR, "netns"), ("/sys/class/net", "link")] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) {
                found.push(format!("{kind} {name}"));
            }
        }
    }
    found.sort();
    found
}

/// The name stem (`nm<pid>x<n>`) of testbed number `n`; the side letter is appended.
fn base_name(pid: u32, n: u64) -> Result<String> {
    let head = format!("nm{pid}x");
    // One byte is reserved for the side letter.
    let budget = IFNAME_MAX.saturating_sub(head.len() + 1);
    let decimal = n.to_string();
    if decimal.len() <= budget {
        return Ok(head + &decimal);
    }
    // Letters only, so this can never equal a decimal (digits only) counter.
    let mut letters = Vec::new();
    let mut rest = n;
    loop {
        letters.push(b'a' + (rest % 26) as u8);
        rest /= 26;
        if rest == 0 {
            break;
        }
    }
    letters.reverse();
    ensure!(
        letters.len() <= budget,
        "testbed counter {n} does not fit in an interface name with pid {pid}"
    );
    Ok(head + std::str::from_utf8(&letters).context("letters are ASCII")?)
}

/// Renders a command line for error messages.
fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with stdin closed; fails unless it exits with status 0, quoting
/// its stdout and stderr in the error.
fn check_output(cmd: &mut Command) -> Result<Output> {
    let line = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({})\n--- stdout ---\n{}--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Moves the calling thread into the network namespace `fd` refers to.
fn setns_net(fd: RawFd) -> io::Result<()> {
    // SAFETY: setns only reads its arguments; a bad fd is reported as an error.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A `Command` running `program` inside the namespace `ns` (by way of `setns` in `pre_exec`).
fn ns_command<I, S>(ns: &Arc<OwnedFd>, program: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    // The Arc keeps the fd open for as long as the Command exists, even past the Testbed.
    let ns = Arc::clone(ns);
    // SAFETY: the hook only reads an integer and makes the setns system call, both of
    // which are async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || setns_net(ns.as_raw_fd()));
    }
    cmd
}

/// Whether `pid` is still an unreaped child of ours (alive or zombie), so that signalling
/// it (or its process group, whose id it holds) cannot hit an unrelated process.
fn is_unreaped_child(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t. WNOWAIT leaves the child reapable.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    rc == 0
}

/// Sends SIGKILL to the process group led by `pid` (falling back to just `pid`).
fn kill_group(pid: u32) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill only signals; the callers checked that `pid` is our unreaped child.
    if unsafe { libc::kill(-pid, libc::SIGKILL) } == 0 {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while the lock was held must not stop cleanup.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Deletes the named namespaces it holds when dropped.
#[derive(Debug, Default)]
struct NetnsGuard {
    names: Vec<String>,
}

impl NetnsGuard {
    fn add(&mut self, name: &str) -> Result<()> {
        let _serial = lock(&NETNS_ADD_LOCK);
        check_output(Command::new("ip").args(["netns", "add", name]))?;
        self.names.push(name.to_owned());
        Ok(())
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for name in self.names.drain(..) {
            if let Err(e) = check_output(Command::new("ip").args(["netns", "delete", &name])) {
                eprintln!("testbed: deleting namespace {name}: {e:#}");
                // Do by hand what `ip netns delete` does, in case `ip` itself is the problem.
                let path = Path::new(NETNS_RUN_DIR).join(&name);
                if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
                    // SAFETY: `c` is a valid NUL-terminated path.
                    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                }
                if let Err(e) = fs::remove_file(&path)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    eprintln!("testbed: removing {}: {e}", path.display());
                }
            }
        }
    }
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
    // Field order matters for drop: the namespace fds are closed before `_netns` deletes
    // the namespaces.
    ends: [End; 2],
    /// Pids of live [`NsChild`]ren, killed by `Drop` if a guard was leaked.
    children: Mutex<Vec<u32>>,
    _netns: NetnsGuard,
}

impl Testbed {
    /// Creates two namespaces with unique names, a veth pair between them, brings up `lo`
    /// and both veth ends and assigns the IPv4 and IPv6 addresses. On error everything
    /// created so far is removed again.
    pub fn new() -> Result<Testbed> {
        let pid = std::process::id();
        for _ in 0..1000 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let base = base_name(pid, n)?;
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
            return Self::create(n, &base);
        }
        bail!("no free testbed name for pid {pid} after 1000 attempts; clean up {NETNS_RUN_DIR}")
    }

    fn create(n: u64, base: &str) -> Result<Testbed> {
        let names = [format!("{base}a"), format!("{base}b")];
        let mut netns = NetnsGuard::default();
        let mut fds = Vec::with_capacity(2);
        for name in &names {
            netns
                .add(name)
                .with_context(|| format!("creating namespace {name}"))?;
            let path = Path::new(NETNS_RUN_DIR).join(name);
            let file =
                fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            fds.push(Arc::new(OwnedFd::from(file)));
        }
        // Created directly in the two namespaces: the pair never exists in ours.
        check_output(Command::new("ip").args([
            "link", "add", "name", &names[0], "netns", &names[0], "type", "veth", "peer", "name",
            &names[1], "netns", &names[1],
        ]))
        .context("creating the veth pair")?;

        let hi = 18 + ((n >> 8) & 1) as u8;
        let lo = (n & 0xff) as u8;
        let mut ends = Vec::with_capacity(2);
        for (i, (name, fd)) in names.iter().zip(fds).enumerate() {
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
            let ipcmd = |args: &[&str]| -> Result<Output> {
                check_output(&mut ns_command(&fd, "ip", args))
                    .with_context(|| format!("setting up {name}"))
            };
            ipcmd(&["link", "set", "dev", "lo", "up"])?;
            ipcmd(&["addr", "add", &format!("{ip}/24"), "dev", name])?;
            ipcmd(&[
                "-6",
                "addr",
                "add",
                &format!("{ip6}/64"),
                "dev",
                name,
                "nodad",
            ])?;
            ipcmd(&["link", "set", "dev", name, "up"])?;
            ends.push(End {
                name: name.clone(),
                fd,
                ip,
                ip6,
                mac: [0; 6],
                ifindex: 0,
            });
        }
        // `ip link set up` returns before the testbed can carry traffic. The kernel's
        // linkwatch attaches the real qdisc and sets operstate UP later (until then packets
        // are dropped), and IPv6 installs the local route of even a `nodad` address from
        // the addrconf workqueue (until then echo requests to it are dropped). Under load
        // both lag by up to seconds, which made early pings fail. Wait for both.
        let deadline = Instant::now() + Duration::from_secs(10);
        for end in &mut ends {
            loop {
                let out = check_output(&mut ns_command(
                    &end.fd,
                    "ip",
                    ["-j", "link", "show", "dev", &end.name],
                ))?;
                let link = parse_ip_link_json(&out.stdout)
                    .with_context(|| format!("reading {}", end.name))?;
                (end.ifindex, end.mac) = (link.ifindex, link.mac);
                let routes = check_output(&mut ns_command(
                    &end.fd,
                    "ip",
                    [
                        "-j",
                        "-6",
                        "route",
                        "show",
                        "table",
                        "local",
                        &end.ip6.to_string(),
                    ],
                ))?;
                let v6_ready = serde_json::from_slice::<serde_json::Value>(&routes.stdout)
                    .ok()
                    .and_then(|v| v.as_array().map(|a| !a.is_empty()))
                    .unwrap_or(false);
                if link.operstate == "UP" && v6_ready {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "{} not ready after 10 s (operstate {}, IPv6 local route: {v6_ready})",
                    end.name,
                    link.operstate
                );
                thread::sleep(Duration::from_millis(5));
            }
        }
        let [a, b]: [End; 2] = ends.try_into().map_err(|_| anyhow!("expected two ends"))?;
        Ok(Testbed {
            id: n,
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

    /// Runs `f` on a new thread that has joined `side`'s network namespace (only that
    /// thread; `/sys` is not remounted, so bpffs stays visible) and returns its result.
    /// A panic in `f` is propagated to the caller.
    ///
    /// # Panics
    /// Also panics if the thread cannot be spawned or cannot join the namespace; use
    /// [`Testbed::try_in_ns`] to get those as errors.
    pub fn in_ns<T: Send>(&self, side: Side, f: impl FnOnce() -> T + Send) -> T {
        match self.try_in_ns(side, f) {
            Ok(v) => v,
            Err(e) => panic!("in_ns({side}): {e:#}"),
        }
    }

    /// Like [`Testbed::in_ns`], but failing to spawn the thread or to join the namespace is
    /// an error instead of a panic. A panic in `f` is still propagated.
    pub fn try_in_ns<T: Send>(&self, side: Side, f: impl FnOnce() -> T + Send) -> Result<T> {
        let end = self.end(side);
        let fd = end.fd.as_raw_fd();
        thread::scope(|scope| {
            let handle = thread::Builder::new()
                .name(format!("netns-{}", end.name))
                .spawn_scoped(scope, move || -> Result<T> {
                    setns_net(fd).with_context(|| format!("setns into {}", end.name))?;
                    Ok(f())
                })
                .context("spawning a namespace thread")?;
            match handle.join() {
                Ok(r) => r,
                Err(payload) => panic::resume_unwind(payload),
            }
        })
    }

    /// A [`Command`] that runs `program args…` inside `side`'s network namespace. It uses a
    /// `pre_exec` hook calling `setns(CLONE_NEWNET)` on an fd opened at creation: nothing but
    /// the network namespace changes (unlike `ip netns exec`, `/sys` is not remounted) and no
    /// external helper such as `nsenter` is involved.
    pub fn cmd<I, S>(&self, side: Side, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        ns_command(&self.end(side).fd, program, args)
    }

    /// Runs `program args…` in `side`'s namespace to completion (stdin closed) and returns
    /// its output; a non-zero exit is an error quoting stdout and stderr.
    pub fn run<I, S>(&self, side: Side, program: impl AsRef<OsStr>, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        check_output(&mut self.cmd(side, program, args))
    }

    /// Starts `program args…` in `side`'s namespace in the background, with stdin and
    /// stdout connected to /dev/null and stderr inherited. The returned guard kills it
    /// (and its process group) when dropped. Bind it to a named variable: `let _ = …` drops
    /// it, and so kills the process, at once.
    pub fn spawn<I, S>(
        &self,
        side: Side,
        program: impl AsRef<OsStr>,
        args: I,
    ) -> Result<NsChild<'_>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd(side, program, args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        self.spawn_cmd(cmd)
    }

    /// Starts a command made by [`Testbed::cmd`] (so with your own stdio settings) in a new
    /// process group and returns a guard that kills that group when dropped.
    pub fn spawn_cmd(&self, mut cmd: Command) -> Result<NsChild<'_>> {
        let line = describe(&cmd);
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot spawn `{line}`"))?;
        lock(&self.children).push(child.id());
        Ok(NsChild {
            child: Some(child),
            testbed: self,
        })
    }

    /// Sends up to `count` ICMP echo requests from `from`'s namespace to `to`, one at a time
    /// with a one-second timeout each, and returns true only if *every* one was answered.
    /// For "is it blocked?" checks use [`Testbed::ping_replies`] and compare with 0.
    pub fn ping(&self, from: Side, to: impl Into<IpAddr>, count: u32) -> bool {
        match self.ping_replies(from, to, count, Duration::from_secs(1)) {
            Ok(n) => n == count,
            Err(e) => {
                eprintln!("testbed: ping from {from}: {e:#}");
                false
            }
        }
    }

    /// Sends `count` ICMP(v6) echo requests from `from`'s namespace to `to` over a raw
    /// socket (no `ping` binary needed), waiting up to `timeout` for each reply, and returns
    /// how many were answered. Errors only if the socket cannot be created.
    pub fn ping_replies(
        &self,
        from: Side,
        to: impl Into<IpAddr>,
        count: u32,
        timeout: Duration,
    ) -> Result<u32> {
        let to = to.into();
        self.try_in_ns(from, move || icmp_ping(to, count, timeout))?
    }

    /// Turns generic receive offload of `side`'s veth end on or off (`ethtool -K <if> gro …`).
    pub fn set_gro(&self, side: Side, on: bool) -> Result<()> {
        let state = if on { "on" } else { "off" };
        self.run(side, "ethtool", ["-K", self.ifname(side), "gro", state])?;
        Ok(())
    }

    /// Writes `value` to the sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`) inside
    /// `side`'s namespace.
    pub fn sysctl(&self, side: Side, key: &str, value: &str) -> Result<()> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.try_in_ns(side, || fs::write(&path, value))?
            .with_context(|| {
                format!(
                    "writing {value:?} to {} in {}",
                    path.display(),
                    self.ns(side)
                )
            })
    }

    /// Reads one counter of `side`'s `/proc/net/snmp`, e.g. `("Udp", "OutDatagrams")` or
    /// `("Tcp", "OutSegs")`. Read through `/proc/thread-self/net` on a thread inside the
    /// namespace, because `/proc/net` follows the main thread's namespace.
    pub fn snmp_counter(&self, side: Side, group: &str, name: &str) -> Result<u64> {
        self.proc_net_counter(side, "snmp", group, name)
    }

    /// Reads one counter of `side`'s `/proc/net/netstat`, e.g. `("TcpExt", "TCPTimeouts")`.
    pub fn netstat_counter(&self, side: Side, group: &str, name: &str) -> Result<u64> {
        self.proc_net_counter(side, "netstat", group, name)
    }

    /// All counters of `side`'s `/proc/net/<file>` (`snmp` or `netstat`), keyed
    /// `"Group.Name"`; negative values (only `Tcp.MaxConn`) are left out.
    pub fn proc_net_counters(&self, side: Side, file: &str) -> Result<HashMap<String, u64>> {
        let text = self.read_proc_net(side, file)?;
        let mut map = HashMap::new();
        for (group, name, value) in parse_proc_net(&text)? {
            if let Ok(v) = u64::try_from(value) {
                map.insert(format!("{group}.{name}"), v);
            }
        }
        Ok(map)
    }

    fn read_proc_net(&self, side: Side, file: &str) -> Result<String> {
        let path = format!("/proc/thread-self/net/{file}");
        self.try_in_ns(side, || fs::read_to_string(&path))?
            .with_context(|| format!("reading {path} in {}", self.ns(side)))
    }

    fn proc_net_counter(&self, side: Side, file: &str, group: &str, name: &str) -> Result<u64> {
        let text = self.read_proc_net(side, file)?;
        let value = parse_proc_net(&text)?
            .into_iter()
            .find(|(g, n, _)| g == group && n == name)
            .map(|(_, _, v)| v)
            .ok_or_else(|| anyhow!("no counter {group}.{name} in /proc/net/{file}"))?;
        u64::try_from(value).map_err(|_| anyhow!("counter {group}.{name} is negative ({value})"))
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Only leaked NsChild guards can leave pids here: a guard borrows the testbed.
        // Leaked guards never reaped their child, so the pid cannot have been reused.
        for pid in lock(&self.children).drain(..) {
            if is_unreaped_child(pid)
                && let Err(e) = kill_group(pid)
            {
                eprintln!("testbed {}: killing leaked child {pid}: {e}", self.id);
            }
        }
        // netmit pins are global (bpffs is not per namespace); a test that failed before
        // `netmit detach` would leave them behind. Deleting the namespaces removes the
        // veth and with it the XDP link; removing the pins releases the maps.
        for side in [Side::A, Side::B] {
            let pins = Path::new(NETMIT_PINS).join(self.ifname(side));
            if pins.exists()
                && let Err(e) = std::fs::remove_dir_all(&pins)
            {
                eprintln!("testbed {}: removing {}: {e}", self.id, pins.display());
            }
        }
        // Then the fields drop: namespace fds close, and NetnsGuard deletes the namespaces.
    }
}

/// Where netmit pins its objects (one directory per interface).
pub const NETMIT_PINS: &str = "/sys/fs/bpf/netmit";

/// A process started by [`Testbed::spawn`] inside a testbed namespace. Dereferences to the
/// [`Child`]; when dropped, kills the child's whole process group and reaps it.
#[must_use = "dropping an NsChild kills the process"]
pub struct NsChild<'tb> {
    child: Option<Child>,
    testbed: &'tb Testbed,
}

impl NsChild<'_> {
    /// The child's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the child to exit on its own and collects any piped stdout/stderr.
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        let child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("child already taken"))?;
        self.forget_pid(child.id());
        child.wait_with_output()
    }

    /// Kills the child's process group now and returns its exit status.
    pub fn kill(mut self) -> io::Result<std::process::ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("child already taken"))?;
        self.forget_pid(child.id());
        if is_unreaped_child(child.id()) {
            kill_group(child.id())?;
        }
        child.wait()
    }

    fn forget_pid(&self, pid: u32) {
        lock(&self.testbed.children).retain(|&p| p != pid);
    }
}

impl std::ops::Deref for NsChild<'_> {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.child
            .as_ref()
            .expect("NsChild holds its child until dropped")
    }
}

impl std::ops::DerefMut for NsChild<'_> {
    fn deref_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("NsChild holds its child until dropped")
    }
}

impl fmt::Debug for NsChild<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NsChild")
            .field("pid", &self.pid())
            .field("testbed", &self.testbed.id)
            .finish()
    }
}

impl Drop for NsChild<'_> {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        self.forget_pid(pid);
        // If the test already reaped it through DerefMut, the pid may belong to someone else.
        if !is_unreaped_child(pid) {
            return;
        }
        if let Err(e) = kill_group(pid) {
            eprintln!("testbed {}: killing child {pid}: {e}", self.testbed.id);
        }
        if let Err(e) = child.wait() {
            eprintln!("testbed {}: reaping child {pid}: {e}", self.testbed.id);
        }
    }
}

/// What [`Testbed::new`] needs from `ip -j link show dev X`.
struct LinkInfo {
    ifindex: u32,
    mac: [u8; 6],
    operstate: String,
}

/// Parses the output of `ip -j link show dev X`.
fn parse_ip_link_json(json: &[u8]) -> Result<LinkInfo> {
    let v: serde_json::Value =
        serde_json::from_slice(json).context("parsing `ip -j link` output")?;
    let link = v
        .get(0)
        .ok_or_else(|| anyhow!("`ip -j link` listed no interface"))?;
    let ifindex = link
        .get("ifindex")
        .and_then(serde_json::Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| anyhow!("no ifindex in {link}"))?;
    let addr = link
        .get("address")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| anyhow!("no address in {link}"))?;
    let operstate = link
        .get("operstate")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("UNKNOWN")
        .to_owned();
    Ok(LinkInfo {
        ifindex,
        mac: parse_mac(addr)?,
        operstate,
    })
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts
            .next()
            .ok_or_else(|| anyhow!("short MAC address {s:?}"))?;
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("bad MAC address {s:?}"))?;
    }
    ensure!(parts.next().is_none(), "long MAC address {s:?}");
    Ok(mac)
}

/// Parses the `Group: names…` / `Group: values…` line pairs of `/proc/net/snmp` and
/// `/proc/net/netstat` into `(group, name, value)`.
fn parse_proc_net(text: &str) -> Result<Vec<(String, String, i64)>> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let Some((group, names)) = header.split_once(':') else {
            continue;
        };
        let values_line = lines
            .next()
            .ok_or_else(|| anyhow!("{group}: header without values"))?;
        let (vgroup, values) = values_line
            .split_once(':')
            .ok_or_else(|| anyhow!("{group}: malformed values line"))?;
        ensure!(vgroup == group, "{group}: values line belongs to {vgroup}");
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        ensure!(
            names.len() == values.len(),
            "{group}: {} names but {} values",
            names.len(),
            values.len()
        );
        for (name, value) in names.into_iter().zip(values) {
            let v = value
                .parse::<i64>()
                .with_context(|| format!("{group}.{name} = {value:?}"))?;
            out.push((group.to_owned(), name.to_owned(), v));
        }
    }
    Ok(out)
}

/// Internet checksum (RFC 1071) of `data`.
fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from(chunk[0]) << 8
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Echo identifiers, distinct per ping call within this process.
static PING_IDENT: AtomicU64 = AtomicU64::new(0);

/// Pings `to` over a raw ICMP/ICMPv6 socket in the calling thread's namespace.
fn icmp_ping(to: IpAddr, count: u32, timeout: Duration) -> Result<u32> {
    const ECHO_REQUEST_V4: u8 = 8;
    const ECHO_REPLY_V4: u8 = 0;
    const ECHO_REQUEST_V6: u8 = 128;
    const ECHO_REPLY_V6: u8 = 129;

    let v6 = to.is_ipv6();
    let (domain, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    // SAFETY: plain socket(2) call.
    let raw = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if raw < 0 {
        return Err(io::Error::last_os_error()).context("creating a raw ICMP socket");
    }
    // SAFETY: `raw` is a freshly created descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };

    let ident =
        ((u64::from(std::process::id()) << 8) ^ PING_IDENT.fetch_add(1, Ordering::Relaxed)) as u16;
    let (storage, addr_len) = sockaddr_of(SocketAddr::new(to, 0));
    let mut replies = 0;
    let mut buf = [0u8; 2048];
    for seq in 0..count {
        let seq = seq as u16;
        let mut pkt = vec![if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 }, 0, 0, 0];
        pkt.extend_from_slice(&ident.to_be_bytes());
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(b"netmit-testbed!!");
        if !v6 {
            // For ICMPv6 raw sockets the kernel always fills in the checksum.
            let c = inet_checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
        }
        // SAFETY: `pkt` and `storage` are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&raw const storage).cast(),
                addr_len,
            )
        };
        if sent < 0 {
            // Unreachable and the like: this echo is lost.
            continue;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ready < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            if ready == 0 {
                break;
            }
            // SAFETY: sockaddr_storage is plain data.
            let mut from: libc::sockaddr_storage = unsafe { mem::zeroed() };
            let mut from_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are valid and writable for the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&raw mut from).cast(),
                    &mut from_len,
                )
            };
            let Ok(n) = usize::try_from(n) else { continue };
            if ip_of(&from) != Some(to) {
                continue;
            }
            // IPv4 raw sockets deliver the IP header too; IPv6 ones do not.
            let icmp = if v6 {
                &buf[..n]
            } else {
                let ihl = usize::from(buf.first().copied().unwrap_or(0) & 0x0f) * 4;
                buf.get(ihl..n).unwrap_or(&[])
            };
            let want = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
            if icmp.len() >= 8
                && icmp[0] == want
                && icmp[4..6] == ident.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                replies += 1;
                break;
            }
        }
    }
    Ok(replies)
}

fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn ip_of(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

impl Testbed {
    /// A UDP socket bound to `addr` in `side`'s namespace, with a 300 ms read timeout and
    /// a 16 MiB receive buffer (`SO_RCVBUFFORCE`, root only): tests that read only after
    /// sending need room for every datagram, so that none is lost to a full buffer. The
    /// socket stays in that namespace whichever thread uses it later.
    pub fn udp_socket(&self, side: Side, addr: std::net::SocketAddr) -> std::net::UdpSocket {
        let s = self
            .in_ns(side, move || std::net::UdpSocket::bind(addr))
            .expect("bind udp");
        s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .expect("read timeout");
        let size: libc::c_int = 16 << 20;
        // SAFETY: setsockopt on an open socket with a pointer to a c_int.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// Prints why a privileged test is skipped and returns true when it must be.
    fn skip(test: &str) -> bool {
        match skip_reason() {
            Some(reason) => {
                eprintln!("skipping {test}: {reason}");
                true
            }
            None => false,
        }
    }

    fn netns_list() -> String {
        String::from_utf8_lossy(
            &check_output(Command::new("ip").args(["netns", "list"]))
                .unwrap()
                .stdout,
        )
        .into_owned()
    }

    fn root_links() -> String {
        String::from_utf8_lossy(
            &check_output(Command::new("ip").args(["-o", "link"]))
                .unwrap()
                .stdout,
        )
        .into_owned()
    }

    /// Asserts that neither the namespaces nor the veth ends named `names` exist any more.
    fn assert_gone(names: &[String]) {
        let list = netns_list();
        let links = root_links();
        for name in names {
            assert!(
                !list.split_whitespace().any(|w| w == name),
                "namespace {name} left in:\n{list}"
            );
            assert!(
                !links.contains(name.as_str()),
                "link {name} left in:\n{links}"
            );
            assert!(
                !Path::new(NETNS_RUN_DIR).join(name).exists(),
                "{NETNS_RUN_DIR}/{name} left"
            );
            let left: Vec<_> = leftovers(&process_prefix())
                .into_iter()
                .filter(|l| l.ends_with(name.as_str()))
                .collect();
            assert!(left.is_empty(), "leftovers: {left:?}");
        }
    }

    /// Waits until `pid` has exited (gone, or a zombie): SIGKILL takes effect
    /// asynchronously, and an orphaned grandchild is reaped by init whenever.
    fn assert_dies(pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after_comm = state.rsplit_once(") ").map_or("", |(_, rest)| rest);
            if state.is_empty() || after_comm.starts_with('Z') || after_comm.starts_with('X') {
                return;
            }
            assert!(Instant::now() < deadline, "{pid} survived SIGKILL: {state}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn names(tb: &Testbed) -> Vec<String> {
        vec![tb.ns_a().to_owned(), tb.ns_b().to_owned()]
    }

    #[test]
    fn names_fit_ifnamsiz_and_are_distinct() {
        for pid in [1, 99_999, 4_194_304, u32::MAX] {
            let mut seen = std::collections::HashSet::new();
            let budget = IFNAME_MAX - format!("nm{pid}x").len() - 1;
            let decimal_limit = 10u64.pow(budget as u32);
            let probe: std::collections::BTreeSet<u64> = (0..3000)
                .chain(decimal_limit - 5..decimal_limit + 3000)
                .collect();
            for n in probe {
                let Ok(base) = base_name(pid, n) else {
                    // Only once even the letter encoding has run out of room.
                    assert!(
                        n >= decimal_limit + 26u64.pow(budget as u32 - 1),
                        "pid {pid} n {n}"
                    );
                    continue;
                };
                let tail = &base[format!("nm{pid}x").len()..];
                if n < decimal_limit {
                    assert_eq!(tail, n.to_string());
                } else {
                    assert!(tail.bytes().all(|b| b.is_ascii_lowercase()), "{base}");
                }
                for side in ['a', 'b'] {
                    let name = format!("{base}{side}");
                    assert!(name.len() <= IFNAME_MAX, "{name} too long");
                    assert!(seen.insert(name.clone()), "{name} repeated");
                }
            }
        }
    }

    #[test]
    fn proc_net_parsing() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 2 64\nTcp: RtoMin MaxConn\nTcp: 200 -1\nUdp: InDatagrams NoPorts\nUdp: 7 3\n";
        let all = parse_proc_net(text).unwrap();
        assert!(all.contains(&("Udp".into(), "NoPorts".into(), 3)));
        assert!(all.contains(&("Tcp".into(), "MaxConn".into(), -1)));
        assert!(parse_proc_net("Udp: A B\nUdp: 1\n").is_err());
        assert_eq!(
            parse_mac("02:ab:00:00:10:ff").unwrap(),
            [2, 0xab, 0, 0, 0x10, 0xff]
        );
        assert!(parse_mac("02:ab").is_err());
        // RFC 1071 example.
        assert_eq!(
            inet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn ping_b_to_a() {
        if skip("ping_b_to_a") {
            return;
        }
        let tb = Testbed::new().unwrap();
        for name in names(&tb) {
            assert!(
                name.len() <= IFNAME_MAX && name.starts_with(&process_prefix()),
                "{name}"
            );
        }
        assert_eq!(tb.ns_a(), tb.if_a());
        assert_ne!(tb.mac_a(), [0; 6]);
        assert_ne!(tb.mac_a(), tb.mac_b());
        assert!(tb.ifindex_a() > 0 && tb.ifindex_b() > 0);
        assert_eq!(tb.ip_a().octets()[..2], [198, 18]);
        assert!(tb.ping(Side::B, tb.ip_a(), 3), "IPv4 ping B -> A");
        assert!(tb.ping(Side::A, tb.ip_b(), 1), "IPv4 ping A -> B");
        assert!(tb.ping(Side::B, tb.ip6_a(), 2), "IPv6 ping B -> A");
        // Nothing outside the testbed is reachable from inside it.
        assert_eq!(
            tb.ping_replies(
                Side::B,
                Ipv4Addr::new(198, 19, 255, 254),
                1,
                Duration::from_millis(200)
            )
            .unwrap(),
            0
        );
        // The ifindex and MAC agree with what the namespace itself reports.
        let (idx, mac) = tb.in_ns(Side::A, || {
            let c = std::ffi::CString::new(tb.if_a()).unwrap();
            // SAFETY: valid C string.
            let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
            let mac = fs::read_to_string("/proc/thread-self/net/dev").unwrap();
            (idx, mac)
        });
        assert_eq!(idx, tb.ifindex_a());
        assert!(mac.contains(tb.if_a()) && !mac.contains(tb.if_b()));
    }

    #[test]
    fn parallel_testbeds_are_distinct_and_work() {
        if skip("parallel_testbeds_are_distinct_and_work") {
            return;
        }
        let results: Vec<_> = (0..2)
            .map(|_| {
                thread::spawn(|| {
                    let tb = Testbed::new().unwrap();
                    assert!(tb.ping(Side::B, tb.ip_a(), 2));
                    assert!(tb.ping(Side::A, tb.ip6_b(), 1));
                    (names(&tb), tb.ip_a())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let (n0, ip0) = &results[0];
        let (n1, ip1) = &results[1];
        assert!(n0.iter().all(|n| !n1.contains(n)), "{n0:?} vs {n1:?}");
        assert_ne!(ip0, ip1);
        assert_gone(n0);
        assert_gone(n1);
    }

    #[test]
    fn drop_removes_namespaces_and_links() {
        if skip("drop_removes_namespaces_and_links") {
            return;
        }
        let tb = Testbed::new().unwrap();
        let names = names(&tb);
        let list = netns_list();
        for name in &names {
            assert!(
                list.split_whitespace().any(|w| w == name),
                "{name} missing from:\n{list}"
            );
            // The veth pair was created inside the namespaces, never in ours.
            assert!(!root_links().contains(name.as_str()));
        }
        drop(tb);
        assert_gone(&names);
    }

    #[test]
    fn panicking_test_still_cleans_up() {
        if skip("panicking_test_still_cleans_up") {
            return;
        }
        let seen = Mutex::new(Vec::new());
        let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
            let tb = Testbed::new().unwrap();
            lock(&seen).extend(names(&tb));
            let _sleeper = tb.spawn(Side::A, "sleep", ["1000"]).unwrap();
            panic!("deliberate test panic");
        }));
        assert!(result.is_err());
        let names = lock(&seen).clone();
        assert_eq!(names.len(), 2);
        assert_gone(&names);

        // A panic inside in_ns reaches the caller with its payload.
        let tb = Testbed::new().unwrap();
        let payload = panic::catch_unwind(panic::AssertUnwindSafe(|| {
            tb.in_ns(Side::B, || panic!("boom in ns"))
        }))
        .unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in ns"));
        assert!(
            tb.ping(Side::B, tb.ip_a(), 1),
            "testbed still usable after a panic in in_ns"
        );
    }

    #[test]
    fn in_ns_only_moves_the_helper_thread() {
        if skip("in_ns_only_moves_the_helper_thread") {
            return;
        }
        let tb = Testbed::new().unwrap();
        let ours = fs::read_link("/proc/thread-self/ns/net").unwrap();
        let (inside, via_self, via_thread) = tb.in_ns(Side::A, || {
            (
                fs::read_link("/proc/thread-self/ns/net").unwrap(),
                fs::read_to_string("/proc/self/net/dev").unwrap(),
                fs::read_to_string("/proc/thread-self/net/dev").unwrap(),
            )
        });
        assert_ne!(inside, ours);
        assert_eq!(fs::read_link("/proc/thread-self/ns/net").unwrap(), ours);
        // /proc/self/net follows the main thread, /proc/thread-self/net this thread.
        assert!(via_thread.contains(tb.if_a()));
        assert!(
            !via_self.contains(tb.if_a()),
            "/proc/self/net unexpectedly shows the testbed:\n{via_self}"
        );
        // Same namespace inode as the one named in /run/netns.
        let ino = fs::metadata(tb.netns_path(Side::A))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap();
        assert!(
            inside.to_string_lossy().contains(&ino.to_string()),
            "{inside:?} vs inode {ino}"
        );
    }

    #[test]
    fn cmd_run_and_spawn_are_in_the_namespace() {
        if skip("cmd_run_and_spawn_are_in_the_namespace") {
            return;
        }
        let tb = Testbed::new().unwrap();
        let out = tb.run(Side::A, "ip", ["-o", "link"]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let ifnames: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split(": ").nth(1)?.split('@').next())
            .collect();
        assert_eq!(
            ifnames,
            ["lo", tb.if_a()],
            "only lo and the veth end: {text}"
        );

        let err = tb
            .run(
                Side::A,
                "sh",
                ["-c", "echo to-out; echo to-err >&2; exit 3"],
            )
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("to-out") && msg.contains("to-err") && msg.contains('3'),
            "{msg}"
        );

        let ino =
            std::os::unix::fs::MetadataExt::ino(&fs::metadata(tb.netns_path(Side::B)).unwrap());
        let child = tb
            .spawn(Side::B, "sh", ["-c", "sleep 1000 & sleep 1000"])
            .unwrap();
        let pid = child.pid();
        let ns = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        assert_eq!(ns.to_string_lossy(), format!("net:[{ino}]"));
        // The grandchild sleep is in the child's process group and dies with it.
        thread::sleep(Duration::from_millis(100));
        let group: Vec<i32> = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&p| unsafe { libc::getpgid(p) } == pid as i32)
            .collect();
        assert!(group.len() >= 2, "process group {group:?}");
        drop(child);
        for p in group {
            assert_dies(p);
        }
        assert!(lock(&tb.children).is_empty());

        // A leaked guard is killed by the testbed's Drop.
        let leaked = tb.spawn(Side::A, "sleep", ["1000"]).unwrap();
        let leaked_pid = leaked.pid();
        mem::forget(leaked);
        drop(tb);
        assert_dies(leaked_pid as i32);
        // SAFETY: reap the zombie the forgotten Child left behind.
        unsafe { libc::waitpid(leaked_pid as i32, std::ptr::null_mut(), 0) };
    }

    #[test]
    fn snmp_counters_follow_the_namespace() {
        if skip("snmp_counters_follow_the_namespace") {
            return;
        }
        let tb = Testbed::new().unwrap();
        let out_before = tb.snmp_counter(Side::B, "Udp", "OutDatagrams").unwrap();
        let noports_before = tb.snmp_counter(Side::A, "Udp", "NoPorts").unwrap();
        let a_out_before = tb.snmp_counter(Side::A, "Udp", "OutDatagrams").unwrap();
        let target = SocketAddr::new(tb.ip_a().into(), 9);
        tb.in_ns(Side::B, || {
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..5 {
                sock.send_to(b"netmit", target).unwrap();
            }
        });
        assert_eq!(
            tb.snmp_counter(Side::B, "Udp", "OutDatagrams").unwrap(),
            out_before + 5
        );
        assert_eq!(
            tb.snmp_counter(Side::A, "Udp", "OutDatagrams").unwrap(),
            a_out_before
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while tb.snmp_counter(Side::A, "Udp", "NoPorts").unwrap() < noports_before + 5 {
            assert!(
                Instant::now() < deadline,
                "A never counted the datagrams as NoPorts"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let all = tb.proc_net_counters(Side::B, "snmp").unwrap();
        assert_eq!(all["Udp.OutDatagrams"], out_before + 5);
        assert!(tb.snmp_counter(Side::B, "Tcp", "OutSegs").is_ok());
        assert!(tb.netstat_counter(Side::B, "TcpExt", "TCPTimeouts").is_ok());
        assert!(tb.snmp_counter(Side::B, "Udp", "NoSuchCounter").is_err());
    }

    #[test]
    fn gro_and_sysctl() {
        if skip("gro_and_sysctl") {
            return;
        }
        let tb = Testbed::new().unwrap();
        let gro = |tb: &Testbed| {
            let out = tb.run(Side::A, "ethtool", ["-k", tb.if_a()]).unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find(|l| l.starts_with("generic-receive-offload:"))
                .unwrap()
                .to_owned()
        };
        tb.set_gro(Side::A, true).unwrap();
        assert!(gro(&tb).contains(": on"), "{}", gro(&tb));
        tb.set_gro(Side::A, false).unwrap();
        assert!(gro(&tb).contains(": off"), "{}", gro(&tb));

        tb.sysctl(Side::B, "net.ipv4.ip_forward", "1").unwrap();
        let inside = tb.in_ns(Side::B, || {
            fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
        });
        let other = tb.in_ns(Side::A, || {
            fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
        });
        assert_eq!((inside.trim(), other.trim()), ("1", "0"));
    }
}
