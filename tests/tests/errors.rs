//! Bad input and refused operations: each gives a one-line error that says what to do,
//! exits non-zero, and changes nothing (checked against the kernel and bpffs).

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use netmit_common::names;
use tests::{
    netmit::{Run, kernel_xdp, netmit, netmit_unprivileged, pin_dir},
    support::require_root,
    testbed::{Side, Testbed},
};

/// Asserts a failed run with a single-line error mentioning `needle`.
fn assert_error(run: &Run, needle: &str) {
    assert!(!run.ok, "expected failure, got success: {}", run.stdout);
    let err = run.stderr.trim();
    assert_eq!(err.lines().count(), 1, "error is not one line: {err}");
    assert!(err.contains(needle), "error lacks `{needle}`: {err}");
}

fn attached_prog(tb: &Testbed, side: Side) -> Option<u64> {
    kernel_xdp(tb, side).map(|(_, id)| id)
}

#[test]
fn unknown_interface() {
    if !require_root("unknown_interface") {
        return;
    }
    let tb = Testbed::new().unwrap();
    for args in [
        &["attach", "nmnosuch0"][..],
        &["detach", "nmnosuch0"],
        &["status", "nmnosuch0"],
        &["steer", "list", "nmnosuch0"],
    ] {
        let run = netmit(&tb, Side::A, args);
        assert!(!run.ok, "{args:?} succeeded");
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_error(
        &netmit(&tb, Side::A, &["attach", "nmnosuch0"]),
        "does not exist",
    );
}

#[test]
fn malformed_rules_change_nothing() {
    if !require_root("malformed_rules_change_nothing") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let run = netmit(
        &tb,
        Side::A,
        &["attach", tb.if_a(), "--steer", "proto=icmp"],
    );
    assert!(!run.ok);
    assert!(
        run.stderr.contains("`proto`") && run.stderr.contains("udp, tcp, any"),
        "{}",
        run.stderr
    );
    assert_eq!(attached_prog(&tb, Side::A), None);
    assert!(!pin_dir(&tb, Side::A).exists());

    assert!(netmit(&tb, Side::A, &["attach", tb.if_a(), "--steer", "dport=53"]).ok);
    for bad in [
        "dport=70000",
        "vlan=5000",
        "dst=198.18.0.1/15",
        "color=red",
        "proto",
    ] {
        let run = netmit(&tb, Side::A, &["steer", "add", tb.if_a(), bad]);
        assert!(!run.ok, "{bad} accepted");
    }
    let del = netmit(&tb, Side::A, &["steer", "del", tb.if_a(), "7"]);
    assert_error(&del, "no rule with id 7");
    let list = netmit(&tb, Side::A, &["steer", "list", tb.if_a(), "--json"]).json();
    assert_eq!(
        list["rules"].as_array().unwrap().len(),
        1,
        "rules changed: {list}"
    );
    assert!(netmit(&tb, Side::A, &["detach", tb.if_a()]).ok);
}

#[test]
fn attach_twice_and_detach_when_not_attached() {
    if !require_root("attach_twice_and_detach_when_not_attached") {
        return;
    }
    let tb = Testbed::new().unwrap();
    assert_error(
        &netmit(&tb, Side::A, &["detach", tb.if_a()]),
        "not attached",
    );
    assert_eq!(attached_prog(&tb, Side::A), None);

    let first = netmit(&tb, Side::A, &["attach", tb.if_a(), "--json"]);
    assert!(first.ok, "{}", first.stderr);
    let id = first.json()["prog_id"].as_u64().unwrap();
    let second = netmit(&tb, Side::A, &["attach", tb.if_a()]);
    assert_error(&second, "already attached");
    assert!(
        second.stderr.contains("netmit detach"),
        "says what to do: {}",
        second.stderr
    );
    assert_eq!(
        attached_prog(&tb, Side::A),
        Some(id),
        "second attach changed the program"
    );
    assert!(netmit(&tb, Side::A, &["detach", tb.if_a()]).ok);
    assert_error(
        &netmit(&tb, Side::A, &["detach", tb.if_a()]),
        "not attached",
    );
}

/// Loads the trivial XDP program from netmit's own object: a stand-in for another tool's
/// program (netmit recognises its own attachments by their pins, not by program name).
fn foreign_program() -> Ebpf {
    let mut ebpf = Ebpf::load(netmit_user::ebpf::EBPF_OBJECT).expect("load object");
    let prog: &mut Xdp = ebpf
        .program_mut(names::PROG_PASS)
        .unwrap()
        .try_into()
        .unwrap();
    prog.load().expect("load pass program");
    ebpf
}

#[test]
fn foreign_bpf_link_program_is_kept_unless_forced() {
    if !require_root("foreign_bpf_link_program_is_kept_unless_forced") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let mut ebpf = foreign_program();
    let ifindex = tb.ifindex_a();
    tb.in_ns(Side::A, || {
        let prog: &mut Xdp = ebpf
            .program_mut(names::PROG_PASS)
            .unwrap()
            .try_into()
            .unwrap();
        prog.attach_to_if_index(ifindex, XdpMode::Skb)
            .expect("attach foreign program");
    });
    let foreign = attached_prog(&tb, Side::A).expect("foreign program attached");

    let run = netmit(&tb, Side::A, &["attach", tb.if_a()]);
    assert_error(&run, "--force");
    assert_eq!(
        attached_prog(&tb, Side::A),
        Some(foreign),
        "foreign program touched"
    );
    assert!(!pin_dir(&tb, Side::A).exists());

    let forced = netmit(&tb, Side::A, &["attach", tb.if_a(), "--force", "--json"]);
    assert!(forced.ok, "{}", forced.stderr);
    let forced = forced.json();
    assert_eq!(forced["replaced_prog_id"].as_u64(), Some(foreign));
    assert_eq!(attached_prog(&tb, Side::A), forced["prog_id"].as_u64());
    assert!(netmit(&tb, Side::A, &["detach", tb.if_a()]).ok);
    assert_eq!(attached_prog(&tb, Side::A), None);
    drop(ebpf);
}

#[test]
fn foreign_netlink_program_is_kept_unless_forced() {
    if !require_root("foreign_netlink_program_is_kept_unless_forced") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let mut ebpf = foreign_program();
    let pin = format!("/sys/fs/bpf/nmtest-{}-{}", std::process::id(), tb.id());
    let prog: &mut Xdp = ebpf
        .program_mut(names::PROG_PASS)
        .unwrap()
        .try_into()
        .unwrap();
    prog.pin(&pin).expect("pin foreign program");
    let attached = tb.run(
        Side::B,
        "ip",
        [
            "link",
            "set",
            "dev",
            tb.if_b(),
            "xdpgeneric",
            "pinned",
            &pin,
        ],
    );
    std::fs::remove_file(&pin).unwrap();
    attached.expect("ip link set xdpgeneric pinned");
    let foreign = attached_prog(&tb, Side::B).expect("attached through netlink");

    let run = netmit(&tb, Side::B, &["detach", tb.if_b()]);
    assert_error(&run, "netmit leaves it alone");
    assert_error(
        &netmit(&tb, Side::B, &["attach", tb.if_b(), "--mode", "generic"]),
        "did not attach",
    );
    assert_eq!(attached_prog(&tb, Side::B), Some(foreign));

    let forced = netmit(
        &tb,
        Side::B,
        &[
            "attach",
            tb.if_b(),
            "--mode",
            "generic",
            "--force",
            "--json",
        ],
    );
    assert!(forced.ok, "{}", forced.stderr);
    assert_eq!(
        attached_prog(&tb, Side::B),
        forced.json()["prog_id"].as_u64()
    );
    assert!(netmit(&tb, Side::B, &["detach", tb.if_b()]).ok);
    assert_eq!(attached_prog(&tb, Side::B), None);
}

#[test]
fn unprivileged_user_is_refused() {
    if !require_root("unprivileged_user_is_refused") {
        return;
    }
    let tb = Testbed::new().unwrap();
    assert_error(
        &netmit_unprivileged(&tb, Side::A, &["attach", tb.if_a()]),
        "needs root",
    );
    assert_eq!(attached_prog(&tb, Side::A), None);

    assert!(netmit(&tb, Side::A, &["attach", tb.if_a()]).ok);
    let id = attached_prog(&tb, Side::A);
    assert_error(
        &netmit_unprivileged(&tb, Side::A, &["detach", tb.if_a()]),
        "needs root",
    );
    assert_error(
        &netmit_unprivileged(&tb, Side::A, &["status", tb.if_a()]),
        "root",
    );
    assert_error(
        &netmit_unprivileged(&tb, Side::A, &["steer", "add", tb.if_a(), "dport=1"]),
        "root",
    );
    assert_eq!(
        attached_prog(&tb, Side::A),
        id,
        "unprivileged command changed the program"
    );
    assert!(pin_dir(&tb, Side::A).join("link").exists());
    assert!(netmit(&tb, Side::A, &["detach", tb.if_a()]).ok);
}
