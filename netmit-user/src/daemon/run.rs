//! The daemon's tasks on tokio: the control loop (ticks and reloads, run one at a time on a
//! blocking thread), the HTTP server and the signal handler; start-up and shutdown.

use std::{
    collections::BTreeSet,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use log::{error, info, warn};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    time::{self, MissedTickBehavior},
};

use super::{
    DaemonError,
    config::DaemonConfig,
    engine::{Engine, ShutdownReport, startup_restore},
    http::{self, AppState},
    iface::unix_now,
    state::{DaemonState, StateFile},
};
use crate::{
    host::{Host, System},
    metrics::{ErrorKind, Exposition, Metrics, snapshot},
    sys::fs::trusted_dir,
    tune::journal,
};

/// How long the HTTP server may take to finish its requests at shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

enum Command {
    Reload,
}

/// Runs the daemon with the configuration at `config_path` until SIGTERM or SIGINT.
///
/// Start-up failures (invalid configuration, a missing interface, another daemon
/// running, a corrupt journal, an address in use) are errors; after start-up, failures
/// are logged and counted and the daemon goes on.
///
/// # Errors
///
/// [`DaemonError`] for start-up failures, and [`DaemonError::Restore`] when settings could
/// not all be put back at exit.
///
/// With `dry_run`, the daemon samples and decides but changes nothing: no XDP attached,
/// no setting written, nothing restored (not even a crashed run's journal); every switch
/// it would make is logged as `dry run: would switch ...` and shown in metrics and status.
pub fn run(config_path: &Path, dry_run: bool) -> Result<(), DaemonError> {
    let config = DaemonConfig::load(config_path)?;
    let host: Arc<dyn Host> = Arc::new(System::new());
    config.check_system(host.as_ref())?;
    let run_dir = journal::run_dir();
    trusted_dir(&run_dir, true).map_err(|e| DaemonError::RunDir(Box::new(e)))?;
    let netns = host.netns().map_err(|e| DaemonError::RunDir(Box::new(e)))?;
    let state_file = StateFile::new(&run_dir, &netns);
    // The daemon is small and long-running: see `fixed_mmap_threshold` for the 30 MiB
    // that glibc's dynamic threshold kept resident.
    crate::sys::process::fixed_mmap_threshold();
    // One thread runs the async side (HTTP, signals, timers: all of it waits), one blocking
    // thread the engine (ticks and reloads run one at a time): fewer threads, fewer malloc
    // arenas and stacks.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .thread_name("netmit-daemon")
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(serve(
        config,
        config_path.to_path_buf(),
        host,
        run_dir,
        state_file,
        dry_run,
    ))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))
}

