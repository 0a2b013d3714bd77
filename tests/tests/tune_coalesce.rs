//! Interrupt coalescing over ethtool netlink ([`netmit_user::sys::coalesce`]) against the
//! kernel: a tap device (the only kind with coalescing on these machines: `rx-frames`,
//! clamped to 64) and a veth (none at all), cross-checked with the `ethtool -c` command.
//!
//! Every test makes its own testbed and creates the tap inside namespace A, so deleting the
//! namespace at the end also deletes the tap. Netlink calls run on a thread inside the
//! namespace (`Testbed::in_ns`).

use std::collections::BTreeMap;

use netmit_user::sys::{
    IfName, Netdev,
    coalesce::{self, Applied, CoalesceError, CoalesceParam},
};
use tests::{
    support::require_root,
    testbed::{IFNAME_MAX, Side, Testbed},
};

const RX_FRAMES: CoalesceParam = CoalesceParam::RxMaxFrames;

/// Creates a tap in namespace A and returns its name and the device there.
fn make_tap(tb: &Testbed) -> (String, Netdev) {
    let mut name = format!("{}t", tb.if_a());
    if name.len() > IFNAME_MAX {
        // Names are per namespace and the namespace is this testbed's own.
        name = "nmtap0".to_string();
    }
    tb.run(
        Side::A,
        "ip",
        ["tuntap", "add", "dev", &name, "mode", "tap"],
    )
    .expect("ip tuntap add");
    let ifname: IfName = name.parse().expect("valid name");
    let dev = tb
        .in_ns(Side::A, || Netdev::resolve(&ifname))
        .unwrap_or_else(|e| panic!("{name} in namespace A: {e}"));
    (name, dev)
}

fn get(tb: &Testbed, dev: &Netdev) -> Result<BTreeMap<CoalesceParam, u32>, CoalesceError> {
    tb.in_ns(Side::A, || coalesce::get(dev))
}

fn set(tb: &Testbed, dev: &Netdev, values: &[(CoalesceParam, u32)]) -> Result<(), CoalesceError> {
    tb.in_ns(Side::A, || coalesce::set(dev, values))
}

/// The `rx-frames:` value that `ethtool -c NAME` prints in namespace A (`None` for "n/a").
fn ethtool_rx_frames(tb: &Testbed, name: &str) -> Option<u32> {
    let out = tb
        .run(Side::A, "ethtool", ["-c", name])
        .expect("ethtool -c");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("rx-frames:"))
        .unwrap_or_else(|| panic!("no rx-frames line in `ethtool -c {name}`:\n{text}"));
    match line.trim() {
        "n/a" => None,
        v => Some(v.parse().unwrap_or_else(|e| panic!("rx-frames `{v}`: {e}"))),
    }
}

#[test]
fn tap_reports_only_rx_frames() {
    if !require_root("tap_reports_only_rx_frames") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let (name, dev) = make_tap(&tb);
    let values = get(&tb, &dev).expect("coalesce get on tap");
    // tun's supported_coalesce_params is ETHTOOL_COALESCE_RX_MAX_FRAMES, default 0.
    assert_eq!(values, BTreeMap::from([(RX_FRAMES, 0)]), "tap reply");
    assert_eq!(ethtool_rx_frames(&tb, &name), Some(0));
    assert_eq!(
        tb.in_ns(Side::A, || coalesce::read(&dev, RX_FRAMES))
            .expect("read"),
        0
    );
}

#[test]
fn set_rx_frames_reads_back_via_netlink_and_ethtool() {
    if !require_root("set_rx_frames_reads_back_via_netlink_and_ethtool") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let (name, dev) = make_tap(&tb);
    let original = tb
        .in_ns(Side::A, || coalesce::read(&dev, RX_FRAMES))
        .expect("read");

    set(&tb, &dev, &[(RX_FRAMES, 32)]).expect("set rx-frames 32");
    assert_eq!(get(&tb, &dev).expect("get").get(&RX_FRAMES), Some(&32));
    assert_eq!(
        ethtool_rx_frames(&tb, &name),
        Some(32),
        "ethtool -c after set"
    );

    // And the other way round: what `ethtool -C` sets, get() reads.
    tb.run(Side::A, "ethtool", ["-C", &name, "rx-frames", "17"])
        .expect("ethtool -C");
    assert_eq!(get(&tb, &dev).expect("get").get(&RX_FRAMES), Some(&17));

    set(&tb, &dev, &[(RX_FRAMES, original)]).expect("restore rx-frames");
    assert_eq!(ethtool_rx_frames(&tb, &name), Some(original));
}

