//! The `netmit` command: a thin shell over the `netmit_user` library.

// System calls live in netmit_user::sys; nothing here may add its own.
#![forbid(unsafe_code)]

mod args;
mod attach;
#[cfg(feature = "lab")]
mod bench;
mod bench_app;
mod check;
mod classify;
mod daemon;
mod detach;
#[cfg(feature = "lab")]
mod r#gen;
mod generate;
#[cfg(feature = "lab")]
mod load;
mod logs;
mod output;
mod run_cmd;
mod rx;
#[cfg(feature = "lab")]
mod serve;
mod status;
mod steer;
mod stop;
mod top;
mod tune;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match args::negative_value_hint(&e, &std::env::args().collect::<Vec<_>>()) {
            Some(hint) => {
                eprintln!("{hint}");
                return ExitCode::from(2);
            }
            None => e.exit(),
        },
    };
    // A closed stdout ends a command quietly, as it ends `cat`; the daemon keeps running.
    if !matches!(cli.command, args::Command::Daemon(_)) {
        netmit_user::sys::signal::default_sigpipe();
    }
    // The daemon reports its transitions at info level; commands only warn.
    let level = match cli.command {
        // The program's own records come at every level; `netmit logs` shows them all.
        args::Command::Daemon(_) | args::Command::Logs(_) => "info",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    // `run` exits with its command's status.
    if let args::Command::Run(a) = cli.command {
        return run_cmd::execute(a);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netmit: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: args::Cli) -> anyhow::Result<()> {
    match cli.command {
        args::Command::Attach(a) => attach::run(a),
        args::Command::Detach(a) => detach::run(a),
        args::Command::Steer(a) => steer::run(a),
        args::Command::Status(a) => status::run(a),
        args::Command::Top(a) => top::run(a),
        args::Command::Logs(a) => logs::run(a),
        args::Command::Classify(a) => classify::run(a),
        #[cfg(feature = "lab")]
        args::Command::Bench(a) => bench::run(a),
        args::Command::Tune(a) => tune::run(a),
        args::Command::Rx(a) => rx::run(a),
        #[cfg(feature = "lab")]
        args::Command::Gen(a) => r#gen::run(a),
        #[cfg(feature = "lab")]
        args::Command::Load(a) => load::run(a),
        #[cfg(feature = "lab")]
        args::Command::Serve(a) => serve::run(a),
        args::Command::Check { iface, json } => check::run(iface.as_ref(), json),
        args::Command::Daemon(a) => daemon::run(a),
        args::Command::Generate(a) => generate::run(a),
        args::Command::Run(_) => unreachable!("handled in main"),
    }
}
