//! Privileged tests of the testbed itself (skipped unless root with iproute2).

use std::{
    fs, mem,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::unix::fs::MetadataExt,
    panic,
    path::Path,
    process::Command,
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use netmit_user::sys::process;

use super::*;

/// Prints why a privileged test is skipped and returns true when it must be.
fn skip(test: &str) -> bool {
    match skip_reason() {
        Some(reason) => {
            eprintln!("skipping {test}: {reason}");
            true
        }
        None => false,
    }
}

fn netns_list() -> String {
    String::from_utf8_lossy(
        &check_output(Command::new("ip").args(["netns", "list"]), None)
            .unwrap()
            .stdout,
    )
    .into_owned()
}

fn root_links() -> String {
    String::from_utf8_lossy(
        &check_output(Command::new("ip").args(["-o", "link"]), None)
            .unwrap()
            .stdout,
    )
    .into_owned()
}

/// Asserts that neither the namespaces nor the veth ends named `names` exist any more.
fn assert_gone(names: &[String]) {
    let list = netns_list();
    let links = root_links();
    for name in names {
        assert!(
            !list.split_whitespace().any(|w| w == name),
            "namespace {name} left in:\n{list}"
        );
        assert!(
            !links.contains(name.as_str()),
            "link {name} left in:\n{links}"
        );
        assert!(
            !Path::new(NETNS_RUN_DIR).join(name).exists(),
            "{NETNS_RUN_DIR}/{name} left"
        );
        let left: Vec<_> = leftovers(&process_prefix())
            .into_iter()
            .filter(|l| l.ends_with(name.as_str()))
            .collect();
        assert!(left.is_empty(), "leftovers: {left:?}");
    }
}

/// Waits until `pid` has exited (gone, or a zombie): SIGKILL takes effect
/// asynchronously, and an orphaned grandchild is reaped by init whenever.
fn assert_dies(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after_comm = state.rsplit_once(") ").map_or("", |(_, rest)| rest);
        if state.is_empty() || after_comm.starts_with('Z') || after_comm.starts_with('X') {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} survived SIGKILL: {state}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn names(tb: &Testbed) -> Vec<String> {
    vec![tb.ns_a().to_owned(), tb.ns_b().to_owned()]
}

#[test]
fn ping_b_to_a() {
    if skip("ping_b_to_a") {
        return;
    }
    let tb = Testbed::new().unwrap();
    for name in names(&tb) {
        assert!(
            name.len() <= IFNAME_MAX && name.starts_with(&process_prefix()),
            "{name}"
        );
    }
    assert_eq!(tb.ns_a(), tb.if_a());
    assert_ne!(tb.mac_a(), [0; 6]);
    assert_ne!(tb.mac_a(), tb.mac_b());
    assert!(tb.ifindex_a() > 0 && tb.ifindex_b() > 0);
    assert_eq!(tb.ip_a().octets()[..2], [198, 18]);
    assert!(tb.ping(Side::B, tb.ip_a(), 3), "IPv4 ping B -> A");
    assert!(tb.ping(Side::A, tb.ip_b(), 1), "IPv4 ping A -> B");
    assert!(tb.ping(Side::B, tb.ip6_a(), 2), "IPv6 ping B -> A");
    // Nothing outside the testbed is reachable from inside it.
    assert_eq!(
        tb.ping_replies(
            Side::B,
            Ipv4Addr::new(198, 19, 255, 254),
            1,
            Duration::from_millis(200)
        )
        .unwrap(),
        0
    );
    // The ifindex and MAC agree with what the namespace itself reports.
    let (idx, mac) = tb.in_ns(Side::A, || {
        let name = tb.if_a().parse().unwrap();
        let idx = Netdev::resolve(&name).unwrap().ifindex;
        let mac = fs::read_to_string("/proc/thread-self/net/dev").unwrap();
        (idx, mac)
    });
    assert_eq!(idx, tb.ifindex_a());
    assert!(mac.contains(tb.if_a()) && !mac.contains(tb.if_b()));
}

#[test]
fn parallel_testbeds_are_distinct_and_work() {
    if skip("parallel_testbeds_are_distinct_and_work") {
        return;
    }
    let results: Vec<_> = (0..2)
        .map(|_| {
            thread::spawn(|| {
                let tb = Testbed::new().unwrap();
                assert!(tb.ping(Side::B, tb.ip_a(), 2));
                assert!(tb.ping(Side::A, tb.ip6_b(), 1));
                (names(&tb), tb.ip_a())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let (n0, ip0) = &results[0];
    let (n1, ip1) = &results[1];
    assert!(n0.iter().all(|n| !n1.contains(n)), "{n0:?} vs {n1:?}");
    assert_ne!(ip0, ip1);
    assert_gone(n0);
    assert_gone(n1);
}

#[test]
fn drop_removes_namespaces_and_links() {
    if skip("drop_removes_namespaces_and_links") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let names = names(&tb);
    let list = netns_list();
    for name in &names {
        assert!(
            list.split_whitespace().any(|w| w == name),
            "{name} missing from:\n{list}"
        );
        // The veth pair was created inside the namespaces, never in ours.
        assert!(!root_links().contains(name.as_str()));
    }
    drop(tb);
    assert_gone(&names);
}

#[test]
fn panicking_test_still_cleans_up() {
    if skip("panicking_test_still_cleans_up") {
        return;
    }
    let seen = Mutex::new(Vec::new());
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        let tb = Testbed::new().unwrap();
        lock(&seen).extend(names(&tb));
        let _sleeper = tb.spawn(Side::A, "sleep", ["1000"]).unwrap();
        panic!("deliberate test panic");
    }));
    assert!(result.is_err());
    let names = lock(&seen).clone();
    assert_eq!(names.len(), 2);
    assert_gone(&names);

    // A panic inside in_ns reaches the caller with its payload.
    let tb = Testbed::new().unwrap();
    let payload = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        tb.in_ns(Side::B, || panic!("boom in ns"))
    }))
    .unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in ns"));
    assert!(
        tb.ping(Side::B, tb.ip_a(), 1),
        "testbed still usable after a panic in in_ns"
    );
}

