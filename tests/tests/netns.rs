//! Two network namespaces with an interface of the same name each (what every container
//! host has): attach, steer, status, tune and detach in one never see or change the
//! other's, in either order, and a restore after `kill -9` in one namespace puts back
//! only that namespace's settings (issue 11).
//!
//! Both namespaces are the two sides of one testbed; in each, a veth pair `nmsame0` /
//! `nmsame1` is created inside it. Every check reads the kernel's own view (`ip -j -d
//! link`, netdev netlink napi-get in the namespace) besides netmit's JSON.

use std::time::Duration;

use netmit_user::sys::{
    Netdev,
    napi::{self, NapiParam},
};
use serde_json::Value;
use tests::{
    netmit::Run,
    support::{RunDir, netmit_bin, require_root},
    testbed::{Side, Testbed},
};

const SAME: &str = "nmsame0";
const PEER: &str = "nmsame1";

fn netmit(tb: &Testbed, side: Side, run: &RunDir, args: &[&str]) -> Run {
    let out = tb
        .cmd(side, netmit_bin(), args)
        .env("NETMIT_RUN_DIR", &run.0)
        .output()
        .expect("spawn netmit");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(run: Run, what: &str) -> Run {
    assert!(run.ok, "{what}: {}\n{}", run.stdout, run.stderr);
    run
}

/// The same-named veth pair inside `side`'s namespace.
fn make_pair(tb: &Testbed, side: Side) {
    tb.run(
        side,
        "ip",
        ["link", "add", SAME, "type", "veth", "peer", "name", PEER],
    )
    .expect("ip link add");
    for dev in [SAME, PEER] {
        tb.run(side, "ip", ["link", "set", dev, "up"])
            .expect("ip link set up");
    }
}

fn dev(tb: &Testbed, side: Side) -> Netdev {
    let name = SAME.parse().unwrap();
    tb.in_ns(side, || Netdev::resolve(&name)).expect("resolve")
}

/// The XDP program id on `side`'s `nmsame0`, per `ip -j -d link`.
fn kernel_prog(tb: &Testbed, side: Side) -> Option<u64> {
    let out = tb
        .run(side, "ip", ["-j", "-d", "link", "show", "dev", SAME])
        .expect("ip link show");
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    v[0]["xdp"]["prog"]["id"].as_u64()
}

/// (NAPI id, defer-hard-irqs) of `side`'s `nmsame0`, per napi-get in its namespace.
fn napi_defer(tb: &Testbed, side: Side) -> (u32, u64) {
    let d = dev(tb, side);
    let list = tb.in_ns(side, || napi::list(&d)).expect("napi list");
    assert_eq!(list.len(), 1, "{list:?}");
    (list[0].id, list[0].value(NapiParam::DeferHardIrqs).unwrap())
}

fn rules(tb: &Testbed, side: Side, run: &RunDir) -> Vec<String> {
    let v = ok(
        netmit(tb, side, run, &["steer", "list", SAME, "--json"]),
        "steer list",
    )
    .json();
    v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_string())
        .collect()
}

fn status(tb: &Testbed, side: Side, run: &RunDir) -> Value {
    ok(
        netmit(tb, side, run, &["status", "--json", "--interval", "0"]),
        "status",
    )
    .json()
}

