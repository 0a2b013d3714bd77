//! `cargo xtask test --kernel K` / `--kernels`: the compat set of the privileged tests on
//! other kernels, in virtual machines ([`crate::vm`]), and on the host's natively, with a
//! feature-by-kernel matrix; `--write-docs` puts it into docs/kernel-compat.md. The
//! default `cargo xtask test` runs the smoke set on Linux 6.1 (or says why it cannot).
//!
//! The test binaries are the ones cargo built for the host (`cargo test --no-run`); each
//! test runs alone (`--exact`, one thread, a time limit) from a generated shell script,
//! the same script in the guest and on the host, which writes each test's output and
//! exit code into a scratch directory shared with the guest. A test passes, fails, or is
//! skipped when it printed `SKIP name: reason` (tests skip only where the kernel lacks a
//! feature); compat tests print `NETMIT-COMPAT: row = cell` lines, the matrix's cells.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    kernels::{self, GuestKernel, Spec},
    vm::{self, Accel, Ended, ScratchDir},
};

/// (test binary, test) of the smoke set: the default `cargo xtask test` runs it on 6.1.
pub const SMOKE: &[(&str, &str)] = &[
    (
        "compat",
        "compat_feature_oracle_agrees_with_the_kernel_version",
    ),
    ("compat", "compat_xdp_attach_modes"),
    ("compat", "compat_check_probes_match_the_kernel"),
    ("compat", "compat_tuning_falls_back_to_sysfs_and_restores"),
    ("compat", "compat_busy_poll_serve_or_clean_refusal"),
];

/// The rest of the compat set (`--kernel`, `--kernels`).
pub const COMPAT_EXTRA: &[(&str, &str)] = &[
    ("compat", "compat_daemon_mode_ceiling"),
    ("steering", "steering_on_veth_native"),
    ("steering", "steering_on_veth_generic"),
    (
        "differential",
        "xdp_program_agrees_with_reference_classifier",
    ),
    ("xsk", "xsk_receives_steered_udp"),
    ("gen", "exact_count_reaches_the_receiver"),
];

/// The kernels of `--kernels`.
pub const MATRIX: &[&str] = &["6.1", "6.12", "host"];

/// Per-test time limit inside the script, and the VM's for the whole set.
const TEST_LIMIT_SECS: u64 = 300;

/// Where the generated matrix goes, between these markers.
const DOC: &str = "docs/kernel-compat.md";
const BEGIN: &str =
    "<!-- BEGIN measured matrix: written by `cargo xtask test --kernels --write-docs` -->";
const END: &str = "<!-- END measured matrix -->";

/// One test's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Passed.
    Pass,
    /// Passed after printing a skip reason.
    Skip(String),
    /// Failed: the last lines of its output.
    Fail(String),
}

/// One test on one kernel.
#[derive(Clone, Debug)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// What happened.
    pub status: Status,
    /// Its `NETMIT-COMPAT:` cells.
    pub cells: Vec<(String, String)>,
    /// Wall-clock seconds.
    pub secs: f64,
}

/// One kernel's run.
#[derive(Debug)]
pub struct KernelRun {
    /// Column label: the release.
    pub release: String,
    /// How it ran: `host`, `vm kvm`, `vm tcg`.
    pub how: String,
    /// Results in set order.
    pub tests: Vec<TestResult>,
    /// Why the run itself did not happen, if it did not (a skip).
    pub skipped: Option<String>,
}

impl KernelRun {
    fn failed(&self) -> usize {
        self.tests
            .iter()
            .filter(|t| matches!(t.status, Status::Fail(_)))
            .count()
    }
}

/// The test binaries of the tests crate by name, built if needed (same profile as the
/// suite, so nothing is rebuilt after `cargo test`).
fn test_binaries() -> Result<Vec<(String, PathBuf)>> {
    let out = crate::cargo()
        .args(["test", "--no-run", "-p", "tests", "--message-format=json"])
        .output()
        .context("could not run cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "cargo test --no-run -p tests failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(exe), Some(name)) = (v["executable"].as_str(), v["target"]["name"].as_str())
            && v["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"))
        {
            bins.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    Ok(bins)
}

