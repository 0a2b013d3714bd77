//! The unmodified server of one setup: memcached started (through `netmit run` where the
//! setup says so) in the server's namespace, pinned to the server's core, and stopped
//! with SIGTERM; and the global busy-poll sysctls of the `sysctl` setup, set through the
//! restore journal and put back when the setup ends, whatever happened.

use std::{
    fs::{self, File},
    io,
    net::IpAddr,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{AppConfig, AppSetup};
use crate::{
    bench::modes::{ModesError, bed::Bed},
    testbed::Side,
};
use netmit_user::{
    host::System,
    sys::{process, sysctl::Sysctl},
    tune::{Journal, Setting},
};

/// memcached's UDP port on the testbed.
pub const MEMCACHED_PORT: u16 = 11211;

/// How long a stopped server may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server; terminated (SIGTERM, then SIGKILL) on drop if not stopped.
pub(super) struct AppServer {
    child: Child,
    setup: AppSetup,
    log: PathBuf,
    stopped: bool,
}

fn server_err(setup: AppSetup, what: impl Into<String>) -> impl FnOnce(io::Error) -> ModesError {
    let what = what.into();
    move |source| ModesError::AppServer {
        setup: setup.name(),
        what,
        source,
    }
}

/// A directory only root can write, for `netmit run`'s journal and the server's log.
pub(super) fn private_dir(path: &Path) -> Result<(), ModesError> {
    let _ = fs::remove_dir_all(path);
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .map_err(server_err(
            AppSetup::Baseline,
            format!("creating {}", path.display()),
        ))
}

impl AppServer {
    /// Starts memcached for `setup`. `netmit` is the netmit binary (for `netmit run`),
    /// `run_dir` the `NETMIT_RUN_DIR` it gets (the daemon's, in the adaptive setup).
    pub(super) fn start(
        bed: &Bed,
        setup: AppSetup,
        cfg: &AppConfig,
        server_ip: IpAddr,
        netmit: &Path,
        run_dir: &Path,
    ) -> Result<AppServer, ModesError> {
        let log = run_dir.join(format!("{}.log", setup.name()));
        let log_file = File::create(&log).map_err(server_err(setup, "creating its log"))?;
        let stderr = log_file
            .try_clone()
            .map_err(server_err(setup, "creating its log"))?;
        // taskset execs the program: every thread of it (memcached's workers, and its
        // maintenance threads) stays on the server's core.
        let mut cmd = bed.command(Side::B, "taskset");
        cmd.args(["-c", &cfg.server_cpu.to_string()]);
        if let Some(profile) = setup.run_profile() {
            cmd.arg(netmit).args([
                "run",
                "--profile",
                profile,
                "--iface",
                bed.iface(Side::B),
                "--",
            ]);
        }
        cmd.arg(&cfg.memcached)
            .args(["-U", &MEMCACHED_PORT.to_string(), "-p", "0", "-l"])
            .arg(server_ip.to_string())
            .args(["-t", &cfg.threads.to_string(), "-m", "64", "-u", "root"])
            .env("NETMIT_RUN_DIR", run_dir)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr);
        let child = cmd.spawn().map_err(server_err(
            setup,
            format!("starting {}", cfg.memcached.display()),
        ))?;
        Ok(AppServer {
            child,
            setup,
            log,
            stopped: false,
        })
    }

    /// The last lines of the server's output, for error messages.
    pub(super) fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// An error if the server has exited already.
    pub(super) fn check_alive(&mut self) -> Result<(), ModesError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(ModesError::AppServer {
                setup: self.setup.name(),
                what: format!("it exited with {status}: {}", self.log_tail()),
                source: io::Error::other("the server is gone"),
            }),
            Err(e) => Err(server_err(self.setup, "checking on it")(e)),
        }
    }

    /// SIGTERM (`netmit run` passes it on and restores its settings), then waits; an
    /// error when it does not exit in time or exits as neither 0 nor SIGTERM's 143.
    pub(super) fn stop(mut self) -> Result<(), ModesError> {
        self.stopped = true;
        let status = terminate(&mut self.child).map_err(server_err(self.setup, "stopping it"))?;
        let ok = status.success()
            || status.code() == Some(128 + libc::SIGTERM)
            || std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGTERM);
        if !ok {
            return Err(ModesError::AppServer {
                setup: self.setup.name(),
                what: format!("it exited with {status}: {}", self.log_tail()),
                source: io::Error::other("unexpected exit status"),
            });
        }
        Ok(())
    }
}