async fn serve(
    config: DaemonConfig,
    config_path: PathBuf,
    host: Arc<dyn Host>,
    run_dir: PathBuf,
    state_file: StateFile,
    dry_run: bool,
) -> Result<(), DaemonError> {
    let started = Instant::now();
    // Held until serve returns: a second daemon starting at the same moment stops here.
    let _lock = match state_file.lock() {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            return Err(match state_file.running() {
                Some(other) => DaemonError::AlreadyRunning {
                    pid: other.pid,
                    address: other.metrics_address,
                    path: state_file.path().to_path_buf(),
                },
                None => DaemonError::Starting {
                    lock: state_file.path().with_extension("lock"),
                },
            });
        }
        Err(e) => return Err(DaemonError::RunDir(Box::new(e))),
    };
    if let Some(other) = state_file.running() {
        return Err(DaemonError::AlreadyRunning {
            pid: other.pid,
            address: other.metrics_address,
            path: state_file.path().to_path_buf(),
        });
    }
    // A state file left by a crashed daemon: adopt the interfaces it attached.
    let adopted: BTreeSet<String> = state_file
        .read()
        .map(|s| {
            if !s.attached_by_daemon.is_empty() {
                info!(
                    "a daemon (pid {}) did not exit cleanly; adopting its XDP attachments on {}",
                    s.pid,
                    s.attached_by_daemon.join(", ")
                );
            }
            s.attached_by_daemon.into_iter().collect()
        })
        .unwrap_or_default();

    let snapshot = snapshot::shared();
    let (exposition, metrics) = Exposition::new(snapshot.clone());
    let m = metrics.clone();
    let (h, dir) = (host.clone(), run_dir.clone());
    let restored = if dry_run {
        info!("dry run: sampling and deciding only; nothing will be changed or restored");
        0
    } else {
        blocking(move || startup_restore(h.as_ref(), &dir, &m)).await??
    };
    if restored > 0 {
        info!("start-up restore: put back {restored} setting(s) left by an earlier run");
    }

    let address = config.metrics_address;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| DaemonError::Bind { address, source })?;
    let address = listener.local_addr().unwrap_or(address);
    info!(
        "serving /metrics, /healthz and /status on http://{address}; interval {:?}; {} interface(s)",
        config.interval,
        config.interfaces.len()
    );

    let started_at_unix = unix_now();
    let app = Arc::new(AppState {
        exposition,
        metrics: metrics.clone(),
        snapshot: snapshot.clone(),
        started,
        started_at_unix,
        config: config_path.display().to_string(),
    });
    let m = metrics.clone();
    let h = host.clone();
    let engine =
        blocking(move || Engine::new(h, run_dir, config, m, snapshot, &adopted, dry_run)).await?;
    let state = DaemonState {
        pid: std::process::id(),
        metrics_address: address.to_string(),
        config: config_path.display().to_string(),
        started_at_unix,
        attached_by_daemon: engine.attached_by_daemon(),
    };
    state_file
        .write(&state)
        .map_err(|source| DaemonError::StateFile {
            path: state_file.path().to_path_buf(),
            source,
        })?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (cmd_tx, cmd_rx) = mpsc::channel(4);
    let http = tokio::spawn(http::serve(listener, app, stop_rx.clone()));
    let control = tokio::spawn(control_loop(
        Box::new(engine),
        cmd_rx,
        stop_rx,
        config_path,
        metrics,
        (state, state_file.clone()),
        host,
    ));

    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: restoring settings and exiting"); break; }
            _ = int.recv() => { info!("SIGINT: restoring settings and exiting"); break; }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configuration");
                let _ = cmd_tx.send(Command::Reload).await;
            }
        }
    }
    let _ = stop_tx.send(true);
    let report = match control.await {
        Ok(r) => r,
        Err(e) => Err(DaemonError::Task(e.to_string())),
    };
    match time::timeout(HTTP_DRAIN, http).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!("HTTP server: {e}"),
        Ok(Err(e)) => warn!("HTTP server task: {e}"),
        Err(_) => warn!("HTTP server did not finish within {HTTP_DRAIN:?}"),
    }
    if let Err(e) = state_file.remove() {
        warn!("removing {}: {e}", state_file.path().display());
    }
    let report = report?;
    info!("restored {} setting(s)", report.restored);
    if report.problems.is_empty() {
        Ok(())
    } else {
        for p in &report.problems {
            error!("{p}");
        }
        Err(DaemonError::Restore(report.problems))
    }
}

/// Runs `f` on the engine on a blocking thread and gives the engine back. A panic is
/// logged and counted: the engine state is kept (a panic is a bug, not a reason to leave
/// settings changed).
async fn on_engine(
    mut engine: Box<Engine>,
    metrics: &Metrics,
    what: &'static str,
    f: impl FnOnce(&mut Engine) + Send + 'static,
) -> Result<Box<Engine>, DaemonError> {
    let (engine, panicked) = blocking(move || {
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut engine)));
        (engine, r.is_err())
    })
    .await?;
    if panicked {
        error!("{what} panicked; going on");
        metrics.count_error(ErrorKind::Sample);
    }
    Ok(engine)
}

fn interval(period: Duration) -> time::Interval {
    let mut i = time::interval(period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

async fn control_loop(
    mut engine: Box<Engine>,
    mut commands: mpsc::Receiver<Command>,
    mut stop: watch::Receiver<bool>,
    config_path: PathBuf,
    metrics: Metrics,
    (mut state, state_file): (DaemonState, StateFile),
    host: Arc<dyn Host>,
) -> Result<ShutdownReport, DaemonError> {
    let mut ticker = interval(engine.interval());
    loop {
        tokio::select! {
            biased;
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
            Some(Command::Reload) = commands.recv() => {
                let path = config_path.clone();
                let h = host.clone();
                let loaded = blocking(move || {
                    let c = DaemonConfig::load(&path)?;
                    c.check_system(h.as_ref())?;
                    Ok::<_, super::config::ConfigError>(c)
                })
                .await?;
                match loaded {
                    Ok(config) => {
                        let period = config.interval;
                        let changed = period != engine.interval();
                        engine = on_engine(engine, &metrics, "reload", move |e| e.reload(config)).await?;
                        metrics.count_reload(true);
                        if changed {
                            ticker = interval(period);
                        }
                        info!("configuration reloaded");
                    }
                    Err(e) => {
                        metrics.count_reload(false);
                        metrics.count_error(ErrorKind::Config);
                        warn!("reload refused, keeping the running configuration:\n{e}");
                    }
                }
            }
            _ = ticker.tick() => {
                engine = on_engine(engine, &metrics, "tick", Engine::tick).await?;
                let attached = engine.attached_by_daemon();
                if attached != state.attached_by_daemon {
                    state.attached_by_daemon = attached;
                    if let Err(e) = state_file.write(&state) {
                        warn!("updating {}: {e}", state_file.path().display());
                    }
                }
            }
        }
    }
    blocking(move || engine.shutdown()).await
}
