//! The bad-input campaign of issue 13, kept as data (`tests/data/bad-inputs/`, over a
//! thousand inputs across rules, durations, daemon configurations, captures and command
//! lines): none may panic, every message must name the problem and a fix
//! ([`tests::campaign::judge`]), and an error must change nothing.
//!
//! The parsers run in-process over every entry (fast, no root); the binary runs every
//! command line of cli.txt and a sample of the other files inside a testbed namespace,
//! with the pins, the run directory, the busy-poll sysctls and the interface's XDP and
//! tuning compared before and after.

use std::{
    collections::BTreeSet,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use netmit_user::{capture, daemon::DaemonConfig, duration, steer::Rule};
use tests::{
    campaign::{self, judge},
    netmit::kernel_xdp,
    support::{netmit_bin, require_root},
    testbed::{Side, Testbed},
};

/// Runs `f`, turning a panic into a failure message naming `what`.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| format!("{what}: panicked"))
}

fn report(kind: &str, total: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {total} {kind} failed; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("{kind}: {total} bad inputs, each refused with a clear message");
}

#[test]
fn campaign_has_over_a_thousand_inputs() {
    let n = campaign::load("rules.txt").len()
        + campaign::load("durations.txt").len()
        + campaign::load("configs.txt").len()
        + campaign::captures().len()
        + campaign::load_raw("cli.txt").len();
    assert!(n >= 1000, "only {n} inputs");
}

#[test]
fn every_bad_rule_is_refused_with_its_position_and_a_fix() {
    let rules = campaign::load("rules.txt");
    let mut failures = Vec::new();
    for text in &rules {
        let shown = format!("{text:?}");
        match no_panic(&shown, || text.parse::<Rule>()) {
            Err(e) => failures.push(e),
            Ok(Ok(r)) => failures.push(format!("{shown}: accepted as `{r}`")),
            Ok(Err(e)) => {
                let chars = text.chars().count();
                if e.pos == 0 || e.pos > chars + 1 {
                    failures.push(format!("{shown}: position {} outside 1..={chars}", e.pos));
                }
                if let Err(why) = judge(&e.to_string()) {
                    failures.push(format!("{shown}: {why}"));
                }
            }
        }
    }
    report("rules", rules.len(), &failures);
}

#[test]
fn every_bad_duration_is_refused_naming_the_limit_or_the_syntax() {
    let inputs = campaign::load("durations.txt");
    let mut failures = Vec::new();
    for text in &inputs {
        let shown = format!("{text:?}");
        match no_panic(&shown, || duration::parse(text)) {
            Err(e) => failures.push(e),
            Ok(Ok(d)) => failures.push(format!("{shown}: accepted as {d:?}")),
            Ok(Err(e)) => {
                if let Err(why) = judge(&e.to_string()) {
                    failures.push(format!("{shown}: {why}"));
                }
            }
        }
        // The CLI's seconds-or-duration form accepts bare numbers; it must not panic.
        if let Err(e) = no_panic(&shown, || duration::parse_secs(text)) {
            failures.push(e);
        }
    }
    report("durations", inputs.len(), &failures);
}

