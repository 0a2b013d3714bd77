//! The memcached UDP load client (`netmit_lab::memcache`) against Debian's memcached on a
//! veth testbed: every key preloaded, then closed-loop gets and sets that all hit, and an
//! open loop that keeps its rate.

use std::{net::SocketAddr, time::Duration};

use netmit_lab::memcache::{McClient, Workload};
use tests::{
    support::{require_root, require_tool},
    testbed::{Side, Testbed},
};

const PORT: u16 = 11411;

#[test]
fn memcached_client_preloads_then_hits_closed_and_open_loop() {
    if !require_root("memcached_client_preloads_then_hits_closed_and_open_loop") {
        return;
    }
    require_tool("memcached");
    let tb = Testbed::new().expect("testbed");
    let port = PORT.to_string();
    let _server = tb
        .spawn(
            Side::A,
            "memcached",
            [
                "-U", &port, "-p", "0", "-l", "0.0.0.0", "-u", "root", "-t", "1",
            ],
        )
        .expect("memcached");
    let server = SocketAddr::from((tb.ip_a(), PORT));
    let local = SocketAddr::from((tb.ip_b(), 0));
    let mut client = tb
        .in_ns(Side::B, || {
            McClient::new(local, server, Workload::etc(2_000, 1))
        })
        .expect("client");
    // memcached may still be starting: preload waits for its first STORED (5 s at most).
    client.preload(32).expect("preload");

    let closed = client
        .closed_loop(8, Duration::from_millis(100), Duration::from_millis(500))
        .expect("closed loop");
    assert!(closed.replies > 500, "{closed:?}");
    assert_eq!(closed.errors, 0, "{closed:?}");
    assert_eq!(closed.misses, 0, "every key was preloaded: {closed:?}");
    assert!(
        closed.hits > closed.replies * 9 / 10,
        "mostly gets: {closed:?}"
    );
    assert!(closed.latency.p50_ns > 0 && closed.latency.p99_ns >= closed.latency.p50_ns);

    let open = client
        .open_loop(
            2_000.0,
            Duration::from_millis(100),
            Duration::from_millis(1_000),
        )
        .expect("open loop");
    let rate = open.sent as f64 / open.secs;
    assert!(
        (1_800.0..2_200.0).contains(&rate),
        "sent {rate}/s for 2000/s: {open:?}"
    );
    assert!(open.replies + open.lost + 20 >= open.sent, "{open:?}");
    assert_eq!(open.misses, 0, "{open:?}");
}
