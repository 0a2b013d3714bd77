//! Entering a testbed namespace without `ip netns exec`: `setns` on a helper thread
//! ([`Testbed::in_ns`]) or in a child's `pre_exec` hook ([`Testbed::cmd`]), running commands
//! with their output quoted in errors, and the guard that deletes named namespaces. Why not
//! `ip netns exec` is explained in the [module documentation](super#running-code-inside-a-namespace).

use std::{
    ffi::OsStr,
    fs, io,
    os::fd::{AsFd, OwnedFd},
    panic,
    path::Path,
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    thread,
};

use super::{NETNS_RUN_DIR, Result, Side, Testbed, TestbedError, lock};
use netmit_user::{
    error::chain,
    sys::{fs::unmount_detached, netns},
};

/// Serialises `ip netns add` within this process: the very first `ip netns add` on a host
/// turns `/run/netns` into a shared mount, which races when done concurrently.
static NETNS_ADD_LOCK: Mutex<()> = Mutex::new(());

/// Returns why privileged testbed code cannot run here (not root, or no `ip` binary),
/// or `None` when it can. Tests print the reason and return early.
pub fn skip_reason() -> Option<String> {
    let euid = netmit_user::sys::caps::euid();
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

/// Renders a command line for error messages.
pub(super) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` (which runs in namespace `ns`, `None` for ours) to completion with stdin
/// closed; fails unless it exits with status 0, quoting its stdout and stderr in the error.
pub(super) fn check_output(cmd: &mut Command, ns: Option<&str>) -> Result<Output> {
    let command = describe(cmd);
    let out = match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(source) => {
            return Err(TestbedError::Spawn {
                command,
                ns: ns.map(str::to_owned),
                source,
            });
        }
    };
    if !out.status.success() {
        return Err(TestbedError::CommandFailed {
            command,
            ns: ns.map(str::to_owned),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

/// A `Command` running `program` inside the namespace `ns` (by way of `setns` in `pre_exec`).
pub(super) fn ns_command<I, S>(ns: &Arc<OwnedFd>, program: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    // The Arc keeps the fd open for as long as the Command exists, even past the Testbed.
    netns::enter_fd_in_child(&mut cmd, Arc::clone(ns));
    cmd
}

/// Deletes the named namespaces it holds when dropped.
#[derive(Debug, Default)]
pub(super) struct NetnsGuard {
    names: Vec<String>,
}

impl NetnsGuard {
    /// Creates the named namespace `name` (`ip netns add`) and takes charge of deleting it.
    pub(super) fn add(&mut self, name: &str) -> Result<()> {
        let _serial = lock(&NETNS_ADD_LOCK);
        check_output(Command::new("ip").args(["netns", "add", name]), None)?;
        self.names.push(name.to_owned());
        Ok(())
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for name in self.names.drain(..) {
            let mut delete = Command::new("ip");
            delete.args(["netns", "delete", &name]);
            let Err(e) = check_output(&mut delete, None) else {
                continue;
            };
            eprintln!("testbed: deleting namespace {name}: {}", chain(&e));
            // Do by hand what `ip netns delete` does, in case `ip` itself is the problem.
            let path = Path::new(NETNS_RUN_DIR).join(&name);
            let _ = unmount_detached(&path);
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                eprintln!("testbed: removing {}: {e}", path.display());
            }
        }
    }
}

impl Testbed {
    /// Runs `f` on a new thread that has joined `side`'s network namespace (only that
    /// thread; `/sys` is not remounted, so bpffs stays visible) and returns its result.
    /// A panic in `f` is propagated to the caller. Several threads may call it on the same
    /// testbed at once (a `Testbed` is `Sync`).
    ///
    /// # Panics
    /// Also panics if the thread cannot be spawned or cannot join the namespace; use
    /// [`Testbed::try_in_ns`] to get those as errors.
    pub fn in_ns<T: Send>(&self, side: Side, f: impl FnOnce() -> T + Send) -> T {
        match self.try_in_ns(side, f) {
            Ok(v) => v,
            Err(e) => panic!("in_ns({side}): {}", chain(&e)),
        }
    }

    /// Like [`Testbed::in_ns`], but failing to spawn the thread or to join the namespace is
    /// an error instead of a panic. A panic in `f` is still propagated.
    ///
    /// # Errors
    /// [`TestbedError::Thread`] or [`TestbedError::Setns`].
    pub fn try_in_ns<T: Send>(&self, side: Side, f: impl FnOnce() -> T + Send) -> Result<T> {
        let end = self.end(side);
        let fd = end.fd.as_fd();
        thread::scope(|scope| {
            let handle = thread::Builder::new()
                .name(format!("netns-{}", end.name))
                .spawn_scoped(scope, move || -> Result<T> {
                    netns::enter_fd(fd).map_err(|source| TestbedError::Setns {
                        ns: end.name.clone(),
                        source,
                    })?;
                    Ok(f())
                })
                .map_err(|source| TestbedError::Thread {
                    ns: end.name.clone(),
                    source,
                })?;
            match handle.join() {
                Ok(r) => r,
                Err(payload) => panic::resume_unwind(payload),
            }
        })
    }

    /// A [`Command`] that runs `program args…` inside `side`'s network namespace. It uses a
    /// `pre_exec` hook calling `setns(CLONE_NEWNET)` on an fd opened at creation: nothing but
    /// the network namespace changes (unlike `ip netns exec`, `/sys` is not remounted) and no
    /// external helper such as `nsenter` is involved. The command keeps the namespace fd
    /// open, so it stays usable (but pointless) after the testbed is gone.
    pub fn cmd<I, S>(&self, side: Side, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        ns_command(&self.end(side).fd, program, args)
    }

    /// Runs `program args…` in `side`'s namespace to completion (stdin closed) and returns
    /// its output.
    ///
    /// # Errors
    /// [`TestbedError::Spawn`] if it cannot start, [`TestbedError::CommandFailed`] (quoting
    /// stdout and stderr) if it exits with a non-zero status.
    pub fn run<I, S>(&self, side: Side, program: impl AsRef<OsStr>, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        check_output(&mut self.cmd(side, program, args), Some(self.ns(side)))
    }
}
