//! The adaptive setup's daemon: `netmit daemon` started on the server's interface with a
//! short interval, its metrics read for the report, stopped (and its settings restored)
//! with SIGTERM.

use super::*;

/// `netmit daemon` managing the server's interface, with a private run directory.
pub(crate) struct Daemon {
    child: std::process::Child,
    run_dir: PathBuf,
    metrics: SocketAddr,
    stopped: bool,
}

/// A daemon not stopped by [`Daemon::stop`] (an error, a panic) is terminated here, so
/// it restores its settings and no daemon outlives the run.
impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = process::signal(self.child.id(), libc::SIGTERM);
            let _ = self.child.wait();
            let _ = fs::remove_dir_all(&self.run_dir);
        }
    }
}

/// The daemon's sampling interval in the benchmark, and its hold times: short, so that
/// it settles within the adaptive setup's warm-up.
const DAEMON_INTERVAL_MS: u64 = 100;

impl Daemon {
    pub(crate) fn start(bed: &Bed) -> Result<Daemon, ModesError> {
        let io_err = |what: &str| {
            let what = what.to_string();
            move |source| ModesError::Daemon { what, source }
        };
        let run_dir = std::env::temp_dir().join(format!("netmit-bench-{}", std::process::id()));
        fs::create_dir_all(&run_dir).map_err(io_err("creating its run directory"))?;
        // The daemon runs in the server's namespace: its loopback is private.
        let metrics: SocketAddr = "127.0.0.1:9464".parse().expect("valid address");
        let config = run_dir.join("netmit.toml");
        fs::write(&config, daemon_config(bed.iface(Side::B), metrics))
            .map_err(io_err("writing its configuration"))?;
        let exe = std::env::current_exe().map_err(io_err("finding the netmit binary"))?;
        let mut cmd = bed.command(Side::B, exe);
        cmd.args(["daemon", "--config"])
            .arg(&config)
            .env("NETMIT_RUN_DIR", &run_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().map_err(io_err("starting `netmit daemon`"))?;
        Ok(Daemon {
            child,
            run_dir,
            metrics,
            stopped: false,
        })
    }

    /// The daemon's run directory (journal, state file): `netmit run` given the same
    /// `NETMIT_RUN_DIR` sees the daemon and leaves the NAPI settings to it.
    pub(crate) fn run_dir(&self) -> &std::path::Path {
        &self.run_dir
    }

    /// Waits until the daemon answers `/status` (its state file is written by then).
    pub(crate) fn wait_ready(&self, bed: &Bed, timeout: Duration) -> Result<(), ModesError> {
        let end = Instant::now() + timeout;
        while self.status(bed).is_none() {
            if Instant::now() > end {
                return Err(ModesError::Daemon {
                    what: format!("it did not answer /status within {timeout:?}"),
                    source: io::Error::from(io::ErrorKind::TimedOut),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The daemon's current mode of the server's interface and its number of mode
    /// switches so far, from its `/status`.
    pub(crate) fn status(&self, bed: &Bed) -> Option<(String, u64)> {
        let state = netmit_user::daemon::state::DaemonState {
            pid: self.child.id(),
            metrics_address: self.metrics.to_string(),
            config: String::new(),
            started_at_unix: 0.0,
            attached_by_daemon: vec![],
        };
        let status = bed
            .in_ns(Side::B, || {
                netmit_user::daemon::state::query_status(&state, Duration::from_secs(1))
            })
            .ok()?
            .ok()?;
        let iface = &status["interfaces"][0];
        Some((
            iface["mode"].as_str()?.to_string(),
            iface["transitions"].as_u64()?,
        ))
    }

    /// SIGTERM (the daemon restores its settings), then waits for it.
    pub(crate) fn stop(mut self) -> Result<(), ModesError> {
        let _ = process::signal(self.child.id(), libc::SIGTERM);
        let status = self.child.wait().map_err(|source| ModesError::Daemon {
            what: "waiting for it to exit".into(),
            source,
        })?;
        let _ = fs::remove_dir_all(&self.run_dir);
        self.stopped = true;
        if !status.success() {
            return Err(ModesError::Daemon {
                what: format!("it exited with {status}"),
                source: io::Error::other("see its messages above"),
            });
        }
        Ok(())
    }
}

/// The daemon's configuration for the benchmark: the server's interface, tuned only
/// (the server's socket is the application), with the static setups' values as its mode
/// tables and hold times short enough to settle within a warm-up.
pub(crate) fn daemon_config(iface: &str, metrics: SocketAddr) -> String {
    let table = |s: NapiSettings| {
        format!(
            "defer_hard_irqs = {}\ngro_flush_timeout_ns = {}\nirq_suspend_timeout_ns = {}\n",
            s.defer_hard_irqs, s.gro_flush_timeout_ns, s.irq_suspend_timeout_ns
        )
    };
    format!(
        "# written by `netmit bench modes` for its adaptive setup\n\
         interval = \"{DAEMON_INTERVAL_MS}ms\"\n\
         metrics_address = \"{metrics}\"\n\n\
         [[interface]]\n\
         name = \"{iface}\"\n\
         attach = \"none\"\n\n\
         [interface.policy]\n\
         max_mode = \"suspend\"\n\
         min_dwell_ms = 300\n\
         missing_signal_fallback_ms = 2000\n\n\
         [interface.policy.defer]\n\
         enter_after_ms = 300\n\
         exit_after_ms = 500\n\n\
         [interface.policy.suspend]\n\
         enter_after_ms = 200\n\
         exit_after_ms = 500\n\n\
         [interface.policy.modes.interrupt]\n{}\n\
         [interface.policy.modes.defer]\n{}\n\
         [interface.policy.modes.suspend]\n{}",
        table(Setup::Baseline.napi()),
        table(Setup::Defer.napi()),
        table(Setup::Suspend.napi()),
    )
}