/// Quotes `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script that prepares the system (bpffs, tracefs, modules) and runs `set`, writing
/// `N.out`, `N.rc` and `N.secs` into `dir`, then `done`.
fn script(dir: &Path, set: &[(String, PathBuf, String)]) -> String {
    let d = sh_quote(&dir.to_string_lossy());
    let mut s = format!(
        "#!/bin/sh\n# Generated by cargo xtask test (xtask/src/matrix.rs).\nD={d}\n\
         mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf -o mode=0700\n\
         [ -e /sys/kernel/tracing/trace ] || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null\n\
         for m in veth tun; do modprobe $m 2>/dev/null; done\n\
         uname -r > \"$D/release\"\n\
         echo \"netmit-vm: kernel $(uname -r), {} test(s)\"\n\
         cd {}\nexport NETMIT_BIN={}\nexport RUST_BACKTRACE=0\n",
        set.len(),
        sh_quote(&crate::workspace_root().join("tests").to_string_lossy()),
        sh_quote(&crate::target_dir().join("debug/netmit").to_string_lossy()),
    );
    for (i, (_, exe, name)) in set.iter().enumerate() {
        let _ = write!(
            s,
            "echo \"netmit-vm: [{n}/{total}] {name}\"\nt0=$(date +%s.%N)\n\
             timeout -k 5 {TEST_LIMIT_SECS} {exe} --exact {name} --nocapture --test-threads=1 \
             > \"$D/{i}.out\" 2>&1\necho $? > \"$D/{i}.rc\"\n\
             echo \"$(date +%s.%N) $t0\" > \"$D/{i}.secs\"\n",
            n = i + 1,
            total = set.len(),
            exe = sh_quote(&exe.to_string_lossy()),
            name = sh_quote(name),
        );
    }
    s.push_str("echo done > \"$D/done\"\n");
    s
}