#[test]
fn rx_frames_above_64_is_clamped_silently() {
    if !require_root("rx_frames_above_64_is_clamped_silently") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let (name, dev) = make_tap(&tb);
    let original = tb
        .in_ns(Side::A, || coalesce::read(&dev, RX_FRAMES))
        .expect("read");

    for (requested, effective) in [(64, 64), (65, 64), (200, 64), (u32::MAX, 64), (1, 1)] {
        let applied = tb
            .in_ns(Side::A, || {
                coalesce::set_and_verify(&dev, &[(RX_FRAMES, requested)])
            })
            .unwrap_or_else(|e| panic!("set rx-frames {requested}: {e}"));
        assert_eq!(
            applied,
            [Applied {
                param: RX_FRAMES,
                requested,
                effective
            }]
        );
        assert_eq!(applied[0].adjusted(), requested != effective);
        assert_eq!(
            ethtool_rx_frames(&tb, &name),
            Some(effective),
            "ethtool -c after {requested}"
        );
    }

    set(&tb, &dev, &[(RX_FRAMES, original)]).expect("restore rx-frames");
}

#[test]
fn unsupported_param_is_refused_and_changes_nothing() {
    if !require_root("unsupported_param_is_refused_and_changes_nothing") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let (name, dev) = make_tap(&tb);
    let original = tb
        .in_ns(Side::A, || coalesce::read(&dev, RX_FRAMES))
        .expect("read");
    set(&tb, &dev, &[(RX_FRAMES, 16)]).expect("set rx-frames 16");

    // rx-frames is supported, rx-usecs is not: the request must not go out at all (the
    // kernel would answer EINVAL, which would be a Netlink error, not ParamUnsupported).
    let err = set(&tb, &dev, &[(RX_FRAMES, 8), (CoalesceParam::RxUsecs, 10)])
        .expect_err("rx-usecs on tap");
    match &err {
        CoalesceError::ParamUnsupported {
            param,
            supported,
            ifindex: i,
            ..
        } => {
            assert_eq!(
                (*param, supported.as_slice(), *i),
                (CoalesceParam::RxUsecs, &["rx-frames"][..], dev.ifindex)
            );
        }
        other => panic!("expected ParamUnsupported, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&name),
        "message names the tap: {err}"
    );
    assert_eq!(
        get(&tb, &dev).expect("get").get(&RX_FRAMES),
        Some(&16),
        "rx-frames changed"
    );
    assert_eq!(ethtool_rx_frames(&tb, &name), Some(16));

    let err = tb.in_ns(Side::A, || coalesce::read(&dev, CoalesceParam::RxUsecs));
    assert!(
        matches!(err, Err(CoalesceError::ParamUnsupported { .. })),
        "{err:?}"
    );

    // An out-of-range boolean is refused before anything is sent, too.
    let err = set(&tb, &dev, &[(CoalesceParam::UseAdaptiveRx, 2)]);
    assert!(
        matches!(err, Err(CoalesceError::OutOfRange { value: 2, .. })),
        "{err:?}"
    );

    set(&tb, &dev, &[(RX_FRAMES, original)]).expect("restore rx-frames");
}

#[test]
fn veth_has_no_coalescing() {
    if !require_root("veth_has_no_coalescing") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let dev = tb.netdev(Side::A);
    let not_supported = |r: Result<(), CoalesceError>, what: &str| match r {
        Err(e @ CoalesceError::NotSupported { .. }) => {
            assert!(e.to_string().contains(tb.if_a()), "{what}: {e}");
        }
        other => panic!("{what}: expected NotSupported, got {other:?}"),
    };
    not_supported(get(&tb, &dev).map(drop), "get");
    not_supported(
        tb.in_ns(Side::A, || coalesce::read(&dev, RX_FRAMES))
            .map(drop),
        "read",
    );
    not_supported(set(&tb, &dev, &[(RX_FRAMES, 1)]), "set");
    // The ethtool command agrees.
    let out = tb
        .cmd(Side::A, "ethtool", ["-c", tb.if_a()])
        .output()
        .expect("ethtool -c");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not supported"));
}

#[test]
fn no_such_interface() {
    if !require_root("no_such_interface") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let gone = Netdev {
        ifindex: 999_999,
        ..tb.netdev(Side::A)
    };
    let err = tb.in_ns(Side::A, || coalesce::get(&gone));
    assert!(
        matches!(
            err,
            Err(CoalesceError::NoSuchInterface { ifindex: 999_999 })
        ),
        "{err:?}"
    );
}