#[test]
fn in_ns_only_moves_the_helper_thread() {
    if skip("in_ns_only_moves_the_helper_thread") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let ours = fs::read_link("/proc/thread-self/ns/net").unwrap();
    let (inside, via_self, via_thread) = tb.in_ns(Side::A, || {
        (
            fs::read_link("/proc/thread-self/ns/net").unwrap(),
            fs::read_to_string("/proc/self/net/dev").unwrap(),
            fs::read_to_string("/proc/thread-self/net/dev").unwrap(),
        )
    });
    assert_ne!(inside, ours);
    assert_eq!(fs::read_link("/proc/thread-self/ns/net").unwrap(), ours);
    // /proc/self/net follows the main thread, /proc/thread-self/net this thread.
    assert!(via_thread.contains(tb.if_a()));
    assert!(
        !via_self.contains(tb.if_a()),
        "/proc/self/net unexpectedly shows the testbed:\n{via_self}"
    );
    // Same namespace inode as the one named in /run/netns.
    let ino = fs::metadata(tb.netns_path(Side::A))
        .map(|m| m.ino())
        .unwrap();
    assert!(
        inside.to_string_lossy().contains(&ino.to_string()),
        "{inside:?} vs inode {ino}"
    );
}

#[test]
fn cmd_run_and_spawn_are_in_the_namespace() {
    if skip("cmd_run_and_spawn_are_in_the_namespace") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let out = tb.run(Side::A, "ip", ["-o", "link"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ifnames: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(": ").nth(1)?.split('@').next())
        .collect();
    assert_eq!(
        ifnames,
        ["lo", tb.if_a()],
        "only lo and the veth end: {text}"
    );

    let err = tb
        .run(
            Side::A,
            "sh",
            ["-c", "echo to-out; echo to-err >&2; exit 3"],
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("to-out") && msg.contains("to-err") && msg.contains('3'),
        "{msg}"
    );
    match &err {
        TestbedError::CommandFailed {
            command,
            ns,
            status,
            stdout,
            stderr,
        } => {
            assert!(command.starts_with("sh -c echo"), "{command}");
            assert_eq!(ns.as_deref(), Some(tb.ns_a()));
            assert_eq!(status.code(), Some(3));
            assert_eq!((stdout.as_str(), stderr.as_str()), ("to-out\n", "to-err\n"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        tb.run(Side::A, "/nonexistent/netmit-test", ["x"]),
        Err(TestbedError::Spawn { .. })
    ));

    let ino = fs::metadata(tb.netns_path(Side::B)).unwrap().ino();
    let child = tb
        .spawn(Side::B, "sh", ["-c", "sleep 1000 & sleep 1000"])
        .unwrap();
    let pid = child.pid();
    let ns = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(ns.to_string_lossy(), format!("net:[{ino}]"));
    // The grandchild sleep is in the child's process group and dies with it.
    // (Wait for the shell to have started it.)
    let members = || -> Vec<u32> {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&p| process::group_of(p) == Some(pid))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut group = members();
    while group.len() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
        group = members();
    }
    assert!(
        group.len() >= 2,
        "process group {group:?}: the shell (or the sleep it became) and the other sleep"
    );
    drop(child);
    for p in group {
        assert_dies(p);
    }
    assert!(lock(&tb.children).is_empty());

    // A leaked guard is killed by the testbed's Drop.
    let leaked = tb.spawn(Side::A, "sleep", ["1000"]).unwrap();
    let leaked_pid = leaked.pid();
    mem::forget(leaked);
    drop(tb);
    assert_dies(leaked_pid);
    // Reap the zombie the forgotten Child left behind.
    process::reap(leaked_pid).unwrap();
}

#[test]
fn snmp_counters_follow_the_namespace() {
    if skip("snmp_counters_follow_the_namespace") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let out_before = tb.snmp_counter(Side::B, "Udp", "OutDatagrams").unwrap();
    let noports_before = tb.snmp_counter(Side::A, "Udp", "NoPorts").unwrap();
    let a_out_before = tb.snmp_counter(Side::A, "Udp", "OutDatagrams").unwrap();
    let target = SocketAddr::new(tb.ip_a().into(), 9);
    tb.in_ns(Side::B, || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..5 {
            sock.send_to(b"netmit", target).unwrap();
        }
    });
    assert_eq!(
        tb.snmp_counter(Side::B, "Udp", "OutDatagrams").unwrap(),
        out_before + 5
    );
    assert_eq!(
        tb.snmp_counter(Side::A, "Udp", "OutDatagrams").unwrap(),
        a_out_before
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while tb.snmp_counter(Side::A, "Udp", "NoPorts").unwrap() < noports_before + 5 {
        assert!(
            Instant::now() < deadline,
            "A never counted the datagrams as NoPorts"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let all = tb.proc_net_counters(Side::B, "snmp").unwrap();
    assert_eq!(all["Udp.OutDatagrams"], out_before + 5);
    assert!(tb.snmp_counter(Side::B, "Tcp", "OutSegs").is_ok());
    assert!(tb.netstat_counter(Side::B, "TcpExt", "TCPTimeouts").is_ok());
    assert!(matches!(
        tb.snmp_counter(Side::B, "Udp", "NoSuchCounter"),
        Err(TestbedError::NoCounter { ns, .. }) if ns == tb.ns_b()
    ));
    assert!(matches!(
        tb.snmp_counter(Side::B, "Tcp", "MaxConn"),
        Err(TestbedError::NegativeCounter { value: -1, .. })
    ));
}

#[test]
fn gro_and_sysctl() {
    if skip("gro_and_sysctl") {
        return;
    }
    let tb = Testbed::new().unwrap();
    let gro = |tb: &Testbed| {
        let out = tb.run(Side::A, "ethtool", ["-k", tb.if_a()]).unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("generic-receive-offload:"))
            .unwrap()
            .to_owned()
    };
    tb.set_gro(Side::A, true).unwrap();
    assert!(gro(&tb).contains(": on"), "{}", gro(&tb));
    tb.set_gro(Side::A, false).unwrap();
    assert!(gro(&tb).contains(": off"), "{}", gro(&tb));

    tb.sysctl(Side::B, "net.ipv4.ip_forward", "1").unwrap();
    let inside = tb.in_ns(Side::B, || {
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
    });
    let other = tb.in_ns(Side::A, || {
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
    });
    assert_eq!((inside.trim(), other.trim()), ("1", "0"));
    assert!(matches!(
        tb.sysctl(Side::B, "net.ipv4.no_such_key", "1"),
        Err(TestbedError::Sysctl { ns, key, .. }) if ns == tb.ns_b() && key == "net.ipv4.no_such_key"
    ));
}

#[test]
fn tagged_prefix_names_and_leftovers() {
    if skip("tagged_prefix_names_and_leftovers") {
        return;
    }
    let prefix = tagged_prefix("t");
    let tb = Testbed::with_prefix(&prefix).unwrap();
    assert_eq!(tb.prefix(), prefix);
    assert!(tb.ping(Side::A, tb.ip_b(), 1));
    let names = names(&tb);
    for name in &names {
        assert!(
            name.starts_with(&prefix) && name.len() <= IFNAME_MAX,
            "{name}"
        );
        // Not taken for one of the default testbeds of this process.
        assert!(!name.starts_with(&process_prefix()), "{name}");
    }
    let left = leftovers(&prefix);
    for name in &names {
        assert!(left.contains(&format!("netns {name}")), "{left:?}");
    }
    drop(tb);
    assert!(leftovers(&prefix).is_empty(), "{:?}", leftovers(&prefix));
    assert_gone(&names);

    // A bad prefix is refused before anything is created.
    let bad = "nmt/x";
    assert!(matches!(
        Testbed::with_prefix(bad),
        Err(TestbedError::InvalidPrefix { prefix, .. }) if prefix == bad
    ));
    assert!(leftovers("nmt/").is_empty());
}

#[test]
fn client_and_server_threads_share_a_testbed() {
    if skip("client_and_server_threads_share_a_testbed") {
        return;
    }
    let tb = Testbed::with_prefix(&tagged_prefix("c")).unwrap();
    let server = tb.udp_socket(Side::A, SocketAddr::new(tb.ip_a().into(), 0));
    let port = server.local_addr().unwrap().port();
    let target = SocketAddr::new(tb.ip_a().into(), port);
    const N: usize = 200;
    let received = thread::scope(|s| {
        let tb = &tb;
        let server = &server;
        let receiver = s.spawn(move || {
            tb.in_ns(Side::A, || {
                let mut buf = [0u8; 64];
                let mut got = 0;
                while got < N && server.recv(&mut buf).is_ok() {
                    got += 1;
                }
                got
            })
        });
        let sender = s.spawn(move || {
            tb.in_ns(Side::B, || {
                let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
                for _ in 0..N {
                    sock.send_to(b"netmit", target).unwrap();
                    thread::sleep(Duration::from_micros(50));
                }
            })
        });
        // More threads entering the namespaces at the same time.
        let pingers: Vec<_> = (0..4)
            .map(|i| {
                let side = if i % 2 == 0 { Side::A } else { Side::B };
                s.spawn(move || tb.ping(side, tb.ip(side.peer()), 1))
            })
            .collect();
        sender.join().unwrap();
        for p in pingers {
            assert!(p.join().unwrap(), "ping from a concurrent thread");
        }
        receiver.join().unwrap()
    });
    assert_eq!(received, N);
}

#[test]
fn namespaces_of_dead_processes_are_swept_and_live_ones_kept() {
    if skip("namespaces_of_dead_processes_are_swept_and_live_ones_kept") {
        return;
    }
    // A pid that existed a moment ago and is gone now: what a killed run leaves.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let orphan = format!("nmq{dead}x0a");
    let ours = format!("nmq{}x0a", std::process::id());
    for name in [&orphan, &ours] {
        check_output(Command::new("ip").args(["netns", "add", name]), None).unwrap();
    }
    let removed = sweep_orphans();
    let still = |name: &str| Path::new(NETNS_RUN_DIR).join(name).exists();
    let (orphan_left, ours_left) = (still(&orphan), still(&ours));
    let _ = Command::new("ip").args(["netns", "delete", &ours]).status();
    if orphan_left {
        let _ = Command::new("ip")
            .args(["netns", "delete", &orphan])
            .status();
    }
    assert!(!orphan_left, "{orphan} survived the sweep: {removed:?}");
    assert!(ours_left, "the sweep removed a live process's {ours}");
    assert!(removed.iter().any(|l| l.contains(&orphan)), "{removed:?}");
}
