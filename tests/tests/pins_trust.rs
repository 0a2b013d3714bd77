//! The pin root on a shared host (issue 13): a symlink or a directory another user owns (or
//! may write) where netmit keeps its pins is refused, and path-like interface names never
//! reach the file system. Every case runs in a
//! private mount namespace with a bpffs of its own (`unshare --mount`), so that even a bug
//! could not touch the host's pins.

use std::process::Command;

use tests::{
    support::{netmit_bin, require_root},
    testbed::{Side, Testbed},
};

/// Runs `script` (sh) in a private mount namespace with a fresh bpffs on /sys/fs/bpf
/// (mounted with `mount_opts`), inside `side`'s network namespace; `$NETMIT` is the binary
/// and `$IF` the testbed's interface. Returns (exit status of the script, its output).
fn in_private_bpffs(tb: &Testbed, mount_opts: &str, script: &str) -> (i32, String) {
    let full = format!("set -u\nmount -t bpf bpf /sys/fs/bpf {mount_opts} || exit 90\n{script}");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg("nsenter")
        .arg(format!("--net={}", tb.netns_path(Side::A).display()))
        .args(["--", "sh", "-c", &full])
        .env("NETMIT", netmit_bin())
        .env("IF", tb.if_a())
        .output()
        .expect("unshare");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_planted_pin_root_is_refused_and_left_alone() {
    if !require_root("a_planted_pin_root_is_refused_and_left_alone") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    // A symlink to a directory of the attacker's choosing: nothing goes there, nothing is
    // removed there.
    let (rc, out) = in_private_bpffs(
        &tb,
        "",
        // bpffs has no regular files (`touch` fails): the marker is a directory.
        "mkdir -p /sys/fs/bpf/victim/keep_k3q9 || exit 92\n\
         ln -s /sys/fs/bpf/victim /sys/fs/bpf/netmit\n\
         $NETMIT attach $IF --mode generic; echo attach=$?\n\
         $NETMIT detach $IF; echo detach=$?\n\
         echo \"victim=[$(ls -A /sys/fs/bpf/victim | tr '\\n' ' ')]\"",
    );
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("attach=1") && out.contains("detach=1"),
        "{out}"
    );
    assert!(out.contains("is a symbolic link"), "{out}");
    assert!(
        out.contains("victim=[keep_k3q9 ]"),
        "the victim directory is untouched (its marker, nothing added): {out}"
    );
    assert_eq!(
        tests::netmit::kernel_xdp(&tb, Side::A),
        None,
        "nothing attached"
    );

    // A directory another user owns, and one everybody may write.
    for (prepare, wanted) in [
        (
            "mkdir /sys/fs/bpf/netmit && chown 65534:65534 /sys/fs/bpf/netmit",
            "belongs to uid 65534",
        ),
        (
            "mkdir /sys/fs/bpf/netmit && chmod 0777 /sys/fs/bpf/netmit",
            "mode 0777",
        ),
    ] {
        let (rc, out) = in_private_bpffs(
            &tb,
            "",
            &format!("{prepare}\n$NETMIT attach $IF --mode generic; echo attach=$?"),
        );
        assert_eq!(rc, 0, "{out}");
        assert!(
            out.contains("attach=1") && out.contains(wanted),
            "{prepare}: {out}"
        );
    }
    // (A bpffs root always has the sticky bit, whatever `mode=` says: the kernel sets it,
    // so the "parent others may replace us in" refusal is unit-tested in sys::fs.)
    assert_eq!(tests::netmit::kernel_xdp(&tb, Side::A), None);

    // A safe mount (what `cargo xtask setup` does) works, and leaves 0700 directories.
    let (rc, out) = in_private_bpffs(
        &tb,
        "-o mode=0700",
        "$NETMIT attach $IF --mode generic >/dev/null; echo attach=$?\n\
         stat -c '%a %U' /sys/fs/bpf/netmit /sys/fs/bpf/netmit/netns-*\n\
         $NETMIT detach $IF >/dev/null; echo detach=$?\n\
         ls -A /sys/fs/bpf/netmit",
    );
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("attach=0") && out.contains("detach=0"),
        "{out}"
    );
    assert_eq!(out.matches("700 root").count(), 2, "{out}");
}