#[test]
fn every_bad_config_is_refused_with_line_key_and_fix() {
    let configs = campaign::load("configs.txt");
    let mut failures = Vec::new();
    for text in &configs {
        let shown = format!("{text:?}");
        match no_panic(&shown, || DaemonConfig::parse(text, "campaign.toml")) {
            Err(e) => failures.push(e),
            Ok(Ok(_)) => failures.push(format!("{shown}: accepted")),
            Ok(Err(e)) => {
                let problems = e.problems();
                if problems.is_empty() {
                    failures.push(format!("{shown}: no problem listed: {e}"));
                }
                let lines = text.lines().count().max(1);
                for p in problems {
                    if p.at.line == 0 && p.at.key.is_empty() {
                        failures.push(format!("{shown}: neither line nor key: {p}"));
                    }
                    if p.at.line > lines + 1 {
                        failures.push(format!("{shown}: line {} of {lines}", p.at.line));
                    }
                    if let Err(why) = judge(&p.to_string()) {
                        failures.push(format!("{shown}: {why}"));
                    }
                }
            }
        }
    }
    report("configurations", configs.len(), &failures);
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netmit-bad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn every_bad_capture_is_refused_or_read_up_to_its_last_complete_record() {
    let captures = campaign::captures();
    let dir = scratch("captures");
    let mut failures = Vec::new();
    let (mut refused, mut truncated) = (0, 0);
    for (i, bytes) in captures.iter().enumerate() {
        let path = dir.join(format!("{i}.pcap"));
        std::fs::write(&path, bytes).unwrap();
        let shown = format!("capture {i} ({} bytes)", bytes.len());
        let lax = match no_panic(&shown, || capture::read(&path, false)) {
            Err(e) => {
                failures.push(e);
                continue;
            }
            Ok(r) => r,
        };
        let strict = capture::read(&path, true);
        match (lax, strict) {
            (Err(e), Err(_)) => {
                refused += 1;
                if let Err(why) = judge(&format!("{e:#}")) {
                    failures.push(format!("{shown}: {why}"));
                }
            }
            (Ok(c), Err(e)) => {
                truncated += 1;
                let Some(t) = &c.truncated else {
                    failures.push(format!("{shown}: strict refused a whole capture: {e}"));
                    continue;
                };
                if t.record != c.frames.len() + 1 || t.offset > bytes.len() {
                    failures.push(format!(
                        "{shown}: {} complete frames but truncation at {t}",
                        c.frames.len()
                    ));
                }
                let msg = e.to_string();
                if !msg.contains(&format!("record {}", t.record))
                    || !msg.contains(&format!("offset {}", t.offset))
                {
                    failures.push(format!("{shown}: does not name record and offset: {msg}"));
                }
                if let Err(why) = judge(&msg) {
                    failures.push(format!("{shown}: {why}"));
                }
            }
            // A cut at a record boundary is a complete (shorter) capture.
            (Ok(c), Ok(s)) if c.truncated.is_none() && c == s => {}
            (lax, strict) => failures.push(format!(
                "{shown}: lax {:?} but strict {:?}",
                lax.map(|c| c.truncated),
                strict.map(|c| c.truncated)
            )),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        refused > 0 && truncated > 0,
        "{refused} refused, {truncated} truncated"
    );
    report("captures", captures.len(), &failures);
}

/// What a failed command must leave as it was: netmit's pins, the run directory, the
/// system-wide sysctls netmit manages, and the testbed interface's XDP and tuning.
#[derive(Debug, PartialEq, Eq)]
struct State {
    pins: BTreeSet<PathBuf>,
    run_dir: BTreeSet<PathBuf>,
    sysctls: Vec<String>,
    xdp: Option<(u64, u64)>,
    tuning: String,
}

fn tree(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        out.insert(e.path());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            tree(&e.path(), out);
        }
    }
}

