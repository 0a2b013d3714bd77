//! Concurrent rule edits on one attachment (issue 13): four `netmit steer add` loops and
//! one `steer del` loop at once, with traffic flowing. Every add that reported success is
//! listed afterwards, every reported delete is gone, no packet meanwhile matched a rule it
//! should not have (the traffic goes to ports no rule ever names: a torn table would drop
//! some), and the final tables classify one packet per port exactly as the independent
//! reference classifier does with the final rule list.

use std::{
    collections::BTreeSet,
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    netmit::netmit,
    packet::PacketBuilder,
    reference::{self, RefAction, RefProto, RefRule, Verdict},
    support::require_root,
    testbed::{Side, Testbed},
};

const WRITERS: u16 = 4;
const PER_WRITER: u16 = 30;
/// Ports no rule ever names: the background traffic.
const CONTROL_PORTS: std::ops::Range<u16> = 31000..31010;

fn port(writer: u16, i: u16) -> u16 {
    20000 + writer * 100 + i
}

fn rule_text(port: u16) -> String {
    format!("proto=udp,dport={port},action=drop,prio=1000")
}

fn status(tb: &Testbed) -> Value {
    let run = netmit(
        tb,
        Side::A,
        &["status", tb.if_a(), "--json", "--interval", "0"],
    );
    assert!(run.ok, "{}", run.stderr);
    run.json()["interfaces"][0].clone()
}

fn verdicts(s: &Value, name: &str) -> u64 {
    s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["verdicts"][name]["packets"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn concurrent_adds_and_deletes_lose_nothing_and_never_tear() {
    if !require_root("concurrent_adds_and_deletes_lose_nothing_and_never_tear") {
        return;
    }
    let tb = Arc::new(Testbed::new().expect("testbed"));
    let attach = netmit(&tb, Side::A, &["attach", tb.if_a(), "--mode", "native"]);
    assert!(attach.ok, "{}", attach.stderr);

    // Background traffic to the control ports while the rules change.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (tb, stop, sent) = (tb.clone(), stop.clone(), sent.clone());
        thread::spawn(move || {
            let s = tb
                .in_ns(Side::B, || UdpSocket::bind("0.0.0.0:0"))
                .expect("bind");
            let mut p = CONTROL_PORTS.start;
            while !stop.load(Ordering::Relaxed) {
                let to = SocketAddr::new(tb.ip_a().into(), p);
                if s.send_to(b"control", to).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                p = if p + 1 == CONTROL_PORTS.end {
                    CONTROL_PORTS.start
                } else {
                    p + 1
                };
                thread::sleep(Duration::from_micros(200));
            }
        })
    };

    // Writer 0 publishes what it added, for the deleter.
    let published = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (tb, published) = (tb.clone(), published.clone());
            thread::spawn(move || {
                let mut added = Vec::new();
                for i in 0..PER_WRITER {
                    let text = rule_text(port(w, i));
                    let run = netmit(&tb, Side::A, &["steer", "add", tb.if_a(), &text]);
                    assert!(run.ok, "steer add {text}: {}", run.stderr);
                    assert!(run.stdout.starts_with("added rule "), "{}", run.stdout);
                    if w == 0 {
                        published.lock().unwrap().push(text.clone());
                    }
                    added.push(text);
                }
                added
            })
        })
        .collect();
    // Deletes every other rule writer 0 reported added, while the writers go on: a rule
    // reported added must be there to delete.
    let deleter = {
        let (tb, published) = (tb.clone(), published.clone());
        thread::spawn(move || {
            let mut deleted = Vec::new();
            let wanted: Vec<String> = (0..PER_WRITER)
                .step_by(2)
                .map(|i| rule_text(port(0, i)))
                .collect();
            for text in wanted {
                while !published.lock().unwrap().contains(&text) {
                    thread::sleep(Duration::from_millis(2));
                }
                let run = netmit(&tb, Side::A, &["steer", "del", tb.if_a(), &text]);
                assert!(
                    run.ok,
                    "deleting {text}, which was reported added: {}",
                    run.stderr
                );
                deleted.push(text);
            }
            deleted
        })
    };
    let added: BTreeSet<String> = writers
        .into_iter()
        .flat_map(|h| h.join().expect("writer"))
        .collect();
    let deleted: BTreeSet<String> = deleter.join().expect("deleter").into_iter().collect();
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();

    // Every reported add is there unless reported deleted; nothing else is.
    let listed = netmit(&tb, Side::A, &["steer", "list", tb.if_a(), "--json"]);
    assert!(listed.ok, "{}", listed.stderr);
    let listed: BTreeSet<String> = listed.json()["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = added.difference(&deleted).cloned().collect();
    assert_eq!(added.len(), usize::from(WRITERS * PER_WRITER));
    assert_eq!(deleted.len(), usize::from(PER_WRITER / 2));
    assert_eq!(listed, expected, "lost or extra rules");

    // No control packet was ever dropped: each frame saw a whole generation.
    let total = sent.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s = status(&tb);
        if verdicts(&s, "unmatched") >= total || Instant::now() > deadline {
            break s;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(total > 1000, "too little background traffic ({total})");
    assert_eq!(verdicts(&s, "drop"), 0, "a control packet matched a rule");
    assert!(verdicts(&s, "unmatched") >= total);

    // The final tables against the reference: one packet to every port ever added.
    let final_rules: Vec<(u64, RefRule)> = status(&tb)["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let port = r["rule"]
                .as_str()
                .unwrap()
                .split(',')
                .find_map(|kv| kv.strip_prefix("dport="))
                .unwrap()
                .parse()
                .unwrap();
            (
                r["id"].as_u64().unwrap(),
                RefRule {
                    proto: RefProto::Udp,
                    dport: Some((port, port)),
                    action: RefAction::Drop,
                    ..RefRule::default()
                },
            )
        })
        .collect();
    let refs: Vec<RefRule> = final_rules.iter().map(|(_, r)| r.clone()).collect();
    let s = tb.in_ns(Side::B, || UdpSocket::bind("0.0.0.0:0")).unwrap();
    let mut want_drops = 0;
    for w in 0..WRITERS {
        for i in 0..PER_WRITER {
            let p = port(w, i);
            let frame = PacketBuilder::new()
                .ipv4(tb.ip_b(), tb.ip_a())
                .udp(40000, p)
                .payload(b"final".to_vec())
                .build();
            let v = reference::classify(&frame, &refs, false);
            if v.verdict == Verdict::Drop {
                want_drops += 1;
                assert_eq!(refs[v.rule.unwrap()].dport, Some((p, p)));
            }
            s.send_to(b"final", SocketAddr::new(tb.ip_a().into(), p))
                .unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s = status(&tb);
        if verdicts(&s, "drop") >= want_drops || Instant::now() > deadline {
            break s;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(verdicts(&s, "drop"), want_drops);
    assert_eq!(want_drops as usize, expected.len());
    for r in s["rules"].as_array().unwrap() {
        assert_eq!(
            r["packets"].as_u64(),
            Some(1),
            "rule {r} hit once: {}",
            r["rule"]
        );
    }
    assert!(netmit(&tb, Side::A, &["detach", tb.if_a()]).ok);
}
