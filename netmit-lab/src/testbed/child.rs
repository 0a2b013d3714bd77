//! [`NsChild`]: a background process in a testbed namespace that dies with its guard, and
//! [`Testbed::spawn`] / [`Testbed::spawn_cmd`] that start one.
//!
//! Each child leads its own process group, so killing the group also kills whatever it
//! forked (a shell's background jobs). A pid is only signalled while it is still an unreaped
//! child of ours, so a pid the kernel has handed to someone else is never hit.

use std::{
    ffi::OsStr,
    fmt, io, mem,
    ops::{Deref, DerefMut},
    os::unix::process::CommandExt,
    process::{Child, Command, ExitStatus, Output, Stdio},
};

use netmit_user::sys::process;

use super::{Result, Side, Testbed, TestbedError, lock, netns::describe};

/// A process started by [`Testbed::spawn`] inside a testbed namespace. Dereferences to the
/// [`Child`]; when dropped, kills the child's whole process group and reaps it. It borrows
/// the testbed, so it cannot outlive the namespaces.
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
    ///
    /// # Errors
    /// As [`Child::wait_with_output`].
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        let child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("child already taken"))?;
        self.forget_pid(child.id());
        child.wait_with_output()
    }

    /// Kills the child's process group now and returns its exit status.
    ///
    /// # Errors
    /// If the group cannot be signalled or the child cannot be reaped.
    pub fn kill(mut self) -> io::Result<ExitStatus> {
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

impl Deref for NsChild<'_> {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.child
            .as_ref()
            .expect("NsChild holds its child until dropped")
    }
}

impl DerefMut for NsChild<'_> {
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
        // If the caller already reaped it through DerefMut, the pid may belong to someone else.
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

impl Testbed {
    /// Starts `program args…` in `side`'s namespace in the background, with stdin and
    /// stdout connected to /dev/null and stderr inherited. The returned guard kills it
    /// (and its process group) when dropped. Bind it to a named variable: `let _ = …` drops
    /// it, and so kills the process, at once.
    ///
    /// # Errors
    /// [`TestbedError::Spawn`] if it cannot start.
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
        self.spawn_in(cmd, Some(side))
    }

    /// Starts a command made by [`Testbed::cmd`] (so with your own stdio settings) in a new
    /// process group and returns a guard that kills that group when dropped.
    ///
    /// # Errors
    /// [`TestbedError::Spawn`] if it cannot start.
    pub fn spawn_cmd(&self, cmd: Command) -> Result<NsChild<'_>> {
        self.spawn_in(cmd, None)
    }

    fn spawn_in(&self, mut cmd: Command, side: Option<Side>) -> Result<NsChild<'_>> {
        let child = cmd
            .process_group(0)
            .spawn()
            .map_err(|source| TestbedError::Spawn {
                command: describe(&cmd),
                ns: side.map(|s| self.ns(s).to_owned()),
                source,
            })?;
        lock(&self.children).push(child.id());
        Ok(NsChild {
            child: Some(child),
            testbed: self,
        })
    }

    /// Kills the process groups of [`NsChild`] guards that were leaked (`mem::forget`), so
    /// that nothing keeps running in a namespace about to be deleted.
    pub(super) fn kill_leaked_children(&self) {
        // Only leaked NsChild guards can leave pids here: a guard borrows the testbed.
        // Leaked guards never reaped their child, so the pid cannot have been reused.
        for pid in mem::take(&mut *lock(&self.children)) {
            if is_unreaped_child(pid)
                && let Err(e) = kill_group(pid)
            {
                eprintln!("testbed {}: killing leaked child {pid}: {e}", self.id);
            }
        }
    }
}

/// Whether `pid` is still an unreaped child of ours (alive or zombie), so that signalling
/// it (or its process group, whose id it holds) cannot hit an unrelated process.
fn is_unreaped_child(pid: u32) -> bool {
    process::is_unreaped_child(pid)
}

/// Sends SIGKILL to the process group led by `pid` (falling back to just `pid`).
fn kill_group(pid: u32) -> io::Result<()> {
    process::signal_group(pid, libc::SIGKILL)
}
