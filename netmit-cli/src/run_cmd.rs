//! `netmit run [--profile P] [--iface IFACE] -- CMD ARGS...`: an unmodified epoll server
//! with busy polling and IRQ suspension.
//!
//! In order: the command is looked up (127 when not found, 126 when not executable, as
//! `env` answers) and the library's environment validated with the library's own code,
//! so that bad input changes nothing; the profile's NAPI settings go to IFACE through the
//! restore journal (unless a netmit daemon manages this namespace: then it keeps them);
//! CMD starts with `libnetmit_preload.so` preloaded; SIGINT, SIGTERM, SIGHUP and SIGQUIT
//! are passed on to it; when it exits, exactly the settings this run changed are put back
//! (an earlier `netmit tune set` of the same knob gets its value back, not the original),
//! and netmit exits with CMD's status (128 + N when a signal N ended it). If netmit itself
//! is killed, the journal still holds the originals: `netmit tune restore`.
//! netmit's own errors exit with 125.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    os::unix::{
        fs::PermissionsExt,
        process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use netmit_user::{
    daemon::state::StateFile,
    host::{Host, System},
    preload::{self, config::Config, config::vars},
    sys::{IfName, Netdev, caps, fs::trusted_dir, napi::NapiParam, signal},
    tune::{
        Journal, Setting, journal,
        plan::{Change, Plan, Profile, TuneRequest},
    },
};

/// Exit status for netmit's own errors (as `env` and `timeout` use 125).
const EXIT_OWN_ERROR: u8 = 125;
const EXIT_NOT_EXECUTABLE: u8 = 126;
const EXIT_NOT_FOUND: u8 = 127;

/// Signals passed on to CMD.
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

#[derive(Debug, Args)]
pub struct RunArgs {
    /// What the server gets: suspend (busy polling with IRQ suspension), busy-poll (busy
    /// polling, deferral as the watchdog), defer (deferral only, no preload).
    #[arg(long, value_enum, default_value_t = RunProfile::Suspend)]
    pub profile: RunProfile,
    /// Interface whose NAPI settings the profile needs (journaled, restored when CMD
    /// exits). Without it only the library is preloaded.
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<IfName>,
    /// Microseconds each epoll_wait busy-polls before it sleeps (sets
    /// NETMIT_BUSY_POLL_USECS for CMD; default 64).
    #[arg(long, value_name = "USECS")]
    pub busy_poll_usecs: Option<u32>,
    /// Packets per busy-poll round (sets NETMIT_BUSY_POLL_BUDGET; default 64, more needs
    /// CAP_NET_ADMIN in CMD).
    #[arg(long, value_name = "N")]
    pub busy_poll_budget: Option<u16>,
    /// With --profile suspend: how long interrupts stay suspended after the server last
    /// found work, in nanoseconds (default 20000000, 20 ms). The watchdog for a server that
    /// stops polling: longer holds packets through a longer stall (a descheduled server on
    /// a loaded host or a VM that steals time), shorter bounds the delay they then see.
    #[arg(long, value_name = "NS", value_parser = crate::args::whole::<u64>)]
    pub irq_suspend_timeout: Option<u64>,
    /// Print what would change and the environment CMD would get, then exit.
    #[arg(long)]
    pub dry_run: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunProfile {
    /// irq-suspend-timeout 20ms, defer-hard-irqs 100, gro-flush-timeout 20us; preloaded
    /// with prefer_busy_poll: interrupts stay off while the server finds work.
    Suspend,
    /// defer-hard-irqs 100, gro-flush-timeout 200us, no IRQ suspension; preloaded with
    /// prefer_busy_poll.
    BusyPoll,
    /// defer-hard-irqs 100, gro-flush-timeout 200us; not preloaded (deferral only).
    Defer,
}

impl RunProfile {
    fn name(self) -> &'static str {
        match self {
            RunProfile::Suspend => "suspend",
            RunProfile::BusyPoll => "busy-poll",
            RunProfile::Defer => "defer",
        }
    }

    fn preloads(self) -> bool {
        self != RunProfile::Defer
    }