#[test]
fn path_like_names_never_reach_the_pins() {
    if !require_root("path_like_names_never_reach_the_pins") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    // Pins of another namespace and of another tool, which a `detach ..` of old removed.
    let (rc, out) = in_private_bpffs(
        &tb,
        "-o mode=0700",
        "$NETMIT attach $IF --mode generic >/dev/null || exit 91\n\
         mkdir -p /sys/fs/bpf/othertool/pin_w7x2 || exit 92\n\
         for name in . .. '' x/.. a/b 'eth 0' 0123456789abcdef; do\n\
           $NETMIT detach \"$name\" >/dev/null 2>&1; echo \"rc=$?\"\n\
         done\n\
         echo \"othertool=[$(ls -A /sys/fs/bpf/othertool | tr '\\n' ' ')]\"\n\
         echo \"ours=[$(ls -A /sys/fs/bpf/netmit/netns-*/ | tr '\\n' ' ')]\"\n\
         $NETMIT detach $IF >/dev/null; echo detach=$?",
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(
        out.matches("rc=2").count(),
        7,
        "each refused by the argument check: {out}"
    );
    assert!(
        out.contains("othertool=[pin_w7x2 ]"),
        "another tool's pins are untouched: {out}"
    );
    assert!(
        out.contains(&format!("ours=[{} ]", tb.ifindex_a())),
        "our attachment survived: {out}"
    );
    assert!(out.contains("detach=0"), "{out}");
}

/// An attachment left by netmit 0.1 (pins at `/sys/fs/bpf/netmit/IFACE/`, made here by
/// moving a fresh attachment's pins there, as bpffs allows) keeps working after the
/// upgrade: `status` and `steer` find it, `detach` removes it and the program. A 0.1
/// directory under another device's name (its link drives this device, not that one) is
/// not that device's: `detach` of that name refuses and leaves it.
#[test]
fn an_attachment_in_the_0_1_layout_is_found_and_detached() {
    if !require_root("an_attachment_in_the_0_1_layout_is_found_and_detached") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let (rc, out) = in_private_bpffs(
        &tb,
        "-o mode=0700",
        "$NETMIT attach $IF --mode generic >/dev/null || exit 91\n\
         mv /sys/fs/bpf/netmit/netns-*/* /sys/fs/bpf/netmit/$IF || exit 92\n\
         rmdir /sys/fs/bpf/netmit/netns-* || exit 93\n\
         $NETMIT status $IF >/dev/null; echo status=$?\n\
         $NETMIT steer add $IF 'proto=udp,dport=7777,action=drop' >/dev/null; echo add=$?\n\
         echo listed=$($NETMIT steer list $IF | grep -c 7777)\n\
         mv /sys/fs/bpf/netmit/$IF /sys/fs/bpf/netmit/lo || exit 94\n\
         $NETMIT detach lo >/dev/null 2>&1; echo detach_lo=$?\n\
         test -e /sys/fs/bpf/netmit/lo/link && echo lo-kept\n\
         mv /sys/fs/bpf/netmit/lo /sys/fs/bpf/netmit/$IF || exit 95\n\
         $NETMIT detach $IF >/dev/null; echo detach=$?\n\
         echo \"left=[$(ls -A /sys/fs/bpf/netmit | tr '\\n' ' ')]\"",
    );
    assert_eq!(rc, 0, "{out}");
    for want in [
        "status=0",
        "add=0",
        "listed=1",
        "detach_lo=1",
        "lo-kept",
        "detach=0",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let left: Vec<&str> = out
        .split_once("left=[")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(inside, _)| inside.split_whitespace().collect())
        .unwrap_or_else(|| panic!("no left=[...] line: {out}"));
    assert!(
        left.iter().all(|e| e.starts_with("netns-")),
        "the 0.1 directory is gone, nothing but namespace directories is left: {left:?}\n{out}"
    );
    assert_eq!(
        tests::netmit::kernel_xdp(&tb, Side::A),
        None,
        "detach removed the program"
    );
}