/// SIGTERM, up to [`STOP_TIMEOUT`] to exit, then SIGKILL.
fn terminate(child: &mut Child) -> io::Result<std::process::ExitStatus> {
    let _ = process::signal(child.id(), libc::SIGTERM);
    let end = Instant::now() + STOP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > end {
            let _ = child.kill();
            return child.wait();
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = terminate(&mut self.child);
        }
    }
}

/// The global busy-poll sysctls of the `sysctl` setup. They live in the initial network
/// namespace (where the benchmark's main thread runs) and go through the restore journal,
/// so `netmit tune restore` puts them back even if the benchmark is killed.
pub(super) struct GlobalBusyPoll {
    /// Each sysctl, its value before, and whether the journal held it already (then the
    /// value before is written back rather than the journal's original).
    applied: Vec<(Sysctl, u64, bool)>,
    done: bool,
}

/// The two sysctls, in the order they are set.
pub const SYSCTLS: [Sysctl; 2] = [Sysctl::BusyPoll, Sysctl::BusyRead];

fn journal_err(e: netmit_user::tune::JournalError) -> ModesError {
    ModesError::Journal(Box::new(e))
}

impl GlobalBusyPoll {
    /// Sets both sysctls to `usecs`; on a failure, puts back what was set.
    pub(super) fn apply(usecs: u64) -> Result<GlobalBusyPoll, ModesError> {
        let mut guard = GlobalBusyPoll {
            applied: Vec::new(),
            done: false,
        };
        let host = System::new();
        let mut journal = Journal::open().map_err(journal_err)?;
        for s in SYSCTLS {
            let setting = Setting::Sysctl { sysctl: s };
            let before = s.read().map_err(|e| ModesError::AppSysctl {
                name: s.name(),
                source: e,
            })?;
            let journaled = journal.entry(&setting).is_some();
            journal.apply(&host, &setting, usecs).map_err(journal_err)?;
            guard.applied.push((s, before, journaled));
        }
        Ok(guard)
    }

    /// Puts both back and checks they read as before; returns (name, before, after).
    pub(super) fn restore(mut self) -> Result<Vec<(&'static str, u64, u64)>, ModesError> {
        self.done = true;
        Self::put_back(&self.applied)
    }

    fn put_back(
        applied: &[(Sysctl, u64, bool)],
    ) -> Result<Vec<(&'static str, u64, u64)>, ModesError> {
        let host = System::new();
        let mut journal = Journal::open().map_err(journal_err)?;
        let fresh: Vec<Setting> = applied
            .iter()
            .filter(|a| !a.2)
            .map(|a| Setting::Sysctl { sysctl: a.0 })
            .collect();
        let report = journal
            .restore_settings(&host, &fresh)
            .map_err(journal_err)?;
        if let Some((setting, value, why)) = report.failed.first() {
            return Err(ModesError::Restore {
                what: format!("{setting} = {value}: {why}; run `netmit tune restore`"),
            });
        }
        for &(s, before, _) in applied.iter().filter(|a| a.2) {
            journal
                .apply(&host, &Setting::Sysctl { sysctl: s }, before)
                .map_err(journal_err)?;
        }
        let mut out = Vec::new();
        for &(s, before, _) in applied {
            let after = s.read().map_err(|e| ModesError::AppSysctl {
                name: s.name(),
                source: e,
            })?;
            if after != before {
                return Err(ModesError::Restore {
                    what: format!(
                        "{} reads {after} after the sysctl setup, {before} before; set it back \
                         with `sysctl -w {}={before}`",
                        s.name(),
                        s.name()
                    ),
                });
            }
            out.push((s.name(), before, after));
        }
        Ok(out)
    }
}

impl Drop for GlobalBusyPoll {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = Self::put_back(&self.applied)
        {
            eprintln!(
                "netmit bench app: restoring the busy-poll sysctls: {}",
                netmit_user::error::chain(&e)
            );
        }
    }
}