    /// The NAPI values of the profile; `suspend_ns` replaces its irq-suspend-timeout.
    fn request(self, suspend_ns: Option<u64>) -> TuneRequest {
        match self {
            RunProfile::Suspend => {
                let mut request = Profile::Suspend.request();
                if let Some(ns) = suspend_ns {
                    for (param, value) in &mut request.napi_values {
                        if *param == NapiParam::IrqSuspendTimeout {
                            *value = ns;
                        }
                    }
                }
                request
            }
            RunProfile::BusyPoll | RunProfile::Defer => TuneRequest {
                napi_values: vec![
                    (NapiParam::DeferHardIrqs, 100),
                    (NapiParam::GroFlushTimeout, 200_000),
                    (NapiParam::IrqSuspendTimeout, 0),
                ],
                ..TuneRequest::default()
            },
        }
    }
}

/// Runs the subcommand; the exit code is CMD's (or 125/126/127).
pub fn execute(args: RunArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netmit: error: {e:#}");
            ExitCode::from(EXIT_OWN_ERROR)
        }
    }
}

/// Finds `cmd` as `execvp` would: a path with a slash as is, otherwise in `PATH`.
/// `Err(code)` with 127 (not found) or 126 (found, not executable).
fn resolve(cmd: &OsString, path_var: Option<&OsString>) -> Result<PathBuf, (u8, String)> {
    let exec_ok = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let shown = Path::new(cmd).display().to_string();
    if cmd.is_empty() {
        return Err((EXIT_NOT_FOUND, "the command is empty".into()));
    }
    if Path::new(cmd).components().count() > 1 || cmd.to_string_lossy().contains('/') {
        let p = PathBuf::from(cmd);
        return match std::fs::metadata(&p) {
            Err(_) => Err((EXIT_NOT_FOUND, format!("{shown}: no such file"))),
            Ok(_) if exec_ok(&p) => Ok(p),
            Ok(_) => Err((
                EXIT_NOT_EXECUTABLE,
                format!("{shown}: not an executable file"),
            )),
        };
    }
    let mut found_not_exec = None;
    for dir in std::env::split_paths(path_var.map_or(&OsString::new(), |v| v)) {
        let p = dir.join(cmd);
        if exec_ok(&p) {
            return Ok(p);
        }
        if p.exists() && found_not_exec.is_none() {
            found_not_exec = Some(p);
        }
    }
    match found_not_exec {
        Some(p) => Err((
            EXIT_NOT_EXECUTABLE,
            format!("{}: not an executable file", p.display()),
        )),
        None => Err((
            EXIT_NOT_FOUND,
            format!("{shown}: command not found in PATH"),
        )),
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    match args.irq_suspend_timeout {
        Some(_) if args.profile != RunProfile::Suspend => bail!(
            "--irq-suspend-timeout is for --profile suspend (profile {} suspends no \
             interrupts); leave it out or use --profile suspend",
            args.profile.name()
        ),
        Some(_) if args.iface.is_none() => {
            bail!("--irq-suspend-timeout is a NAPI setting of an interface: name it with --iface")
        }
        Some(0) => bail!(
            "--irq-suspend-timeout 0 turns IRQ suspension off; use --profile busy-poll for that"
        ),
        _ => {}
    }
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    let program = match resolve(&args.command[0], env.get(&OsString::from("PATH"))) {
        Ok(p) => p,
        Err((code, why)) => {
            eprintln!("netmit: run: {why}");
            return Ok(ExitCode::from(code));
        }
    };

    // The library's environment, validated by the library's own parser.
    if args.profile.preloads() {
        let exe = std::env::current_exe().context("finding the netmit binary")?;
        let lib = preload::find_library(&exe).with_context(|| {
            format!(
                "{} not found (looked in {}); build it with `cargo build` (it is placed next \
                 to the netmit binary) or install it in ../lib/netmit relative to netmit",
                preload::LIBRARY,
                preload::library_candidates(&exe)
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if let Some(v) = args.busy_poll_usecs {
            env.insert(vars::USECS.into(), v.to_string().into());
        }
        if let Some(v) = args.busy_poll_budget {
            env.insert(vars::BUDGET.into(), v.to_string().into());
        }
        Config::from_vars(|k| {
            env.get(&OsString::from(k))
                .map(|v| v.to_string_lossy().into_owned())
        })
        .map_err(|line| {
            anyhow::anyhow!(
                "{}",
                line.trim_start_matches("netmit-preload: ").replace(
                    "busy polling stays off for this process",
                    "nothing was started"
                )
            )
        })?;
        let mut preload_list = lib.into_os_string();
        if let Some(old) = env
            .get(&OsString::from("LD_PRELOAD"))
            .filter(|v| !v.is_empty())
        {
            preload_list.push(":");
            preload_list.push(old);
        }
        env.insert("LD_PRELOAD".into(), preload_list);
    }

    // The NAPI settings, planned in full before anything changes.
    let host = System::new();
    let mut plan = Plan::default();
    if let Some(iface) = &args.iface {
        let netns = host.netns()?;
        if let Some(d) = StateFile::new(&journal::run_dir(), &netns).running() {
            eprintln!(
                "netmit: run: a netmit daemon (pid {}) manages the interrupt settings in this \
                 namespace; {iface}'s are left to it, only the library is preloaded",
                d.pid
            );
        } else {
            let dev = Netdev::resolve(iface)?;
            plan = Plan::for_device(&host, &dev, &args.profile.request(args.irq_suspend_timeout))
                .with_context(|| {
                format!("planning profile {} on {iface}", args.profile.name())
            })?;
            if !caps::is_root() {
                bail!(
                    "applying profile {} to {iface} needs root (CAP_NET_ADMIN, and write access \
                     to the journal in {}): run it with sudo, or leave out --iface to only \
                     preload the library",
                    args.profile.name(),
                    journal::run_dir().display()
                );
            }
        }
    }
    if args.dry_run {
        for (setting, value) in &plan.steps {
            println!("would set {setting} = {value}");
        }
        for key in [
            "LD_PRELOAD",
            vars::USECS,
            vars::BUDGET,
            vars::PREFER,
            vars::STATE_DIR,
        ] {
            if let Some(v) = env.get(&OsString::from(key)) {
                println!("{key}={}", v.to_string_lossy());
            }
        }
        println!("would run {}", program.display());
        return Ok(ExitCode::SUCCESS);
    }

    // Only now, with everything checked: the directory the library reports into.
    if args.profile.preloads()
        && caps::is_root()
        && !env.contains_key(&OsString::from(vars::STATE_DIR))
    {
        let dir = preload::state_dir(&journal::run_dir());
        match trusted_dir(&journal::run_dir(), true).and_then(|()| trusted_dir(&dir, true)) {
            Ok(()) => {
                env.insert(vars::STATE_DIR.into(), dir.into_os_string());
            }
            Err(e) => eprintln!(
                "netmit: warning: no state directory for the preloaded process ({e}); \
                 `netmit status` will not list it"
            ),
        }
    }
    signal::install_forward(&FORWARDED).context("installing the signal handlers")?;
    let applied = apply(&host, &plan)?;

    let mut cmd = Command::new(&program);
    cmd.arg0(&args.command[0])
        .args(&args.command[1..])
        .env_clear()
        .envs(&env);
    let status = match cmd.spawn() {
        Ok(mut child) => {
            signal::forward_to(child.id());
            let status = child.wait();
            remove_state_file(&env, child.id());
            status.map_err(anyhow::Error::from)
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!("starting {}", program.display()))),
    };
    let restored = restore(&host, &applied);
    let status = status?;
    restored?;
    Ok(exit_code(status))
}

/// A change and whether the journal held the setting before this run.
struct Applied {
    change: Change,
    journaled_before: bool,
}

fn apply(host: &dyn Host, plan: &Plan) -> anyhow::Result<Vec<Applied>> {
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    let mut journal = Journal::open().context("opening the restore journal")?;
    let before: Vec<bool> = plan
        .steps
        .iter()
        .map(|(s, _)| journal.entry(s).is_some())
        .collect();
    let changes = match plan.apply(host, &mut journal) {
        Ok(c) => c,
        Err(e) => {
            let done: Vec<Applied> = e
                .done
                .iter()
                .zip(&before)
                .map(|(c, &b)| Applied {
                    change: c.clone(),
                    journaled_before: b,
                })
                .collect();
            drop(journal);
            if let Err(r) = restore(host, &done) {
                eprintln!("netmit: error: {r:#}");
            }
            return Err(e.into());
        }
    };
    for c in &changes {
        eprintln!(
            "netmit: {}: {} -> {} (until the command exits)",
            c.setting, c.previous, c.now
        );
    }
    Ok(changes
        .into_iter()
        .zip(before)
        .map(|(change, journaled_before)| Applied {
            change,
            journaled_before,
        })
        .collect())
}

/// Puts back what this run changed: the journal's original where the journal had no
/// entry before, the value before the run where it had (an earlier `netmit tune`).
fn restore(host: &dyn Host, applied: &[Applied]) -> anyhow::Result<()> {
    if applied.is_empty() {
        return Ok(());
    }
    let mut journal = Journal::open().context("opening the restore journal")?;
    let fresh: Vec<Setting> = applied
        .iter()
        .filter(|a| !a.journaled_before)
        .map(|a| a.change.setting.clone())
        .collect();
    let report = journal
        .restore_settings(host, &fresh)
        .context("restoring the settings")?;
    for (setting, value) in &report.restored {
        eprintln!("netmit: restored {setting} = {value}");
    }
    for (setting, now, _) in &report.overridden {
        eprintln!("netmit: left {setting} at {now}: it was changed while the command ran");
    }
    let mut failed = report.failed.len();
    for (setting, value, why) in &report.failed {
        eprintln!("netmit: could not restore {setting} = {value}: {why} (kept in the journal)");
    }
    for a in applied.iter().filter(|a| a.journaled_before) {
        let c = &a.change;
        match journal.apply(host, &c.setting, c.previous) {
            Ok(_) => eprintln!("netmit: restored {} = {}", c.setting, c.previous),
            Err(e) => {
                failed += 1;
                eprintln!(
                    "netmit: could not put back {} = {}: {e:#}",
                    c.setting, c.previous
                );
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} setting(s) could not be restored; run `netmit tune restore` once the \
             cause is fixed"
        );
    }
    Ok(())
}

/// Removes the state file of the child (named by its pid, in the directory this run
/// made).
fn remove_state_file(env: &BTreeMap<OsString, OsString>, pid: u32) {
    let Some(dir) = env.get(&OsString::from(vars::STATE_DIR)) else {
        return;
    };
    let path = Path::new(dir).join(pid.to_string());
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        let _ = std::fs::remove_file(path);
    }
}

/// CMD's status as ours: its exit code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => ExitCode::from(128u8.wrapping_add(sig as u8)),
        _ => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_resolve_as_execvp_does() {
        let path = Some(OsString::from("/nonexistent:/bin:/usr/bin"));
        assert!(resolve(&"sh".into(), path.as_ref()).is_ok());
        assert_eq!(
            resolve(&"no-such-command-xyz".into(), path.as_ref())
                .unwrap_err()
                .0,
            127
        );
        assert_eq!(resolve(&"/etc/passwd".into(), None).unwrap_err().0, 126);
        assert_eq!(resolve(&"/".into(), None).unwrap_err().0, 126);
        assert_eq!(resolve(&"./nope/x".into(), None).unwrap_err().0, 127);
        assert_eq!(resolve(&"".into(), None).unwrap_err().0, 127);
    }

    #[test]
    fn profiles_map_to_napi_values() {
        let s = RunProfile::Suspend.request(None);
        assert!(
            s.napi_values
                .contains(&(NapiParam::IrqSuspendTimeout, 20_000_000))
        );
        let longer = RunProfile::Suspend.request(Some(1_000_000_000));
        assert!(
            longer
                .napi_values
                .contains(&(NapiParam::IrqSuspendTimeout, 1_000_000_000))
        );
        assert_eq!(longer.napi_values.len(), s.napi_values.len());
        let b = RunProfile::BusyPoll.request(None);
        assert!(b.napi_values.contains(&(NapiParam::IrqSuspendTimeout, 0)));
        assert!(!RunProfile::Defer.preloads() && RunProfile::BusyPoll.preloads());
    }
}
