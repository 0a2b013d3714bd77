//! The fallbacks of docs/kernel-compat.md, each checked against what the running kernel
//! really has ([`tests::kernel`]: its functions in /proc/kallsyms, cross-checked with the
//! release that introduced them). They pass on every kernel netmit supports, by taking the
//! feature where it exists and the documented fallback where it does not; a probe that
//! reports the wrong verdict, or a fallback that crashes, fails.
//!
//! `cargo xtask test --kernels` runs these (and a few of the other tests) on Linux 6.1,
//! 6.12 and the host's kernel in virtual machines and prints a feature-by-kernel matrix
//! from the `NETMIT-COMPAT:` lines they print ([`tests::kernel::report`]).

use std::{
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    kernel::{Feature, Kernel, report},
    netmit::{http_get, kernel_xdp, netmit},
    support::{RunDir, netmit_bin, require_root},
    testbed::{Side, Testbed},
};

#[test]
fn compat_feature_oracle_agrees_with_the_kernel_version() {
    if !require_root("compat_feature_oracle_agrees_with_the_kernel_version") {
        return;
    }
    let k = Kernel::running();
    k.cross_check();
    report("kernel release", &k.release);
}

/// Native, generic and auto attachment, judged by the kernel's own view of the link.
#[test]
fn compat_xdp_attach_modes() {
    if !require_root("compat_xdp_attach_modes") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    for (mode, want) in [("native", 1), ("generic", 2), ("auto", 1)] {
        let r = netmit(
            &tb,
            Side::A,
            &[
                "attach",
                tb.if_a(),
                "--mode",
                mode,
                "--steer",
                "proto=udp,dport=9000,action=pass",
                "--steer",
                "dst=2001:db8::/32,action=drop",
            ],
        );
        assert!(r.ok, "attach --mode {mode}: {}", r.stderr);
        let (got, _) = kernel_xdp(&tb, Side::A).expect("the kernel shows an XDP program");
        assert_eq!(got, want, "attach --mode {mode}: IFLA_XDP_ATTACHED");
        let r = netmit(&tb, Side::A, &["detach", tb.if_a()]);
        assert!(r.ok, "detach: {}", r.stderr);
        assert_eq!(kernel_xdp(&tb, Side::A), None, "detached after {mode}");
    }
    report(
        "XDP attach native / generic / auto (veth)",
        "native / generic / native",
    );
}

fn probe<'v>(v: &'v Value, section: &str, feature: &str) -> &'v Value {
    v[section]
        .as_array()
        .unwrap_or_else(|| panic!("no {section} in {v}"))
        .iter()
        .find(|p| p["feature"] == feature)
        .unwrap_or_else(|| panic!("no probe {feature} in {section}: {v}"))
}