/// Reads the results the script left in `dir`.
fn collect(dir: &Path, set: &[(String, PathBuf, String)], ended: &str) -> Vec<TestResult> {
    set.iter()
        .enumerate()
        .map(|(i, (_, _, name))| {
            let out = fs::read_to_string(dir.join(format!("{i}.out"))).unwrap_or_default();
            let rc = fs::read_to_string(dir.join(format!("{i}.rc")));
            let secs = fs::read_to_string(dir.join(format!("{i}.secs")))
                .ok()
                .and_then(|s| {
                    let mut it = s.split_whitespace().map(|x| x.parse::<f64>().ok());
                    Some(it.next()?? - it.next()??)
                })
                .unwrap_or(0.0);
            let cells = out
                .lines()
                .filter_map(|l| l.split_once("NETMIT-COMPAT: ").map(|(_, r)| r))
                .filter_map(|r| r.split_once(" = "))
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .collect();
            let status = match rc.as_deref().map(str::trim) {
                Err(_) => Status::Fail(format!("no result ({ended})")),
                Ok("0") if !out.contains("1 passed") => {
                    Status::Fail("the filter ran no test (renamed?)".into())
                }
                Ok("0") => match out.lines().find_map(|l| l.split_once("SKIP ")) {
                    Some((_, reason)) => Status::Skip(reason.trim().to_string()),
                    None => Status::Pass,
                },
                Ok("124") => Status::Fail(format!("timed out after {TEST_LIMIT_SECS} s")),
                Ok(_) => Status::Fail(tail(&out, 25)),
            };
            TestResult {
                name: name.clone(),
                status,
                cells,
                secs,
            }
        })
        .collect()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `set` on one kernel: natively for [`Spec::Host`], else in a VM.
fn run_on(spec: &Spec, set: &[(&str, &str)], limit: Duration) -> Result<KernelRun> {
    let bins = test_binaries()?;
    let mut resolved = Vec::new();
    for (bin, name) in set {
        let exe = bins
            .iter()
            .find(|(b, _)| b == bin)
            .map(|(_, e)| e.clone())
            .with_context(|| format!("no test binary `{bin}` in the tests crate"))?;
        resolved.push((bin.to_string(), exe, name.to_string()));
    }
    let scratch = ScratchDir::new("run")?;
    let script_path = scratch.0.join("run.sh");
    fs::write(&script_path, script(&scratch.0, &resolved))?;
    let start = Instant::now();
    let (release, how, ended) = match spec {
        Spec::Host => {
            let st = Command::new("sh")
                .arg(&script_path)
                .status()
                .context("could not run sh")?;
            let release = fs::read_to_string(scratch.0.join("release")).unwrap_or_default();
            (
                release.trim().to_string(),
                "host".to_string(),
                format!("sh exited: {st}"),
            )
        }
        Spec::Debian(_) | Spec::Path(_) => {
            let kernel = match guest_kernel(spec) {
                Ok(k) => k,
                Err(e) => return Ok(skipped(spec, format!("{e:#}"))),
            };
            let vng = match vm::prepare() {
                Ok(v) => v,
                Err(e) => return Ok(skipped(spec, format!("no VM tools: {e:#}"))),
            };
            let accel = vm::accel(&kernel.image);
            let how = match accel {
                Accel::Kvm => "VM, KVM",
                Accel::Tcg => "VM, TCG",
            };
            println!(
                "xtask vm: booting {} ({how}), {} test(s)",
                kernel.release,
                resolved.len()
            );
            let ended = vng.run(&kernel, accel, &script_path, &scratch.0, limit)?;
            if ended == Ended::Interrupted {
                bail!("interrupted: the VM was stopped and its files removed");
            }
            let release = fs::read_to_string(scratch.0.join("release"))
                .map(|r| r.trim().to_string())
                .unwrap_or(kernel.release.clone());
            if !scratch.0.join("release").exists() {
                let read = |f: &str| fs::read_to_string(scratch.0.join(f)).unwrap_or_default();
                eprintln!(
                    "xtask vm: the guest never ran the script; console:\n{}\nvng:\n{}",
                    tail(&read("console.log"), 30),
                    tail(&read("vng.err"), 15)
                );
            }
            let why = match ended {
                Ended::TimedOut => format!("the VM ran past its {} s limit", limit.as_secs()),
                _ => "the VM ended before it".to_string(),
            };
            (release, how.to_string(), why)
        }
    };
    let tests = collect(&scratch.0, &resolved, &ended);
    println!(
        "xtask vm: {release}: {} test(s) in {:.0} s",
        tests.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(KernelRun {
        release,
        how,
        tests,
        skipped: None,
    })
}

fn guest_kernel(spec: &Spec) -> Result<GuestKernel> {
    match spec {
        Spec::Debian(s) => kernels::debian(s),
        Spec::Path(p) => Ok(kernels::from_path(p)),
        Spec::Host => bail!("the host kernel needs no VM"),
    }
}

fn skipped(spec: &Spec, why: String) -> KernelRun {
    KernelRun {
        release: match spec {
            Spec::Host => "host".into(),
            Spec::Debian(s) => s.clone(),
            Spec::Path(p) => p.display().to_string(),
        },
        how: "skipped".into(),
        tests: Vec::new(),
        skipped: Some(why),
    }
}

/// Prints each kernel's results and the feature matrix.
fn report(runs: &[KernelRun]) {
    for run in runs {
        println!();
        if let Some(why) = &run.skipped {
            println!("kernel {}: SKIPPED: {why}", run.release);
            continue;
        }
        println!("kernel {} ({}):", run.release, run.how);
        for t in &run.tests {
            match &t.status {
                Status::Pass => println!("  pass  {:<58} {:>6.1} s", t.name, t.secs),
                Status::Skip(r) => println!("  skip  {:<58} {r}", t.name),
                Status::Fail(why) => {
                    println!("  FAIL  {:<58} {:>6.1} s", t.name, t.secs);
                    for l in why.lines() {
                        println!("          {l}");
                    }
                }
            }
        }
    }
    println!();
    println!("{}", render(runs, false));
}

/// The feature-by-kernel matrix as a table (Markdown when `markdown`).
pub fn render(runs: &[KernelRun], markdown: bool) -> String {
    let runs: Vec<&KernelRun> = runs.iter().filter(|r| r.skipped.is_none()).collect();
    let mut rows: Vec<String> = Vec::new();
    for r in &runs {
        for t in &r.tests {
            for (row, _) in &t.cells {
                if !rows.contains(row) {
                    rows.push(row.clone());
                }
            }
            let row = format!("test {}", t.name);
            if t.cells.is_empty() && !rows.contains(&row) {
                rows.push(row);
            }
        }
    }
    let cell = |run: &KernelRun, row: &str| -> String {
        for t in &run.tests {
            let named = row.strip_prefix("test ") == Some(t.name.as_str());
            let has = t.cells.iter().find(|(r, _)| r == row);
            match (&t.status, has, named) {
                (Status::Fail(_), _, true) => return "FAIL".into(),
                (Status::Fail(_), Some(_), _) => return format!("FAIL ({})", t.name),
                (Status::Skip(why), _, true) => return format!("skip: {why}"),
                (_, Some((_, c)), _) => return c.clone(),
                (Status::Pass, None, true) => return "pass".into(),
                _ => {}
            }
        }
        // A compat test that failed before printing its cell.
        run.tests
            .iter()
            .find(|t| matches!(t.status, Status::Fail(_)) && t.name.starts_with("compat_"))
            .map_or("-".into(), |t| format!("FAIL? ({})", t.name))
    };
    let mut table: Vec<Vec<String>> = vec![
        std::iter::once("feature".to_string())
            .chain(runs.iter().map(|r| format!("{} ({})", r.release, r.how)))
            .collect(),
    ];
    for row in &rows {
        table.push(
            std::iter::once(row.clone())
                .chain(runs.iter().map(|r| cell(r, row)))
                .collect(),
        );
    }
    table.push(
        std::iter::once("tests passed / skipped / failed".to_string())
            .chain(runs.iter().map(|r| {
                let n = |f: fn(&Status) -> bool| r.tests.iter().filter(|t| f(&t.status)).count();
                format!(
                    "{} / {} / {}",
                    n(|s| *s == Status::Pass),
                    n(|s| matches!(s, Status::Skip(_))),
                    n(|s| matches!(s, Status::Fail(_)))
                )
            }))
            .collect(),
    );
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, r) in table.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        if markdown {
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if i == 0 {
                let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "|-{}-|", sep.join("-|-"));
            }
        } else {
            let _ = writeln!(out, "  {}", cells.join("  "));
        }
    }
    out
}