fn state(tb: &Testbed, run_dir: &Path) -> State {
    // The testbed namespace's part of the pin root (other suites may attach elsewhere).
    let ns_pins = netmit_user::ebpf::PinRoot::default()
        .layout(&tb.netdev(Side::A))
        .dir()
        .parent()
        .expect("pins are under a namespace directory")
        .to_path_buf();
    let mut pins = BTreeSet::new();
    tree(&ns_pins, &mut pins);
    if ns_pins.exists() {
        pins.insert(ns_pins);
    }
    let mut run = BTreeSet::new();
    tree(run_dir, &mut run);
    let sysctls = [
        "busy_poll",
        "busy_read",
        "netdev_budget",
        "netdev_budget_usecs",
    ]
    .iter()
    .map(|s| std::fs::read_to_string(format!("/proc/sys/net/core/{s}")).unwrap_or_default())
    .collect();
    // The kernel's whole view of the interface (XDP, offloads, queues, GRO settings).
    let tuning = tb
        .run(
            Side::A,
            "ip",
            ["-d", "-j", "link", "show", "dev", tb.if_a()],
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    State {
        pins,
        run_dir: run,
        sysctls,
        xdp: kernel_xdp(tb, Side::A),
        tuning,
    }
}

/// One command line of the campaign, with its placeholders filled in.
fn argv(line: &str, tb: &Testbed, dir: &Path) -> Vec<String> {
    line.split(' ')
        .map(|a| {
            campaign::unescape(a)
                .replace("{IF}", tb.if_a())
                .replace("{NOIF}", "nmnosuch0")
                .replace("{DIR}", &dir.display().to_string())
        })
        .collect()
}

/// Runs `netmit ARGS` in side A with the run directory in `run_dir`; checks the result.
fn run_bad(tb: &Testbed, run_dir: &Path, args: &[String]) -> Result<(), String> {
    let child = tb
        .cmd(Side::A, netmit_bin(), args)
        .env("NETMIT_RUN_DIR", run_dir)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{args:?}: spawn: {e}"))?;
    // A bad input is refused at once; one that runs is a bug, stopped after 10 s.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(out) => out.map_err(|e| format!("{args:?}: {e}"))?,
        Err(_) => {
            // SAFETY: kill has no memory preconditions; pid is our child, not yet reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = rx.recv();
            return Err(format!("{args:?}: still running after 10 s (accepted?)"));
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => return Err(format!("{args:?}: succeeded")),
        Some(101) => return Err(format!("{args:?}: exit 101 (a panic): {stderr}")),
        None => return Err(format!("{args:?}: killed by {:?}", out.status)),
        Some(_) => {}
    }
    judge(&stderr).map_err(|why| format!("{args:?}: {why}"))
}

#[test]
fn the_binary_refuses_every_bad_command_line_and_changes_nothing() {
    if !require_root("the_binary_refuses_every_bad_command_line_and_changes_nothing") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let dir = scratch("cli");
    let run_dir = dir.join("run");
    let before = state(&tb, &run_dir);

    let mut lines: Vec<Vec<String>> = campaign::load_raw("cli.txt")
        .iter()
        .map(|l| argv(l, &tb, &dir))
        .collect();
    // A sample of the other files through the binary's own edges.
    let every = |v: Vec<String>, n: usize| v.into_iter().step_by(n).collect::<Vec<_>>();
    for r in every(campaign::load("rules.txt"), 7) {
        lines.push(vec!["steer".into(), "add".into(), tb.if_a().into(), r]);
    }
    for d in every(campaign::load("durations.txt"), 5) {
        lines.push(vec!["status".into(), "--interval".into(), d]);
    }
    for (i, c) in every(campaign::load("configs.txt"), 5).iter().enumerate() {
        let path = dir.join(format!("config{i}.toml"));
        std::fs::write(&path, c).unwrap();
        lines.push(vec![
            "daemon".into(),
            "--config".into(),
            path.display().to_string(),
            "--check-config".into(),
        ]);
    }
    for (i, c) in campaign::captures().iter().enumerate().step_by(20) {
        let path = dir.join(format!("capture{i}.pcap"));
        std::fs::write(&path, c).unwrap();
        lines.push(vec![
            "classify".into(),
            "--strict".into(),
            "--pcap".into(),
            path.display().to_string(),
        ]);
    }

    let mut failures = Vec::new();
    for args in &lines {
        if let Err(e) = run_bad(&tb, &run_dir, args) {
            failures.push(e);
        }
        // Checked after every command, so a change is pinned on the one that made it.
        let now = state(&tb, &run_dir);
        if now != before {
            failures.push(format!("{args:?}: changed state: {before:?} -> {now:?}"));
            break;
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    report("command lines", lines.len(), &failures);
}

/// A closed stdout ends a command quietly through SIGPIPE, as it ends `cat` (documented
/// in the README: the shell shows 141).
#[test]
fn a_closed_stdout_ends_commands_quietly() {
    if !require_root("a_closed_stdout_ends_commands_quietly") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let dir = scratch("pipe");
    let run_dir = dir.join("run");
    // A capture big enough that classify writes well past any pipe buffer.
    let frames: Vec<Vec<u8>> = (0..3000u16)
        .map(|i| netmit_user::frames::ipv4(17, [198, 18, 0, 1].into(), 9000 + (i % 7), 18))
        .collect();
    let pcap = dir.join("big.pcap");
    tests::packet::write_pcap(&pcap, &frames).unwrap();
    let pcap = pcap.display().to_string();
    for args in [
        vec![
            "classify",
            "--pcap",
            &pcap,
            "--steer",
            "proto=udp,dport=9003",
        ],
        vec!["status", "--json"],
        vec!["tune", "show", tb.if_a(), "--json"],
        vec!["tune", "show", tb.if_a()],
        vec!["check", "--json"],
    ] {
        // A pipe whose read end is closed before the command writes.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = tb
            .cmd(Side::A, netmit_bin(), &args)
            .env("NETMIT_RUN_DIR", &run_dir)
            .stdout(writer)
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?}, stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And through a real shell pipeline, what a user sees: status 141, nothing on stderr.
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "{} classify --pcap {pcap} | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}",
                netmit_bin().display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "141");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