/// Every probe of `netmit check` against the kernel's truth: present features work,
/// missing ones are reported missing, and what the kernel cannot say is "unknown".
#[test]
fn compat_check_probes_match_the_kernel() {
    if !require_root("compat_check_probes_match_the_kernel") {
        return;
    }
    let k = Kernel::running();
    let tb = Testbed::new().expect("testbed");
    let r = netmit(&tb, Side::A, &["attach", tb.if_a(), "--mode", "native"]);
    assert!(r.ok, "{}", r.stderr);
    let r = netmit(&tb, Side::A, &["check", tb.if_a(), "--json"]);
    assert!(r.ok, "{}", r.stderr);
    let v = r.json();
    let verdict = |section: &str, feature: &str| -> Option<bool> {
        let p = probe(&v, section, feature);
        if p["known"] == false {
            None
        } else {
            Some(p["works"].as_bool().expect("works"))
        }
    };
    let mut wrong = Vec::new();
    let mut expect = |section: &str, feature: &str, want: Option<bool>| {
        let got = verdict(section, feature);
        if got != want {
            wrong.push(format!(
                "{section} / {feature}: netmit says {got:?}, the kernel has {want:?}: {}",
                probe(&v, section, feature)
            ));
        }
    };
    let family = k.has(Feature::NetdevFamily);
    let napi_get = k.has(Feature::NapiGet);
    let napi_set = k.has(Feature::NapiSet);
    for f in [
        "bpffs at /sys/fs/bpf",
        "BPF program load and BPF_PROG_TEST_RUN",
        "XDP native (driver) mode, via bpf_link",
        "XDP generic (skb) mode, via bpf_link",
    ] {
        expect("system", f, Some(true));
    }
    let af_xdp = Some(k.has(Feature::AfXdp));
    expect("system", "AF_XDP socket bound in copy mode", af_xdp);
    // A tap has no zero-copy on any kernel.
    expect(
        "system",
        "AF_XDP socket bound in zero-copy mode (scratch tap)",
        Some(false),
    );
    expect("system", "netdev netlink napi-get", Some(napi_get));
    expect("system", "napi-set defer-hard-irqs", Some(napi_set));
    expect("system", "napi-set gro-flush-timeout", Some(napi_set));
    expect(
        "system",
        "napi-set irq-suspend-timeout (IRQ suspension)",
        Some(k.has(Feature::IrqSuspend)),
    );
    expect(
        "system",
        "napi-set threaded",
        Some(k.has(Feature::NapiThreaded)),
    );
    expect(
        "system",
        "napi:napi_poll tracepoint",
        Some(k.has(Feature::NapiPollTracepoint)),
    );
    // veth reports basic XDP and redirect, never zero-copy; the flags need the family.
    let flags = |b: bool| if family { Some(b) } else { None };
    expect("device", "native XDP on this device", flags(true));
    expect("device", "XDP_REDIRECT on this device", flags(true));
    expect("device", "AF_XDP zero-copy on this device", flags(false));
    // Native XDP gives the veth a NAPI; listing it needs napi-get.
    expect(
        "device",
        "NAPI instances",
        if napi_get { Some(true) } else { None },
    );
    if napi_get {
        expect("device", "napi-set on this device", Some(napi_set));
    }
    expect("device", "NIC interrupt coalescing", Some(false));
    // The device-wide sysfs files are read from the namespace's own sysfs, which only
    // `ip netns exec` mounts (and which hides bpffs, so the rest is judged above).
    let out = Command::new("ip")
        .args(["netns", "exec", tb.ns_a()])
        .arg(netmit_bin())
        .args(["check", tb.if_a(), "--json"])
        .output()
        .expect("spawn netmit");
    let in_ns: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    for f in ["defer-hard-irqs", "gro-flush-timeout", "threaded"] {
        let p = probe(&in_ns, "device", f);
        if p["works"] != true {
            wrong.push(format!("device / {f} (own sysfs): {p}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let yn = |b: bool| if b { "yes" } else { "no" };
    report(
        "check: netdev family / napi-get / napi-set / irq-suspend",
        &format!(
            "{} / {} / {} / {}",
            yn(family),
            yn(napi_get),
            yn(napi_set),
            yn(k.has(Feature::IrqSuspend))
        ),
    );
    report(
        "check: per-device XDP flags",
        if family {
            "read"
        } else {
            "unknown (no netdev family)"
        },
    );
}

/// `netmit` in A's namespace with its sysfs (`ip netns exec`): the device-wide files are
/// per namespace. `force_sysfs` switches per-NAPI netlink off where the kernel has it.
fn tune(tb: &Testbed, s: &RunDir, force_sysfs: bool, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", tb.ns_a()])
        .arg(netmit_bin())
        .args(args)
        .env("NETMIT_RUN_DIR", s.sub("run"));
    if force_sysfs {
        cmd.env("NETMIT_TEST_FORCE_SYSFS", "1");
    }
    let out = cmd.output().expect("spawn netmit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A device-wide sysfs value of A's veth, read by `cat` in A's sysfs.
fn sysfs(tb: &Testbed, file: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", tb.ns_a(), "cat"])
        .arg(format!("/sys/class/net/{}/{file}", tb.if_a()))
        .output()
        .expect("cat");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{file}: {text:?}"))
}

/// Deferral through the device-wide sysfs files where napi-set is missing (forced where it
/// is not), the journal, restore, and IRQ suspension refused without per-NAPI netlink.
#[test]
fn compat_tuning_falls_back_to_sysfs_and_restores() {
    if !require_root("compat_tuning_falls_back_to_sysfs_and_restores") {
        return;
    }
    let k = Kernel::running();
    let natural = !k.has(Feature::NapiSet);
    let tb = Testbed::new().expect("testbed");
    let r = netmit(&tb, Side::A, &["attach", tb.if_a(), "--mode", "native"]);
    assert!(r.ok, "{}", r.stderr);
    let s = RunDir::created("compat-tune");
    let before = (
        sysfs(&tb, "napi_defer_hard_irqs"),
        sysfs(&tb, "gro_flush_timeout"),
    );
    let set = [
        "tune",
        "set",
        tb.if_a(),
        "--defer-hard-irqs",
        "7",
        "--gro-flush-timeout",
        "30us",
    ];
    let (ok, err) = tune(&tb, &s, !natural, &set);
    assert!(ok, "{err}");
    assert_eq!(sysfs(&tb, "napi_defer_hard_irqs"), 7);
    assert_eq!(sysfs(&tb, "gro_flush_timeout"), 30_000);
    let journal = fs::read_to_string(s.sub("run").join("journal.json")).expect("journal");
    assert!(
        journal.contains(tb.if_a()),
        "the journal names the device: {journal}"
    );

    let (ok, err) = tune(
        &tb,
        &s,
        !natural,
        &["tune", "set", tb.if_a(), "--irq-suspend-timeout", "1ms"],
    );
    assert!(
        !ok,
        "irq-suspend-timeout without per-NAPI netlink succeeded"
    );
    assert!(err.contains("per NAPI"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let (ok, err) = tune(&tb, &s, !natural, &["tune", "restore"]);
    assert!(ok, "{err}");
    assert_eq!(
        (
            sysfs(&tb, "napi_defer_hard_irqs"),
            sysfs(&tb, "gro_flush_timeout")
        ),
        before,
        "restore puts the originals back"
    );
    report(
        "tune defer-hard-irqs / gro-flush-timeout",
        if natural {
            "sysfs fallback (no napi-set)"
        } else {
            "napi-set; sysfs fallback when forced"
        },
    );
    report("tune journal + restore (sysfs)", "restored");

    if k.has(Feature::IrqSuspend) {
        // The feature itself, where the kernel has it: set, read back, restore.
        let (ok, err) = tune(
            &tb,
            &s,
            false,
            &["tune", "set", tb.if_a(), "--irq-suspend-timeout", "1ms"],
        );
        assert!(ok, "{err}");
        let (ok, err) = tune(&tb, &s, false, &["tune", "restore"]);
        assert!(ok, "{err}");
        report("tune irq-suspend-timeout", "napi-set");
    } else {
        report("tune irq-suspend-timeout", "refused (no napi-set)");
    }
}

/// The daemon's ceiling: no suspend mode without irq-suspend-timeout, sysfs where
/// napi-set is missing; it starts, ticks and exits cleanly either way.
#[test]
fn compat_daemon_mode_ceiling() {
    if !require_root("compat_daemon_mode_ceiling") {
        return;
    }
    const PORT: u16 = 9471;
    let k = Kernel::running();
    let tb = Testbed::new().expect("testbed");
    let s = RunDir::created("compat-daemon");
    let config = s.sub("netmit.toml");
    fs::write(
        &config,
        format!(
            "interval = \"200ms\"\nmetrics_address = \"127.0.0.1:{PORT}\"\n\n\
             [[interface]]\nname = \"{}\"\nattach = \"native\"\nmax_mode = \"suspend\"\n",
            tb.if_a()
        ),
    )
    .unwrap();
    let log = s.sub("daemon.log");
    let out = fs::File::create(&log).unwrap();
    // Where napi-set is missing the daemon writes the device-wide sysfs files, which it
    // must see for A's namespace: it runs in a private mount namespace with A's sysfs and
    // a bpffs of its own (as a daemon in the initial namespace sees them anyway).
    let mut cmd = tb.cmd(
        Side::A,
        "unshare",
        [
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t sysfs sysfs /sys && mount -t bpf bpf /sys/fs/bpf -o mode=0700 && \
             exec \"$0\" daemon --config \"$1\"",
            netmit_bin().to_str().unwrap(),
            config.to_str().unwrap(),
        ],
    );
    cmd.env("NETMIT_RUN_DIR", s.sub("run"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut child = tb.spawn_cmd(cmd).expect("spawn daemon");
    let log_text = || fs::read_to_string(&log).unwrap_or_default();
    // Under emulation (TCG) the start-up takes seconds; wait for the event, bounded.
    let start = Instant::now();
    let status = loop {
        if let Some((200, body)) = http_get(&tb, Side::A, PORT, "/status") {
            let v: Value = serde_json::from_str(&body).expect("status JSON");
            if v["ticks"].as_u64().unwrap_or(0) >= 2 {
                break v;
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the daemon exited ({st}):\n{}", log_text());
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no status after 90 s:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let iface = &status["interfaces"][0];
    let want = if k.has(Feature::IrqSuspend) && k.has(Feature::NapiSet) {
        "suspend"
    } else {
        "defer"
    };
    assert_eq!(iface["max_mode"], want, "{status}\n{}", log_text());
    assert_eq!(
        iface["sysfs_fallback"],
        !k.has(Feature::NapiSet),
        "{status}"
    );
    assert!(iface["last_error"].is_null(), "{status}\n{}", log_text());
    // SAFETY: signalling a child this test started.
    assert_eq!(unsafe { libc::kill(child.pid() as i32, libc::SIGTERM) }, 0);
    let st = child.wait().expect("wait for the daemon");
    assert!(st.success(), "daemon exit {st}:\n{}", log_text());
    assert_eq!(
        kernel_xdp(&tb, Side::A),
        None,
        "the daemon detached on SIGTERM"
    );
    report(
        "daemon mode ceiling (config allows suspend)",
        &format!(
            "{want}{}",
            if k.has(Feature::NapiSet) {
                ""
            } else {
                ", via sysfs"
            }
        ),
    );
}

/// `serve --mode busy-poll`: serves where EPIOCSPARAMS exists, and refuses in one line
/// naming it where it does not.
#[test]
fn compat_busy_poll_serve_or_clean_refusal() {
    if !require_root("compat_busy_poll_serve_or_clean_refusal") {
        return;
    }
    let k = Kernel::running();
    let tb = Testbed::new().expect("testbed");
    let r = netmit(
        &tb,
        Side::A,
        &[
            "serve",
            tb.if_a(),
            "--port",
            "9310",
            "--mode",
            "busy-poll",
            "--duration",
            "0.3",
            "--json",
        ],
    );
    if k.has(Feature::EpollParams) {
        assert!(r.ok, "{}", r.stderr);
        assert_eq!(r.json()["busy_poll"]["prefer_busy_poll"], true);
        report("serve --mode busy-poll", "EPIOCSPARAMS");
    } else {
        assert!(!r.ok, "busy-poll served without EPIOCSPARAMS: {}", r.stdout);
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
        assert!(r.stderr.contains("EPIOCSPARAMS"), "{}", r.stderr);
        // The epoll mode is the fallback, and works.
        let r = netmit(
            &tb,
            Side::A,
            &[
                "serve",
                tb.if_a(),
                "--port",
                "9310",
                "--mode",
                "epoll",
                "--duration",
                "0.3",
            ],
        );
        assert!(r.ok, "{}", r.stderr);
        report(
            "serve --mode busy-poll",
            "refused (no EPIOCSPARAMS); epoll works",
        );
    }
}