/// Replaces the marked section of docs/kernel-compat.md (adding it before the section on
/// the development machines the first time).
fn write_docs(runs: &[KernelRun]) -> Result<()> {
    let path = crate::workspace_root().join(DOC);
    let doc = fs::read_to_string(&path).with_context(|| format!("reading {DOC}"))?;
    let body = format!(
        "{BEGIN}\n\n{}\nEach cell is what the compat tests (`tests/tests/compat.rs` and the other \
         tests of the set in `xtask/src/matrix.rs`) saw on that kernel; `FAIL` cells name the test.\n\n{END}",
        render(runs, true)
    );
    let new = match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{body}{}", &doc[..b], &doc[e + END.len()..]),
        _ => {
            let section = format!("## Measured on Debian's kernels\n\n{body}\n\n");
            match doc.find("## On the development machines") {
                Some(at) => format!("{}{section}{}", &doc[..at], &doc[at..]),
                None => format!("{doc}\n{section}"),
            }
        }
    };
    fs::write(&path, new).with_context(|| format!("writing {DOC}"))?;
    println!("xtask: wrote the matrix into {DOC}");
    Ok(())
}

/// `--kernel`/`--kernels`: the compat set (or the tests of it named in `only`) on each
/// kernel, the report, the docs.
pub fn run(specs: &[String], write: bool, only: &[String]) -> Result<ExitCode> {
    vm::catch_interrupts();
    let mut set: Vec<(&str, &str)> = SMOKE.iter().chain(COMPAT_EXTRA).copied().collect();
    if let Some(unknown) = only.iter().find(|o| !set.iter().any(|(_, t)| t == o)) {
        bail!(
            "--only {unknown}: not a test of the compat set; it has {}",
            set.iter().map(|(_, t)| *t).collect::<Vec<_>>().join(", ")
        );
    }
    if !only.is_empty() {
        set.retain(|(_, t)| only.iter().any(|o| o == t));
    }
    let mut runs = Vec::new();
    for s in specs {
        let spec = Spec::parse(s)?;
        runs.push(run_on(&spec, &set, Duration::from_secs(40 * 60))?);
        if vm::interrupted() {
            bail!("interrupted");
        }
    }
    report(&runs);
    if write {
        if runs.iter().any(|r| r.skipped.is_some()) {
            bail!("not writing {DOC}: a kernel was skipped");
        }
        write_docs(&runs)?;
    }
    let failed: usize = runs.iter().map(KernelRun::failed).sum();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The default run's other kernel: the smoke set on 6.1, or why it was skipped. Returns
/// whether nothing failed.
pub fn smoke() -> Result<bool> {
    vm::catch_interrupts();
    let run = run_on(
        &Spec::Debian("6.1".into()),
        SMOKE,
        Duration::from_secs(10 * 60),
    )?;
    if let Some(why) = &run.skipped {
        println!("xtask test: SKIPPED the Linux 6.1 smoke run: {why}");
        return Ok(true);
    }
    report(std::slice::from_ref(&run));
    Ok(run.failed() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, status: Status, cells: &[(&str, &str)]) -> TestResult {
        TestResult {
            name: name.into(),
            status,
            cells: cells
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            secs: 1.0,
        }
    }

    #[test]
    fn results_are_read_from_the_files() {
        let dir = ScratchDir::new("unit").unwrap();
        let set: Vec<(String, PathBuf, String)> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| ("compat".into(), PathBuf::from("/x"), n.to_string()))
            .collect();
        let w = |f: &str, s: &str| fs::write(dir.0.join(f), s).unwrap();
        w(
            "0.out",
            "NETMIT-COMPAT: row one = yes\ntest result: ok. 1 passed\n",
        );
        w("0.rc", "0\n");
        w(
            "1.out",
            "SKIP b: no such thing here\ntest result: ok. 1 passed\n",
        );
        w("1.rc", "0\n");
        w("2.out", "boom\nassertion failed\n");
        w("2.rc", "101\n");
        w("3.out", "running 0 tests\n");
        w("3.rc", "0\n");
        let r = collect(&dir.0, &set, "the VM ended");
        assert_eq!(r[0].status, Status::Pass);
        assert_eq!(r[0].cells, [("row one".to_string(), "yes".to_string())]);
        assert_eq!(r[1].status, Status::Skip("b: no such thing here".into()));
        assert!(matches!(&r[2].status, Status::Fail(t) if t.contains("assertion failed")));
        assert!(matches!(&r[3].status, Status::Fail(t) if t.contains("no test")));
        assert!(matches!(&r[4].status, Status::Fail(t) if t.contains("VM ended")));
    }

    #[test]
    fn matrix_has_a_row_per_cell_and_fails_show() {
        let runs = [
            KernelRun {
                release: "6.1".into(),
                how: "VM, TCG".into(),
                tests: vec![
                    result("compat_x", Status::Pass, &[("napi-set", "sysfs")]),
                    result("steering_on_veth_native", Status::Fail("x".into()), &[]),
                ],
                skipped: None,
            },
            KernelRun {
                release: "6.18".into(),
                how: "host".into(),
                tests: vec![
                    result("compat_x", Status::Pass, &[("napi-set", "netlink")]),
                    result("steering_on_veth_native", Status::Pass, &[]),
                ],
                skipped: None,
            },
        ];
        let t = render(&runs, true);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("6.1 (VM, TCG)") && lines[0].contains("6.18 (host)"));
        assert!(
            lines[2].contains("napi-set")
                && lines[2].contains("sysfs")
                && lines[2].contains("netlink")
        );
        assert!(lines[3].contains("test steering_on_veth_native") && lines[3].contains("FAIL"));
        assert!(lines[4].contains("1 / 0 / 1") && lines[4].contains("2 / 0 / 0"));
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}