fn scenario(tb: &Testbed, first: Side, second: Side) {
    let run = RunDir::new("netns");
    for side in [first, second] {
        ok(
            netmit(
                tb,
                side,
                &run,
                &[
                    "attach",
                    SAME,
                    "--mode",
                    "native",
                    "--steer",
                    &format!("proto=udp,dport={},action=drop", port(side)),
                ],
            ),
            "attach",
        );
    }
    let (pa, pb) = (kernel_prog(tb, first), kernel_prog(tb, second));
    assert!(pa.is_some() && pb.is_some() && pa != pb, "{pa:?} {pb:?}");

    // Each namespace sees its own attachment, its own rules, and nothing of the other.
    for side in [first, second] {
        let s = status(tb, side, &run);
        let ifaces = s["interfaces"].as_array().unwrap();
        assert_eq!(ifaces.len(), 1, "{s}");
        assert_eq!(ifaces[0]["iface"], SAME);
        assert_eq!(
            ifaces[0]["kernel_xdp_prog_id"].as_u64(),
            kernel_prog(tb, side)
        );
        assert_eq!(
            rules(tb, side, &run),
            vec![format!(
                "proto=udp,dport={},action=drop,prio=1000",
                port(side)
            )]
        );
    }
    ok(
        netmit(
            tb,
            first,
            &run,
            &["steer", "add", SAME, "proto=tcp,dport=22,action=pass"],
        ),
        "steer add",
    );
    assert_eq!(rules(tb, first, &run).len(), 2);
    assert_eq!(
        rules(tb, second, &run).len(),
        1,
        "the other namespace's rules"
    );

    // Tuning one namespace's device leaves the other's alone.
    let (_, before_second) = napi_defer(tb, second);
    ok(
        netmit(
            tb,
            first,
            &run,
            &["tune", "set", SAME, "--defer-hard-irqs", "42"],
        ),
        "tune set",
    );
    assert_eq!(napi_defer(tb, first).1, 42);
    assert_eq!(napi_defer(tb, second).1, before_second);
    ok(
        netmit(
            tb,
            second,
            &run,
            &["tune", "set", SAME, "--defer-hard-irqs", "17"],
        ),
        "tune set",
    );

    // A process killed in the first namespace between journaling and writing; a restore
    // there puts back only that namespace's settings.
    let marker = run.0.join("paused");
    let mut child = tb
        .cmd(
            first,
            netmit_bin(),
            ["tune", "set", SAME, "--gro-flush-timeout", "300us"],
        )
        .env("NETMIT_RUN_DIR", &run.0)
        .env("NETMIT_TEST_PAUSE_AFTER_JOURNAL", &marker)
        .spawn()
        .expect("spawn");
    let mut waited = 0;
    while !marker.exists() {
        assert!(waited < 400, "the child never reached the crash point");
        std::thread::sleep(Duration::from_millis(25));
        waited += 1;
    }
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let restore = ok(
        netmit(tb, first, &run, &["tune", "restore"]),
        "tune restore",
    );
    assert!(restore.stdout.contains("kept"), "{}", restore.stdout);
    assert_eq!(napi_defer(tb, first).1, 0, "the first namespace's original");
    assert_eq!(
        napi_defer(tb, second).1,
        17,
        "the other namespace's setting stays"
    );
    let journal = std::fs::read_to_string(run.0.join("journal.json")).unwrap();
    assert!(journal.contains("\"defer-hard-irqs\""), "{journal}");
    ok(
        netmit(tb, second, &run, &["tune", "restore"]),
        "tune restore",
    );
    assert_eq!(napi_defer(tb, second).1, 0);
    assert!(
        !run.0.join("journal.json").exists(),
        "nothing left to restore"
    );

    // Detach the first: the second stays attached.
    ok(netmit(tb, first, &run, &["detach", SAME]), "detach");
    assert_eq!(kernel_prog(tb, first), None);
    assert_eq!(kernel_prog(tb, second), pb);
    assert_eq!(rules(tb, second, &run).len(), 1);
    let again = netmit(tb, first, &run, &["detach", SAME]);
    assert!(
        !again.ok && again.stderr.contains("not attached"),
        "{}",
        again.stderr
    );
    ok(netmit(tb, second, &run, &["detach", SAME]), "detach");
    assert_eq!(kernel_prog(tb, second), None);
}

fn port(side: Side) -> u16 {
    match side {
        Side::A => 9401,
        Side::B => 9402,
    }
}

#[test]
fn same_named_interfaces_in_two_namespaces_stay_apart() {
    if !require_root("same_named_interfaces_in_two_namespaces_stay_apart") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    make_pair(&tb, Side::A);
    make_pair(&tb, Side::B);
    scenario(&tb, Side::A, Side::B);
    scenario(&tb, Side::B, Side::A);
}

#[test]
fn a_renamed_interface_keeps_its_attachment() {
    if !require_root("a_renamed_interface_keeps_its_attachment") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    make_pair(&tb, Side::A);
    let run = RunDir::new("netns");
    ok(
        netmit(&tb, Side::A, &run, &["attach", SAME, "--mode", "native"]),
        "attach",
    );
    let prog = kernel_prog(&tb, Side::A);
    tb.run(Side::A, "ip", ["link", "set", SAME, "down"])
        .unwrap();
    tb.run(Side::A, "ip", ["link", "set", SAME, "name", "nmrenamed0"])
        .unwrap();
    tb.run(Side::A, "ip", ["link", "set", "nmrenamed0", "up"])
        .unwrap();
    let s = status(&tb, Side::A, &run);
    assert_eq!(s["interfaces"][0]["iface"], "nmrenamed0", "{s}");
    assert_eq!(s["interfaces"][0]["prog_id"].as_u64(), prog);
    ok(
        netmit(
            &tb,
            Side::A,
            &run,
            &["steer", "add", "nmrenamed0", "dport=7"],
        ),
        "steer add after the rename",
    );
    ok(
        netmit(&tb, Side::A, &run, &["detach", "nmrenamed0"]),
        "detach after the rename",
    );
}
